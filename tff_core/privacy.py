"""Client-level differential privacy: DP-FedAvg and its privacy accounting.

DP-FedAvg (McMahan et al., "Learning Differentially Private Recurrent Language Models",
ICLR 2018): each site's update is clipped to L2 norm C and Gaussian noise of standard
deviation z * C is added once, to the sum; the updates are averaged unweighted (a site's
influence must not depend on the example count it reports). With ``adaptive`` clipping
(Andrew et al., "Differentially Private Learning with Adaptive Clipping", NeurIPS 2021) C
follows a privately estimated quantile of the update norms; TFF then splits the noise between
the sum and the quantile estimate so that z is still the noise multiplier of the whole.

The aggregator is TFF's (``DifferentiallyPrivateFactory.gaussian_adaptive`` or
``gaussian_fixed``). The accountant is ``dp-accounting``'s RDP
accountant over ``rounds`` compositions of a Gaussian mechanism with Poisson sampling at rate
q = sites per round / sites (the usual approximation for fixed-size sampling without
replacement; with every site in every round, q = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from privadx.common.deps import require
from privadx.common.errors import InputError

DEFAULT_DELTA = 1e-5


def adaptive_clipping_allows(noise_multiplier: float, clients_per_round: int) -> bool:
    """Whether TFF's adaptive clipping can run at this noise with this many sites per round.

    TFF gives the clipped-count estimate noise 0.05 * k and needs 2 * that > z to leave noise
    for the sum: adaptive clipping needs k > 10 z sites per round.
    """
    return 0.05 * clients_per_round * 2 > noise_multiplier


@dataclass(frozen=True, kw_only=True)
class DpSpec:
    """DP-FedAvg settings of a run."""

    noise_multiplier: float
    clients_per_round: int
    total_clients: int
    clip: float = 0.1
    """Clipping norm (the initial one with ``adaptive``)."""
    adaptive: bool = True
    target_quantile: float = 0.5
    delta: float = DEFAULT_DELTA
    target_epsilon: float | None = None
    """Stop before the round that would push epsilon past this."""

    def __post_init__(self) -> None:
        if not self.noise_multiplier > 0 or not self.clip > 0:
            raise InputError("--dp-noise and --dp-clip must be positive")
        if not 1 <= self.clients_per_round <= self.total_clients:
            raise InputError("sites per round must lie in [1, number of sites]")
        if not 0 < self.delta < 1 or not 0 < self.target_quantile < 1:
            raise InputError("delta and the target quantile must lie in (0, 1)")
        if self.adaptive and not adaptive_clipping_allows(
            self.noise_multiplier, self.clients_per_round
        ):
            raise InputError(
                f"adaptive clipping at noise {self.noise_multiplier} needs more than "
                f"{10 * self.noise_multiplier:g} sites per round (got {self.clients_per_round}); "
                "use --dp-fixed-clip or more sites per round"
            )
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise InputError(f"--target-epsilon must be positive, got {self.target_epsilon}")

    @property
    def sampling_rate(self) -> float:
        """q: the chance that a given site takes part in a round."""
        return self.clients_per_round / self.total_clients

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (run folder, model manifest)."""
        return {
            "mechanism": "DP-FedAvg, Gaussian, client level",
            "noise_multiplier": self.noise_multiplier,
            "clip": self.clip,
            "adaptive_clipping": self.adaptive,
            "target_quantile": self.target_quantile if self.adaptive else None,
            "sampling_rate": self.sampling_rate,
            "delta": self.delta,
            "accountant": "RDP (dp-accounting), Poisson sampling",
        }


def epsilon(spec: DpSpec, rounds: int) -> float:
    """Epsilon at ``spec.delta`` after ``rounds`` rounds (0 rounds: 0)."""
    if rounds <= 0:
        return 0.0
    return _rdp_epsilon(spec.noise_multiplier, spec.sampling_rate, rounds, spec.delta)


def _rdp_epsilon(noise: float, sampling_rate: float, rounds: int, delta: float) -> float:
    dp = require("dp_accounting")
    event = dp.GaussianDpEvent(noise)
    if sampling_rate < 1:
        event = dp.PoissonSampledDpEvent(sampling_rate, event)
    accountant = dp.rdp.RdpAccountant()
    accountant.compose(event, rounds)
    return float(accountant.get_epsilon(delta))


def calibrated_noise(
    target_epsilon: float, rounds: int, *, sampling_rate: float, delta: float = DEFAULT_DELTA
) -> float:
    """The least noise multiplier that keeps ``rounds`` rounds within ``target_epsilon``.

    At sampling rate ``sampling_rate`` and ``delta``; to 4 significant digits, rounded up.

    Raises:
        InputError: A setting is out of range, or no noise multiplier up to 10,000 meets it.
    """
    if not target_epsilon > 0 or rounds < 1 or not 0 < sampling_rate <= 1 or not 0 < delta < 1:
        raise InputError(
            "noise calibration needs a positive epsilon and rounds, delta in (0, 1) and "
            "sites per round between 1 and the number of sites"
        )

    def fits(z: float) -> bool:
        return _rdp_epsilon(z, sampling_rate, rounds, delta) <= target_epsilon

    high = 1.0
    while not fits(high):  # epsilon falls as the noise grows: bound it, then bisect
        high *= 2
        if high > 10_000:
            raise InputError(
                f"epsilon {target_epsilon:g} over {rounds} rounds needs a noise multiplier "
                "above 10,000; raise the target or run fewer rounds"
            )
    low = high / 2 if high > 1.0 else 0.0
    while high - low > 1e-5 * high:
        mid = (low + high) / 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    scale = 10.0 ** (3 - math.floor(math.log10(high)))
    return math.ceil(high * scale) / scale


def affordable_rounds(spec: DpSpec, wanted: int) -> int:
    """How many of ``wanted`` rounds fit under ``spec.target_epsilon`` (all without one)."""
    if spec.target_epsilon is None:
        return wanted
    low, high = 0, wanted  # epsilon grows with the rounds: binary search the last fit
    while low < high:
        mid = (low + high + 1) // 2
        if epsilon(spec, mid) <= spec.target_epsilon:
            low = mid
        else:
            high = mid - 1
    return low


def tff_dp_aggregator(spec: DpSpec) -> Any:
    """TFF's unweighted DP aggregation factory for ``spec``."""
    tff = require("tensorflow_federated")
    if spec.adaptive:
        return tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
            noise_multiplier=spec.noise_multiplier,
            clients_per_round=spec.clients_per_round,
            initial_l2_norm_clip=spec.clip,
            target_unclipped_quantile=spec.target_quantile,
        )
    return tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
        noise_multiplier=spec.noise_multiplier,
        clients_per_round=spec.clients_per_round,
        clip=spec.clip,
    )


def noised_mean(total: np.ndarray, spec: DpSpec, rng: np.random.Generator) -> np.ndarray:
    """DP-FedAvg's server step on a sum of clipped updates (from secure aggregation).

    The same computation as TFF's ``gaussian_fixed`` aggregator after its per-site clipping:
    Gaussian noise of standard deviation ``z * C`` is added once, to the sum, which is then
    divided by the expected number of sites per round (a fixed denominator, so the mean's
    sensitivity does not depend on how many sites took part).
    """
    if spec.adaptive:
        raise InputError("noise on a secure sum needs fixed clipping (--dp-fixed-clip)")
    noise = rng.normal(0.0, spec.noise_multiplier * spec.clip, size=total.shape)
    return (np.asarray(total, np.float64) + noise) / spec.clients_per_round


def privacy_record(spec: DpSpec, rounds: int) -> dict[str, Any]:
    """The guarantee after ``rounds`` rounds, with the settings that give it."""
    return {**spec.to_dict(), "rounds": rounds, "epsilon": epsilon(spec, rounds)}
