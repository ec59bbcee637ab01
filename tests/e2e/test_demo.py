"""``privadx demo``: embedded broker, gateway and edge agents as real processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import SUMMARY_KEYS, run_cli


@pytest.mark.slow
def test_demo_runs_a_federation_end_to_end(tmp_path: Path, breast_npz: Path) -> None:
    out = tmp_path / "demo"
    proc = run_cli(
        "demo",
        "--dataset",
        str(breast_npz),
        "--sites",
        "3",
        "--rounds",
        "2",
        "--local-epochs",
        "1",
        "--out",
        str(out),
        "--edge-python",  # this interpreter, named: the path the footprint benchmark takes
        sys.executable,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["rounds"] == 2 and set(summary["sites"]) == {"site-0", "site-1", "site-2"}
    assert [r["updates"] for r in summary["per_round"]] == [3, 3]
    # The gateway ran from the task file; the sites' reports are its evaluation, the public
    # test split a separate, labelled score.
    assert (out / "task.toml").exists() and summary["benchmark"] == "breastmnist"
    assert summary["federated"]["sites_reported"] == 3
    assert [r["sites_reported"] for r in summary["per_round"]] == [3, 3]
    assert all(0 <= r["federated_auc"] <= 1 for r in summary["per_round"])
    assert summary["decision"]["source"] == "federated"
    assert "final, federated evaluation on the sites'" in proc.stdout
    assert "public test split (benchmark" in proc.stdout
    for site in ("site-0", "site-1", "site-2"):
        assert summary["bytes_per_site"][site]["bytes_sent"] > 100_000
        assert summary["bytes_per_site"][site]["bytes_received"] > 300_000
        assert (out / "sites" / site / "model.onnx").exists()
    assert "diagnosis at site-0" in proc.stdout
    assert proc.stdout.count("image-") >= 6
    assert "round 2: 3 updates" in proc.stdout


def test_demo_refuses_an_edge_python_that_is_not_an_interpreter(tmp_path: Path) -> None:
    proc = run_cli("demo", "--out", str(tmp_path / "x"), "--edge-python", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"privadx: error: --edge-python {tmp_path}: not an executable file"
    )
    assert not (tmp_path / "x").exists()
