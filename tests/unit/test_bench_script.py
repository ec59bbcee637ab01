"""The benchmark suite's cheap sections run and report ratios (numbers are not judged here)."""

from __future__ import annotations

from harness.bench.federations import wall_seconds
from harness.bench.timing import trunc
from tests.conftest import load_script


def test_aggregation_and_encoding_sections_report_ratios() -> None:
    bench = load_script("bench")
    report = {"aggregation": bench.aggregation([2]), "encodings": bench.encodings("unused")}
    (row,) = report["aggregation"]
    assert row["updates"] == 2 and row["streaming_s"] > 0 and row["floor_s"] > 0
    assert row["streaming_peak_bytes"] > 0 and "streaming_vs_floor" in row
    enc = report["encodings"]
    assert enc["float16"]["vs_raw_float32"] < enc["float32"]["vs_raw_float32"]
    assert enc["int8"]["vs_raw_float32"] < enc["float16"]["vs_raw_float32"]
    table = bench.markdown(report)
    assert "streaming vs copy floor" in table and "float16" in table
    assert trunc(0.51999, 2) == "0.51"  # truncated, never rounded up


def test_round_wall_time_runs_from_start_to_next_start() -> None:
    """Everything between two round starts counts, the checkpoint and publishing included;
    the last round ends with its evaluation (pipelined for the others)."""
    records = [
        {"started_at": 100.0, "closed_at": 104.0, "evaluated_at": 106.0},
        {"started_at": 104.5, "closed_at": 108.0, "evaluated_at": 109.5},
        {"started_at": 108.25, "closed_at": 111.0, "evaluated_at": 112.0},
    ]
    assert wall_seconds(records) == [4.5, 3.75, 3.75]
    del records[-1]["evaluated_at"]
    assert wall_seconds(records)[-1] == 2.75
