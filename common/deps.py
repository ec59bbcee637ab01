"""Lazy imports of heavy optional dependencies with an actionable error message.

TensorFlow, TensorFlow Federated, tf2onnx and matplotlib are imported only inside the function
that needs them, through :func:`require`, so light paths never pay for them and a device
without the extra gets a clear message naming what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from common.errors import DependencyError

_EXTRA_OF = {
    "tensorflow": "train",
    "tensorflow_federated": "server",
    "tf2onnx": "server",
    "onnx": "server",
    "matplotlib": "server",
}


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
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top, "server")
        raise DependencyError(
            f"this command needs the Python package '{top}', which is not installed "
            f"({exc}); install it with: pip install 'privadx[{extra}]'"
        ) from exc
