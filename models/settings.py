"""Light facts about local training, shared by the gateway, the sites and the simulation.

What a round asks a site to do (:class:`LocalTraining`, sent in the round announcement), the
per-round seed of a site and the names of simulated sites. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from models.optim import OptimizerName, OptimizerSpec
from privadx.common.errors import InputError
from privadx.common.wire.update_codec import Encoding


def local_seed(seed: int, round_num: int, site_id: str) -> int:
    """The seed of a site's shuffling and augmentation in a round (same in simulation and MQTT)."""
    return seed * 1_000_003 + round_num * 1009 + zlib.crc32(site_id.encode()) % 1000


def site_name(index: int) -> str:
    """The id of simulated site ``index`` (``site-0``, ...), as the demo's edge agents use."""
    return f"site-{index}"


@dataclass(frozen=True, kw_only=True)
class LocalTraining:
    """How a site trains in one round (sent by the gateway in the round announcement)."""

    local_epochs: int = 2
    batch_size: int = 32
    optimizer: OptimizerSpec = field(
        default_factory=lambda: OptimizerSpec(name=OptimizerName.ADAM, learning_rate=1e-3)
    )
    augment: bool = True
    shuffle: bool = True
    encoding: Encoding = Encoding.FLOAT32
    """How sites send their update (see :mod:`privadx.common.wire.update_codec`)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "local_epochs": self.local_epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer.to_dict(),
            "augment": self.augment,
            "shuffle": self.shuffle,
            "encoding": str(self.encoding),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalTraining:
        """Inverse of :meth:`to_dict`; raises :class:`InputError` on bad values."""
        try:
            epochs, batch = int(data["local_epochs"]), int(data["batch_size"])
            optimizer = OptimizerSpec.from_dict(data["optimizer"])
            augment, shuffle = bool(data.get("augment", True)), bool(data.get("shuffle", True))
            encoding = Encoding(data.get("encoding", Encoding.FLOAT32))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed training settings: {exc}") from exc
        if not (1 <= epochs <= 100 and 1 <= batch <= 4096):
            raise InputError(f"training settings out of range: {epochs} epochs, batch {batch}")
        return cls(
            local_epochs=epochs,
            batch_size=batch,
            optimizer=optimizer,
            augment=augment,
            shuffle=shuffle,
            encoding=encoding,
        )
