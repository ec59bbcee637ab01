"""Load an exported PrivaDx ONNX model and run it with ONNX Runtime (no TensorFlow)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from common.errors import ModelError
from common.metrics import decide, softmax
from common.model_info import ModelInfo
from common.onnx_session import cpu_session
from common.preprocess import to_model_input

log = logging.getLogger(__name__)


class OnnxClassifier:
    """An ONNX Runtime session plus the metadata needed to feed it and read its output."""

    def __init__(
        self, path: Path, *, threads: int | None = None, data: bytes | None = None
    ) -> None:
        """Load ``path`` (or ``data``, its bytes as already read and verified)."""
        path = Path(path)
        if data is None and not path.is_file():
            raise ModelError(f"{path}: no such model file")
        try:
            self.session = cpu_session(data if data is not None else str(path), threads=threads)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path.name}: not a loadable ONNX model ({exc})") from exc
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = ModelInfo.from_onnx_props(meta, path.name)
        self.input_name = self.session.get_inputs()[0].name
        self.path = path

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits for uint8 images already at the model's size ``(N, H, W, C)``."""
        (out,) = self.session.run(
            None, {self.input_name: to_model_input(images, self.info.preprocess)}
        )
        return np.asarray(out, dtype=np.float32)

    def predict(
        self, images: np.ndarray, *, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (N, K), predicted class (N,))`` with the model's decision rule.

        The probabilities are calibrated when the model carries a temperature; ``threshold``
        (a site's own) replaces the model's threshold on them.
        """
        info = self.info
        logits = self.logits(images)
        probs = softmax(logits / info.temperature if info.temperature else logits)
        cut = info.threshold if threshold is None else threshold
        return probs, decide(probs, positive_class=info.positive_class, threshold=cut)
