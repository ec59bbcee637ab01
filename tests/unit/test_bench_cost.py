"""The cost benchmark's table: every measured row shown, a failed one said to have failed."""

from __future__ import annotations

from tests.conftest import load_script


def test_rows_are_truncated_and_failures_named() -> None:
    bc = load_script("bench_cost")
    report = {
        "local_rounds": [
            {
                "arch": "cnn",
                "size": 28,
                "images": 256,
                "epochs": 1,
                "parameters": 72146,
                "first_round_s": 6.879,
                "round_s_median": 0.329,
                "peak_rss_mb": 622.29,
                "update_message_bytes": 290086,
                "onnx_latency_ms_median": 0.2079,
            },
            {"arch": "mobilenet", "size": 224, "error": "killed"},
        ],
        "simulations": [
            {
                "sites": 10,
                "rounds": 3,
                "round_s_median": 14.567,
                "federated_s": 50.01,
                "federated_cpu_s": 95.55,
                "peak_rss_mb": 1500.04,
                "auc": 0.93456,
            }
        ],
    }
    text = bc.table(report)
    assert "| cnn | 28 | 72,146 | 6.87 | 0.32 | 622.2 | 290,086 | 0.207 |" in text
    assert "| mobilenet | 224 | failed: see results.json |" in text
    assert "| 10 | 3 | 14.56 | 50.0 | 95.5 | 1500.0 | 0.9345 |" in text
    assert "upsampled from 28 px" in text
