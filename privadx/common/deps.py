"""Lazy imports of heavy optional dependencies with an actionable error message.

TensorFlow, TensorFlow Federated, tf2onnx and matplotlib are imported only inside the function
that needs them, through :func:`require`, so light paths never pay for them and a device
without the extra gets a clear message naming what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import sys
from types import ModuleType

from privadx.common.errors import DependencyError

_EXTRA_OF = {
    "tensorflow": "train",
    "tensorflow_federated": "server",
    "tf2onnx": "server",
    "onnx": "server",
    "matplotlib": "server",
}

TRAINING_PYTHONS = ((3, 9), (3, 11))
"""Pythons with a TensorFlow 2.14 wheel (the version whose training the simulation's TFF uses)."""


def unsupported_reason(
    top: str, version: tuple[int, int] | None = None, machine: str | None = None
) -> str | None:
    """Why ``top`` cannot be installed on this Python or machine at all, or ``None``.

    ``version`` and ``machine`` (``"linux x86_64"``) default to this interpreter's.
    """
    version = version or (sys.version_info.major, sys.version_info.minor)
    machine = machine or f"{sys.platform} {platform.machine()}"
    here = f"Python {version[0]}.{version[1]}"
    low, high = TRAINING_PYTHONS
    if top in ("tensorflow", "keras") and not low <= version <= high:
        return (
            f"local training needs TensorFlow 2.14 (the version the simulation trains with), "
            f"which exists for Python 3.9-3.11, and this is {here}: run the edge agent with "
            f"Python 3.10 or 3.11 to train, or use this device for diagnosis only"
        )
    server_only = _EXTRA_OF.get(top) == "server" and top != "matplotlib"
    if server_only and (version != (3, 11) or machine != "linux x86_64"):
        return (
            f"the simulation, gateway and ONNX export need TensorFlow Federated 0.87, which "
            f"exists for Python 3.11 on Linux x86-64 only, and this is {here} on {machine}"
        )
    return None


def ensure_installed(module: str) -> None:
    """Raise :class:`DependencyError` now if ``module`` is not installed, without importing it.

    For a command that will need ``module`` later (the edge agent trains at the first round)
    and should say so when it starts, not an hour later.
    """
    top = module.split(".")[0]
    if importlib.util.find_spec(top) is None:
        raise _missing(top, detail="")


def require(module: str) -> ModuleType:
    """Import ``module`` or raise a :class:`DependencyError` naming the extra to install.

    Args:
        module: Dotted module name, e.g. ``"tensorflow_federated"``.

    Returns:
        The imported module.

    Raises:
        DependencyError: If the module (or one of its own dependencies) cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(module.split(".")[0], detail=f" ({exc})") from exc


def _missing(top: str, *, detail: str) -> DependencyError:
    """The error for a missing ``top``: why it cannot exist here, or the extra to install."""
    reason = unsupported_reason(top)
    if reason is not None:
        return DependencyError(reason)
    extra = _EXTRA_OF.get(top, "server")
    return DependencyError(
        f"this command needs the Python package '{top}', which is not installed{detail}; "
        f"install it with: pip install 'privadx[{extra}]'"
    )
