"""Model-quality benchmark: federated against pooled training, mean and spread over seeds.

Each run is one ``privadx simulate --centralized`` (a child process, so runs share nothing):
the federated model and the pooled baseline (the same model and compute on the sites'
training images pooled), both scored on the dataset's official test split. A *variant* is a
named set of extra ``privadx simulate`` options; ``default`` adds none, so its rows are what
the command gives as shipped. Suites name the issue's settings:

- ``targets``: PneumoniaMNIST and BreastMNIST, 10 sites, Dirichlet(0.5), defaults;
- ``dp``: PneumoniaMNIST over 100 sites split IID (no Dirichlet(0.5) split gives 100 sites
  10 images each), every site in every round, 20 rounds of 2 local epochs with no minimum
  step count (at the default 20 steps a run would take about an hour here, estimated from
  the 10-site runs' time per step): DP-FedAvg with the noise calibrated so the 20 rounds
  spend epsilon 1, 3 and 8 (``--dp-noise auto``; fixed clipping where the noise exceeds
  adaptive clipping's limit), and the same runs without DP, which also train the pooled
  baseline.

A finished run (its ``summary.json`` and the options that made it) is kept and reused, so a
sweep interrupted or extended later reruns only what is missing. CPU seconds are the child's
user + system time (both cores count), measured by the operating system.

Writes ``results.json`` (every run and each row's mean and standard deviation) and
``table.md``.

Usage:
    uv run python scripts/bench_quality.py --suite targets --out runs/bench-quality
    uv run python scripts/bench_quality.py --dataset breastmnist \
        --variant 'adam=--server-optimizer adam --server-lr 0.01' --out runs/bench-quality
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # harness/ is beside scripts/

from harness.stats import mean_sd, mean_sd_text  # noqa: E402

log = logging.getLogger("bench_quality")

TARGET_DATASETS = ("pneumoniamnist", "breastmnist")
DP_EPSILONS = (1.0, 3.0, 8.0)
DP_SITES = 100
DP_ROUNDS = 20


@dataclass(frozen=True)
class Job:
    """One setting to run over every seed."""

    dataset: str
    variant: str
    options: tuple[str, ...]
    pooled: bool = True
    """Train the pooled baseline too (``--centralized``)."""

    @property
    def key(self) -> str:
        """``dataset/variant``, as the log names the job."""
        return f"{self.dataset}/{self.variant}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--suite", choices=("targets", "dp"), default=None)
    p.add_argument("--dataset", action="append", default=[], help="dataset of --variant runs")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OPTIONS",
        help="extra `privadx simulate` options under a name (repeatable; default: none)",
    )
    p.add_argument(
        "--no-pooled",
        action="store_true",
        help="--variant runs skip the pooled baseline (for settings compared with another row's)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/bench-quality"))
    p.add_argument("--dry-run", action="store_true", help="list the runs without running them")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time (default 1; a simulation keeps about one core busy, so 2 on a "
        "2-core host nearly halves a sweep, and each run's CPU seconds then include contention)",
    )
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    if len(args.seeds) < 3 and not args.dry_run:
        log.warning("fewer than 3 seeds: the spread is not a useful estimate")
    return args


def parse_variant(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=OPTIONS`` -> (name, options); raises ``SystemExit`` with a message if malformed."""
    name, sep, options = text.partition("=")
    if not sep or not name or "/" in name:
        raise SystemExit(f"--variant must be NAME=OPTIONS (NAME without '/'), got {text!r}")
    try:
        return name, tuple(shlex.split(options))
    except ValueError as exc:
        raise SystemExit(f"--variant {name}: {exc}") from None


def jobs_of(args: argparse.Namespace) -> list[Job]:
    """The settings the arguments ask for, in run order."""
    jobs: list[Job] = []
    if args.suite == "targets":
        jobs += [Job(d, "default", ()) for d in TARGET_DATASETS]
    elif args.suite == "dp":
        jobs += dp_jobs()
    variants = [parse_variant(v) for v in args.variant]
    for dataset in args.dataset or (list(TARGET_DATASETS) if variants else []):
        jobs += [
            Job(dataset, name, options, pooled=not args.no_pooled)
            for name, options in variants or [("default", ())]
        ]
    if not jobs:
        raise SystemExit("nothing to run: pass --suite, or --dataset and/or --variant")
    return jobs


def dp_jobs() -> list[Job]:
    """The ``dp`` suite: one job per epsilon, then the same setting without DP."""
    from tff_core.privacy import adaptive_clipping_allows, calibrated_noise

    base = ("--sites", str(DP_SITES), "--partition", "iid", "--rounds", str(DP_ROUNDS))
    base += ("--min-local-steps", "0")
    jobs = []
    for eps in DP_EPSILONS:
        options = (*base, "--dp-noise", "auto", "--target-epsilon", f"{eps:g}")
        if not adaptive_clipping_allows(
            calibrated_noise(eps, DP_ROUNDS, sampling_rate=1.0), DP_SITES
        ):
            options += ("--dp-fixed-clip",)
        jobs.append(Job("pneumoniamnist", f"dp-eps{eps:g}", options, pooled=False))
    jobs.append(Job("pneumoniamnist", "no-dp-100-sites", base))
    return jobs


def command(job: Job, seed: int, out: Path, data_dir: Path | None) -> list[str]:
    """The ``privadx simulate`` command of one run."""
    cmd = [sys.executable, "-m", "privadx", "simulate", "--dataset", job.dataset]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    return [
        *cmd,
        *job.options,
        "--seed",
        str(seed),
        *(["--centralized"] if job.pooled else []),
        "--no-export",
        "--json",
        "--out",
        str(out),
    ]


class RunFailedError(Exception):
    """A run exited with an error (its log says why)."""


def run_one(job: Job, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run (or reuse) one seed of ``job``; returns its record.

    Raises:
        RunFailedError: The simulation exited with an error.
    """
    folder = args.out / "runs" / job.dataset / job.variant / f"seed-{seed}"
    done = folder / "bench.json"
    if done.exists():
        kept = json.loads(done.read_text())
        if kept.get("options") == list(job.options) and kept.get("pooled", True) == job.pooled:
            log.info("%s seed %d: kept from an earlier run", job.key, seed)
            return {**kept["record"], **selection_of(folder)}
        log.info("%s seed %d: options changed, running again", job.key, seed)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = command(job, seed, folder, args.data_dir)
    log.info("%s seed %d: %s", job.key, seed, shlex.join(cmd[1:]))
    started = time.monotonic()
    with open(folder / "run.log", "wb") as logfile:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logfile, cwd=ROOT)
        assert child.stdout is not None
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RunFailedError(
            f"{job.key} seed {seed} failed (exit {child.returncode}); see {folder / 'run.log'}"
        )
    summary = json.loads(output)
    record = {**record_of(job, seed, summary), **selection_of(folder)}
    record["wall_seconds_total"] = round(time.monotonic() - started, 1)
    record["cpu_seconds_total"] = round(usage.ru_utime + usage.ru_stime, 1)
    record["concurrent_runs"] = args.jobs
    written = {"options": list(job.options), "pooled": job.pooled, "record": record}
    done.write_text(json.dumps(written, indent=2) + "\n")
    return record


def selection_of(folder: Path) -> dict[str, Any]:
    """What checkpoint selection by federated validation AUC would have deployed.

    From the run's ``metrics.jsonl``: the round whose model scored the highest federated AUC
    on the sites' held-out images (the later round on a tie) and that model's test figures.
    """
    metrics = folder / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    rounds = [
        record
        for line in lines
        if (record := json.loads(line)).get("series") == "federated" and record.get("federated")
    ]
    if not rounds:
        return {"selected_round": None, "selected_auc": None, "selected_accuracy": None}
    best = max(rounds, key=lambda r: (r["federated"]["auc"], r["round"]))
    return {
        "selected_round": best["round"],
        "selected_auc": best["test"]["auc"],
        "selected_accuracy": best["test"]["accuracy"],
    }


def record_of(job: Job, seed: int, summary: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run the table reports."""
    pooled = summary.get("centralized") or {}
    fed = summary.get("federated") or {}
    privacy = summary.get("privacy") or {}
    return {
        "dataset": job.dataset,
        "variant": job.variant,
        "options": list(job.options),
        "seed": seed,
        "sites": summary["num_sites"],
        "rounds": summary["rounds"],
        "auc": summary["auc"],
        "accuracy": summary["accuracy"],
        "pooled_auc": pooled.get("auc"),
        "pooled_accuracy": pooled.get("accuracy"),
        "accuracy_vs_pooled": summary["accuracy"] / pooled["accuracy"] if pooled else None,
        "auc_gap": pooled["auc"] - summary["auc"] if pooled else None,
        "held_out_federated_auc": fed.get("auc"),
        "seconds": summary["seconds"],
        "cpu_seconds": summary.get("cpu_seconds"),
        "pooled_seconds": pooled.get("seconds"),
        "epsilon": privacy.get("epsilon"),
    }


COLUMNS = (
    ("federated AUC", "auc", 4),
    ("federated accuracy", "accuracy", 4),
    ("pooled AUC", "pooled_auc", 4),
    ("pooled accuracy", "pooled_accuracy", 4),
    ("accuracy / pooled", "accuracy_vs_pooled", 3),
    ("AUC, round chosen by federated AUC", "selected_auc", 4),
    ("accuracy, same round", "selected_accuracy", 4),
    ("federated s", "seconds", 0),
    ("federated CPU s", "cpu_seconds", 0),
)


def summarise(records: list[dict[str, Any]], jobs: list[Job]) -> list[dict[str, Any]]:
    """Each job's mean and standard deviation of every column, over its seeds."""
    rows = []
    for job in jobs:
        runs = [r for r in records if r["dataset"] == job.dataset and r["variant"] == job.variant]
        row: dict[str, Any] = {
            "dataset": job.dataset,
            "variant": job.variant,
            "options": list(job.options),
            "seeds": [r["seed"] for r in runs],
            "sites": runs[0]["sites"],
            "rounds": sorted({r["rounds"] for r in runs}),
        }
        keys = [k for _, k, _ in COLUMNS] + ["auc_gap", "held_out_federated_auc", "epsilon"]
        keys.append("selected_round")
        for key in keys:
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = list(mean_sd(values)) if values else None
        rows.append(row)
    return rows


def table(records: list[dict[str, Any]], jobs: list[Job]) -> str:
    """The Markdown table: one row per job, each cell mean ± sd over its seeds."""
    names = ["dataset", "variant", "sites", "rounds", "epsilon"] + [c for c, _, _ in COLUMNS]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for job in jobs:
        runs = [r for r in records if r["dataset"] == job.dataset and r["variant"] == job.variant]
        eps = [r["epsilon"] for r in runs if r["epsilon"] is not None]
        cells = [
            job.dataset,
            job.variant,
            str(runs[0]["sites"]),
            "/".join(str(n) for n in sorted({r["rounds"] for r in runs})),
            mean_sd_text(eps, 2) if eps else "inf",
        ]
        for _, key, digits in COLUMNS:
            values = [r.get(key) for r in runs]
            known = [v for v in values if v is not None]
            cells.append(mean_sd_text(known, digits) if len(known) == len(values) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in records})
    concurrent = sorted({r.get("concurrent_runs", 1) for r in records})
    sharing = (
        ""
        if concurrent == [1]
        else f" Runs were made {'/'.join(map(str, concurrent))} at a time on the same host, "
        "so their times include the contention."
    )
    options = [f"- {job.variant}: `{shlex.join(job.options) or '(none)'}`" for job in jobs]
    return (
        "\n".join(lines)
        + f"\n\nMean ± sample standard deviation over seeds {', '.join(map(str, seeds))} "
        "(truncated, not rounded). Federated figures are the last round's model; the two "
        "'chosen' columns are the model of the round with the highest federated AUC on the "
        f"sites' held-out images (what checkpoint selection would deploy).{sharing} Each run: "
        "`privadx simulate --dataset DATASET --seed SEED --centralized` plus the variant's "
        "options (rows without pooled figures leave `--centralized` out):\n"
        + "\n".join(dict.fromkeys(options))
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    jobs = jobs_of(args)
    if args.dry_run:
        for job in jobs:
            for seed in args.seeds:
                print(shlex.join(command(job, seed, args.out / "...", args.data_dir)[1:]))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    records, failed = [], []

    def attempt(pair: tuple[Job, int]) -> dict[str, Any] | str:
        try:
            return run_one(*pair, args)
        except RunFailedError as exc:  # the other runs still run; the sweep exits non-zero
            log.error("%s", exc)
            return str(exc)

    pairs = [(job, seed) for job in jobs for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each run is a child process
        for outcome in pool.map(attempt, pairs):  # in run order, whatever finishes first
            (failed if isinstance(outcome, str) else records).append(outcome)
    jobs = [
        j
        for j in jobs
        if any(r["variant"] == j.variant and r["dataset"] == j.dataset for r in records)
    ]
    if not records:
        log.error("no run finished")
        return 1
    markdown = table(records, jobs)
    print(markdown)
    results = {"runs": records, "rows": summarise(records, jobs), "failed": failed}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "table.md").write_text(markdown)
    if failed:
        log.error("%d run(s) failed; the table holds the others", len(failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
