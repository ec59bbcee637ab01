"""ONNX Runtime sessions, tuned once for PrivaDx's small image classifiers.

The CPU is the default. A device with an accelerator and the matching ONNX Runtime build
(``onnxruntime-gpu`` on a Jetson) names its execution provider; the CPU stays behind it for
any operator the provider does not take.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from privadx.common.errors import InputError

if TYPE_CHECKING:
    import onnxruntime

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
"""Short names accepted for ONNX Runtime's execution providers (full names work too)."""


def execution_providers(name: str) -> list[str]:
    """The provider list for ``name`` (``cpu``, ``cuda``, ``tensorrt``, or a full ORT name).

    Raises:
        InputError: This ONNX Runtime build has no such provider; the message lists those it has.
    """
    import onnxruntime as ort

    wanted = PROVIDER_ALIASES.get(name.lower(), name)
    available = list(ort.get_available_providers())
    if wanted not in available:
        short = {v: k for k, v in PROVIDER_ALIASES.items()}
        names = ", ".join(f"{short.get(a, a)} ({a})" if a in short else a for a in available)
        raise InputError(
            f"execution provider {name!r} is not available in this ONNX Runtime "
            f"({ort.__version__}); available: {names}"
        )
    return [wanted] + (["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [])


def inference_session(
    model: str | bytes, *, threads: int | None = None, spin: bool = True, provider: str = "cpu"
) -> onnxruntime.InferenceSession:
    """A session for ``model`` (a path or the model's bytes), all graph optimizations on.

    Args:
        model: Path of an ``.onnx`` file, or its serialized bytes.
        threads: Intra-op threads (default: the cores, at most 4).
        spin: Whether idle intra-op threads spin for the next call (lowest latency for a
            diagnosis burst); off where the session runs beside other work, such as the
            gateway evaluating while sites train on the same cores.
        provider: Execution provider (:func:`execution_providers`); the CPU by default.

    Raises:
        InputError: The provider is not available.
        Whatever ONNX Runtime raises for a model it cannot load (its own untyped errors).
    """
    import onnxruntime as ort

    providers = execution_providers(provider)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=options, providers=providers)
