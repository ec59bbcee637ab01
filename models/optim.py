"""Optimizer settings shared by simulation clients, edge devices and the gateway's server step.

One :class:`OptimizerSpec` describes an optimizer; TFF builds it with
:func:`tff_core.fedavg.build_tff_optimizer` and edge devices with :meth:`OptimizerSpec.to_keras`.
Both implement the same update rule (Keras' Adam and TFF's ``build_adam`` share the
bias-corrected step size), so a site training with Keras reproduces TFF's client work.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from privadx.common.compat import StrEnum
from privadx.common.deps import require
from privadx.common.errors import InputError

MAX_WEIGHT_DECAY = 10.0
"""Largest decoupled weight decay an optimizer may use (at 10 a step at learning rate 1e-3
shrinks every weight by 1%)."""


class OptimizerName(StrEnum):
    """Optimizers available on clients and on the server."""

    SGD = "sgd"
    ADAM = "adam"
    YOGI = "yogi"


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec:
    """An optimizer and its hyper-parameters."""

    name: OptimizerName = OptimizerName.SGD
    learning_rate: float = 0.05
    momentum: float = 0.0
    """Heavy-ball momentum (SGD only)."""
    epsilon: float = 1e-7
    """Adam/Yogi denominator constant (adaptive server optimizers use 1e-3, Reddi et al.)."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW, Loshchilov and Hutter, ICLR 2019; Adam only): each step
    also subtracts ``learning_rate * weight_decay * w`` from every weight, so a learning-rate
    schedule scales it too. 0 is plain Adam."""

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise InputError(f"learning rate must be positive, got {self.learning_rate}")
        if not 0 <= self.momentum < 1:
            raise InputError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not self.epsilon > 0:
            raise InputError(f"epsilon must be positive, got {self.epsilon}")
        if not 0.0 <= self.weight_decay <= MAX_WEIGHT_DECAY:  # also refuses NaN
            raise InputError(
                f"weight decay must lie in [0, {MAX_WEIGHT_DECAY:g}], got {self.weight_decay}"
            )
        if self.weight_decay and self.name is not OptimizerName.ADAM:
            raise InputError(f"weight decay needs the adam optimizer, not {self.name}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (travels in round announcements)."""
        return {**asdict(self), "name": str(self.name)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimizerSpec:
        """Inverse of :meth:`to_dict`; raises :class:`InputError` on bad input."""
        try:
            return cls(
                name=OptimizerName(data["name"]),
                learning_rate=float(data["learning_rate"]),
                momentum=float(data.get("momentum", 0.0)),
                epsilon=float(data.get("epsilon", 1e-7)),
                weight_decay=float(data.get("weight_decay", 0.0)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"malformed optimizer settings {data!r}: {exc}") from exc

    def to_keras(self) -> Any:
        """The equivalent Keras optimizer (for training on a device without TFF)."""
        tf = require("tensorflow")
        if self.name is OptimizerName.SGD:
            return tf.keras.optimizers.SGD(self.learning_rate, momentum=self.momentum)
        if self.name is OptimizerName.ADAM:
            # Keras decays each weight by learning_rate * weight_decay * w before the Adam
            # step, TFF's build_adamw in the same step: the same update.
            decay = self.weight_decay or None
            return tf.keras.optimizers.Adam(
                self.learning_rate, epsilon=self.epsilon, weight_decay=decay
            )
        raise InputError(f"optimizer {self.name} is only available on the server")


DEFAULT_SERVER_OPTIMIZER = OptimizerSpec(name=OptimizerName.SGD, learning_rate=1.0, momentum=0.0)
"""The server step of ``privadx simulate`` and ``privadx gateway`` by default."""


def pairing_warning(client: OptimizerSpec, server: OptimizerSpec) -> str | None:
    """Why the sites' optimizer and the server's are a measured bad pair, or ``None``.

    Decoupled weight decay on the sites gives every site's update the same shrink-everything
    component, and server momentum keeps adding it up: with weight decay 0.3 and momentum 0.9
    two of three PneumoniaMNIST runs diverged in their last rounds (training loss up four- to
    fivefold, test AUC from 0.96-0.97 to 0.62 and 0.75; docs/benchmarks.md). Each alone
    trains well.
    """
    if client.weight_decay > 0 and server.name is OptimizerName.SGD and server.momentum > 0:
        return (
            f"--weight-decay {client.weight_decay:g} with --server-momentum {server.momentum:g}: "
            "the momentum accumulates the decay; runs with 0.3 and 0.9 diverged in their last "
            "rounds. Use one or the other."
        )
    return None


class LrSchedule(StrEnum):
    """How the sites' learning rate changes over the rounds of a run.

    The gateway announces each round's rate (a device needs no schedule of its own); the
    simulation sets the same rate on TFF's client optimizer.
    """

    CONSTANT = "constant"
    COSINE = "cosine"
    """Half a cosine from the full rate in round 1 down toward 0 after the last round
    (round ``r`` of ``R``: ``(1 + cos(pi (r - 1) / R)) / 2``)."""

    def factor(self, round_num: int, rounds: int) -> float:
        """The multiple of the base learning rate used in ``round_num`` (1-based) of ``rounds``."""
        if self is LrSchedule.CONSTANT:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (round_num - 1) / max(rounds, 1)))

    def apply(self, spec: OptimizerSpec, round_num: int, rounds: int) -> OptimizerSpec:
        """``spec`` with the learning rate of ``round_num``."""
        return replace(spec, learning_rate=spec.learning_rate * self.factor(round_num, rounds))


DEFAULT_LR_SCHEDULE = LrSchedule.COSINE
"""The sites' learning-rate schedule of ``privadx simulate`` and ``privadx gateway`` by default
(measured over 3 seeds in docs/benchmarks.md#model-quality)."""
