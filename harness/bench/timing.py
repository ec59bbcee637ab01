"""Timing and memory helpers of the benchmark suite: best-of, taking turns, peak bytes."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any


def trunc(value: float, digits: int) -> str:
    """``value`` truncated (never rounded up) to ``digits`` decimals."""
    from privadx.common.figures import truncate

    return truncate(value, digits)


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` timed calls after one untimed warm-up call (seconds)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def interleaved_best(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """The fastest of ``repeat`` timed calls of each function, taking turns (seconds).

    Each is warmed up once, then the calls alternate, so whatever the machine does meanwhile
    weighs on both sides of a ratio alike instead of on one.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak traced allocation of ``fn`` above what was allocated before (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base
