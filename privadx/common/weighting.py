"""How much each site's update weighs in the mean: its example count, capped against the others'.

Example counts are reported by the sites themselves. Without a cap one site claiming a huge
count would set the direction of the weighted mean whatever its update's norm. Each site's
count is capped at ``max_ratio`` times the median of the *other* sites' counts, so a claim
cannot raise its own cap. With the default ratio ``r = 10`` a liar's share of the total
weight is at most ``r*m / (r*m + sum of the others)`` where ``m`` is the others' median: with
others of equal size ``r/(r+1)`` = 0.91 for 2 sites, ``r/(r+2)`` = 0.83 for 3 and
``r/(r+9)`` = 0.53 for 10 (:func:`worst_share`). A lower ratio bounds it further (``1``: no
site weighs more than the typical other one) at the cost of down-weighting a genuinely large
site. The gateway applies this to plain rounds. The simulation's counts are true and TFF
weighs them as they are; it reports, per round, which sites this cap would have weighed down
in a deployment (``capped_examples``), which with the default ratio takes a site with more
than ten times the others' median.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_WEIGHT_RATIO = 10.0


def cap_example_counts(counts: dict[str, int], max_ratio: float) -> dict[str, int]:
    """Limit each site's weight to ``max_ratio`` times the median of the *other* sites' counts.

    Example counts are reported by the sites themselves: without a cap, one site claiming a
    huge count would dominate the weighted mean whatever its update's norm. The median is
    taken over the others, so a site's claim cannot raise its own cap (with every count in
    the median, a liar among two sites set the cap itself). A lone site is not capped. ``0``
    turns the cap off.
    """
    if max_ratio <= 0 or len(counts) < 2:
        return dict(counts)
    out = {}
    for site, n in counts.items():
        others = [m for s, m in counts.items() if s != site]
        cap = max(1, int(np.ceil(max_ratio * float(np.median(others)))))
        out[site] = min(n, cap)
    return out


def worst_share(max_ratio: float, sites: int) -> float:
    """The largest share of the total weight one site can claim among ``sites`` equal ones."""
    if sites < 2 or max_ratio <= 0:
        return 1.0
    return max_ratio / (max_ratio + sites - 1)
