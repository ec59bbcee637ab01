"""What the light install needs from Python 3.11 on the older Pythons devices ship (3.10).

Jetson's JetPack 6 runs Ubuntu 22.04, whose Python is 3.10: the diagnosis and edge paths use
these names instead of the 3.11 standard library ones.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum

    import tomllib
else:  # pragma: no cover - exercised by the light-install test on 3.10
    import tomli as tomllib

    class StrEnum(str, Enum):
        """An enum whose members are strings and print as their value (3.11's StrEnum)."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str.__format__(str(self.value), spec)


__all__ = ["StrEnum", "tomllib"]
