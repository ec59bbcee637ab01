"""Clip and quantize updates to integers modulo 2^k, so masked sums are exact and cannot wrap.

An update is first clipped to L2 norm ``clip``; every coordinate then lies in
``[-clip, clip]`` and is mapped to an integer in ``[0, 2^bits - 1]`` by unbiased stochastic
rounding (step ``2 * clip / (2^bits - 1)``). The sum of at most ``max_sites`` such integers is
below ``max_sites * 2^bits <= 2^k`` with ``k = bits + ceil(log2(max_sites))``: that is the
modulus the masks live in, so the sum of the unmasked inputs is recovered exactly (no
wrap-around), and the only error is the rounding, at most one step per site and coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.errors import InputError

MAX_MODULUS_BITS = 62
"""Masked arithmetic runs in uint64; 62 bits keep every intermediate sum exact."""


@dataclass(frozen=True)
class QuantSpec:
    """How updates become integers for secure summation."""

    clip: float
    """L2 norm every update is clipped to before quantization."""
    bits: int = 16
    """Bits per coordinate of one site's input."""
    max_sites: int = 1024
    """Most inputs ever summed; fixes the modulus so their sum cannot wrap."""

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise InputError(f"clip norm must be positive, got {self.clip}")
        if not 1 <= self.bits <= 32 or self.max_sites < 1:
            raise InputError("bits must lie in [1, 32] and max_sites be at least 1")
        if self.modulus_bits > MAX_MODULUS_BITS:
            raise InputError(f"{self.bits} bits x {self.max_sites} sites need over 62 bits")

    @property
    def levels(self) -> int:
        """Largest integer one coordinate maps to."""
        return (1 << self.bits) - 1

    @property
    def modulus_bits(self) -> int:
        """k: the masks and sums live modulo 2^k."""
        return self.bits + max(0, math.ceil(math.log2(self.max_sites)))

    @property
    def step(self) -> float:
        """Quantization step of one coordinate."""
        return 2 * self.clip / self.levels


def clip_l2(vector: np.ndarray, clip: float) -> np.ndarray:
    """``vector`` scaled down to L2 norm ``clip`` if it is longer."""
    norm = float(np.linalg.norm(vector))
    return vector if norm <= clip else vector * (clip / norm)


def quantize(vector: np.ndarray, spec: QuantSpec, rng: np.random.Generator) -> np.ndarray:
    """Clip, then map to integers in ``[0, levels]`` (uint64) by stochastic rounding."""
    clipped = clip_l2(np.asarray(vector, np.float64), spec.clip)
    scaled = (clipped + spec.clip) / spec.step
    floor = np.floor(scaled)
    rounded = floor + (rng.random(scaled.shape) < (scaled - floor))
    return np.clip(rounded, 0, spec.levels).astype(np.uint64)


def dequantize_sum(total: np.ndarray, count: int, spec: QuantSpec) -> np.ndarray:
    """The float sum of ``count`` clipped updates from the sum of their quantized forms."""
    if not 1 <= count <= spec.max_sites:
        raise InputError(f"cannot dequantize a sum of {count} inputs (max {spec.max_sites})")
    return total.astype(np.float64) * spec.step - count * spec.clip
