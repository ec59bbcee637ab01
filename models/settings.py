"""Light facts about local training, shared by the gateway, the sites and the simulation.

What a round asks a site to do (:class:`LocalTraining`, sent in the round announcement), the
per-round seed of a site and the names of simulated sites. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from models.augment import Augmentation
from models.optim import LrSchedule, OptimizerName, OptimizerSpec
from privadx.common.errors import InputError
from privadx.common.wire.update_codec import Encoding


def local_seed(seed: int, round_num: int, site_id: str) -> int:
    """The seed of a site's shuffling and augmentation in a round (same in simulation and MQTT)."""
    return seed * 1_000_003 + round_num * 1009 + zlib.crc32(site_id.encode()) % 1000


def site_name(index: int) -> str:
    """The id of simulated site ``index`` (``site-0``, ...), as the demo's edge agents use."""
    return f"site-{index}"


MAX_LOCAL_EPOCHS = 100
"""Most epochs a round may ask of a site (also the cap of :meth:`LocalTraining.epochs_for`)."""
MAX_BATCH_SIZE = 4096
MAX_LOCAL_STEPS = 10_000
MAX_PROXIMAL_MU = 100.0
"""Largest FedProx strength a round may ask for (a site then barely leaves the global model)."""
MAX_LOGIT_ADJUST = 10.0
"""Largest logit-adjustment strength a round may ask for."""


@dataclass(frozen=True, kw_only=True)
class LocalTraining:
    """How a site trains in one round (sent by the gateway in the round announcement)."""

    local_epochs: int = 2
    batch_size: int = 32
    optimizer: OptimizerSpec = field(
        default_factory=lambda: OptimizerSpec(name=OptimizerName.ADAM, learning_rate=1e-3)
    )
    augmentation: Augmentation = Augmentation.SHIFT
    """How a site perturbs its training images (:class:`models.augment.Augmentation`)."""
    shuffle: bool = True
    encoding: Encoding = Encoding.FLOAT32
    """How sites send their update (see :mod:`privadx.common.wire.update_codec`)."""
    min_local_steps: int = 0
    """Fewest optimizer steps a site makes in a round: a site too small for them in
    ``local_epochs`` epochs trains whole epochs more (:meth:`epochs_for`), so small sites do
    not send an update of two or three steps. 0 turns the minimum off."""
    proximal_mu: float = 0.0
    """FedProx strength (Li et al., MLSys 2020): each step adds ``mu * (w - w_global)`` to the
    gradient, i.e. ``mu/2 ||w - w_global||^2`` to the loss, pulling a site's weights toward the
    round's global model. 0 is plain FedAvg local training."""
    logit_adjust: float = 0.0
    """Logit adjustment of the local loss (Menon et al., ICLR 2021; for label-skewed sites as
    in FedLC, Zhang et al., ICML 2022): a site trains on the cross-entropy of ``logits + tau *
    log(prior)``, its own smoothed class frequencies as the prior
    (:func:`class_log_prior`), so its update does not teach the shared model its own class
    balance. Only the loss changes; the model and its outputs do not. 0 turns it off."""

    def __post_init__(self) -> None:
        if not 1 <= self.local_epochs <= MAX_LOCAL_EPOCHS:
            raise InputError(
                f"local epochs must lie in [1, {MAX_LOCAL_EPOCHS}], got {self.local_epochs}"
            )
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise InputError(f"batch size must lie in [1, {MAX_BATCH_SIZE}], got {self.batch_size}")
        if not 0 <= self.min_local_steps <= MAX_LOCAL_STEPS:
            raise InputError(
                f"minimum local steps must lie in [0, {MAX_LOCAL_STEPS}], "
                f"got {self.min_local_steps}"
            )
        if not 0.0 <= self.proximal_mu <= MAX_PROXIMAL_MU:  # also refuses NaN
            raise InputError(
                f"proximal mu must lie in [0, {MAX_PROXIMAL_MU:g}], got {self.proximal_mu}"
            )
        if not 0.0 <= self.logit_adjust <= MAX_LOGIT_ADJUST:  # also refuses NaN
            raise InputError(
                f"logit adjustment must lie in [0, {MAX_LOGIT_ADJUST:g}], got {self.logit_adjust}"
            )

    def logit_offsets(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """What a site holding ``labels`` adds to its logits in the training loss, float32.

        ``logit_adjust * log(prior)`` with the site's own prior (:func:`class_log_prior`);
        zeros when the adjustment is off. The edge trainer and the simulation both ask this.
        """
        tau = np.float32(self.logit_adjust)
        return (tau * class_log_prior(labels, num_classes)).astype(np.float32)

    def for_round(self, schedule: LrSchedule, round_num: int, rounds: int) -> LocalTraining:
        """These settings with the learning rate ``schedule`` gives round ``round_num``."""
        return replace(self, optimizer=schedule.apply(self.optimizer, round_num, rounds))

    def epochs_for(self, examples: int) -> int:
        """The epochs a site holding ``examples`` training images trains in a round.

        ``local_epochs``, or the fewest whole epochs that make ``min_local_steps`` batches of
        ``batch_size`` (the last batch of an epoch may be short), at most
        :data:`MAX_LOCAL_EPOCHS`. The simulation and the edge agent both ask this.
        """
        if examples <= 0 or self.min_local_steps == 0:
            return self.local_epochs
        batches = math.ceil(examples / self.batch_size)
        needed = math.ceil(self.min_local_steps / batches)
        return min(MAX_LOCAL_EPOCHS, max(self.local_epochs, needed))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "local_epochs": self.local_epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer.to_dict(),
            "augment": self.augmentation is not Augmentation.NONE,  # what older devices read
            "augmentation": str(self.augmentation),
            "shuffle": self.shuffle,
            "encoding": str(self.encoding),
            "min_local_steps": self.min_local_steps,
            "proximal_mu": self.proximal_mu,
            "logit_adjust": self.logit_adjust,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalTraining:
        """Inverse of :meth:`to_dict`; raises :class:`InputError` on bad values."""
        try:
            epochs, batch = int(data["local_epochs"]), int(data["batch_size"])
            optimizer = OptimizerSpec.from_dict(data["optimizer"])
            augmentation = _augmentation(data)
            shuffle = bool(data.get("shuffle", True))
            encoding = Encoding(data.get("encoding", Encoding.FLOAT32))
            min_steps = int(data.get("min_local_steps", 0))
            mu = float(data.get("proximal_mu", 0.0))
            adjust = float(data.get("logit_adjust", 0.0))
            return cls(
                local_epochs=epochs,
                batch_size=batch,
                optimizer=optimizer,
                augmentation=augmentation,
                shuffle=shuffle,
                encoding=encoding,
                min_local_steps=min_steps,
                proximal_mu=mu,
                logit_adjust=adjust,
            )
        except InputError as exc:
            raise InputError(f"training settings out of range: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed training settings: {exc}") from exc


def _augmentation(data: dict[str, Any]) -> Augmentation:
    """The augmentation an announcement asks for.

    ``augmentation``, else the older ``augment`` flag (``true``: the shift; absent means
    ``true``); when both are present they must agree.
    """
    legacy = data.get("augment", True)
    if not isinstance(legacy, bool):
        raise InputError(f"augment must be true or false, got {legacy!r}")
    if "augmentation" not in data:
        return Augmentation.SHIFT if legacy else Augmentation.NONE
    level = Augmentation(data["augmentation"])
    if legacy != (level is not Augmentation.NONE):
        raise InputError(f"augment {legacy} contradicts augmentation {level}")
    return level


def class_log_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``log`` of a site's class frequencies, add-one smoothed: ``log((n_c + 1) / (N + K))``.

    The smoothing keeps a class the site lacks finite (it then counts as rare, not absent).
    float32 ``(num_classes,)``; the edge trainer and the simulation both take the logit
    adjustment's prior from here.
    """
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)[:num_classes]
    return np.log((counts + 1.0) / (counts.sum() + num_classes)).astype(np.float32)


DEFAULT_TRAINING = LocalTraining(min_local_steps=20)
"""What ``privadx simulate`` and ``privadx gateway`` ask of a site unless told otherwise.

A site too small for 20 optimizer steps in its 2 local epochs trains more whole epochs
(measured over 3 seeds in docs/benchmarks.md#model-quality). :class:`LocalTraining`'s own
field defaults stay the protocol's neutral values (no minimum, no proximal term), which an
announcement that omits a field means."""

DEFAULT_SIMULATION_ROUNDS = 30
"""Rounds of ``privadx simulate`` unless told otherwise: with :data:`DEFAULT_TRAINING` and the
cosine schedule, PneumoniaMNIST over 10 sites fits the 15 CPU-minute budget on 2 cores."""
