"""How measured figures are written in reports: truncated, never rounded up."""

from __future__ import annotations

import math


def truncate(value: float, digits: int) -> str:
    """``value`` truncated toward zero to ``digits`` decimals (``0.51999`` -> ``"0.51"``)."""
    scale = 10**digits
    return f"{math.trunc(value * scale) / scale:.{digits}f}"
