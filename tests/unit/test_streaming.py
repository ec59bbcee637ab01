"""The streaming weighted mean equals the batch mean and holds no per-site state."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from gateway.streaming import StreamingMean
from privadx.common.errors import InputError


def _model(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "w": rng.normal(size=(30, 20)).astype(np.float32),
        "b": rng.normal(size=20).astype(np.float32),
    }


def test_streaming_mean_equals_the_weighted_batch_mean() -> None:
    rng = np.random.default_rng(0)
    reference = _model(rng)
    updates = [
        ({k: rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in reference.items()},
         n)
        for n in (5, 100, 37, 1)
    ]  # fmt: skip
    acc = StreamingMean(reference)
    for update, n in updates:
        acc.add(update, n)
    total = sum(n for _, n in updates)
    for name in reference:
        expected = sum(u[name].astype(np.float64) * n for u, n in updates) / total
        np.testing.assert_allclose(acc.mean_update()[name], expected, rtol=0, atol=1e-8)
    assert acc.count == 4 and acc.weight == total


def test_folding_updates_allocates_nothing_per_update() -> None:
    """200 updates are folded without holding even one update's worth of new memory."""
    rng = np.random.default_rng(1)
    base = {"w": rng.normal(size=(300, 200)).astype(np.float32)}  # 240 kB per update
    acc = StreamingMean(base)
    update = {"w": base["w"] + 1}
    acc.add(update, 3)  # warm-up: lazy imports
    tracemalloc.start()
    for _ in range(200):
        acc.add(update, 3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < update["w"].nbytes / 2, f"peak {peak} bytes while folding"
    np.testing.assert_allclose(acc.mean_update()["w"], base["w"] + 1, atol=1e-5)
    acc.reset()  # next round: same buffers
    acc.add(update, 2)
    acc.add({"w": -update["w"]}, 2)
    np.testing.assert_allclose(acc.mean_update()["w"], 0.0, atol=1e-6)
    assert acc.count == 2


def test_bad_updates_are_refused() -> None:
    base = _model(np.random.default_rng(2))
    acc = StreamingMean(base)
    with pytest.raises(InputError, match="positive"):
        acc.add(base, 0)
    with pytest.raises(InputError, match="tensors"):
        acc.add({"w": base["w"]}, 1)
    with pytest.raises(InputError, match="shape"):
        acc.add({"w": base["w"], "b": base["w"]}, 1)
    with pytest.raises(InputError, match="no update"):
        acc.mean_update()


def test_a_tensor_longer_than_a_block_is_folded_whole() -> None:
    """The fold works block by block: the last, partial block counts like the others."""
    from gateway.streaming import BLOCK

    rng = np.random.default_rng(3)
    base = {"big": rng.normal(size=BLOCK + 123).astype(np.float32)}
    updates = [
        ({"big": rng.normal(scale=0.01, size=BLOCK + 123).astype(np.float32)}, n) for n in (3, 8, 1)
    ]
    acc = StreamingMean(base)
    for update, n in updates:
        acc.add(update, n)
    expected = sum(u["big"].astype(np.float64) * n for u, n in updates) / 12
    np.testing.assert_allclose(acc.mean_update()["big"], expected, rtol=0, atol=1e-8)


def test_the_fold_runs_blas_on_one_thread() -> None:
    """Limited after SciPy's BLAS is loaded (a limit set before would not reach it)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pytest.importorskip("scipy")
    acc = StreamingMean({"w": np.zeros(4, np.float32)})
    for _ in range(2):  # the second update of a group goes through saxpy: its BLAS is loaded
        acc.add({"w": np.ones(4, np.float32)}, 1)
    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert blas and all(i["num_threads"] == 1 for i in blas)
