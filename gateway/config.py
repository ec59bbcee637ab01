"""The gateway's typed configuration."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.optim import DEFAULT_SERVER_OPTIMIZER, LrSchedule, OptimizerSpec
from models.settings import LocalTraining
from privadx.common.errors import InputError
from privadx.common.mqtt_link import BrokerAddress, MqttVersion
from privadx.common.task import TaskSpec
from privadx.common.trust.identity import check_security
from privadx.common.weighting import DEFAULT_MAX_WEIGHT_RATIO
from privadx.common.wire.chunks import DEFAULT_CHUNK_SIZE
from privadx.common.wire.secure import SecureSettings
from privadx.common.wire.topics import check_name
from tff_core.privacy import DpSpec
from tff_core.robust import DEFAULT_TRIM, AggregationRule


def default_run_id() -> str:
    """A run id from the current UTC time and 48 random bits.

    For example ``run-20261127-143501-3f9a0c12b7e4``: two runs started in one second differ.
    """
    return time.strftime("run-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(6)


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Everything a gateway run depends on."""

    broker: BrokerAddress
    out: Path
    task: TaskSpec
    """What the federation learns (classes, input size, model): the gateway holds no images."""
    eval_data: str | None = None
    """Optional public benchmark (MedMNIST name or .npz) the coordinating centre may hold:
    every round's model is also scored on its test split (threshold from its validation
    split), reported apart from the federated evaluation. Without it no image file is opened."""
    data_dir: Path | None = None
    federation: str = "default"
    run_id: str = field(default_factory=default_run_id)
    mqtt_version: MqttVersion = MqttVersion.V5
    identity: Path | None = None
    """Identity folder (``privadx certs``): mutual TLS with the broker, model signing, and the
    CA against which site updates are verified."""
    insecure: bool = False
    """Allow plain ``mqtt://``."""
    allow_unsigned: bool = False
    """Run without an identity: publish unsigned models and accept unsigned updates."""
    rounds: int = 5
    min_sites: int = 2
    round_timeout: float = 600.0
    eval_timeout: float | None = None
    """Seconds the sites have to report their evaluation of a new model (default: the round
    timeout; a site evaluates after training the next round)."""
    start_timeout: float = 600.0
    """How long to wait for ``min_sites`` sites to come online before round 1."""
    max_retries: int = 3
    """How often a round below quorum at its deadline is announced again before giving up."""
    training: LocalTraining = field(default_factory=LocalTraining)
    client_lr_schedule: LrSchedule = LrSchedule.CONSTANT
    """How the sites' learning rate changes over the rounds (each announcement carries its
    round's rate)."""
    server_optimizer: OptimizerSpec = DEFAULT_SERVER_OPTIMIZER
    aggregation: AggregationRule = AggregationRule.NORM_BOUND
    """How updates are combined: TFF's robust aggregator by default (see tff_core/robust.py)."""
    trim: float = DEFAULT_TRIM
    """Fraction trimmed at each end by ``trimmed-mean``."""
    secure: SecureSettings | None = None
    """Secure aggregation: the gateway sees only the sum of the sites' clipped updates."""
    dp: DpSpec | None = None
    """DP-FedAvg: clipping and Gaussian noise on the sum (TFF's aggregator on plain updates;
    sites clip and the gateway adds the noise to a secure sum)."""
    max_weight_ratio: float = DEFAULT_MAX_WEIGHT_RATIO
    """A site's example count (its weight) is capped at this multiple of the median of the
    other sites' reported counts in the round; 0 turns the cap off."""
    seed: int = 0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    export_onnx: bool = True
    evaluate: bool = True

    def __post_init__(self) -> None:
        check_security(
            self.broker, self.identity, insecure=self.insecure, allow_unsigned=self.allow_unsigned
        )
        check_name("federation name", self.federation)
        check_name("run id", self.run_id)
        if self.rounds < 1:
            raise InputError(f"--rounds must be at least 1, got {self.rounds}")
        if self.min_sites < 1:
            raise InputError(f"--min-sites must be at least 1, got {self.min_sites}")
        if not self.max_weight_ratio >= 0:
            raise InputError(f"--max-weight-ratio must be 0 or more, got {self.max_weight_ratio}")
        self._check_privacy()
        if self.secure is not None and self.aggregation is not AggregationRule.MEAN:
            raise InputError(
                f"--aggregation {self.aggregation} needs each site's update, which secure "
                "aggregation hides; use --aggregation mean (sites clip their updates to "
                "--secagg-clip before the secure sum)"
            )
        if not 0 <= self.trim < 0.5:
            raise InputError(f"--trim must lie in [0, 0.5), got {self.trim}")
        if not self.round_timeout > 0:
            raise InputError(f"--round-timeout must be positive, got {self.round_timeout}")
        if self.eval_timeout is not None and not self.eval_timeout > 0:
            raise InputError(f"--eval-timeout must be positive, got {self.eval_timeout}")

    def training_for(self, round_num: int) -> LocalTraining:
        """What round ``round_num``'s announcement asks of the sites."""
        return self.training.for_round(self.client_lr_schedule, round_num, self.rounds)

    def resume_settings(self) -> dict[str, Any]:
        """Settings a resumed run must share with the run it continues (in its checkpoint)."""
        return {
            "federation": self.federation,
            "task": self.task.fingerprint(),
            "training": self.training.to_dict(),
            "client_lr_schedule": str(self.client_lr_schedule),
            "server_optimizer": self.server_optimizer.to_dict(),
            "aggregation": str(self.aggregation),
            "trim": self.trim,
            "max_weight_ratio": self.max_weight_ratio,
            "secure_aggregation": self.secure.to_dict() if self.secure else None,
            "differential_privacy": self.dp.to_dict() if self.dp else None,
            "seed": self.seed,
        }

    def record(self) -> dict[str, Any]:
        """The run folder's ``config.json``."""
        return {
            **self.resume_settings(),
            "broker": str(self.broker),
            "run_id": self.run_id,
            "eval_data": self.eval_data,
            "rounds": self.rounds,
            "min_sites": self.min_sites,
            "round_timeout": self.round_timeout,
            "identity": str(self.identity) if self.identity else None,
            "insecure": self.insecure,
            "allow_unsigned": self.allow_unsigned,
        }

    @property
    def evaluation_timeout(self) -> float:
        """Seconds the sites have to report their evaluation of a new model."""
        return self.round_timeout if self.eval_timeout is None else self.eval_timeout

    def _check_privacy(self) -> None:
        if self.dp is None:
            return
        if self.aggregation is not AggregationRule.MEAN:
            raise InputError(
                f"--aggregation {self.aggregation} cannot be combined with differential privacy: "
                "DP-FedAvg clips every update and averages them unweighted (use mean)"
            )
        if self.secure is None:
            return
        if self.dp.adaptive:
            raise InputError(
                "differential privacy on a secure sum needs --dp-fixed-clip: adaptive clipping "
                "would need every site's update norm"
            )
        if self.secure.weighted or self.secure.clip != self.dp.clip:
            raise InputError("with DP the secure sum must be unweighted and clip at --dp-clip")
