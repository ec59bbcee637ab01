"""Ed25519 signatures on messages and model manifests, checked against the federation CA.

A signed :class:`~privadx.common.wire.envelope.Envelope` carries ``meta["signature"]`` =
``{"alg": "ed25519", "cert": <signer's PEM certificate>, "value": <base64>}``. The signature
covers a canonical JSON of every routing field (kind, run, round, sender, message id,
created-at), the kind-specific meta and the SHA-256 of the payload; transport-only keys
(chunk bookkeeping, the reassembled hash, the signature itself) are left out, so a message
verifies the same whether it travelled whole or in chunks. Binding run, round and sender into
the signature is what makes a replayed update (another round, another run) or a forged one
(another site's name) fail. The verifier checks the certificate chain to the CA, the code
signing usage, and that the certificate's common name is the expected sender.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from privadx.common.trust.pki import TrustError, Usage, cert_from_pem, cert_to_pem, check_issued
from privadx.common.wire.envelope import Envelope, routing_fields

ALGORITHM = "ed25519"
SIGNATURE_KEY = "signature"
TRANSPORT_KEYS = frozenset({"chunk", "sha256", SIGNATURE_KEY})
"""Meta keys that are not signed: added or changed by chunking and reassembly."""


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def envelope_digest_input(env: Envelope, payload_sha256: str | None = None) -> bytes:
    """The bytes an envelope's signature covers.

    ``payload_sha256``: the hash its payload is declared to have (for a chunk of it).
    """
    if payload_sha256 is None:
        payload_sha256 = hashlib.sha256(env.payload).hexdigest()
    return _canonical(
        {
            **routing_fields(env),
            "schema": env.schema,
            "meta": {k: v for k, v in env.meta.items() if k not in TRANSPORT_KEYS},
            "payload_sha256": payload_sha256,
        }
    )


class Signer:
    """Signs with one participant's Ed25519 key and attaches its certificate."""

    def __init__(self, key: ed25519.Ed25519PrivateKey, cert: x509.Certificate) -> None:
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise TrustError("signing keys must be Ed25519")
        self._key = key
        self.cert = cert
        self._cert_pem = cert_to_pem(cert).decode()

    def signature_block(self, data: bytes) -> dict[str, str]:
        """A signature over ``data`` with the certificate that verifies it."""
        return {
            "alg": ALGORITHM,
            "cert": self._cert_pem,
            "value": base64.b64encode(self._key.sign(data)).decode(),
        }

    def sign_envelope(self, env: Envelope) -> Envelope:
        """A copy of ``env`` carrying its signature in ``meta["signature"]``."""
        return env.with_meta(**{SIGNATURE_KEY: self.signature_block(envelope_digest_input(env))})

    def sign_document(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``{"manifest": doc, "signature": ...}``: a signed JSON document (e.g. a manifest)."""
        return {"manifest": doc, SIGNATURE_KEY: self.signature_block(_canonical(doc))}


class Verifier:
    """Checks signatures against the federation CA (certificates are cached once checked)."""

    def __init__(self, ca_cert: x509.Certificate, revoked: frozenset[int] = frozenset()) -> None:
        self.ca_cert = ca_cert
        self.revoked = revoked
        """Serial numbers of revoked certificates (from the federation's CRL)."""
        self._checked: dict[tuple[str, str], ed25519.Ed25519PublicKey] = {}

    def _public_key(self, cert_pem: object, identity: str) -> ed25519.Ed25519PublicKey:
        if not isinstance(cert_pem, str):
            raise TrustError("signature block lacks the signer's certificate")
        cached = self._checked.get((cert_pem, identity))
        if cached is not None:
            return cached
        cert = cert_from_pem(cert_pem.encode(), f"certificate of {identity!r}")
        check_issued(cert, self.ca_cert, Usage.SIGNING, identity=identity)
        if cert.serial_number in self.revoked:
            raise TrustError(f"the signing certificate of {identity!r} was revoked")
        key = cert.public_key()
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise TrustError(f"signing certificate of {identity!r} does not hold an Ed25519 key")
        if len(self._checked) > 4096:
            self._checked.clear()
        self._checked[(cert_pem, identity)] = key
        return key

    def _check(self, block: object, data: bytes, identity: str) -> None:
        if not isinstance(block, dict):
            raise TrustError(f"unsigned: no signature from {identity!r}")
        if block.get("alg") != ALGORITHM:
            raise TrustError(f"unsupported signature algorithm {block.get('alg')!r}")
        key = self._public_key(block.get("cert"), identity)
        try:
            value = base64.b64decode(str(block.get("value", "")), validate=True)
            key.verify(value, data)
        except (ValueError, InvalidSignature) as exc:
            raise TrustError(
                f"bad signature: the content signed by {identity!r} was altered"
            ) from exc

    def verify_envelope(
        self, env: Envelope, identity: str, *, payload_sha256: str | None = None
    ) -> None:
        """Check that ``identity`` signed ``env`` as it is; raises :class:`TrustError`.

        ``payload_sha256``: check the signature against this payload hash instead (a chunk's
        declared whole-message hash: the header is checked before the payload is complete).
        """
        data = envelope_digest_input(env, payload_sha256)
        self._check(env.meta.get(SIGNATURE_KEY), data, identity)

    def verify_document(self, signed: dict[str, Any], identity: str) -> dict[str, Any]:
        """Check a signed document from :meth:`Signer.sign_document`; return its content."""
        doc = signed.get("manifest")
        if not isinstance(doc, dict):
            raise TrustError("signed document has no manifest object")
        self._check(signed.get(SIGNATURE_KEY), _canonical(doc), identity)
        return doc


def unsigned(env: Envelope) -> Envelope:
    """A copy of ``env`` without a signature (for tests and re-signing)."""
    return replace(env, meta={k: v for k, v in env.meta.items() if k != SIGNATURE_KEY})
