"""Clip, weight and quantize updates to integers modulo 2^k, so masked sums are exact.

A site's update ``v`` is clipped to L2 norm ``clip``; every coordinate then lies in
``[-clip, clip]``. The site's input to the secure sum is its weight ``w`` (a whole number: its
example count, or 1 for an unweighted mean) times the clipped update, mapped to an integer in
``[0, w * levels]`` by unbiased stochastic rounding with the step ``2 * clip / levels``
(``levels = 2^bits - 1``), followed by ``w`` itself as one more coordinate.

Why the sum cannot wrap: every input coordinate is at most ``w_i * levels`` and the weights
of one sum add up to at most ``max_weight``, so the sum of all inputs is at most
``max_weight * levels < max_weight * 2^bits <= 2^k`` with
``k = bits + ceil(log2(max_weight))``. That is the modulus the masks live in, so the
unmasked sum equals the integer sum of the inputs exactly; the only error is the rounding,
less than one step per site and coordinate. Dequantized, the sum is
``sum_i w_i * clip(v_i)``, and dividing by the exactly known ``sum_i w_i`` gives the weighted
mean with an error below ``sites * step / sum_i w_i`` per coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privadx.common.errors import InputError

MAX_MODULUS_BITS = 62
"""Masked arithmetic runs in uint64; 62 bits keep every intermediate sum exact."""


@dataclass(frozen=True)
class QuantSpec:
    """How updates become integers for secure summation."""

    clip: float
    """L2 norm every update is clipped to before quantization."""
    bits: int = 16
    """Bits per coordinate of a weight-1 input."""
    max_weight: int = 1024
    """Largest total weight of one sum (sites for an unweighted mean, else examples); it
    fixes the modulus, so no sum within it can wrap."""

    def __post_init__(self) -> None:
        if not self.clip > 0 or not math.isfinite(self.clip):
            raise InputError(f"clip norm must be a positive number, got {self.clip}")
        if not 1 <= self.bits <= 32 or self.max_weight < 1:
            raise InputError("bits must lie in [1, 32] and the maximum weight be at least 1")
        if self.modulus_bits > MAX_MODULUS_BITS:
            raise InputError(
                f"{self.bits} bits x total weight {self.max_weight} need "
                f"{self.modulus_bits} bits; at most {MAX_MODULUS_BITS}"
            )

    @property
    def levels(self) -> int:
        """Largest integer one coordinate of a weight-1 input maps to."""
        return (1 << self.bits) - 1

    @property
    def modulus_bits(self) -> int:
        """k: the masks and sums live modulo 2^k."""
        return self.bits + max(0, math.ceil(math.log2(self.max_weight)))

    @property
    def step(self) -> float:
        """Quantization step of one coordinate."""
        return 2 * self.clip / self.levels

    @property
    def wire_dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds numbers modulo 2^k."""
        return np.dtype(np.uint32 if self.modulus_bits <= 32 else np.uint64)


def clip_l2(vector: np.ndarray, clip: float) -> np.ndarray:
    """``vector`` scaled down to L2 norm ``clip`` if it is longer."""
    norm = float(np.linalg.norm(vector))
    return vector if norm <= clip else vector * (clip / norm)


def quantize(
    vector: np.ndarray, spec: QuantSpec, rng: np.random.Generator, *, weight: int = 1
) -> np.ndarray:
    """The secure-sum input: ``weight * clip(vector)`` as integers, then ``weight`` (uint64).

    Raises:
        InputError: The weight is not in ``[1, max_weight]`` or the vector is not finite.
    """
    if not 1 <= weight <= spec.max_weight:
        raise InputError(f"weight {weight} outside [1, {spec.max_weight}]")
    values = np.asarray(vector, np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError("cannot quantize an update with NaN or infinite values")
    clipped = clip_l2(values, spec.clip)
    scaled = weight * (clipped + spec.clip) / spec.step
    floor = np.floor(scaled)
    rounded = floor + (rng.random(scaled.shape) < (scaled - floor))
    out = np.empty(values.size + 1, np.uint64)
    out[:-1] = np.clip(rounded, 0, weight * spec.levels)
    out[-1] = weight
    return out


def dequantize_sum(total: np.ndarray, spec: QuantSpec) -> tuple[np.ndarray, int]:
    """``(sum_i w_i * clip(v_i), sum_i w_i)`` from the sum of :func:`quantize` outputs.

    Raises:
        InputError: The total weight is 0 or above ``max_weight`` (the sum cannot be right).
    """
    weight = int(total[-1])
    if not 1 <= weight <= spec.max_weight:
        raise InputError(f"the sum's total weight {weight} lies outside [1, {spec.max_weight}]")
    return total[:-1].astype(np.float64) * spec.step - weight * spec.clip, weight
