"""Privacy accounting for DP-FedAvg (dp-accounting, RDP)."""

from __future__ import annotations

import argparse

import pytest

from privadx.common.errors import InputError
from tff_core.privacy import DpSpec, affordable_rounds, calibrated_noise, epsilon

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


@pytest.mark.parametrize(
    ("target", "rounds", "clients"), [(1.0, 20, 100), (8.0, 30, 20), (3.0, 5, 7)]
)
def test_calibrated_noise_is_the_smallest_that_fits_the_budget(
    target: float, rounds: int, clients: int
) -> None:
    z = calibrated_noise(target, rounds, sampling_rate=clients / 100)
    spec = DpSpec(adaptive=False, noise_multiplier=z, clients_per_round=clients, total_clients=100)
    assert epsilon(spec, rounds) <= target
    less = DpSpec(
        adaptive=False, noise_multiplier=z * 0.998, clients_per_round=clients, total_clients=100
    )
    assert epsilon(less, rounds) > target  # 4 significant digits: within 0.2% of the least
    assert len(f"{z:.6g}".replace(".", "").strip("0")) <= 4


def test_calibrated_noise_matches_a_measured_run() -> None:
    # docs/results.md: 100 sites every round, z = 3.0, 20 rounds -> epsilon 7.53 (rounded)
    assert 2.99 <= calibrated_noise(7.53, 20, sampling_rate=1.0) <= 3.01
    # more rounds or a smaller budget need more noise
    assert calibrated_noise(8.0, 40, sampling_rate=1.0) > calibrated_noise(
        8.0, 20, sampling_rate=1.0
    )
    assert calibrated_noise(3.0, 20, sampling_rate=1.0) > calibrated_noise(
        8.0, 20, sampling_rate=1.0
    )


@pytest.mark.parametrize(
    ("target", "rounds", "rate"), [(0.0, 5, 1.0), (3.0, 0, 1.0), (3.0, 5, 1.5), (1e-9, 5, 1.0)]
)
def test_calibrated_noise_refuses_what_cannot_be_met(
    target: float, rounds: int, rate: float
) -> None:
    with pytest.raises(InputError):
        calibrated_noise(target, rounds, sampling_rate=rate)


def test_dp_noise_auto_lets_every_round_run_within_the_budget() -> None:
    from privadx.commands._privacy import dp_spec

    args = argparse.Namespace(
        dp_noise="auto", target_epsilon=3.0, dp_clip=0.5, dp_fixed_clip=True, dp_delta=1e-5
    )
    spec = dp_spec(args, sites_per_round=30, sites=100, rounds=25)
    assert spec is not None and spec.target_epsilon == 3.0
    assert affordable_rounds(spec, 25) == 25 and 2.99 < epsilon(spec, 25) <= 3.0
    assert affordable_rounds(spec, 26) == 25  # the budget is spent
    with pytest.raises(InputError, match="pass --target-epsilon"):
        dp_spec(argparse.Namespace(**{**vars(args), "target_epsilon": None}), sites_per_round=30,
                sites=100, rounds=25)  # fmt: skip
