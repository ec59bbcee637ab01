"""Local-training and server-optimizer options, shared by ``simulate``, ``gateway``, ``demo``.

One definition, so a simulation and a deployment are asked the same way and default alike
(the defaults are :data:`models.settings.DEFAULT_TRAINING`,
:data:`models.optim.DEFAULT_LR_SCHEDULE` and :data:`models.optim.DEFAULT_SERVER_OPTIMIZER`).
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from models.augment import MAX_BRIGHTNESS, MAX_CONTRAST, MAX_SHIFT, Augmentation
from models.optim import DEFAULT_LR_SCHEDULE, DEFAULT_SERVER_OPTIMIZER, LrSchedule
from models.settings import DEFAULT_TRAINING, LocalTraining
from privadx.commands._common import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from models.optim import OptimizerSpec

log = logging.getLogger(__name__)


def add_local_training_options(p: argparse.ArgumentParser) -> None:
    """The local-training options: epochs, steps, batch, local terms, augmentation, optimizer."""
    d = DEFAULT_TRAINING
    g = p.add_argument_group("local training (what each round asks of a site)")
    g.add_argument(
        "--local-epochs",
        type=positive_int,
        default=d.local_epochs,
        help="epochs each site trains per round (default: %(default)s)",
    )
    g.add_argument(
        "--min-local-steps",
        type=non_negative_int,
        default=d.min_local_steps,
        help="fewest optimizer steps a site makes in a round: a site too small for them in "
        "--local-epochs trains more whole epochs (0: off; default: %(default)s)",
    )
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    g.add_argument(
        "--proximal-mu",
        type=non_negative_float,
        default=d.proximal_mu,
        help="FedProx: each local step also pulls a site's weights toward the round's global "
        "model with strength MU (adds MU/2 ||w - w_global||^2 to the loss; 0: off; "
        "default: %(default)s)",
    )
    g.add_argument(
        "--logit-adjust",
        type=non_negative_float,
        default=d.logit_adjust,
        metavar="TAU",
        help="logit adjustment for label-skewed sites: each site trains on the cross-entropy "
        "of logits + TAU * log(its own class frequencies), so its update does not teach the "
        "model its class balance; the model's outputs are unchanged (0: off; "
        "default: %(default)s)",
    )
    g.add_argument(
        "--augment",
        choices=[str(a) for a in Augmentation],
        default=str(d.augmentation),
        help=f"how sites perturb their training images: none; shift (up to {MAX_SHIFT} pixels); "
        f"strong (the shift, a mirror image half the time, contrast +-{MAX_CONTRAST * 100:.0f}%%, "
        f"brightness +-{MAX_BRIGHTNESS * 100:.0f}%% of the range) (default: %(default)s)",
    )
    g.add_argument(
        "--client-optimizer",
        choices=("sgd", "adam"),
        default=str(d.optimizer.name),
        help="optimizer of local training (default: %(default)s)",
    )
    g.add_argument(
        "--client-lr",
        type=positive_float,
        default=d.optimizer.learning_rate,
        help="local learning rate (default: %(default)s)",
    )
    g.add_argument(
        "--client-lr-schedule",
        choices=[str(s) for s in LrSchedule],
        default=str(DEFAULT_LR_SCHEDULE),
        help="the sites' learning rate over the rounds: constant, or cosine (half a cosine "
        "from --client-lr toward 0; each announcement carries its round's rate) "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--client-momentum", type=float, default=0.9, help="momentum of client sgd (default: 0.9)"
    )
    g.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=d.optimizer.weight_decay,
        help="decoupled weight decay of client adam (AdamW): each local step also shrinks "
        "every weight by learning rate x this (0: off; default: %(default)s)",
    )


def add_server_optimizer_options(p: argparse.ArgumentParser) -> None:
    """``--server-optimizer``, ``--server-lr``, ``--server-momentum``."""
    d = DEFAULT_SERVER_OPTIMIZER
    g = p.add_argument_group("server optimizer (applied to the averaged update)")
    g.add_argument(
        "--server-optimizer",
        choices=("sgd", "adam", "yogi"),
        default=str(d.name),
        help="sgd with --server-lr 1 and no momentum is plain FedAvg; momentum gives FedAvgM, "
        "adam FedAdam, yogi FedYogi (default: %(default)s)",
    )
    g.add_argument(
        "--server-lr", type=positive_float, default=d.learning_rate, help="(default: %(default)s)"
    )
    g.add_argument(
        "--server-momentum",
        type=float,
        default=d.momentum,
        help="heavy-ball momentum of server sgd (default: %(default)s)",
    )


def local_training(args: argparse.Namespace, **extra: Any) -> LocalTraining:
    """The local training the options ask for (``extra``: further ``LocalTraining`` fields)."""
    return LocalTraining(
        local_epochs=args.local_epochs,
        min_local_steps=args.min_local_steps,
        proximal_mu=args.proximal_mu,
        logit_adjust=args.logit_adjust,
        augmentation=Augmentation(args.augment),
        batch_size=args.batch_size,
        optimizer=client_optimizer(args),
        **extra,
    )


def client_optimizer(args: argparse.Namespace) -> OptimizerSpec:
    """The client optimizer the options ask for."""
    from models.optim import OptimizerName, OptimizerSpec

    return OptimizerSpec(
        name=OptimizerName(args.client_optimizer),
        learning_rate=args.client_lr,
        momentum=args.client_momentum if args.client_optimizer == "sgd" else 0.0,
        weight_decay=args.weight_decay,
    )


def server_optimizer(args: argparse.Namespace) -> OptimizerSpec:
    """The server optimizer the options ask for (adaptive ones with epsilon 1e-3).

    Logs a warning when it and the client optimizer are a pair measured to misbehave
    (:func:`models.optim.pairing_warning`).
    """
    from models.optim import OptimizerName, OptimizerSpec, pairing_warning

    sgd = args.server_optimizer == "sgd"
    spec = OptimizerSpec(
        name=OptimizerName(args.server_optimizer),
        learning_rate=args.server_lr,
        momentum=args.server_momentum if sgd else 0.0,
        epsilon=1e-7 if sgd else 1e-3,
    )
    warning = pairing_warning(client_optimizer(args), spec)
    if warning:
        log.warning("%s", warning)
    return spec
