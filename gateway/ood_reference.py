"""The run's out-of-distribution reference, built from the sites' summed evaluation reports.

The gateway holds no image, so the reference comes in two steps from sums
(:mod:`privadx.common.ood`): the first evaluation whose reports carry moments of training
images fixes the mean and covariance (every later model message carries them), and each
later evaluation's histogram of held-out distances to that reference sets the threshold. The
reference never changes once fixed, so every histogram measures distances to the same one. A
restarted gateway rebuilds it from the next evaluation: the sites send their moments with
every report, and the same sites' sums give the same reference.
"""

from __future__ import annotations

import logging
from typing import Any

from privadx.common.ood import MIN_IMAGES, OodSums, Reference

log = logging.getLogger(__name__)


class OodReference:
    """The reference as far as the evaluations so far allow (``None`` before any)."""

    def __init__(self) -> None:
        self.reference: Reference | None = None

    def absorb(self, sums: OodSums | None, round_num: int) -> dict[str, Any] | None:
        """Take one closed evaluation's summed sums; a small record of what it gave."""
        if sums is None:
            return None
        if self.reference is None:
            if sums.moments.count < MIN_IMAGES:
                return {"training_images": sums.moments.count, "reference": "not enough images"}
            self.reference = Reference.from_moments(sums.moments)
            log.info(
                "round %d model: out-of-distribution reference from %d training images",
                round_num,
                sums.moments.count,
            )
            return {"training_images": sums.moments.count, "reference": "fixed"}
        held_out = int(sums.hist.sum())
        if held_out == 0:
            return {"held_out_images": 0, "threshold": self.reference.threshold}
        self.reference = self.reference.with_threshold(sums.hist)
        return {"held_out_images": held_out, "threshold": self.reference.threshold}
