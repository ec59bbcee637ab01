"""ONNX Runtime sessions on the CPU, tuned once for PrivaDx's small image classifiers."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime


def cpu_session(
    model: str | bytes, *, threads: int | None = None, spin: bool = True
) -> onnxruntime.InferenceSession:
    """A CPU session for ``model`` (a path or the model's bytes), all graph optimizations on.

    Args:
        model: Path of an ``.onnx`` file, or its serialized bytes.
        threads: Intra-op threads (default: the cores, at most 4).
        spin: Whether idle intra-op threads spin for the next call (lowest latency for a
            diagnosis burst); off where the session runs beside other work, such as the
            gateway evaluating while sites train on the same cores.

    Raises:
        Whatever ONNX Runtime raises for a model it cannot load (its own untyped errors).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
