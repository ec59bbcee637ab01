"""Shamir secret sharing over the prime field of p = 2^521 - 1 (a Mersenne prime).

A secret of up to 64 bytes is the constant term of a random polynomial of degree t - 1;
participant ``x`` (1, 2, ...) gets the polynomial's value at ``x``. Any t shares give the
secret back by Lagrange interpolation at 0; fewer reveal nothing about it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from privadx.common.errors import InputError

PRIME = (1 << 521) - 1
MAX_SECRET_BYTES = 64


def split(secret: bytes, threshold: int, xs: Iterable[int]) -> dict[int, int]:
    """Shares of ``secret`` for the participants ``xs``, any ``threshold`` of which recover it."""
    points = list(xs)
    if len(secret) > MAX_SECRET_BYTES:
        raise InputError(f"secrets are at most {MAX_SECRET_BYTES} bytes")
    if not 1 <= threshold <= len(points) or any(not 0 < x < PRIME for x in points):
        raise InputError(f"threshold {threshold} does not fit {len(points)} participants")
    coefficients = [int.from_bytes(secret, "big")] + [
        secrets.randbelow(PRIME) for _ in range(threshold - 1)
    ]
    return {x: _evaluate(coefficients, x) for x in points}


def _evaluate(coefficients: list[int], x: int) -> int:
    value = 0
    for c in reversed(coefficients):
        value = (value * x + c) % PRIME
    return value


def combine(shares: dict[int, int], threshold: int, length: int) -> bytes:
    """The secret of ``length`` bytes from at least ``threshold`` shares.

    Raises:
        InputError: Fewer shares than the threshold.
    """
    if len(shares) < threshold:
        raise InputError(f"{len(shares)} shares cannot recover a secret shared {threshold}-of-n")
    points = list(shares.items())[:threshold]
    secret = 0
    for i, (xi, yi) in enumerate(points):
        num = den = 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    try:
        return secret.to_bytes(length, "big")
    except OverflowError:
        raise InputError("the shares are inconsistent (they do not interpolate a secret)") from None
