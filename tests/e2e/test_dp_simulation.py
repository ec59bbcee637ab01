"""``privadx simulate`` with client-level DP: epsilon per round, the budget stop, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("tensorflow_federated")


@pytest.mark.slow
def test_dp_simulation_reports_epsilon_and_stops_at_the_target(
    tmp_path: Path, breast_npz: Path
) -> None:
    out = tmp_path / "dp"
    proc = run_cli(
        "simulate", "--dataset", str(breast_npz), "--sites", "4", "--partition", "iid",
        "--rounds", "5", "--local-epochs", "1", "--dp-noise", "1.0", "--dp-clip", "0.5",
        "--dp-fixed-clip", "--target-epsilon", "8", "--out", str(out), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    eps = [r["privacy"]["epsilon"] for r in records if r["series"] == "federated"]
    assert {r["aggregation"]["rule"] for r in records if r["series"] == "federated"} == {"dp"}
    # 4 sites every round, z = 1: epsilon 4.72, 7.07, 9.00 after rounds 1-3, so 8 allows 2
    assert len(eps) == summary["rounds"] == 2 and eps == sorted(eps) and eps[-1] <= 8
    assert summary["privacy"]["epsilon"] == eps[-1] and summary["privacy"]["delta"] == 1e-5
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    provenance = json.loads(meta["privadx.provenance"])
    assert provenance["privacy"]["epsilon"] == eps[-1]
    assert provenance["privacy"]["noise_multiplier"] == 1.0


def test_adaptive_clipping_with_too_few_sites_is_refused_clearly(tmp_path: Path) -> None:
    proc = run_cli("simulate", "--sites", "4", "--dp-noise", "1.0", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "--dp-fixed-clip" in proc.stderr
    assert "Traceback" not in proc.stderr
