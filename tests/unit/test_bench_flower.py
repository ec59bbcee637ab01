"""The Flower peer comparison's bookkeeping: same split on both sides, mean ± sd tables.

The deployments themselves (a SuperLink, SuperNodes, Mosquitto) run in the benchmark, not
here: Flower is never a PrivaDx dependency. What is checked is that the Flower App deals
the sites the very images PrivaDx's harness deals them, and what the script reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, load_module


def test_the_flower_app_deals_each_site_the_images_privadx_deals_it(
    tmp_path: Path, breast_npz: Path
) -> None:
    from harness.federation import split_sites
    from models.settings import LocalTraining

    task = load_module("peer_task", Path(REPO) / "scripts/flower_app/privadx_flower/task.py")
    settings = {"npz": str(breast_npz), "sites": 4, "alpha": 0.5, "seed": 3, "rounds": 2}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**settings, "training": LocalTraining().to_dict(), "out": "x"}))
    spec = task.PeerSpec.load(str(path))
    ours = split_sites(breast_npz, 4, alpha=0.5, seed=3)
    for i, site in enumerate(ours):
        theirs = spec.site(i)
        assert np.array_equal(theirs.images, site.images)
        assert np.array_equal(theirs.labels, site.labels)
    assert spec.local_training() == LocalTraining()


def _run(rounds: list[float], setup: float, mb: float, acc: float, auc: float) -> dict:
    return {
        "round_seconds": rounds,
        "setup_seconds": setup,
        "total_seconds": setup + sum(rounds),
        "bytes_per_round": mb * 1e6,
        "accuracy": acc,
        "auc": auc,
    }


def test_figures_are_means_and_spreads_over_runs() -> None:
    bench = load_module("bench_flower", Path(REPO) / "scripts/bench_flower.py")
    runs = [_run([30.0, 10.0], 5.0, 2.0, 0.8, 0.9), _run([34.0, 14.0], 7.0, 4.0, 0.9, 0.95)]
    s = bench.summarise(runs)
    assert s["wall time per round (s)"] == "22.00 ± 2.82"  # per-run means 20 and 24
    assert s["round 1 (s)"] == "32.00 ± 2.82"
    assert s["later rounds (s)"] == "12.00 ± 2.82"
    assert s["set-up before round 1 (s)"] == "6.00 ± 1.41"
    assert s["total wall time (s)"] == "50.0 ± 7.0"  # 45 and 55
    assert s["bytes per round (MB)"] == "3.000 ± 1.414"
    assert s["final accuracy"] == "0.8500 ± 0.0707"
    report = {
        "settings": {
            "dataset": "d",
            "sites": 2,
            "alpha": 0.5,
            "rounds": 2,
            "seeds": [0, 1],
            "training": {},
        },
        "flower_version": "1.42.0",
        "summary": {"privadx": s, "flower": bench.summarise(runs[:1])},
    }
    table = bench.table(report)
    assert "| final AUC | 0.9250 ± 0.0353 | 0.9000 ± 0.0000 |" in table
    assert "Flower 1.42.0" in table


@pytest.mark.parametrize("argv", [["--sites", "0"], ["--rounds", "0"]])
def test_impossible_settings_are_refused(argv: list[str]) -> None:
    bench = load_module("bench_flower", Path(REPO) / "scripts/bench_flower.py")
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
