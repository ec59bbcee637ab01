"""The personalisation benchmark's bookkeeping: groups, per-run means, mean ± sd table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script


def _result(gain: float) -> dict:
    sites = [
        {"global_auc": 0.9, "personal_auc": 0.9 + gain, "global_accuracy": 0.8,
         "personal_accuracy": 0.8 + gain},
        {"global_auc": None, "personal_auc": None, "global_accuracy": 1.0,
         "personal_accuracy": 1.0},
    ]  # fmt: skip
    return {
        "sites": sites,
        "mean_gain_auc": gain,
        "mean_gain_accuracy": gain / 2,
        "sites_better_accuracy": 1,
        "sites_worse_accuracy": 0,
    }


def test_runs_are_grouped_by_folder_and_tabled_over_seeds() -> None:
    bp = load_script("bench_personalise")
    assert bp.group_of(Path("out/runs/breastmnist/cos30/seed-2")) == ("breastmnist", "cos30")
    means = bp.run_means(_result(0.02))
    assert means["global_auc"] == pytest.approx(0.9)  # the one-class site has no AUC
    assert means["global_accuracy"] == pytest.approx(0.9)
    runs = [
        {"dataset": "breastmnist", "variant": "v", "means": bp.run_means(r), "result": r}
        for r in (_result(0.02), _result(0.04))
    ]
    text = bp.table(runs)
    assert "| breastmnist | v | 2 | 0.9000 ± 0.0000 | 0.9300 ± 0.0141 | 0.0300 ± 0.0141 |" in text
    assert text.splitlines()[2].endswith("| 2 / 0 |")


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, caplog) -> None:
    bp = load_script("bench_personalise")
    assert bp.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "not a finished simulation run" in caplog.text
    assert not (tmp_path / "out").exists()
