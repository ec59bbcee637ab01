"""The peer comparison: PrivaDx against Flower's Deployment Engine, same federation.

Both sides train PrivaDx's model on the same Dirichlet split with the same local training
(PrivaDx's ``train_weights``, the shipped :class:`~models.settings.LocalTraining` defaults,
the same per-site seeds), aggregate with plain FedAvg weighted by examples, and score the
global model on the dataset's test split after every round (ONNX Runtime, threshold from the
validation split). What differs is the federation layer:

- PrivaDx: the gateway and one edge agent per site over Mosquitto with mutual TLS and signed
  messages (agents are threads of one process; their training is serialized);
- Flower (``harness/flower_deployment.py``): a SuperLink, one SuperNode per site over TLS,
  ``flwr run`` of the App in ``scripts/flower_app``; each SuperNode starts its ClientApp as a
  new process for every message, as Flower deploys by default.

Runs alternate (Flower, PrivaDx, Flower, ...) so both see the machine alike; run ``k`` of
each side uses seed ``k`` (split, initial model, shuffling). Bytes are those between the
sites and the server (a counting TCP relay in front of the broker or SuperLink), per round.
Writes ``flower.json`` and ``flower.md`` to ``--out`` and prints the table.

Usage:
    uv run python scripts/bench_flower.py --out runs/bench-flower
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # harness/ is beside scripts/

from harness.stats import mean_sd_text  # noqa: E402

log = logging.getLogger("bench_flower")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--sites", type=int, default=10)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--flower-env",
        type=Path,
        default=None,
        help="Python environment with Flower (default: created under --out)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench-flower"))
    args = p.parse_args(argv)
    if min(args.sites, args.rounds) < 1:
        p.error("--sites and --rounds must be at least 1")
    if len(args.seeds) < 3:
        log.warning("fewer than 3 seeds: the spread is not a useful estimate")
    return args


def privadx_run(npz: Path, args: argparse.Namespace, seed: int, work: Path) -> dict[str, Any]:
    """One PrivaDx federation over Mosquitto; its timings, metrics and bytes."""
    from edge.agent import EdgeAgent
    from edge.config import EdgeConfig
    from harness.bench.federations import wall_seconds
    from harness.federation import run_federation, split_sites, start_broker
    from harness.tcp_relay import TcpRelay
    from models.settings import LocalTraining
    from tff_core.robust import AggregationRule

    sites = split_sites(npz, args.sites, alpha=args.alpha, seed=seed)
    broker = start_broker(work / "broker", len(sites))
    try:
        with TcpRelay(broker.port) as relay:

            def through_relay(config: EdgeConfig) -> EdgeAgent:
                return EdgeAgent(replace(config, broker=replace(config.broker, port=relay.port)))

            submitted = time.time()
            result = run_federation(
                broker,
                work,
                sites,
                dataset=str(npz),
                agent_class=through_relay,
                rounds=args.rounds,
                seed=seed,
                export_onnx=False,
                aggregation=AggregationRule.MEAN,
                training=LocalTraining(),
                eval_fraction=0.0,  # the sites train on all their images, as Flower's do
            )
            carried = relay.total
    finally:
        broker.stop()
    records = [json.loads(x) for x in (result.out / "metrics.jsonl").read_text().splitlines()]
    rounds = wall_seconds(records)
    return {
        "round_seconds": rounds,
        "setup_seconds": records[0]["started_at"] - submitted,
        "total_seconds": records[-1]["evaluated_at"] - submitted,
        "bytes": carried,
        "bytes_per_round": carried / len(rounds),
        "accuracy": result.summary["accuracy"],
        "auc": result.summary["auc"],
        "per_round": [
            {"round": r["round"], "accuracy": r["test"]["accuracy"], "auc": r["test"]["auc"]}
            for r in records
        ],
    }


def flower_run(npz: Path, args: argparse.Namespace, seed: int, work: Path) -> dict[str, Any]:
    """One federation under Flower's Deployment Engine."""
    from harness.flower_deployment import run_flower
    from models.settings import LocalTraining

    spec = {
        "npz": str(npz),
        "sites": args.sites,
        "alpha": args.alpha,
        "seed": seed,
        "rounds": args.rounds,
        "training": LocalTraining().to_dict(),
    }
    result = run_flower(args.bin_dir, spec, work, timeout=120 + 120 * args.rounds)
    result["setup_seconds"] = result["total_seconds"] - sum(result["round_seconds"])
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Each figure's mean ± sd over the runs."""
    per_run_round = [sum(r["round_seconds"]) / len(r["round_seconds"]) for r in runs]
    return {
        "wall time per round (s)": mean_sd_text(per_run_round, 2),
        "round 1 (s)": mean_sd_text([r["round_seconds"][0] for r in runs], 2),
        "later rounds (s)": mean_sd_text(
            [sum(r["round_seconds"][1:]) / max(1, len(r["round_seconds"]) - 1) for r in runs], 2
        ),
        "set-up before round 1 (s)": mean_sd_text([r["setup_seconds"] for r in runs], 2),
        "total wall time (s)": mean_sd_text([r["total_seconds"] for r in runs], 1),
        "bytes per round (MB)": mean_sd_text([r["bytes_per_round"] / 1e6 for r in runs], 3),
        "final accuracy": mean_sd_text([r["accuracy"] for r in runs], 4),
        "final AUC": mean_sd_text([r["auc"] for r in runs], 4),
    }


def table(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        f"{s['dataset']}, {s['sites']} sites, Dirichlet({s['alpha']}), {s['rounds']} rounds, "
        f"local training {s['training']}, seeds {s['seeds']}; mean ± sd over runs "
        f"(Flower {report['flower_version']}).",
        "",
        "| figure | PrivaDx | Flower (Deployment Engine) |",
        "|---|---|---|",
    ]
    ours, theirs = report["summary"]["privadx"], report["summary"]["flower"]
    lines += [f"| {k} | {ours[k]} | {theirs[k]} |" for k in ours]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    from harness.flower_deployment import FLOWER_REQUIREMENTS, flower_env
    from models.settings import LocalTraining
    from privadx.common.data.medmnist import resolve_dataset
    from privadx.common.errors import PrivadxError

    try:
        npz = resolve_dataset(args.dataset, args.data_dir)
    except PrivadxError as exc:
        log.error("%s", exc)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    args.bin_dir = flower_env(args.flower_env or args.out / "flower-env")
    runs: dict[str, list[dict[str, Any]]] = {"flower": [], "privadx": []}
    for seed in args.seeds:
        for side, run in (("flower", flower_run), ("privadx", privadx_run)):
            work = args.out / f"{side}-seed{seed}"
            if work.exists():
                raise SystemExit(f"{work} exists: give a fresh --out")
            work.mkdir()
            log.info("%s, seed %d ...", side, seed)
            runs[side].append(run(npz, args, seed, work))
            log.info("%s, seed %d: %s", side, seed, json.dumps(runs[side][-1])[:300])
    report = {
        "settings": {
            "dataset": args.dataset,
            "sites": args.sites,
            "alpha": args.alpha,
            "rounds": args.rounds,
            "seeds": args.seeds,
            "training": LocalTraining().to_dict(),
        },
        "flower_version": FLOWER_REQUIREMENTS[0].split("==")[1],
        "runs": runs,
        "summary": {side: summarise(r) for side, r in runs.items()},
    }
    (args.out / "flower.json").write_text(json.dumps(report, indent=2))
    text = table(report)
    (args.out / "flower.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
