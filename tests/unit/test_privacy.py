"""Privacy accounting for DP-FedAvg (dp-accounting, RDP)."""

from __future__ import annotations

import pytest

from privadx.common.errors import InputError
from tff_core.privacy import DpSpec, affordable_rounds, epsilon

pytest.importorskip("dp_accounting")


def test_epsilon_matches_the_measured_reference() -> None:
    # shared/NOTES.md: 10 sites all sampled every round, z = 1.0, 50 rounds -> epsilon ~57
    full = DpSpec(adaptive=False, noise_multiplier=1.0, clients_per_round=10, total_clients=10)
    assert 50 < epsilon(full, 50) < 65
    assert epsilon(full, 0) == 0.0


def test_epsilon_grows_with_rounds_and_shrinks_with_noise_and_sampling() -> None:
    spec = DpSpec(adaptive=False, noise_multiplier=1.0, clients_per_round=10, total_clients=100)
    eps = [epsilon(spec, r) for r in (1, 10, 50)]
    assert eps == sorted(eps) and eps[0] > 0
    noisier = DpSpec(adaptive=False, noise_multiplier=2.0, clients_per_round=10, total_clients=100)
    assert epsilon(noisier, 50) < eps[-1]
    full = DpSpec(adaptive=False, noise_multiplier=1.0, clients_per_round=100, total_clients=100)
    assert epsilon(full, 50) > eps[-1]  # sampling amplifies privacy


def test_target_epsilon_stops_before_it_is_exceeded() -> None:
    spec = DpSpec(
        adaptive=False,
        noise_multiplier=1.0,
        clients_per_round=10,
        total_clients=100,
        target_epsilon=3.0,
    )
    rounds = affordable_rounds(spec, 500)
    assert 0 < rounds < 500
    assert epsilon(spec, rounds) <= 3.0 < epsilon(spec, rounds + 1)
    assert affordable_rounds(DpSpec(adaptive=False, noise_multiplier=1.0, clients_per_round=1,
                                    total_clients=2), 7) == 7  # fmt: skip


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InputError):
        DpSpec(noise_multiplier=0.0, clients_per_round=1, total_clients=1)
    with pytest.raises(InputError):
        DpSpec(noise_multiplier=1.0, clients_per_round=5, total_clients=2)
    with pytest.raises(InputError, match="more than 10 sites per round"):
        DpSpec(noise_multiplier=1.0, clients_per_round=10, total_clients=100)
    DpSpec(noise_multiplier=1.0, clients_per_round=11, total_clients=100)
