"""A participant's identity folder: the CA certificate, TLS and signing keys and certificates.

``privadx certs`` writes one folder per participant (``gateway/``, ``sites/<site>/``)::

    ca.pem               the federation CA (the trust anchor)
    tls.pem, tls.key     TLS client certificate and key (ECDSA P-256), CN = identity
    sign.pem, sign.key   signing certificate and key (Ed25519), CN = identity

Private keys are written readable by their owner only. Loading checks that every file is
there and that both certificates were issued by the CA for the same name, so a mixed-up
folder fails at start, not in the middle of a round.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from privadx.common.errors import InputError
from privadx.common.fileio import write_atomic
from privadx.common.mqtt_link import BrokerAddress, TlsFiles, check_transport
from privadx.common.trust.pki import (
    Issued,
    TrustError,
    Usage,
    cert_to_pem,
    check_issued,
    common_name,
    issue,
    key_to_pem,
    load_cert,
    load_key,
    revoked_serials,
)
from privadx.common.trust.signing import Signer, Verifier

CA_FILE = "ca.pem"
TLS_CERT, TLS_KEY = "tls.pem", "tls.key"
SIGN_CERT, SIGN_KEY = "sign.pem", "sign.key"
CRL_FILE = "crl.pem"


def write_private(path: Path, data: bytes) -> None:
    """Write a private key atomically, readable by its owner only (0600)."""
    write_atomic(path, data)
    os.chmod(path, 0o600)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate or config atomically, readable by all (0644)."""
    write_atomic(path, data)
    os.chmod(path, 0o644)


def write_identity(folder: Path, ca: Issued, name: str, *, federation: str) -> Path:
    """Issue TLS and signing certificates for ``name`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tls = issue(ca, name, Usage.CLIENT, federation=federation)
    sign = issue(ca, name, Usage.SIGNING, federation=federation)
    write_public(folder / CA_FILE, cert_to_pem(ca.cert))
    write_public(folder / TLS_CERT, cert_to_pem(tls.cert))
    write_private(folder / TLS_KEY, key_to_pem(tls.key))
    write_public(folder / SIGN_CERT, cert_to_pem(sign.cert))
    write_private(folder / SIGN_KEY, key_to_pem(sign.key))
    return folder


@dataclass(frozen=True)
class Identity:
    """A loaded, checked identity folder."""

    folder: Path
    name: str
    ca_cert: x509.Certificate
    signer: Signer
    revoked: frozenset[int] = frozenset()
    """Revoked serial numbers, from ``crl.pem`` in the folder if there is one."""

    @property
    def ca_file(self) -> Path:
        """The CA certificate (for TLS verification of the broker)."""
        return self.folder / CA_FILE

    @property
    def cert_file(self) -> Path:
        """The TLS client certificate."""
        return self.folder / TLS_CERT

    @property
    def key_file(self) -> Path:
        """The TLS client key."""
        return self.folder / TLS_KEY

    @property
    def tls_files(self) -> TlsFiles:
        """The files for mutual TLS with the broker."""
        return TlsFiles(self.ca_file, self.cert_file, self.key_file)

    def verifier(self) -> Verifier:
        """A verifier anchored at this identity's CA (honouring its revocation list)."""
        return Verifier(self.ca_cert, self.revoked)

    @classmethod
    def load(cls, folder: Path) -> Identity:
        """Load and check an identity folder.

        Raises:
            InputError: A file is missing.
            TrustError: The certificates do not belong together or to the CA.
        """
        folder = Path(folder)
        missing = [
            f
            for f in (CA_FILE, TLS_CERT, TLS_KEY, SIGN_CERT, SIGN_KEY)
            if not (folder / f).is_file()
        ]
        if missing:
            raise InputError(
                f"identity folder {folder} lacks {', '.join(missing)} "
                "(create it with `privadx certs init` / `privadx certs issue`)"
            )
        ca_cert = load_cert(folder / CA_FILE)
        tls_cert = load_cert(folder / TLS_CERT)
        sign_cert = load_cert(folder / SIGN_CERT)
        name = common_name(tls_cert)
        check_issued(tls_cert, ca_cert, Usage.CLIENT, identity=name)
        check_issued(sign_cert, ca_cert, Usage.SIGNING, identity=name)
        key = load_key(folder / SIGN_KEY)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise TrustError(f"{folder / SIGN_KEY}: the signing key must be Ed25519")
        if key.public_key() != sign_cert.public_key():
            raise TrustError(f"{folder / SIGN_KEY} does not belong to {folder / SIGN_CERT}")
        tls_key = load_key(folder / TLS_KEY)
        if tls_key.public_key() != tls_cert.public_key():
            raise TrustError(f"{folder / TLS_KEY} does not belong to {folder / TLS_CERT}")
        crl = folder / CRL_FILE
        revoked = (
            revoked_serials(crl.read_bytes(), ca_cert, str(crl)) if crl.is_file() else frozenset()
        )
        return cls(
            folder=folder,
            name=name,
            ca_cert=ca_cert,
            signer=Signer(key, sign_cert),
            revoked=revoked,
        )


def check_security(
    broker: BrokerAddress, identity: Path | None, *, insecure: bool, allow_unsigned: bool
) -> None:
    """Refuse a configuration that is insecure without saying so.

    ``mqtts://`` needs an identity and plain ``mqtt://`` needs ``insecure``; running without an
    identity (nothing signed, nothing verified) needs ``allow_unsigned``.

    Raises:
        InputError: With the option to pass.
    """
    check_transport(broker, has_tls=identity is not None, insecure=insecure)
    if identity is None and not allow_unsigned:
        raise InputError(
            "no --identity: models and updates could be neither signed nor verified. "
            "Pass --identity DIR (from `privadx certs`), or --allow-unsigned for a test federation"
        )
