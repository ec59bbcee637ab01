"""Load an exported PrivaDx ONNX model and run it with ONNX Runtime (no TensorFlow)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataError, ModelError
from common.metrics import decide, softmax
from common.onnx_session import cpu_session
from common.preprocess import PreprocessSpec, to_model_input

log = logging.getLogger(__name__)

META_PREFIX = "privadx."
SUPPORTED_FORMATS = frozenset({"1"})


@dataclass(frozen=True)
class ModelInfo:
    """What an exported model's metadata says about it."""

    preprocess: PreprocessSpec
    class_names: tuple[str, ...]
    positive_class: int
    threshold: float | None
    """Binary tasks: the positive class's (calibrated) probability at which it is predicted."""
    provenance: dict[str, Any]
    temperature: float | None = None
    """Logits are divided by this before the softmax (temperature scaling); ``None``: the
    probabilities are not calibrated."""

    @property
    def calibrated(self) -> bool:
        """Whether the probabilities are calibrated (the model carries a temperature)."""
        return self.temperature is not None


def read_model_info(meta: dict[str, str], source: str) -> ModelInfo:
    """Parse the ``privadx.*`` metadata of an ONNX model.

    Raises:
        ModelError: Not a PrivaDx model, or an unsupported or malformed metadata version.
    """
    fmt = meta.get(f"{META_PREFIX}format")
    if fmt is None:
        raise ModelError(f"{source}: not a PrivaDx model (no privadx.* metadata)")
    if fmt not in SUPPORTED_FORMATS:
        raise ModelError(f"{source}: model metadata format {fmt!r} is not supported")
    try:
        threshold = json.loads(meta[f"{META_PREFIX}threshold"])
        temperature = json.loads(meta.get(f"{META_PREFIX}temperature", "null"))
        if temperature is not None and not (
            isinstance(temperature, int | float) and 0.01 <= temperature <= 100
        ):
            raise ValueError(f"temperature {temperature!r} is not a number in [0.01, 100]")
        return ModelInfo(
            preprocess=PreprocessSpec.from_json(meta[f"{META_PREFIX}preprocess"]),
            class_names=tuple(json.loads(meta[f"{META_PREFIX}class_names"])),
            positive_class=int(json.loads(meta[f"{META_PREFIX}positive_class"])),
            threshold=None if threshold is None else float(threshold),
            provenance=json.loads(meta.get(f"{META_PREFIX}provenance", "{}")),
            temperature=None if temperature is None else float(temperature),
        )
    except (KeyError, ValueError, TypeError, DataError) as exc:
        raise ModelError(f"{source}: malformed PrivaDx metadata ({exc})") from exc


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
        self.info = read_model_info(meta, path.name)
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
