"""The rounds of secure aggregation as pure message-in / message-out steps.

One site runs :class:`SecAggClient`, the gateway :class:`SecAggServer`.

0. Advertise: each site sends two X25519 public keys: ``c`` (channel: encrypts its shares
   to the other sites) and ``s`` (masks: agreed pairwise seeds).
1. Share keys: with the list of advertised sites U1, each site draws a self-mask seed ``b``
   and Shamir-shares ``b`` and its ``s`` private key among U1 (threshold t); each share is
   encrypted with AES-GCM under the key agreed with its recipient's ``c`` key, and the
   associated data binds run, round, sender and recipient, so the gateway and the broker
   that route the shares cannot read them, and a share replayed into another round or to
   another site fails to decrypt.
2. Masked input: with the shares addressed to it from U2 (the sites that shared), a site
   sends ``y = x + PRG(b) + sum_{j>i} PRG(s_ij) - sum_{j<i} PRG(s_ij)  (mod 2^k)`` over U2.
3. Unmask: with U3 (the sites whose masked input arrived), each surviving site returns, for
   every j in U2, its share of ``b_j`` if j is in U3, else its share of j's ``s`` key. From t
   shares the gateway removes the self-masks of U3 and the pairwise masks that sites in U3
   still hold with the dropped ones; the pairwise masks among U3 cancel. The gateway learns
   the sum over U3 and nothing else. A site refuses to unmask when |U3| < t.

Masks are expanded from 32-byte seeds with ChaCha20 (``cryptography``); no cipher is written
here. Site ids order the pairs; participant x-coordinates are 1-based positions in sorted U1.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privadx.common.errors import ExitCode, PrivadxError
from privadx.common.secagg import shamir

SEED_BYTES = 32


class SecAggError(PrivadxError):
    """A secure-aggregation round cannot go on (too few sites, a bad share or key)."""

    exit_code = ExitCode.SECURE_AGGREGATION


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def agree(private: X25519PrivateKey, public: bytes, purpose: bytes) -> bytes:
    """A 32-byte key from X25519 agreement, separated by ``purpose`` with HKDF-SHA256."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        raise SecAggError(f"unusable public key: {exc}") from exc
    return HKDF(hashes.SHA256(), SEED_BYTES, salt=None, info=b"privadx-secagg/" + purpose).derive(
        shared
    )


def expand(seed: bytes, length: int, modulus_bits: int) -> np.ndarray:
    """``length`` pseudo-random integers modulo 2^modulus_bits from a 32-byte seed (ChaCha20)."""
    cipher = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    stream = cipher.update(b"\0" * (8 * length))
    return np.frombuffer(stream, dtype=np.uint64) & np.uint64((1 << modulus_bits) - 1)


def _aad(run: str, round_num: int, sender: str, recipient: str) -> bytes:
    return json.dumps([run, round_num, sender, recipient]).encode()


@dataclass(frozen=True)
class Advertisement:
    """Round 0: a site's public keys."""

    c_public: bytes
    s_public: bytes


@dataclass
class SecAggClient:
    """One site's side of a secure-aggregation round."""

    site: str
    run: str
    round: int
    threshold: int
    modulus_bits: int
    _c: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    _s: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    _b: bytes = field(default_factory=lambda: secrets.token_bytes(SEED_BYTES))
    _peers: dict[str, Advertisement] = field(default_factory=dict)
    _held: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Shares others sent me: sender -> (x, share of b, share of s key)."""
    _u2: tuple[str, ...] = ()

    def advertise(self) -> Advertisement:
        """Round 0."""
        return Advertisement(_raw_public(self._c), _raw_public(self._s))

    def share_keys(self, advertised: Mapping[str, Advertisement]) -> dict[str, bytes]:
        """Round 1: encrypted shares of ``b`` and of the ``s`` key, one per site in U1."""
        if self.site not in advertised or len(advertised) < self.threshold:
            raise SecAggError(f"{len(advertised)} sites advertised keys; need {self.threshold}")
        self._peers = dict(advertised)
        xs = _positions(advertised)
        b_shares = shamir.split(self._b, self.threshold, xs.values())
        s_shares = shamir.split(_raw_private(self._s), self.threshold, xs.values())
        out = {}
        for peer, x in xs.items():
            plain = json.dumps([x, hex(b_shares[x]), hex(s_shares[x])]).encode()
            key = agree(self._c, advertised[peer].c_public, b"channel")
            nonce = os.urandom(12)
            out[peer] = nonce + AESGCM(key).encrypt(
                nonce, plain, _aad(self.run, self.round, self.site, peer)
            )
        return out

    def receive_shares(self, ciphertexts: Mapping[str, bytes]) -> list[str]:
        """Decrypt the shares addressed to this site; return the senders whose share failed."""
        bad = []
        for sender, blob in ciphertexts.items():
            peer = self._peers.get(sender)
            try:
                if peer is None or len(blob) < 13:
                    raise ValueError("unknown sender or short message")
                key = agree(self._c, peer.c_public, b"channel")
                plain = AESGCM(key).decrypt(
                    blob[:12], blob[12:], _aad(self.run, self.round, sender, self.site)
                )
                x, b_share, s_share = json.loads(plain)
                self._held[sender] = (int(x), int(b_share, 16), int(s_share, 16))
            except (InvalidTag, ValueError, TypeError, SecAggError):
                bad.append(sender)
        return bad

    def masked_input(self, x: np.ndarray, u2: list[str]) -> np.ndarray:
        """Round 2: ``x`` (integers below 2^bits) masked for the sum over U2."""
        if self.site not in u2 or len(u2) < self.threshold:
            raise SecAggError(f"{len(u2)} sites shared keys; need {self.threshold}")
        if set(u2) - set(self._held):
            raise SecAggError(f"no valid share from {sorted(set(u2) - set(self._held))}")
        self._u2 = tuple(sorted(u2))
        mask = np.uint64((1 << self.modulus_bits) - 1)
        y = (np.asarray(x, np.uint64) + expand(self._b, x.size, self.modulus_bits)) & mask
        for peer in self._u2:
            if peer == self.site:
                continue
            p = expand(
                agree(self._s, self._peers[peer].s_public, b"mask"), x.size, self.modulus_bits
            )
            y = (y + p) & mask if peer > self.site else (y - p) & mask
        return y

    def unmask(self, u3: list[str]) -> dict[str, tuple[str, int, int]]:
        """Round 3: per site in U2, ``("b" or "s", x, share)``; refuses when |U3| < t."""
        if len(u3) < self.threshold or self.site not in u3 or not set(u3) <= set(self._u2):
            raise SecAggError(f"{len(u3)} masked inputs arrived; need {self.threshold}")
        out = {}
        for peer in self._u2:
            x, b_share, s_share = self._held[peer]
            out[peer] = ("b", x, b_share) if peer in u3 else ("s", x, s_share)
        return out


def _positions(sites: Mapping[str, object]) -> dict[str, int]:
    return {site: i + 1 for i, site in enumerate(sorted(sites))}


@dataclass
class SecAggServer:
    """The gateway's side: routes messages and recovers the sum, never a single input."""

    threshold: int
    modulus_bits: int
    length: int
    advertised: dict[str, Advertisement] = field(default_factory=dict)

    def unmask(
        self,
        masked: Mapping[str, np.ndarray],
        u2: list[str],
        responses: Mapping[str, Mapping[str, tuple[str, int, int]]],
    ) -> np.ndarray:
        """The sum over U3 = ``masked``'s sites, from the survivors' unmasking responses.

        Raises:
            SecAggError: Fewer than t responses, or a site asked for both of a peer's secrets.
        """
        if len(responses) < self.threshold:
            raise SecAggError(
                f"{len(responses)} sites answered the unmasking; need {self.threshold}"
            )
        u3 = sorted(masked)
        mask = np.uint64((1 << self.modulus_bits) - 1)
        total = np.zeros(self.length, np.uint64)
        for y in masked.values():
            total = (total + np.asarray(y, np.uint64)) & mask
        for peer in sorted(u2):
            kind = "b" if peer in masked else "s"
            shares = {}
            for answer in responses.values():
                got = answer.get(peer)
                if got is None or got[0] != kind:
                    raise SecAggError(f"a response does not give {peer}'s {kind} share")
                shares[got[1]] = got[2]
            try:
                secret = shamir.combine(shares, self.threshold, SEED_BYTES)
            except PrivadxError as exc:
                raise SecAggError(f"cannot recover {peer}'s {kind}: {exc}") from exc
            if kind == "b":
                total = (total - expand(secret, self.length, self.modulus_bits)) & mask
                continue
            dropped = X25519PrivateKey.from_private_bytes(secret)
            for survivor in u3:
                seed = agree(dropped, self.advertised[survivor].s_public, b"mask")
                p = expand(seed, self.length, self.modulus_bits)
                # survivor added +p if peer > survivor, else -p: take that back
                total = (total - p) & mask if peer > survivor else (total + p) & mask
        return total
