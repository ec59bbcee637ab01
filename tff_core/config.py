"""The simulation's typed configuration, built in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.augment import Augmentation
from models.optim import DEFAULT_SERVER_OPTIMIZER, LrSchedule, OptimizerName, OptimizerSpec
from models.settings import DEFAULT_SIMULATION_ROUNDS, LocalTraining
from models.spec import Architecture, ModelSpec
from privadx.common.data.partition import PartitionSpec
from privadx.common.errors import InputError
from privadx.common.evaluation.holdout import DEFAULT_EVAL_FRACTION, check_fraction
from tff_core.privacy import DpSpec
from tff_core.robust import AggregationRule


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """Everything a ``privadx simulate`` run depends on."""

    dataset: str
    out: Path
    data_dir: Path | None = None
    partition: PartitionSpec = field(default_factory=PartitionSpec)
    rounds: int = DEFAULT_SIMULATION_ROUNDS
    local_epochs: int = 2
    clients_per_round: int | None = None
    """Sites sampled per round (all when ``None``)."""
    batch_size: int = 32
    min_local_steps: int = LocalTraining().min_local_steps
    """Fewest optimizer steps a site makes in a round (see ``LocalTraining.min_local_steps``)."""
    client_optimizer: OptimizerSpec = field(
        default_factory=lambda: OptimizerSpec(
            name=OptimizerName.ADAM, learning_rate=1e-3, momentum=0.0
        )
    )
    """Adam on the sites: on Dirichlet(0.5) PneumoniaMNIST it left the initial plateau within 2
    rounds where SGD(0.05, momentum 0.9) still sat at the class prior after 9."""
    proximal_mu: float = LocalTraining().proximal_mu
    """FedProx strength of the sites' local steps (see ``LocalTraining.proximal_mu``)."""
    logit_adjust: float = LocalTraining().logit_adjust
    """Logit-adjustment strength of the sites' loss (see ``LocalTraining.logit_adjust``)."""
    augmentation: Augmentation = LocalTraining().augmentation
    """How sites (and the pooled baseline) perturb their training images."""
    client_lr_schedule: LrSchedule = LrSchedule.CONSTANT
    """How the sites' learning rate changes over the rounds (as a gateway would announce)."""
    server_optimizer: OptimizerSpec = DEFAULT_SERVER_OPTIMIZER
    dp: DpSpec | None = None
    """Client-level differential privacy (replaces ``aggregation`` when set)."""
    aggregation: AggregationRule = AggregationRule.NORM_BOUND
    """Model aggregator: TFF's robust aggregator (norm bounding) by default, or the plain mean."""
    arch: Architecture = Architecture.CNN
    width_multiplier: float = 1.0
    """The model's channels times this (``ModelSpec.width_multiplier``)."""
    seed: int = 0
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    """Share of each class of every site's images held out for federated evaluation (never
    trained on), as the edge agents do."""
    personalise: bool = False
    """After training, let each site refit the classifier head to its own images and report
    its held-out figures with the global and the personal head (:mod:`models.personalise`)."""
    centralized: bool = False
    """Also train the centralized baseline with the same model and compute budget."""
    export_onnx: bool = True

    def __post_init__(self) -> None:
        if not self.aggregation.in_tff:
            raise InputError(
                f"--aggregation {self.aggregation} runs in the gateway only; the simulation "
                "uses TFF's aggregators (mean, norm-bound)"
            )
        if self.rounds < 1:
            raise InputError(f"--rounds must be at least 1, got {self.rounds}")
        check_fraction(self.eval_fraction)
        ModelSpec(arch=self.arch, width_multiplier=self.width_multiplier)  # validates the width
        self.training  # noqa: B018  (validates the local-training settings)
        k = self.clients_per_round
        if k is not None and not 1 <= k <= self.partition.sites:
            raise InputError(
                f"--clients-per-round must lie in [1, {self.partition.sites}], got {k}"
            )

    @property
    def training(self) -> LocalTraining:
        """What a round asks of each site, as a gateway would announce it."""
        return LocalTraining(
            local_epochs=self.local_epochs,
            batch_size=self.batch_size,
            optimizer=self.client_optimizer,
            min_local_steps=self.min_local_steps,
            proximal_mu=self.proximal_mu,
            logit_adjust=self.logit_adjust,
            augmentation=self.augmentation,
        )

    def training_for(self, round_num: int) -> LocalTraining:
        """What round ``round_num`` asks of each site (the scheduled learning rate)."""
        return self.training.for_round(self.client_lr_schedule, round_num, self.rounds)

    @property
    def sites_per_round(self) -> int:
        """How many sites train in each round."""
        return self.clients_per_round or self.partition.sites

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the configuration."""
        record = asdict(self)
        record["out"] = str(self.out)
        record["data_dir"] = str(self.data_dir) if self.data_dir else None
        return record
