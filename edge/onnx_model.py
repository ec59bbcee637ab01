"""Load an exported PrivaDx ONNX model and run it with ONNX Runtime (no TensorFlow)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.spec import CAM_NAME
from privadx.common.errors import InputError, ModelError
from privadx.common.metrics import decide, softmax
from privadx.common.model_info import ModelInfo
from privadx.common.onnx_session import inference_session
from privadx.common.ood import embed
from privadx.common.preprocess import to_model_input

log = logging.getLogger(__name__)


class OnnxClassifier:
    """An ONNX Runtime session plus the metadata needed to feed it and read its output."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        data: bytes | None = None,
        provider: str = "cpu",
    ) -> None:
        """Load ``path`` (or ``data``, its bytes as already read and verified)."""
        path = Path(path)
        if data is None and not path.is_file():
            raise ModelError(f"{path}: no such model file")
        source = data if data is not None else str(path)
        try:
            self.session = inference_session(source, threads=threads, provider=provider)
        except InputError:  # an unavailable provider: the user's error, not the model's
            raise
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path.name}: not a loadable ONNX model ({exc})") from exc
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = ModelInfo.from_onnx_props(meta, path.name)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.path = path
        self._check_graph()
        self.has_class_maps = any(o.name == CAM_NAME for o in self.session.get_outputs()[1:])

    def _check_graph(self) -> None:
        """The metadata must describe this graph: input ``(N, H, W, C)``, output ``(N, K)``.

        Raises:
            ModelError: Naming the field that disagrees with the graph.
        """
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{self.path.name}: expected one image input and a logits output")
        pre, k = self.info.preprocess, len(self.info.class_names)
        want_in = (pre.height, pre.width, pre.channels)
        shape_in = list(inputs[0].shape)
        if len(shape_in) != 4 or any(
            isinstance(d, int) and d != w for d, w in zip(shape_in[1:], want_in, strict=True)
        ):
            raise ModelError(
                f"{self.path.name}: metadata privadx.preprocess says {want_in[0]}x{want_in[1]}x"
                f"{want_in[2]} inputs; the graph takes {shape_in}"
            )
        shape_out = list(outputs[0].shape)
        if len(shape_out) != 2 or (isinstance(shape_out[1], int) and shape_out[1] != k):
            raise ModelError(
                f"{self.path.name}: metadata privadx.class_names names {k} classes; the graph "
                f"outputs {shape_out}"
            )
        ood = self.info.ood
        if ood is not None and ood.channels != pre.channels:
            raise ModelError(
                f"{self.path.name}: metadata privadx.ood describes {ood.channels}-channel images; "
                f"the model takes {pre.channels}"
            )
        for extra in outputs[1:]:
            shape = list(extra.shape)
            if extra.name == CAM_NAME and (
                len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != k)
            ):
                raise ModelError(
                    f"{self.path.name}: class activation maps of shape {shape}, expected "
                    f"(N, {k}, h, w)"
                )

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits for uint8 images already at the model's size ``(N, H, W, C)``."""
        (out,) = self.session.run(
            [self.output_name], {self.input_name: to_model_input(images, self.info.preprocess)}
        )
        return np.asarray(out, dtype=np.float32)

    def logits_and_maps(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, when the graph has them, class activation maps ``(N, K, h, w)``."""
        if not self.has_class_maps:
            return self.logits(images), None
        logits, maps = self.session.run(
            [self.output_name, CAM_NAME],
            {self.input_name: to_model_input(images, self.info.preprocess)},
        )
        return np.asarray(logits, np.float32), np.asarray(maps, np.float32)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax of ``logits``, calibrated by the model's temperature when it has one."""
        t = self.info.temperature
        return softmax(logits / t if t else logits)

    def unusual(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """``(distances, flagged)`` of images at the model's size against its training images.

        Without a reference in the model the distances are ``None`` and nothing is flagged.
        """
        ood = self.info.ood
        if ood is None:
            return None, np.zeros(len(images), bool)
        return ood.flags(embed(images))

    def predict(
        self, images: np.ndarray, *, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (N, K), predicted class (N,))`` with the model's decision rule.

        The probabilities are calibrated when the model carries a temperature; ``threshold``
        (a site's own) replaces the model's threshold on them.
        """
        probs, predicted, _ = self.classify(images, threshold=threshold, maps=False)
        return probs, predicted

    def classify(
        self, images: np.ndarray, *, threshold: float | None = None, maps: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`predict` plus the class activation maps ``(N, K, h, w)`` when asked for.

        The maps are ``None`` when ``maps`` is false or the graph has none.
        """
        if maps:
            logits, class_maps = self.logits_and_maps(images)
        else:
            logits, class_maps = self.logits(images), None
        probs = self.probabilities(logits)
        cut = self.info.threshold if threshold is None else threshold
        predicted = decide(probs, positive_class=self.info.positive_class, threshold=cut)
        return probs, predicted, class_maps
