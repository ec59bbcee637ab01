"""Poisoning benchmark: one malicious site among ten, against each aggregation rule.

PneumoniaMNIST split across 10 sites (Dirichlet 0.5). Every site trains with the edge agent's
own code (``models.training.train_locally``) and the gateway's aggregation code
(``tff_core.aggregation.FedAvgServer``) combines the updates, so what is measured is what a
deployment does, minus the network. Site 0 is the attacker:

- ``scaled``: it sends ``global + 100 * (trained - global)`` (boosted update);
- ``flipped``: it trains on flipped labels (``1 - y``).

For each attack and each rule (mean = plain FedAvg, norm-bound = TFF's robust aggregator,
median, trimmed-mean) the final test accuracy and AUC are reported next to the clean runs,
as JSON and as a Markdown table (``--out``).

Usage: uv run python scripts/bench_poisoning.py --out runs/bench-poisoning
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench_poisoning")

RULES = ("mean", "norm-bound", "median", "trimmed-mean")
SCALE = 100.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--sites", type=int, default=10)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench-poisoning"))
    return p.parse_args()


def run_federation(
    sites: list[Any], dataset: Any, rule: str, attack: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    """Train ``args.rounds`` rounds with the given rule and attack; return final test metrics."""
    from models.architectures import build_model
    from models.evaluate import choose_threshold, evaluate_split
    from models.optim import OptimizerName, OptimizerSpec
    from models.settings import LocalTraining, local_seed, site_name
    from models.spec import ModelSpec
    from models.training import train_locally
    from models.weights import get_weights, set_weights
    from privadx.common.data.arrays import LabeledImages
    from privadx.common.preprocess import PreprocessSpec
    from privadx.common.wire.update_codec import model_update
    from tff_core.aggregation import FedAvgServer
    from tff_core.robust import AggregationRule

    h, w, c = dataset.image_shape
    pre = PreprocessSpec(height=h, width=w, channels=c)
    spec = ModelSpec(height=h, width=w, channels=c, num_classes=len(dataset.class_names))
    model = build_model(spec, seed=args.seed)
    weights = get_weights(model)
    server = FedAvgServer(
        weights, OptimizerSpec(name=OptimizerName.SGD, learning_rate=1.0), AggregationRule(rule)
    )
    training = LocalTraining(local_epochs=args.local_epochs)
    if attack == "flipped":
        bad = sites[0]
        flipped = (bad.labels + 1) % len(bad.class_names)  # binary: 1 - y
        sites = [LabeledImages(bad.images, flipped, bad.class_names), *sites[1:]]
    t0 = time.monotonic()
    for round_num in range(1, args.rounds + 1):
        updates = []
        for i, site in enumerate(sites):
            set_weights(model, weights)
            seed = local_seed(args.seed, round_num, site_name(i))
            train_locally(model, site, pre, training, seed=seed)
            update = model_update(get_weights(model), weights)
            if attack == "scaled" and i == 0:
                update = {k: SCALE * v for k, v in update.items()}
            updates.append((update, len(site)))
        weights = server.aggregate(weights, updates)
    set_weights(model, weights)
    threshold = choose_threshold(model, dataset.val, pre, 1)
    metrics = evaluate_split(model, dataset.test, pre, positive_class=1, threshold=threshold)
    result = {
        "rule": rule,
        "attack": attack or "none",
        "accuracy": metrics["accuracy"],
        "auc": metrics["auc"],
        "seconds": round(time.monotonic() - t0, 1),
        "last_aggregation": server.last_measurements,
    }
    log.info(
        "%s", json.dumps({k: result[k] for k in ("rule", "attack", "accuracy", "auc", "seconds")})
    )
    return result


def _cut(value: float, digits: int = 4) -> str:
    """``value`` truncated (never rounded up) to ``digits`` decimals."""
    scale = 10**digits
    return f"{math.trunc(value * scale) / scale:.{digits}f}"


def markdown(results: list[dict[str, Any]]) -> str:
    clean = {r["rule"]: r for r in results if r["attack"] == "none"}
    reference = clean["mean"]["accuracy"]
    lines = [
        "| attack | rule | test accuracy | test AUC | accuracy vs clean FedAvg (points) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        delta = 100 * (r["accuracy"] - reference)
        sign = "+" if delta >= 0 else "-"
        lines.append(
            f"| {r['attack']} | {r['rule']} | {_cut(r['accuracy'])} | {_cut(r['auc'])} "
            f"| {sign}{_cut(abs(delta), 2)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args()
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from privadx.common.data.partition import PartitionSpec, partition
    from tff_core.runtime import tff_runtime

    dataset = load_npz(resolve_dataset(args.dataset, args.data_dir))
    parts = partition(
        dataset.train.labels, PartitionSpec(sites=args.sites, alpha=0.5, seed=args.seed)
    )
    sites = [dataset.train.subset(p) for p in parts]
    plan = [(r, None) for r in ("mean", "norm-bound")]
    plan += [(r, a) for a in ("scaled", "flipped") for r in RULES]
    results = []
    with tff_runtime():
        for rule, attack in plan:
            results.append(run_federation(sites, dataset, rule, attack, args))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "dataset": dataset.name,
        "sites": args.sites,
        "site_sizes": [len(s) for s in sites],
        "rounds": args.rounds,
        "local_epochs": args.local_epochs,
        "attacker": "site-0",
        "scale": SCALE,
        "results": results,
    }
    (args.out / "poisoning.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(results)
    (args.out / "poisoning.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
