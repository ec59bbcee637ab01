"""Create a federation's certificates and its broker configuration (``privadx certs``).

Layout of the folder ``init_federation`` writes::

    ca/ca.pem, ca/ca.key          the federation CA (keep ca.key offline after enrolment)
    broker/                       the broker's TLS server certificate, mosquitto.conf, acl
    gateway/                      the gateway's identity (see privadx.common.trust.identity)
    sites/<site>/                 one identity per device: copy this folder to the device

``issue_sites`` adds devices later with the same CA.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from privadx.common.errors import InputError
from privadx.common.trust.identity import (
    CA_FILE,
    CRL_FILE,
    SIGN_CERT,
    TLS_CERT,
    write_identity,
    write_private,
    write_public,
)
from privadx.common.trust.mosquitto_config import TlsListener, render_acl, render_tls_config
from privadx.common.trust.pki import (
    GATEWAY_IDENTITY,
    Issued,
    Usage,
    build_crl,
    cert_to_pem,
    create_ca,
    federation_of,
    issue,
    key_to_pem,
    load_cert,
    load_key,
)
from privadx.common.wire.topics import check_name, check_site_id

log = logging.getLogger(__name__)

CA_DIR, BROKER_DIR, GATEWAY_DIR, SITES_DIR = "ca", "broker", "gateway", "sites"


@dataclass(frozen=True)
class FederationPki:
    """Paths of a federation's PKI folder."""

    root: Path

    @property
    def broker_config(self) -> Path:
        """The generated ``mosquitto.conf``."""
        return self.root / BROKER_DIR / "mosquitto.conf"

    @property
    def gateway(self) -> Path:
        """The gateway's identity folder."""
        return self.root / GATEWAY_DIR

    def site(self, site_id: str) -> Path:
        """A device's identity folder (always inside ``sites/``).

        Raises:
            InputError: ``site_id`` is not a valid site id.
        """
        folder = (self.root / SITES_DIR / check_site_id(site_id)).resolve()
        if folder.parent != (self.root / SITES_DIR).resolve():
            raise InputError(f"site id {site_id!r} would leave {self.root / SITES_DIR}")
        return folder

    def load_ca(self) -> Issued:
        """The CA key and certificate (needed to issue more devices)."""
        ca_dir = self.root / CA_DIR
        if not (ca_dir / "ca.key").is_file():
            raise InputError(
                f"{ca_dir}/ca.key not found: is {self.root} a `privadx certs init` folder?"
            )
        key = load_key(ca_dir / "ca.key")
        return Issued(key, load_cert(ca_dir / CA_FILE))


BROKER_USER = "mosquitto"
"""The account Debian's Mosquitto runs as: started as root, it drops to this user before it
reads its key, so the broker's folder must belong to it (the key stays 0600)."""


def _hand_to_broker_user(folder: Path) -> None:
    """Run as root where the broker's account exists: give it the broker's folder.

    Otherwise (an administrator's own account) the files stay the caller's, and a broker
    started by that account reads them.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        account = pwd.getpwnam(BROKER_USER)
    except KeyError:
        return
    for path in (folder, *folder.iterdir()):
        os.chown(path, account.pw_uid, account.pw_gid)
    log.info("%s belongs to the %s user, as the broker reads it", folder, BROKER_USER)


def _check_site_ids(sites: Sequence[str]) -> None:
    for site in sites:
        check_site_id(site)
    if len(set(sites)) != len(sites):
        raise InputError("site ids must be distinct")


def init_federation(
    root: Path,
    *,
    federation: str,
    hosts: Sequence[str],
    port: int,
    bind: str = "0.0.0.0",
    sites: Sequence[str] = (),
) -> FederationPki:
    """Create the CA, the broker's certificate and config, the gateway's and the sites' identities.

    Raises:
        InputError: ``root`` already holds a CA (never overwritten: that would lock every
            enrolled device out), or a name is invalid.
    """
    check_name("federation name", federation)
    _check_site_ids(sites)
    if not hosts:
        raise InputError("give at least one --broker-host the devices will connect to")
    if not 0 < port < 65536:
        raise InputError(f"--port must lie in 1..65535, got {port}")
    pki = FederationPki(Path(root).resolve())
    if (pki.root / CA_DIR / "ca.key").exists():
        raise InputError(f"{pki.root} already holds a federation CA; use `privadx certs issue`")
    ca = create_ca(federation)
    write_public(pki.root / CA_DIR / CA_FILE, cert_to_pem(ca.cert))
    write_private(pki.root / CA_DIR / "ca.key", key_to_pem(ca.key))

    broker = pki.root / BROKER_DIR
    server = issue(ca, hosts[0], Usage.SERVER, federation=federation, hosts=hosts)
    write_public(broker / CA_FILE, cert_to_pem(ca.cert))
    write_public(broker / "server.pem", cert_to_pem(server.cert))
    write_private(broker / "server.key", key_to_pem(server.key))
    write_public(broker / "acl", render_acl().encode())
    listener = TlsListener(
        port=port,
        bind=bind,
        ca_file=broker / CA_FILE,
        cert_file=broker / "server.pem",
        key_file=broker / "server.key",
        crl_file=broker / CRL_FILE,
        acl_file=broker / "acl",
        persistence_dir=broker,
    )
    write_public(pki.broker_config, render_tls_config(listener).encode())
    write_identity(pki.gateway, ca, GATEWAY_IDENTITY, federation=federation)
    _publish_crl(pki, ca, [])
    _hand_to_broker_user(broker)
    for site in sites:
        write_identity(pki.site(site), ca, site, federation=federation)
    log.info(
        "federation %s: CA, broker, gateway and %d site identities in %s",
        federation,
        len(sites),
        pki.root,
    )
    return pki


def issue_sites(root: Path, sites: Sequence[str]) -> list[Path]:
    """Issue identities for more devices with an existing CA (existing ones are kept)."""
    _check_site_ids(sites)
    pki = FederationPki(Path(root).resolve())
    ca = pki.load_ca()
    federation = federation_of(ca.cert)
    written = []
    for site in sites:
        if pki.site(site).exists():
            raise InputError(f"{pki.site(site)} exists; remove it first to re-issue {site!r}")
        written.append(write_identity(pki.site(site), ca, site, federation=federation))
    return written


def _publish_crl(pki: FederationPki, ca: Issued, serials: list[int]) -> None:
    """Write the CRL for the broker (TLS) and the gateway (update signatures)."""
    crl = build_crl(ca, serials)
    for folder in (pki.root / CA_DIR, pki.root / BROKER_DIR, pki.gateway):
        if folder.is_dir():
            write_public(folder / CRL_FILE, crl)


def revoke_sites(root: Path, sites: Sequence[str]) -> list[int]:
    """Revoke the devices' TLS and signing certificates; return every revoked serial.

    The site folders are renamed (``<site>.revoked``) so the ids can be issued again. The
    broker must be restarted (or sent SIGHUP) and the gateway restarted to load the new list.
    """
    _check_site_ids(sites)
    pki = FederationPki(Path(root).resolve())
    ca = pki.load_ca()
    record = pki.root / CA_DIR / "revoked.json"
    serials: list[int] = json.loads(record.read_text()) if record.exists() else []
    for site in sites:
        folder = pki.site(site)
        if not folder.is_dir():
            raise InputError(f"no identity for {site!r} in {pki.root / SITES_DIR}")
        serials += [load_cert(folder / name).serial_number for name in (TLS_CERT, SIGN_CERT)]
    write_public(record, json.dumps(sorted(set(serials))).encode())
    _publish_crl(pki, ca, serials)
    for site in sites:
        pki.site(site).rename(pki.site(site).with_name(f"{site}.revoked"))
    log.info("revoked %s; restart the broker and the gateway to apply", ", ".join(sites))
    return sorted(set(serials))
