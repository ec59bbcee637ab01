"""Benchmark sections without training: the streaming aggregation and the update messages' bytes."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.bench.timing import best_of, interleaved_best, peak_bytes

log = logging.getLogger("bench")

MODEL_VALUES = 2_000_000
"""Values of the synthetic model the aggregation section folds."""


def _model_shapes() -> dict[str, tuple[int, ...]]:
    """A 2,000,000-value model: conv kernels, a large dense layer, biases."""
    shapes = {"conv1": (3, 3, 1, 64), "conv2": (3, 3, 64, 128), "dense": (1950, 980), "bias": ()}
    used = sum(int(np.prod(s)) for k, s in shapes.items() if k != "bias")
    shapes["bias"] = (MODEL_VALUES - used,)
    return shapes


def aggregation(counts: list[int]) -> list[dict[str, Any]]:
    """Streaming mean vs stack + average vs the copy floor, per number of updates."""
    from gateway.streaming import StreamingMean

    rng = np.random.default_rng(0)
    shapes = _model_shapes()
    base = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    # Updates come from a pool larger than the caches, so every one is read from memory.
    pool = [
        {k: rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in base.items()}
        for _ in range(8)
    ]
    flat_pool = [np.concatenate([u[k].ravel() for k in base]) for u in pool]
    update_bytes = MODEL_VALUES * 4
    results = []
    acc = StreamingMean(base)  # the gateway keeps one for the run and resets it each round
    for n in counts:
        weights = [float(10 + i % 7) for i in range(n)]

        def streaming(n: int = n, weights: list[float] = weights) -> None:
            acc.reset()
            for i in range(n):
                acc.add(pool[i % len(pool)], weights[i])
            acc.mean_update()

        def floor(n: int = n) -> None:
            dest = np.empty(MODEL_VALUES, np.float32)
            for i in range(n):
                np.copyto(dest, flat_pool[i % len(pool)])

        def stacked(n: int = n, weights: list[float] = weights) -> None:
            stack = np.stack([flat_pool[i % len(pool)] for i in range(n)])
            np.average(stack, axis=0, weights=np.asarray(weights, np.float32))

        row: dict[str, Any] = {"updates": n, "update_bytes": update_bytes}
        repeat = 5 if n <= 100 else 3
        best = interleaved_best({"streaming": streaming, "floor": floor}, repeat)
        row["streaming_s"], row["floor_s"] = best["streaming"], best["floor"]
        # The accumulator's own buffers are allocated once (outside the traced call): count them.
        row["streaming_peak_bytes"] = peak_bytes(streaming) + acc.buffer_bytes
        stack_need = 2 * n * update_bytes  # the stack plus np.average's weighted copy
        if stack_need < 0.6 * _available_memory():
            row["stack_s"] = best_of(stacked, 3 if n <= 100 else 1)
            row["stack_peak_bytes"] = peak_bytes(stacked)
        else:
            row["stack_skipped"] = f"needs about {stack_need / 2**30:.1f} GiB"
        row["streaming_vs_floor"] = row["streaming_s"] / row["floor_s"]
        if "stack_s" in row:
            row["streaming_vs_stack"] = row["streaming_s"] / row["stack_s"]
        row["streaming_gb_per_s"] = n * update_bytes / row["streaming_s"] / 1e9
        row["floor_gb_per_s"] = n * update_bytes / row["floor_s"] / 1e9
        log.warning("aggregation %d updates: %s", n, row)
        results.append(row)
    return results


def _available_memory() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# --- encodings ---------------------------------------------------------------------------
def encodings(dataset: str) -> dict[str, Any]:
    """Update message bytes per encoding, and protocol overhead, for the CNN."""
    from models.architectures import build_model
    from models.spec import Architecture, ModelSpec
    from models.weights import get_weights
    from privadx.common.wire import envelope as wire
    from privadx.common.wire.chunks import split
    from privadx.common.wire.messages import update_envelope
    from privadx.common.wire.update_codec import Encoding, model_update

    spec = ModelSpec(arch=Architecture.CNN, height=28, width=28, channels=1, num_classes=2)
    base = get_weights(build_model(spec, seed=0))
    rng = np.random.default_rng(0)
    trained = {
        k: (v + rng.normal(scale=0.01, size=v.shape)).astype(np.float32) for k, v in base.items()
    }
    raw = sum(v.nbytes for v in base.values())
    signer = _throwaway_signer()
    rows = {}
    for encoding in Encoding:
        env = update_envelope(
            run="run-1",
            round_num=1,
            site="site-0",
            update=model_update(trained, base),
            encoding=encoding,
            examples=470,
            metrics={"loss": 0.3, "accuracy": 0.9, "seconds": 12.5},
            base_model="0" * 64,
        )
        unsigned = sum(len(wire.to_bytes(c)) for c in split(env))
        signed = sum(len(wire.to_bytes(c)) for c in split(signer.sign_envelope(env)))
        rows[str(encoding)] = {
            "tensor_payload_bytes": len(env.payload),
            "message_bytes_unsigned": unsigned,
            "message_bytes_signed": signed,
            "vs_raw_float32": signed / raw,
            "overhead_vs_payload": signed / len(env.payload) - 1,
        }
    return {"raw_float32_bytes": raw, "values": sum(v.size for v in base.values()), **rows}


def _throwaway_signer() -> Any:
    """A signer from a temporary federation CA (the real certificate chain's size)."""
    from privadx.common.trust.federation import init_federation
    from privadx.common.trust.identity import Identity

    folder = Path(tempfile.mkdtemp())
    pki = init_federation(
        folder, federation="bench", hosts=["localhost"], port=8883, sites=["site-0"]
    )
    return Identity.load(pki.site("site-0")).signer
