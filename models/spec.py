"""The description of a model that travels with its weights (no TensorFlow needed)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum

from common.errors import InputError, ModelError


class Architecture(StrEnum):
    """The model families PrivaDx builds."""

    CNN = "cnn"
    """Compact CNN for 28x28-64x64 images (72k parameters for 2 classes)."""
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
    dropout: float = 0.3
    """Dropout before the classifier (0 makes training deterministic, as parity tests need)."""

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise InputError(f"models take 1 or 3 channels, got {self.channels}")
        if self.num_classes < 2:
            raise InputError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if min(self.height, self.width) < 16:
            raise InputError(f"input must be at least 16x16, got {self.height}x{self.width}")

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
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"malformed model spec {text!r}: {exc}") from exc
