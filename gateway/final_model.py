"""The end of a gateway run: the final model's metadata, its ONNX export and signed manifest.

Functions of the run's facts (config, task, round records, weights): the service calls them
once the last round and the final model's federated evaluation are done, then publishes the
file they write.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.config import GatewayConfig
from privadx.common.data.arrays import SplitDataset
from privadx.common.evaluation.decision import HEADLINE_KEYS, Decision
from privadx.common.ood import Reference
from privadx.common.preprocess import PreprocessSpec
from privadx.common.task import TaskSpec
from privadx.common.trust.identity import Identity
from privadx.common.trust.manifest import build_manifest, write_signed

if TYPE_CHECKING:
    import tensorflow as tf

ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class RunFacts:
    """What the final model's metadata and manifest say about the run."""

    config: GatewayConfig
    task: TaskSpec
    benchmark: SplitDataset | None
    records: list[dict[str, Any]]
    rounds: int
    round: int
    sites_online: list[str]
    model_sha256: str
    privacy: dict[str, Any]
    ood: Reference | None = None
    """The out-of-distribution reference the sites' sums gave (``None``: none yet)."""


def weights_meta(facts: RunFacts, rule: Decision, head: dict[str, Any], fed: Any) -> dict[str, Any]:
    """The metadata of ``weights.npz`` and ``model.onnx``: model info, decision, provenance."""
    info = replace(
        facts.task.model_info(),
        threshold=rule.threshold,
        temperature=rule.temperature,
        ood=facts.ood,
        provenance={
            "trained_by": "privadx gateway",
            "run": facts.config.run_id,
            "task": facts.task.name,
            "benchmark": facts.benchmark.name if facts.benchmark else None,
            "rounds": facts.rounds,
            "sites": facts.sites_online,
            "model_sha256": facts.model_sha256,
            "decision": rule.to_dict(),
            "federated_metrics": fed,
            "test_metrics": {k: head.get(k) for k in HEADLINE_KEYS}
            if facts.benchmark is not None
            else None,
            "privacy": facts.privacy,
        },
    )
    return info.to_meta()


def parity_images(task: TaskSpec, benchmark: SplitDataset | None) -> np.ndarray:
    """Inputs on which Keras and the exported graph must agree.

    Benchmark test images, or seeded noise of the task's shape (the gateway holds no
    patient image).
    """
    if benchmark is not None:
        return benchmark.test.images[:256]
    shape = (64, task.height, task.width, task.channels)
    return np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)


def export_signed(
    model: tf.keras.Model,
    weights: dict[str, np.ndarray],
    meta: dict[str, Any],
    facts: RunFacts,
    identity: Identity | None,
    preprocess: PreprocessSpec,
) -> tuple[Path, str, dict[str, Any] | None]:
    """Write ``model.onnx`` (parity-checked) and its signed manifest.

    Returns:
        The file, its SHA-256 and the signed manifest (``None`` without an identity).
    """
    from models.onnx_export import export_onnx, verify_parity
    from models.weights import set_weights

    path = facts.config.out / ONNX_FILE
    set_weights(model, weights)
    sha = export_onnx(model, meta, path)
    verify_parity(model, path, parity_images(facts.task, facts.benchmark), preprocess)
    signed = None
    if identity is not None:
        manifest = build_manifest(
            file_name=path.name, data=path.read_bytes(), provenance=manifest_provenance(facts, meta)
        )
        signed = write_signed(path, manifest, identity.signer)
    return path, sha, signed


def manifest_provenance(facts: RunFacts, meta: dict[str, Any]) -> dict[str, Any]:
    """What the signed manifest says about where the model came from."""
    records = facts.records
    contributors = sorted({s for r in records for s in r["update_bytes"]})
    config = facts.config
    return {
        "federation": config.federation,
        "run": config.run_id,
        "round": facts.round,
        "task": facts.task.name,
        "contributors": len(contributors),
        "sites": contributors,
        "last_round_updates": records[-1]["updates"] if records else 0,
        "weights_sha256": facts.model_sha256,
        "metrics": meta["provenance"]["federated_metrics"],
        "benchmark_metrics": meta["provenance"]["test_metrics"],
        "threshold": meta.get("threshold"),
        "temperature": meta.get("temperature"),
        "aggregation": {
            "rule": str(config.aggregation),
            "server_optimizer": config.server_optimizer.to_dict(),
        },
        "privacy": meta["provenance"]["privacy"],
    }
