"""The secure-aggregation messages of a round (see :mod:`privadx.common.secagg.protocol`).

A round announced with ``secure`` settings runs these steps after local training; every
message is a ``SECAGG`` envelope whose ``meta["step"]`` says which, and whose
``meta["attempt"]`` is the round announcement's id (keys and shares are fresh per attempt):

==========  ==========================  =============================================
step        from -> to (topic)          content
==========  ==========================  =============================================
advertise   site -> gateway             the site's two X25519 public keys (signed)
keys        gateway -> all (secagg)     U1's signed advertisements, the threshold t
shares      site -> gateway             one AES-GCM ciphertext per peer in U1
shares      gateway -> site (inbox)     U2 and the ciphertexts addressed to that site
masked      site -> gateway             the masked input (payload, chunked)
unmask      gateway -> all (secagg)     U3: whose masked input arrived
unmask      site -> gateway             per site of U2: its share of ``b`` or of ``s``
==========  ==========================  =============================================

Bulk content (advertisements, ciphertexts, shares) is a JSON document in the payload, with
bytes as base64 and shares as hex, so it is chunked like any large message; the masked input
is a tensor payload (uint32 or uint64 by the modulus). No pickle anywhere.

The same steps sum two kinds of input: a training round's quantized updates
(:mod:`privadx.common.secagg.quantize`) and, announced in the ``evaluation`` phase, the sites'
evaluation reports of a global model (:mod:`privadx.common.evaluation.secure_sum`). Each fixes its
modulus and wire type (:class:`SumModulus`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from privadx.common.compat import StrEnum
from privadx.common.errors import InputError
from privadx.common.secagg.protocol import Advertisement
from privadx.common.secagg.quantize import QuantSpec
from privadx.common.wire import envelope as wire
from privadx.common.wire import tensors
from privadx.common.wire.envelope import Envelope, Kind, WireError

MASKED_TENSOR = "masked"
KEY_BYTES = 32
"""Length of an X25519 public key."""


class Step(StrEnum):
    """The steps of a secure round, in order."""

    ADVERTISE = "advertise"
    KEYS = "keys"
    SHARES = "shares"
    MASKED = "masked"
    UNMASK = "unmask"


@dataclass(frozen=True, kw_only=True)
class SecureSettings:
    """What a round announcement tells the sites about secure aggregation."""

    clip: float = 10.0
    """L2 norm each site clips its update (the difference to the global model) to."""
    bits: int = 16
    """Quantization bits of a weight-1 coordinate."""
    max_examples: int = 1 << 16
    """Most training examples all sites of one round may have together (the sum's weight;
    sites when unweighted); with 16 bits this makes the modulus 2^32, so masked inputs are
    4 bytes per coordinate."""
    step_timeout: float = 120.0
    """Seconds the gateway waits for each step's messages before going on without the
    missing sites (or failing the attempt below the threshold)."""
    min_threshold: int = 2
    """The least number of sites t whose shares recover a secret (raised to a majority of
    U1 when more sites take part)."""
    weighted: bool = True
    """Weight each site by its example count (FedAvg); ``False`` for the unweighted mean of
    DP-FedAvg, where a site's influence must not depend on what it reports."""

    def __post_init__(self) -> None:
        self.quant_spec  # noqa: B018  (validates clip, bits and max_examples)
        if not self.step_timeout > 0:
            raise InputError(f"secure-aggregation step timeout must be positive: {self}")
        if self.min_threshold < 2:
            raise InputError("a secure-aggregation threshold below 2 would hide nothing")

    @property
    def quant_spec(self) -> QuantSpec:
        """Quantization of the sites' inputs."""
        return QuantSpec(clip=self.clip, bits=self.bits, max_weight=self.max_examples)

    def threshold(self, u1: int) -> int:
        """The threshold t for ``u1`` advertised sites: at least a strict majority of U1.

        A majority means two disjoint groups of sites cannot both be asked to unmask, so
        nobody can obtain both secrets of one site by splitting the survivors.
        """
        return max(self.min_threshold, u1 // 2 + 1)

    def to_dict(self) -> dict[str, Any]:
        """Announcement form."""
        return {
            "clip": self.clip,
            "bits": self.bits,
            "max_examples": self.max_examples,
            "step_timeout": self.step_timeout,
            "min_threshold": self.min_threshold,
            "weighted": self.weighted,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> SecureSettings:
        """Parse the announcement form; raises :class:`WireError`."""
        try:
            return cls(
                clip=float(raw["clip"]),
                bits=int(raw["bits"]),
                max_examples=int(raw["max_examples"]),
                step_timeout=float(raw["step_timeout"]),
                min_threshold=int(raw["min_threshold"]),
                weighted=bool(raw.get("weighted", True)),
            )
        except (KeyError, TypeError, ValueError, InputError) as exc:
            raise WireError(f"malformed secure-aggregation settings: {exc}") from exc


def secagg_envelope(
    step: Step,
    *,
    run: str,
    round_num: int,
    sender: str,
    attempt: str,
    payload: bytes = b"",
    **fields: Any,
) -> Envelope:
    """One secure-aggregation message."""
    return Envelope(
        kind=Kind.SECAGG,
        run=run,
        round=round_num,
        sender=sender,
        payload=payload,
        meta={"step": str(step), "attempt": attempt, **fields},
    )


def step_of(env: Envelope) -> Step:
    """The step a ``SECAGG`` message belongs to; raises :class:`WireError`."""
    if env.kind is not Kind.SECAGG:
        raise WireError(f"expected a secure-aggregation message, got {env.kind}")
    try:
        return Step(str(env.meta.get("step")))
    except ValueError:
        raise WireError(f"unknown secure-aggregation step {env.meta.get('step')!r}") from None


def meta_value(env: Envelope, name: str, kind: type) -> Any:
    """``env.meta[name]``, checked to be of ``kind``; raises :class:`WireError`."""
    value = env.meta.get(name)
    if not isinstance(value, kind):
        raise WireError(f"{env.meta.get('step')} message: {name!r} missing or not {kind}")
    return value


def site_list(env: Envelope, name: str) -> list[str]:
    """A list of site names in ``env.meta[name]``."""
    value = meta_value(env, name, list)
    if not all(isinstance(s, str) for s in value) or len(set(value)) != len(value):
        raise WireError(f"{name!r} must be a list of distinct site names")
    return sorted(value)


def b64(data: bytes) -> str:
    """Bytes as base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any) -> bytes:
    """Base64 text as bytes; raises :class:`WireError`."""
    if not isinstance(text, str):
        raise WireError("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError(f"bad base64: {exc}") from exc


def unhex(text: Any, size: int) -> bytes:
    """``size`` bytes from hex text; raises :class:`WireError`."""
    try:
        raw = bytes.fromhex(text)
    except (TypeError, ValueError) as exc:
        raise WireError(f"bad hex: {exc}") from exc
    if len(raw) != size:
        raise WireError(f"expected {size} bytes, got {len(raw)}")
    return raw


def json_payload(doc: Any) -> bytes:
    """A JSON document as a message payload."""
    return json.dumps(doc, separators=(",", ":")).encode()


def read_json(env: Envelope, kind: type) -> Any:
    """The JSON document in ``env.payload``, checked to be of ``kind``; raises WireError."""
    try:
        doc = json.loads(env.payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"{env.meta.get('step')} message: payload is not JSON: {exc}") from exc
    if not isinstance(doc, kind):
        raise WireError(f"{env.meta.get('step')} message: payload is not a {kind.__name__}")
    return doc


def advertisement_fields(ad: Advertisement) -> dict[str, str]:
    """An ``advertise`` message's key fields."""
    return {"c": ad.c_public.hex(), "s": ad.s_public.hex()}


def read_advertisement(env: Envelope) -> Advertisement:
    """The public keys of an ``advertise`` message; raises :class:`WireError`."""
    return Advertisement(unhex(env.meta.get("c"), KEY_BYTES), unhex(env.meta.get("s"), KEY_BYTES))


def advertisements_payload(advertisements: list[Envelope]) -> bytes:
    """The ``keys`` step's payload: the advertisements exactly as their sites signed them."""
    return json_payload([b64(wire.to_bytes(env)) for env in advertisements])


def read_advertisements(env: Envelope) -> list[Envelope]:
    """The signed advertisements a ``keys`` step forwards; raises :class:`WireError`."""
    return [wire.from_bytes(unb64(text)) for text in read_json(env, list)]


def ciphertexts_payload(ciphertexts: Mapping[str, bytes]) -> bytes:
    """Encrypted shares, one per peer (a site's ``shares``, or a site's inbox)."""
    return json_payload({peer: b64(blob) for peer, blob in ciphertexts.items()})


def read_ciphertexts(env: Envelope) -> dict[str, bytes]:
    """The encrypted shares of a ``shares`` message, by peer; raises :class:`WireError`."""
    return {str(peer): unb64(text) for peer, text in read_json(env, dict).items()}


def unmask_payload(answer: Mapping[str, tuple[str, int, int]]) -> bytes:
    """A site's unmasking answer: per site of U2, ``[kind, x, share as hex]``."""
    return json_payload({peer: [kind, x, hex(share)] for peer, (kind, x, share) in answer.items()})


def read_unmask(env: Envelope, u2: set[str], u3: set[str]) -> dict[str, tuple[str, int, int]]:
    """An unmasking answer; raises :class:`WireError`.

    It must give a ``b`` share for each site of U3, an ``s`` share for the rest of U2, and
    nothing else.
    """
    doc = read_json(env, dict)
    if set(doc) != u2:
        raise WireError("an unmask response must answer for every site of U2")
    out = {}
    for peer, entry in doc.items():
        try:
            kind, x, share = entry
            value = int(share, 16)
        except (TypeError, ValueError) as exc:
            raise WireError(f"malformed share for {peer}: {exc}") from exc
        if kind != ("b" if peer in u3 else "s") or not isinstance(x, int):
            raise WireError(f"wrong kind of share for {peer}")
        out[peer] = (kind, x, value)
    return out


class SumModulus(Protocol):
    """What the masked messages need of an input's encoding."""

    @property
    def modulus_bits(self) -> int:
        """Inputs, masks and sums are numbers modulo 2^modulus_bits."""
        ...  # pragma: no cover

    @property
    def wire_dtype(self) -> np.dtype:
        """The unsigned integer type a masked input travels in."""
        ...  # pragma: no cover


def masked_payload(values: np.ndarray, spec: SumModulus) -> bytes:
    """A masked input as a tensor payload in the modulus's wire type."""
    return tensors.to_bytes({MASKED_TENSOR: np.asarray(values).astype(spec.wire_dtype)})


def read_masked(env: Envelope, spec: SumModulus, length: int) -> np.ndarray:
    """The masked input of a ``masked`` message as uint64; raises :class:`WireError`."""
    arrays = tensors.from_bytes(env.payload)
    values = arrays.get(MASKED_TENSOR)
    if set(arrays) != {MASKED_TENSOR} or values is None:
        raise WireError("a masked input holds exactly one tensor, 'masked'")
    if values.dtype != spec.wire_dtype or values.shape != (length,):
        raise WireError(
            f"masked input is {values.dtype}{list(values.shape)}, "
            f"expected {spec.wire_dtype}[{length}]"
        )
    if int(values.max(initial=0)) >> spec.modulus_bits:
        raise WireError(f"masked input has values beyond 2^{spec.modulus_bits}")
    return values.astype(np.uint64)
