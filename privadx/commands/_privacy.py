"""Differential-privacy options shared by ``simulate`` and ``gateway``."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from privadx.commands._common import positive_float

if TYPE_CHECKING:
    from tff_core.privacy import DpSpec

log = logging.getLogger(__name__)


def add_dp_options(p: argparse.ArgumentParser, note: str) -> None:
    """``--dp-noise``, ``--dp-clip``, ``--dp-fixed-clip``, ``--dp-delta``, ``--target-epsilon``."""
    dp = p.add_argument_group("differential privacy (client level, DP-FedAvg)", note)
    dp.add_argument(
        "--dp-noise",
        type=noise_multiplier,
        default=None,
        metavar="Z|auto",
        help="noise multiplier z (turns DP on); 'auto' calibrates it so that --rounds rounds "
        "spend exactly --target-epsilon",
    )
    dp.add_argument(
        "--dp-clip", type=positive_float, default=0.1, help="clipping norm (initial if adaptive)"
    )
    dp.add_argument(
        "--dp-fixed-clip", action="store_true", help="fixed clipping instead of adaptive"
    )
    dp.add_argument("--dp-delta", type=positive_float, default=1e-5)
    dp.add_argument(
        "--target-epsilon",
        type=positive_float,
        default=None,
        help="stop before the round that would exceed this epsilon",
    )


AUTO = "auto"


def noise_multiplier(text: str) -> float | str:
    """Argparse type of ``--dp-noise``: a number above 0 or ``auto``."""
    return AUTO if text.strip().lower() == AUTO else positive_float(text)


def dp_spec(
    args: argparse.Namespace, *, sites_per_round: int, sites: int, rounds: int
) -> DpSpec | None:
    """The run's DP settings from the options (``None`` without ``--dp-noise``).

    ``--dp-noise auto`` takes the smallest noise multiplier with which ``rounds`` rounds stay
    within ``--target-epsilon``.
    """
    from privadx.common.errors import InputError
    from tff_core.privacy import DpSpec, calibrated_noise

    if args.dp_noise is None:
        if args.target_epsilon is not None:
            raise InputError("--target-epsilon needs differential privacy: pass --dp-noise")
        return None
    noise = args.dp_noise
    if noise == AUTO:
        if args.target_epsilon is None:
            raise InputError("--dp-noise auto calibrates to a budget: pass --target-epsilon")
        noise = calibrated_noise(
            args.target_epsilon, rounds, sampling_rate=sites_per_round / sites, delta=args.dp_delta
        )
        log.info(
            "--dp-noise auto: noise multiplier %g keeps %d rounds within epsilon %g",
            noise,
            rounds,
            args.target_epsilon,
        )
    return DpSpec(
        noise_multiplier=noise,
        clients_per_round=sites_per_round,
        total_clients=sites,
        clip=args.dp_clip,
        adaptive=not args.dp_fixed_clip,
        delta=args.dp_delta,
        target_epsilon=args.target_epsilon,
    )
