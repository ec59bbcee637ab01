"""Differential-privacy options shared by ``simulate`` and ``gateway``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from privadx.commands._common import positive_float

if TYPE_CHECKING:
    from tff_core.privacy import DpSpec


def add_dp_options(p: argparse.ArgumentParser, note: str) -> None:
    """``--dp-noise``, ``--dp-clip``, ``--dp-fixed-clip``, ``--dp-delta``, ``--target-epsilon``."""
    dp = p.add_argument_group("differential privacy (client level, DP-FedAvg)", note)
    dp.add_argument(
        "--dp-noise", type=positive_float, default=None, help="noise multiplier z (turns DP on)"
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


def dp_spec(args: argparse.Namespace, *, sites_per_round: int, sites: int) -> DpSpec | None:
    """The run's DP settings from the options (``None`` without ``--dp-noise``)."""
    from privadx.common.errors import InputError
    from tff_core.privacy import DpSpec

    if args.dp_noise is None:
        if args.target_epsilon is not None:
            raise InputError("--target-epsilon needs differential privacy: pass --dp-noise")
        return None
    return DpSpec(
        noise_multiplier=args.dp_noise,
        clients_per_round=sites_per_round,
        total_clients=sites,
        clip=args.dp_clip,
        adaptive=not args.dp_fixed_clip,
        delta=args.dp_delta,
        target_epsilon=args.target_epsilon,
    )
