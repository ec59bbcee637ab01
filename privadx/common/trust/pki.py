"""The federation's X.509 public-key infrastructure: one CA, and certificates it issues.

Every participant has an *identity*: a TLS certificate (ECDSA P-256, for mutual TLS with the
broker; its common name becomes the MQTT username, so the broker's ACL confines it) and a
signing certificate (Ed25519, extended key usage *code signing*) for the models and updates it
signs. Both carry the same common name: the site id, or ``privadx-gateway``. Nothing here can
sign or verify without the CA certificate, the federation's single trust anchor.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from privadx.common.compat import StrEnum
from privadx.common.errors import ExitCode, InputError, PrivadxError

GATEWAY_IDENTITY = "privadx-gateway"
CA_DAYS = 3650
LEAF_DAYS = 825

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class TrustError(PrivadxError):
    """A certificate or signature does not check out against the federation's CA."""

    exit_code = ExitCode.TRUST


class Usage(StrEnum):
    """What a leaf certificate is for."""

    SERVER = "server"
    """The broker's TLS server certificate."""
    CLIENT = "client"
    """A participant's TLS client certificate (mutual TLS)."""
    SIGNING = "signing"
    """A participant's Ed25519 signing certificate (models, updates)."""


_EKU = {
    Usage.SERVER: ExtendedKeyUsageOID.SERVER_AUTH,
    Usage.CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH,
    Usage.SIGNING: ExtendedKeyUsageOID.CODE_SIGNING,
}


@dataclass(frozen=True)
class Issued:
    """A private key and the certificate for it."""

    key: PrivateKey
    cert: x509.Certificate


ORG_PREFIX = "PrivaDx federation "


def _name(common_name: str, federation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG_PREFIX + federation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def create_ca(federation: str, *, days: int = CA_DAYS) -> Issued:
    """A new self-signed federation CA (ECDSA P-256) that may only issue leaf certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"PrivaDx CA ({federation})", federation)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def issue(
    ca: Issued,
    common_name: str,
    usage: Usage,
    *,
    federation: str,
    hosts: Sequence[str] = (),
    days: int = LEAF_DAYS,
) -> Issued:
    """Issue a leaf certificate with a fresh key: Ed25519 for signing, ECDSA P-256 for TLS.

    ``hosts`` (DNS names or IP addresses) become the subject alternative names of a
    ``SERVER`` certificate, which TLS clients check against the host they connect to.
    """
    key: PrivateKey = (
        ed25519.Ed25519PrivateKey.generate()
        if usage is Usage.SIGNING
        else ec.generate_private_key(ec.SECP256R1())
    )
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, federation))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=usage is Usage.SIGNING,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=usage is not Usage.SIGNING,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([_EKU[usage]]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False
        )
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def common_name(cert: x509.Certificate) -> str:
    """The certificate's subject common name."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def federation_of(cert: x509.Certificate) -> str:
    """The federation name a PrivaDx certificate was issued for."""
    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    org = str(values[0].value) if values else ""
    if not org.startswith(ORG_PREFIX):
        raise TrustError(f"certificate {common_name(cert)!r} is not a PrivaDx certificate")
    return org[len(ORG_PREFIX) :]


def check_issued(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    usage: Usage,
    *,
    identity: str | None = None,
) -> None:
    """Check that ``cert`` was issued by the CA, is valid now, is for ``usage`` and ``identity``.

    Raises:
        TrustError: With what did not match.
    """
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise TrustError(
            f"certificate of {common_name(cert)!r} was not issued by this federation's CA"
        ) from exc
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise TrustError(
            f"certificate of {common_name(cert)!r} is not valid now "
            f"({cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = x509.ExtendedKeyUsage([])
    if _EKU[usage] not in eku:
        raise TrustError(f"certificate of {common_name(cert)!r} is not a {usage} certificate")
    if identity is not None and common_name(cert) != identity:
        raise TrustError(
            f"certificate names {common_name(cert)!r}, but the message comes from {identity!r}"
        )


# --- revocation ----------------------------------------------------------------------------
CRL_DAYS = 365
"""Validity of a certificate revocation list: TLS libraries refuse every client once it has
expired, so ``privadx certs revoke`` (which rewrites it) must run again within this time."""


def build_crl(ca: Issued, serials: Sequence[int], *, days: int = CRL_DAYS) -> bytes:
    """A PEM certificate revocation list, signed by the CA, revoking ``serials``."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
    )
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=5))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def revoked_serials(data: bytes, ca_cert: x509.Certificate, origin: str) -> frozenset[int]:
    """The serial numbers a PEM CRL revokes, after checking the CA signed it.

    Raises:
        TrustError: Not a CRL, or not signed by this CA.
    """
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError as exc:
        raise TrustError(f"{origin}: not a PEM revocation list ({exc})") from exc
    if not crl.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
        raise TrustError(f"{origin}: revocation list not signed by this federation's CA")
    return frozenset(r.serial_number for r in crl)


# --- PEM files ---------------------------------------------------------------------------
def cert_to_pem(cert: x509.Certificate) -> bytes:
    """PEM text of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key (files are written owner-readable only)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_from_pem(data: bytes, origin: str) -> x509.Certificate:
    """Parse a PEM certificate; raises :class:`TrustError` naming ``origin``."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise TrustError(f"{origin}: not a PEM certificate ({exc})") from exc


def load_cert(path: Path) -> x509.Certificate:
    """Read a PEM certificate file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read certificate {path}: {exc.strerror}") from exc
    return cert_from_pem(data, str(path))


def load_key(path: Path) -> PrivateKey:
    """Read an unencrypted PEM private key file (ECDSA or Ed25519)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read private key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise TrustError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise TrustError(f"{path}: expected an ECDSA or Ed25519 key, got {type(key).__name__}")
    return key
