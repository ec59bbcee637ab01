"""Federated evaluation benchmark: federated vs pooled figures, calibration, per-site spread.

Runs ``privadx simulate`` (TFF) on the demo's setting, PneumoniaMNIST split across 5 sites
with Dirichlet(0.5) label skew, once per seed. Each site holds out 20% of its images by class
and reports on them exactly as a deployed edge agent does; the gateway's functions sum the
reports. For the final model of every run this prints and writes:

- the federated AUC (from the summed histograms) and the AUC of the same held-out images
  pooled and scored exactly, their difference and the binning bound the report states;
- the expected calibration error before and after temperature scaling, and the temperature;
- the spread of the per-site AUC (min, max, standard deviation across sites);

then the mean and standard deviation over seeds, as JSON (``results.json``) and a Markdown
table (``table.md``, figures truncated, never rounded up) in ``--out``.

Usage: uv run python scripts/bench_federated_eval.py --out runs/bench-federated-eval
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # harness/ is beside scripts/

from harness.stats import mean_sd  # noqa: E402

log = logging.getLogger("bench_federated_eval")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--sites", type=int, default=5)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/bench-federated-eval"))
    p.add_argument(
        "--table-only",
        action="store_true",
        help="rewrite table.md from an earlier run's results.json in --out (no training)",
    )
    return p.parse_args()


def one_run(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Simulate with ``seed``; the final round's federated and pooled figures."""
    from privadx.common.data.partition import PartitionSpec
    from tff_core.config import SimulationConfig
    from tff_core.simulation import run_simulation

    out = args.out / f"seed-{seed}"
    config = SimulationConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        out=out,
        partition=PartitionSpec(sites=args.sites, alpha=args.alpha, seed=seed),
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        seed=seed,
        export_onnx=False,
    )
    started = time.monotonic()
    run_simulation(config)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r.get("series") == "federated"][-1]
    fed, pooled = last["federated"], last["held_out_central"]
    site_aucs = [s["auc"] for s in last["sites"].values() if s["auc"] is not None]
    return {
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "held_out_images": fed["examples"],
        "federated_auc": fed["auc"],
        "pooled_auc": pooled["auc"],
        "auc_difference": abs(fed["auc"] - pooled["auc"]),
        "auc_binning_bound": fed["auc_binning_bound"],
        "auc_ci": fed["auc_ci"],
        "ece": fed["ece"],
        "ece_calibrated": fed["ece_calibrated"],
        "pooled_ece": pooled["ece"],
        "pooled_ece_calibrated": pooled["ece_calibrated"],
        "temperature": fed["temperature"],
        "threshold": fed["threshold"],
        "sensitivity": fed["sensitivity"],
        "specificity": fed["specificity"],
        "site_auc_min": min(site_aucs),
        "site_auc_max": max(site_aucs),
        "site_auc_sd": statistics.pstdev(site_aucs),
        "sites": last["sites"],
        "test_auc": last["test"]["auc"],
    }


ROWS = (
    ("federated AUC (summed site reports)", "federated_auc", 4),
    ("AUC of the same images pooled, exact", "pooled_auc", 4),
    ("AUC difference, federated vs pooled (absolute)", "auc_difference", 5),
    ("binning bound stated by the reports", "auc_binning_bound", 5),
    ("ECE before calibration", "ece", 4),
    ("ECE after temperature scaling", "ece_calibrated", 4),
    ("temperature", "temperature", 3),
    ("per-site AUC, lowest", "site_auc_min", 4),
    ("per-site AUC, highest", "site_auc_max", 4),
    ("per-site AUC, standard deviation", "site_auc_sd", 4),
)


def table(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    from privadx.common.figures import truncate

    head = (
        f"{args.dataset}, {args.sites} sites, Dirichlet({args.alpha}), {args.rounds} rounds x "
        f"{args.local_epochs} local epochs, 20% of each site held out; seeds "
        f"{', '.join(str(r['seed']) for r in runs)} (mean ± sd over seeds)\n\n"
        "| figure (final model) | mean ± sd | per seed |\n|---|---|---|\n"
    )
    lines = []
    for label, key, digits in ROWS:
        m, sd = mean_sd(r[key] for r in runs)
        per = ", ".join(truncate(r[key], digits) for r in runs)
        lines.append(f"| {label} | {truncate(m, digits)} ± {truncate(sd, digits)} | {per} |")
    return head + "\n".join(lines) + "\n"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("absl", "tensorflow", "tff_core.simulation"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        runs = json.loads((args.out / "results.json").read_text())["runs"]
        text = table(runs, args)
        (args.out / "table.md").write_text(text)
        print(text)
        return 0
    runs = []
    for seed in args.seeds:
        runs.append(one_run(args, seed))
        log.info("seed %d: %s", seed, {k: v for k, v in runs[-1].items() if k != "sites"})
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": runs,
        "mean_sd": {key: mean_sd(r[key] for r in runs) for _, key, _ in ROWS},
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = table(runs, args)
    (args.out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
