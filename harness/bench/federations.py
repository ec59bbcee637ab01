"""Benchmark sections over a real Mosquitto: round overhead and the encodings' accuracy."""

from __future__ import annotations

import itertools
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench")


def _federate(sites: list[Any], npz: Path, root: Path, **gateway_kw: Any) -> Any:
    from harness.federation import federate

    return federate(root, sites, dataset=str(npz), **gateway_kw)


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def wall_seconds(records: list[dict[str, Any]]) -> list[float]:
    """Each round's wall time, from its start to the next round's start.

    That is the announcement, training, aggregation, the checkpoint, publishing the model and
    everything else the gateway does in between. The last round ends when its model is
    evaluated (or closed, without evaluation).
    """
    starts = [r["started_at"] for r in records]
    last = records[-1]
    return [b - a for a, b in itertools.pairwise(starts)] + [
        last.get("evaluated_at", last["closed_at"]) - last["started_at"]
    ]


ROUNDS_TIMED = 4
"""Rounds the overhead benchmark measures (2 to 5); it runs two more."""


def round_overhead(dataset: str, work: Path) -> list[dict[str, Any]]:
    """Protocol overhead per round for 10 and 50 agents (see the module docstring)."""
    from harness.federation import split_sites
    from models.settings import LocalTraining
    from privadx.common.data.medmnist import resolve_dataset

    npz = resolve_dataset(dataset, None)
    rows = []
    for agents in (10, 50):
        sites = [s.subset(np.arange(32)) for s in split_sites(npz, agents, alpha=100.0, seed=0)]
        root = work / f"overhead-{agents}"
        root.mkdir()
        result = _federate(
            sites,
            npz,
            root,
            rounds=ROUNDS_TIMED + 2,
            seed=0,
            evaluate=False,
            export_onnx=False,
            training=LocalTraining(local_epochs=1),
        )
        records = _records(result.out)
        rounds = []
        # Rounds 2 to 5, start to start: round 1 includes TensorFlow's first tracing, and
        # the last round has no following start.
        for r, wall in list(zip(records, wall_seconds(records), strict=True))[1:-1]:
            training = [m["train_seconds"] for m in r["site_metrics"].values()]
            rounds.append(
                {
                    "round": r["round"],
                    "wall_s": wall,
                    "training_sum_s": sum(training),
                    "training_max_s": max(training),
                    "overhead_s": wall - sum(training),
                    "overhead_share": (wall - sum(training)) / wall,
                }
            )
        rows.append({"agents": agents, "rounds": rounds})
        log.warning("round overhead %d agents: %s", agents, rounds)
    return rows


ENCODING_SEEDS = (0, 1, 2)
"""Federation seeds (initial model, shuffling, augmentation, dropout) of the encoding runs:
accuracy at a chosen threshold moves by about a point between runs whose weights differ by
float rounding, so one run per encoding cannot resolve a half-point effect."""


def encoding_accuracy(dataset: str, work: Path) -> dict[str, Any]:
    """Final accuracy and bytes per update with each update encoding, same runs otherwise."""
    from harness.federation import split_sites
    from models.settings import LocalTraining
    from privadx.common.data.medmnist import resolve_dataset
    from privadx.common.wire.update_codec import Encoding

    npz = resolve_dataset(dataset, None)
    sites = split_sites(npz, 10, alpha=0.5, seed=0)
    out: dict[str, Any] = {}
    for encoding in (Encoding.FLOAT32, Encoding.FLOAT16, Encoding.INT8):
        runs = []
        for seed in ENCODING_SEEDS:
            root = work / f"encoding-{encoding}-{seed}"
            root.mkdir()
            result = _federate(
                sites,
                npz,
                root,
                rounds=5,
                seed=seed,
                export_onnx=False,
                training=LocalTraining(local_epochs=1, encoding=encoding),
            )
            records = _records(result.out)
            per_round = [statistics.median(r["update_bytes"].values()) for r in records]
            runs.append(
                {
                    "seed": seed,
                    "accuracy": result.summary["accuracy"],
                    "auc": result.summary["auc"],
                    "update_payload_bytes_median": statistics.median(per_round),
                }
            )
            log.warning("encoding %s: %s", encoding, runs[-1])
        out[str(encoding)] = {
            "runs": runs,
            "accuracy": statistics.mean(r["accuracy"] for r in runs),
            "auc": statistics.mean(r["auc"] for r in runs),
            "update_payload_bytes_median": statistics.median(
                r["update_payload_bytes_median"] for r in runs
            ),
        }
    base = out["float32"]
    for row in out.values():
        row["accuracy_points_vs_float32"] = 100 * (row["accuracy"] - base["accuracy"])
        row["auc_points_vs_float32"] = 100 * (row["auc"] - base["auc"])
        row["accuracy_points_per_seed"] = [
            100 * (r["accuracy"] - b["accuracy"])
            for r, b in zip(row["runs"], base["runs"], strict=True)
        ]
        row["bytes_vs_float32"] = (
            row["update_payload_bytes_median"] / base["update_payload_bytes_median"]
        )
    return out
