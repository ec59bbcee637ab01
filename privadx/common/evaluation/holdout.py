"""The images a site keeps back for evaluation: deterministic, stratified by class."""

from __future__ import annotations

import numpy as np

from privadx.common.data.arrays import LabeledImages
from privadx.common.errors import InputError

DEFAULT_EVAL_FRACTION = 0.2
_SEED = 20261202
"""Fixed: the split depends on the site's images and labels alone, so a restarted site (and the
simulation of the same site) holds out the same images."""


def check_fraction(fraction: float) -> float:
    """Validate an evaluation fraction: 0 (no held-out images) up to 0.9."""
    if not 0.0 <= fraction <= 0.9:
        raise InputError(f"--eval-fraction must lie in [0, 0.9], got {fraction}")
    return fraction


def split_holdout(
    data: LabeledImages, fraction: float = DEFAULT_EVAL_FRACTION
) -> tuple[LabeledImages, LabeledImages]:
    """``(training images, held-out images)``: ``fraction`` of every class, rounded.

    Each class keeps at least one training image; a class of one image is never held out.
    The held-out images are never trained on. Order within each part follows the input.
    """
    check_fraction(fraction)
    rng = np.random.default_rng(_SEED)
    held = np.zeros(len(data), dtype=bool)
    for k in range(data.num_classes):
        members = np.flatnonzero(data.labels == k)
        n = min(round(fraction * members.size), max(members.size - 1, 0))
        if n > 0:
            held[rng.permutation(members)[:n]] = True
    return data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))
