"""The description of a model that travels with its weights (no TensorFlow needed)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from privadx.common.compat import StrEnum
from privadx.common.errors import InputError, ModelError

MAX_SIDE = 1024
"""Largest input height or width a model may declare (PrivaDx's models take 28-224)."""
MAX_CLASSES = 1000

INPUT_NAME = "image"
"""The exported graph's input: uint8-derived normalised images ``(N, H, W, C)``."""
OUTPUT_NAME = "logits"
"""The exported graph's first output: logits ``(N, K)``."""
CAM_NAME = "class_maps"
"""The optional second ONNX output: class activation maps ``(N, K, h, w)``."""


class Architecture(StrEnum):
    """The model families PrivaDx builds."""

    CNN = "cnn"
    """Compact CNN for 28x28-64x64 images (72k parameters for 2 classes at width 1)."""
    MOBILENET = "mobilenet"
    """Small MobileNet-style network (depthwise separable convolutions) for larger inputs."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything needed to rebuild a model's graph: architecture and input/output sizes."""

    arch: Architecture = Architecture.CNN
    height: int = 28
    width: int = 28
    channels: int = 1
    num_classes: int = 2
    width_multiplier: float = 1.0
    """Channels of every convolution times this (rounded to a multiple of 8)."""
    dropout: float = 0.3
    """Dropout before the classifier (0 makes training deterministic, as parity tests need)."""

    def __post_init__(self) -> None:
        for name in ("height", "width", "channels", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"model {name} must be a whole number, got {value!r}")
        if self.channels not in (1, 3):
            raise InputError(f"models take 1 or 3 channels, got {self.channels}")
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise InputError(
                f"a classifier needs 2 to {MAX_CLASSES} classes, got {self.num_classes}"
            )
        if not (16 <= self.height <= MAX_SIDE and 16 <= self.width <= MAX_SIDE):
            raise InputError(
                f"input must be 16 to {MAX_SIDE} pixels high and wide, got "
                f"{self.height}x{self.width}"
            )
        for name, low, high in (("width_multiplier", 0.0, 4.0), ("dropout", 0.0, 1.0)):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not low <= value < high or value != value:
                raise InputError(f"model {name} must lie in [{low:g}, {high:g}), got {value!r}")
        if self.width_multiplier == 0:
            raise InputError("model width_multiplier must be positive")

    def to_json(self) -> str:
        """Serialise for weights and ONNX metadata."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Inverse of :meth:`to_json`; raises :class:`ModelError` on malformed input."""
        try:
            fields = json.loads(text)
            fields["arch"] = Architecture(fields["arch"])
            return cls(**fields)
        except (ValueError, KeyError, TypeError, InputError) as exc:
            raise ModelError(f"malformed model spec {text!r}: {exc}") from exc
