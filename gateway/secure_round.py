"""The gateway's bookkeeping of one secure-aggregation attempt: steps, members, the sum.

Pure logic, no MQTT: the service offers it decoded messages and publishes what it returns.
The gateway routes keys and encrypted shares between the sites and, at the end, learns the
sum of the inputs of U3 (and their total example count) and nothing else: a single site's
masked input is indistinguishable from random numbers, and the shares it forwards are
encrypted for their recipients.

The same bookkeeping sums a training round's updates and an evaluation's reports: the
input's encoding (``modulus``) says which numbers a masked input may hold.

The sets follow Bonawitz et al.: U1 advertised keys, U2 (within U1) shared them, U3 (within
U2) sent a masked input; any t of U3 then unmask. A step closes when every member has
answered or its deadline passes; fewer than t members at a step fail the attempt with
:class:`SecAggError` and the service announces the round again (fresh keys, no state
carried over).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gateway.rounds import Verify
from privadx.common.errors import InputError
from privadx.common.secagg.protocol import Advertisement, SecAggError, SecAggServer
from privadx.common.secagg.quantize import dequantize_sum
from privadx.common.wire.envelope import Envelope, Kind, WireError
from privadx.common.wire.messages import GATEWAY_SENDER
from privadx.common.wire.secure import (
    SecureSettings,
    Step,
    SumModulus,
    advertisements_payload,
    ciphertexts_payload,
    read_advertisement,
    read_ciphertexts,
    read_masked,
    read_unmask,
    secagg_envelope,
    step_of,
)

_COLLECTS = {
    Step.ADVERTISE: Step.ADVERTISE,
    Step.KEYS: Step.SHARES,
    Step.SHARES: Step.MASKED,
    Step.UNMASK: Step.UNMASK,
}
"""What the gateway collects after it has published a step (advertise: before any)."""


@dataclass
class SecureRound:
    """One attempt of a secure round."""

    run: str
    number: int
    attempt: str
    settings: SecureSettings
    length: int
    """Coordinates of a site's input (an update: the model's values plus the example count)."""
    modulus: SumModulus
    """The inputs' encoding: quantized updates, or evaluation reports."""
    min_updates: int
    expected: set[str]
    deadline: float
    """When advertising closes (the round's training deadline)."""
    verify: Verify | None = None
    published: Step = Step.ADVERTISE
    """The last step the gateway has published (ADVERTISE: none yet)."""
    step_deadline: float = 0.0
    threshold: int = 0
    advertised: dict[str, Advertisement] = field(default_factory=dict)
    _signed_ads: dict[str, Envelope] = field(default_factory=dict)
    """The advertisements as the sites signed them, forwarded so peers can check the keys."""
    shares: dict[str, dict[str, bytes]] = field(default_factory=dict)
    masked: dict[str, np.ndarray] = field(default_factory=dict)
    responses: dict[str, dict[str, tuple[str, int, int]]] = field(default_factory=dict)
    nbytes: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    step_seconds: dict[str, float] = field(default_factory=dict)
    _opened: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.step_deadline = self.deadline

    # --- sets ---------------------------------------------------------------------------------
    @property
    def u1(self) -> list[str]:
        """Sites whose keys went out in the ``keys`` step."""
        return sorted(self.advertised) if self.published is not Step.ADVERTISE else []

    @property
    def collecting(self) -> Step:
        """The kind of site message the attempt waits for now."""
        return _COLLECTS[self.published]

    def _members(self) -> set[str]:
        """Who may send the message collected now."""
        if self.collecting is Step.ADVERTISE:
            return set(self.expected)
        if self.collecting is Step.SHARES:
            return set(self.advertised)
        if self.collecting is Step.MASKED:
            return set(self.shares)
        return set(self.masked)

    def _received(self) -> Mapping[str, object]:
        step = self.collecting
        if step is Step.ADVERTISE:
            return self.advertised
        if step is Step.SHARES:
            return self.shares
        if step is Step.MASKED:
            return self.masked
        return self.responses

    def complete(self) -> bool:
        """Everyone who can answer the current step has (unmasking: t have)."""
        got = self._received()
        if self.collecting is Step.UNMASK:
            return len(got) >= self.threshold
        if self.collecting is Step.ADVERTISE:
            return len(got) >= self._needed() and self.expected <= set(got)
        return self._members() <= set(got)

    def expired(self) -> bool:
        """The current step's deadline has passed."""
        return time.time() > self.step_deadline

    def _needed(self) -> int:
        return max(self.min_updates, self.settings.min_threshold)

    # --- inbound --------------------------------------------------------------------------
    def offer(self, env: Envelope, site: str) -> str | None:
        """Take one reassembled message from ``site``; ``None`` if kept, else the reason."""
        if env.kind is not Kind.SECAGG or env.sender != site:
            return "sender mismatch"
        if (
            env.run == self.run
            and env.meta.get("step") == Step.UNMASK
            and env.meta.get("attempt") != self.attempt
            and env.round in (self.number, self.number - 1)
        ):
            return "late"  # the last sum was unmasked without this answer: it is not needed
        if (env.run, env.round) != (self.run, self.number):
            return "wrong round"
        if env.meta.get("attempt") != self.attempt:
            return "wrong attempt"
        try:
            step = step_of(env)
        except WireError:
            return "malformed"
        if step is not self.collecting:
            return f"unexpected {step} (collecting {self.collecting})"
        if site in self._received():
            return "duplicate"
        if site not in self._members():
            if self.collecting is Step.ADVERTISE:
                self.expected.add(site)  # joined during the round: it gets its chance
            else:
                return f"{site} is not in this step's set"
        if self.verify is not None and (reason := self.verify(env, site)) is not None:
            return reason
        try:
            self._keep(step, env, site)
        except (WireError, ValueError, TypeError) as exc:
            return f"malformed: {exc}"
        return None

    def _keep(self, step: Step, env: Envelope, site: str) -> None:
        if step is Step.ADVERTISE:
            self.advertised[site] = read_advertisement(env)
            self._signed_ads[site] = env
        elif step is Step.SHARES:
            ciphertexts = read_ciphertexts(env)
            if set(ciphertexts) != set(self.u1):
                raise WireError("shares must hold one ciphertext for every site of U1")
            self.shares[site] = ciphertexts
        elif step is Step.MASKED:
            self.masked[site] = read_masked(env, self.modulus, self.length)
        else:
            self.responses[site] = read_unmask(env, set(self.shares), set(self.masked))

    # --- steps the gateway publishes -----------------------------------------------------
    def close_advertising(self) -> Envelope:
        """The ``keys`` step: U1's signed advertisements and the threshold.

        Raises:
            SecAggError: Too few sites advertised keys.
        """
        if len(self.advertised) < self._needed():
            raise SecAggError(
                f"{len(self.advertised)} sites advertised keys by the deadline; "
                f"need {self._needed()}"
            )
        self.threshold = self.settings.threshold(len(self.advertised))
        ads = advertisements_payload([self._signed_ads[s] for s in sorted(self._signed_ads)])
        self._advance(Step.KEYS)
        return self._envelope(Step.KEYS, payload=ads, threshold=self.threshold)

    def close_sharing(self) -> dict[str, Envelope]:
        """The ``shares`` step: per site of U2, U2 and the ciphertexts addressed to it."""
        u2 = self._enough(self.shares, "shared keys")
        self._advance(Step.SHARES)
        return {
            site: self._envelope(
                Step.SHARES,
                payload=ciphertexts_payload({s: self.shares[s][site] for s in u2}),
                u2=u2,
            )
            for site in u2
        }

    def close_masking(self) -> Envelope:
        """The ``unmask`` step: U3, the sites whose masked input arrived."""
        u3 = self._enough(self.masked, "sent a masked input")
        self._advance(Step.UNMASK)
        return self._envelope(Step.UNMASK, u3=u3)

    def site_offline(self, site: str) -> None:
        """A site that went offline before advertising keys is no longer waited for."""
        if self.collecting is Step.ADVERTISE and site not in self.advertised:
            self.expected.discard(site)

    def total(self) -> np.ndarray:
        """The sum of U3's inputs modulo 2^k (uint64).

        Raises:
            SecAggError: Fewer than t unmasking answers, or the secrets do not recover.
        """
        server = SecAggServer(self.threshold, self.modulus.modulus_bits, self.length)
        server.advertised = dict(self.advertised)
        # Any t answers recover every secret; using exactly t keeps the work bounded.
        chosen = dict(sorted(self.responses.items())[: self.threshold])
        return server.unmask(self.masked, sorted(self.shares), chosen)

    def result(self) -> tuple[np.ndarray, int]:
        """``(sum of weight * clipped update, total weight)`` over U3 of a training round.

        Raises:
            SecAggError: Fewer than t unmasking answers, or the secrets do not recover.
        """
        total = self.total()
        try:
            return dequantize_sum(total, self.settings.quant_spec)
        except InputError as exc:
            raise SecAggError(f"the unmasked sum is not a valid sum: {exc}") from exc

    def summary(self) -> dict[str, object]:
        """Facts of the attempt for the round record."""
        return {
            "threshold": self.threshold,
            "u1": sorted(self.advertised),
            "u2": sorted(self.shares),
            "u3": sorted(self.masked),
            "unmasked_by": sorted(self.responses),
            "step_seconds": dict(self.step_seconds),
        }

    def _enough(self, got: Mapping[str, object], what: str) -> list[str]:
        if len(got) < self.threshold:
            raise SecAggError(f"{len(got)} sites {what}; need {self.threshold}")
        return sorted(got)

    def _advance(self, step: Step) -> None:
        now = time.monotonic()
        self.step_seconds[str(self.collecting)] = round(now - self._opened, 3)
        self._opened = now
        self.published = step
        self.step_deadline = time.time() + self.settings.step_timeout

    def _envelope(self, step: Step, *, payload: bytes = b"", **fields: object) -> Envelope:
        return secagg_envelope(
            step,
            run=self.run,
            round_num=self.number,
            sender=GATEWAY_SENDER,
            attempt=self.attempt,
            payload=payload,
            **fields,
        )
