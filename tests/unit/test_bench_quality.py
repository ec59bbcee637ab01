"""The model-quality benchmark's bookkeeping: jobs, resumable runs, mean ± sd tables.

The simulations themselves are replaced by a stand-in command here (a real sweep takes
hours); what is checked is what the script does with their output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script


def _summary(auc: float, accuracy: float) -> dict:
    return {
        "auc": auc,
        "accuracy": accuracy,
        "num_sites": 10,
        "rounds": 20,
        "seconds": 100.0,
        "cpu_seconds": 180.0,
        "federated": {"auc": auc - 0.01},
        "privacy": None,
        "centralized": {"auc": 0.98, "accuracy": 0.90, "seconds": 50.0},
    }


def _test(auc: float) -> dict:
    return {"auc": auc, "accuracy": auc - 0.1}


def test_suites_and_variants_name_their_runs() -> None:
    bq = load_script("bench_quality")
    jobs = bq.jobs_of(bq.parse_args(["--suite", "dp"]))
    assert [j.variant for j in jobs] == ["dp-eps1", "dp-eps3", "dp-eps8", "no-dp-100-sites"]
    assert all("--sites" in j.options and "100" in j.options for j in jobs)
    assert jobs[2].options[-4:] == ("--dp-noise", "auto", "--target-epsilon", "8")
    # epsilon 1 over 20 rounds needs z ~18, beyond adaptive clipping's 100 / 10: fixed clip
    assert "--dp-fixed-clip" in jobs[0].options and "--dp-fixed-clip" not in jobs[1].options
    assert [j.pooled for j in jobs] == [False, False, False, True]
    commands = [bq.command(j, 0, Path("o"), None) for j in jobs]
    assert ["--centralized" in c for c in commands] == [False, False, False, True]
    args = bq.parse_args(["--dataset", "breastmnist", "--variant", "m=--server-momentum 0.9"])
    (job,) = bq.jobs_of(args)
    assert job.key == "breastmnist/m" and job.options == ("--server-momentum", "0.9")
    assert job.pooled
    (job,) = bq.jobs_of(
        bq.parse_args(["--dataset", "breastmnist", "--variant", "m=", "--no-pooled"])
    )
    assert not job.pooled and "--centralized" not in bq.command(job, 0, Path("o"), None)
    with pytest.raises(SystemExit, match="NAME=OPTIONS"):
        bq.parse_variant("no-equals-sign")
    with pytest.raises(SystemExit, match="nothing to run"):
        bq.jobs_of(bq.parse_args([]))


def test_runs_are_recorded_reused_and_tabled_as_mean_and_sd(tmp_path, monkeypatch) -> None:
    bq = load_script("bench_quality")
    results = iter([(0.95, 0.88), (0.97, 0.90), (0.96, 0.86)])

    def fake_command(job, seed, out, data_dir):  # type: ignore[no-untyped-def]
        auc, acc = next(results)
        text = json.dumps(_summary(auc, acc))
        # Round 1 validates best on the sites' held-out images; round 2 is the last.
        rounds = [
            {"series": "federated", "round": 1, "federated": {"auc": 0.99}, "test": _test(0.9)},
            {"series": "centralized", "round": 1, "test": _test(0.5)},
            {"series": "federated", "round": 2, "federated": {"auc": 0.98}, "test": _test(0.8)},
        ]
        lines = "".join(json.dumps(r) + "\n" for r in rounds)
        path = str(out / "metrics.jsonl")
        write = f"import pathlib; pathlib.Path({path!r}).write_text({lines!r})"
        return [sys.executable, "-c", f"{write}; print({text!r})"]

    monkeypatch.setattr(bq, "command", fake_command)
    argv = ["--dataset", "pneumoniamnist", "--variant", "base=", "--out", str(tmp_path)]
    assert bq.main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    (row,) = saved["rows"]
    mean, sd = row["auc"]
    assert mean == pytest.approx(0.96) and sd == pytest.approx(0.01)
    assert row["accuracy_vs_pooled"][0] == pytest.approx((0.88 + 0.90 + 0.86) / 3 / 0.90)
    assert all(r["cpu_seconds_total"] >= 0 for r in saved["runs"])
    assert row["selected_auc"] == [0.9, 0.0] and row["selected_round"] == [1.0, 0.0]
    table = (tmp_path / "table.md").read_text()
    assert "| pneumoniamnist | base | 10 | 20 | inf | 0.9600 ± 0.0100 |" in table
    # A second sweep reuses the finished runs (the stand-in has no results left to give).
    assert bq.main(argv) == 0
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == saved["rows"]


def test_a_failed_run_is_reported_and_the_others_still_run(tmp_path, monkeypatch) -> None:
    bq = load_script("bench_quality")

    def fake_command(job, seed, out, data_dir):  # type: ignore[no-untyped-def]
        if seed == 1:
            return [sys.executable, "-c", "import sys; sys.exit(3)"]
        return [sys.executable, "-c", f"print({json.dumps(_summary(0.9, 0.8))!r})"]

    monkeypatch.setattr(bq, "command", fake_command)
    argv = ["--dataset", "breastmnist", "--seeds", "0", "1", "2", "--out", str(tmp_path)]
    assert bq.main(argv) == 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["seed"] for r in saved["runs"]] == [0, 2]
    assert len(saved["failed"]) == 1 and "seed 1 failed (exit 3)" in saved["failed"][0]


def test_runs_made_two_at_a_time_keep_their_order_and_say_so(tmp_path, monkeypatch) -> None:
    bq = load_script("bench_quality")

    def fake_command(job, seed, out, data_dir):  # type: ignore[no-untyped-def]
        # Seed 0 finishes last; the records still come in run order.
        text = json.dumps(_summary(0.9 + seed / 100, 0.8))
        return [
            sys.executable,
            "-c",
            f"import time; time.sleep({0.5 if seed == 0 else 0}); print({text!r})",
        ]

    monkeypatch.setattr(bq, "command", fake_command)
    argv = ["--dataset", "breastmnist", "--jobs", "2", "--out", str(tmp_path)]
    assert bq.main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["seed"] for r in saved["runs"]] == [0, 1, 2]
    assert [r["auc"] for r in saved["runs"]] == [0.9, 0.91, 0.92]
    assert all(r["concurrent_runs"] == 2 for r in saved["runs"])
    assert "made 2 at a time" in (tmp_path / "table.md").read_text()
    with pytest.raises(SystemExit):
        bq.parse_args(["--jobs", "0"])
