"""What travels with a model's weights, in one type.

The global-model message, weights files and the ONNX metadata all write and read it here:

- ``model_spec`` and ``preprocess``: how to rebuild the graph and feed it;
- ``class_names`` and ``positive_class``: how to read its output;
- ``threshold`` and ``temperature``: the decision rule (binary threshold on the calibrated
  probability, softmax temperature from federated evaluation);
- ``provenance``: where it came from (free-form JSON);
- ``ood``: the training images' reference statistics and the distance beyond which an input
  is called unlike them (:mod:`privadx.common.ood`), when the model has them.

Weights files and model messages carry :meth:`ModelInfo.to_meta` (JSON values); an ONNX file
carries :meth:`ModelInfo.to_onnx_props` (``privadx.*`` strings). Every reader validates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from models.spec import ModelSpec
from privadx.common.errors import DataError, InputError, ModelError
from privadx.common.ood import Reference
from privadx.common.preprocess import PreprocessSpec

ONNX_PREFIX = "privadx."
ONNX_FORMAT = "1"
SUPPORTED_FORMATS = frozenset({ONNX_FORMAT})


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """A model's description; see the module docstring."""

    model_spec: ModelSpec
    preprocess: PreprocessSpec
    class_names: tuple[str, ...]
    positive_class: int = 1
    threshold: float | None = None
    temperature: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    ood: Reference | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        spec, pre = self.model_spec, self.preprocess
        if len(self.class_names) != spec.num_classes or not all(
            isinstance(c, str) and c for c in self.class_names
        ):
            raise ModelError(
                f"{len(self.class_names)} class names for a model of {spec.num_classes} classes"
            )
        if (pre.height, pre.width, pre.channels) != (spec.height, spec.width, spec.channels):
            raise ModelError(
                f"preprocessing to {pre.height}x{pre.width}x{pre.channels} does not fit a model "
                f"input of {spec.height}x{spec.width}x{spec.channels}"
            )
        if not (
            isinstance(self.positive_class, int)
            and not isinstance(self.positive_class, bool)
            and 0 <= self.positive_class < spec.num_classes
        ):
            raise ModelError(f"positive class {self.positive_class!r} is not a class index")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ModelError(f"threshold {self.threshold!r} is not a probability in (0, 1)")
        if self.temperature is not None and not 0.01 <= self.temperature <= 100.0:
            raise ModelError(f"temperature {self.temperature!r} is not in [0.01, 100]")

    @property
    def calibrated(self) -> bool:
        """Whether the probabilities are calibrated (the model carries a temperature)."""
        return self.temperature is not None

    def to_meta(self) -> dict[str, Any]:
        """JSON-ready metadata for a weights file or a global-model message."""
        return {
            "model_spec": self.model_spec.to_json(),
            "preprocess": self.preprocess.to_json(),
            "class_names": list(self.class_names),
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "provenance": self.provenance,
            "ood": self.ood.to_dict() if self.ood is not None else None,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ModelInfo:
        """Read :meth:`to_meta`'s form; raises :class:`ModelError` naming what is wrong."""
        try:
            return cls(
                model_spec=ModelSpec.from_json(_text(meta, "model_spec")),
                preprocess=PreprocessSpec.from_json(_text(meta, "preprocess")),
                class_names=tuple(_list(meta, "class_names")),
                positive_class=_index(meta.get("positive_class", 1)),
                threshold=_number(meta.get("threshold"), "threshold"),
                temperature=_number(meta.get("temperature"), "temperature"),
                provenance=_dict(meta.get("provenance") or {}),
                ood=None if meta.get("ood") is None else Reference.from_dict(meta["ood"]),
            )
        except (DataError, InputError) as exc:
            raise ModelError(f"malformed model metadata: {exc}") from exc

    def to_onnx_props(self) -> dict[str, str]:
        """The ``privadx.*`` string properties of an exported ONNX file."""
        meta = self.to_meta()
        props = {f"{ONNX_PREFIX}format": ONNX_FORMAT}
        for key, value in meta.items():
            text = (
                value if key in ("model_spec", "preprocess") else json.dumps(value, sort_keys=True)
            )
            props[f"{ONNX_PREFIX}{key}"] = text
        return props

    @classmethod
    def from_onnx_props(cls, props: dict[str, str], source: str) -> ModelInfo:
        """Read an ONNX file's ``privadx.*`` properties.

        Raises:
            ModelError: Not a PrivaDx model, an unsupported format, or malformed metadata.
        """
        fmt = props.get(f"{ONNX_PREFIX}format")
        if fmt is None:
            raise ModelError(f"{source}: not a PrivaDx model (no privadx.* metadata)")
        if fmt not in SUPPORTED_FORMATS:
            raise ModelError(f"{source}: model metadata format {fmt!r} is not supported")
        meta: dict[str, Any] = {}
        try:
            for key in ("model_spec", "preprocess"):
                meta[key] = props[f"{ONNX_PREFIX}{key}"]
            for key in (
                "class_names",
                "positive_class",
                "threshold",
                "temperature",
                "provenance",
                "ood",
            ):
                text = props.get(f"{ONNX_PREFIX}{key}")
                if text is not None:
                    meta[key] = json.loads(text)
        except (KeyError, ValueError) as exc:
            raise ModelError(f"{source}: malformed PrivaDx metadata ({exc})") from exc
        try:
            return cls.from_meta(meta)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None


def _text(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    if not isinstance(value, str):
        raise InputError(f"{key} is missing or not a string")
    return value


def _list(meta: dict[str, Any], key: str) -> list[Any]:
    value = meta.get(key)
    if not isinstance(value, list):
        raise InputError(f"{key} is missing or not a list")
    return value


def _index(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"positive_class {value!r} is not a whole number")
    return value


def _number(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{key} {value!r} is not a finite number")
    return float(value)


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError("provenance is not an object")
    return value
