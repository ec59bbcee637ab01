"""`privadx certs init`'s broker config: mutual TLS, identity from the certificate, the ACL."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from harness.mosquitto import Mosquitto, ProbeClient, configure_tls
from privadx.common.trust.federation import init_federation
from tests.integration.test_broker_acl import check_confinement


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = configure_tls(tmp_path / "broker", ["site-a", "site-b"])
    b.start()
    yield b
    b.stop()


def _tls_client(ca: Path, cert: Path | None = None, key: Path | None = None) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{time.time_ns()}", protocol=mqtt.MQTTv5
    )
    c.tls_set(
        ca_certs=str(ca),
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    return c


def _refused(probe: ProbeClient) -> bool:
    """The client never got a successful CONNACK within a few seconds."""
    got_in = probe.connected.wait(3)
    probe.close()
    return not got_in


def test_own_identity_connects(broker: Mosquitto) -> None:
    probe = ProbeClient.of(broker, "site-a")
    assert probe.connected.wait(5)
    probe.close()


def test_client_without_certificate_is_refused(broker: Mosquitto) -> None:
    assert broker.pki is not None
    probe = ProbeClient(broker, _tls_client(broker.pki / "ca" / "ca.pem"))
    assert _refused(probe)


def test_plain_tcp_is_refused(broker: Mosquitto) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain", protocol=mqtt.MQTTv5)
    c.username_pw_set("site-a", "anything")
    probe = ProbeClient(broker, c)
    assert _refused(probe)


def test_certificate_from_another_ca_is_refused(broker: Mosquitto, tmp_path: Path) -> None:
    assert broker.pki is not None
    rogue = init_federation(
        tmp_path / "rogue", federation="default", hosts=["localhost"], port=8883, sites=["site-a"]
    )
    site = rogue.site("site-a")
    # It trusts the real broker (so only the broker's check of the client can stop it).
    probe = ProbeClient(
        broker, _tls_client(broker.pki / "ca" / "ca.pem", site / "tls.pem", site / "tls.key")
    )
    assert _refused(probe)


def test_devices_are_confined_to_their_subtree(broker: Mosquitto) -> None:
    check_confinement(broker)


def test_revoked_device_is_refused_by_broker_and_gateway(broker: Mosquitto) -> None:
    from privadx.common.trust.federation import revoke_sites
    from privadx.common.trust.identity import Identity
    from privadx.common.trust.pki import TrustError
    from tests.unit.test_rounds import _update

    assert broker.pki is not None
    gateway = Identity.load(broker.pki / "gateway")
    b = Identity.load(broker.pki / "sites" / "site-b")
    signed = b.signer.sign_envelope(_update(site="site-b"))
    gateway.verifier().verify_envelope(signed, "site-b")  # valid before
    revoke_sites(broker.pki, ["site-b"])
    with pytest.raises(TrustError, match="revoked"):
        Identity.load(broker.pki / "gateway").verifier().verify_envelope(signed, "site-b")
    broker.stop()
    broker.start()  # loads the new crl.pem
    revoked_folder = broker.pki / "sites" / "site-b.revoked"
    probe = ProbeClient(
        broker,
        _tls_client(
            broker.pki / "ca" / "ca.pem", revoked_folder / "tls.pem", revoked_folder / "tls.key"
        ),
    )
    assert _refused(probe)
    still = ProbeClient.of(broker, "site-a")
    assert still.connected.wait(5)
    still.close()


def test_links_disable_nagle(broker: Mosquitto) -> None:
    """A PrivaDx link sends each packet at once (no 40 ms wait for a delayed ACK)."""
    import socket

    from privadx.common.mqtt_link import BrokerAddress, LinkConfig, MqttLink
    from privadx.common.trust.identity import Identity

    identity = broker.identity("site-a")
    assert identity is not None
    link = MqttLink(
        LinkConfig(
            broker=BrokerAddress.parse(broker.url("site-a")),
            client_id="nodelay-probe",
            tls=Identity.load(identity).tls_files,
        )
    )
    link.start(timeout=10)
    try:
        sock = link._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        link.stop()


def test_the_generated_config_runs_as_documented_as_root_and_as_the_mosquitto_user() -> None:
    """`mosquitto -c pki/broker/mosquitto.conf`, unmodified: Debian's Mosquitto started as
    root drops to the `mosquitto` user before reading its key, so `privadx certs init` run
    as root hands the broker's folder to that user. (Other tests add `user root`, because
    pytest's temporary folders are closed to other users.)"""
    import os
    import pwd
    import shutil
    import tempfile

    from harness.mosquitto import free_port

    if os.geteuid() != 0:
        pytest.skip("needs root: checks the broker started by root, as the README shows")
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no 'mosquitto' user (Debian's mosquitto package creates it)")
    root = Path(tempfile.mkdtemp(prefix="privadx-broker-"))  # /tmp: open to other users
    try:
        root.chmod(0o755)
        port = free_port()
        pki = init_federation(
            root / "pki", federation="default", hosts=["localhost"], port=port,
            bind="127.0.0.1", sites=["site-a"],
        )  # fmt: skip
        assert "user root" not in pki.broker_config.read_text()
        broker = Mosquitto(port=port, folder=root, passwords={}, config=pki.broker_config,
                           pki=pki.root)  # fmt: skip
        broker.start()
        try:
            probe = ProbeClient.of(broker, "site-a")
            assert probe.connected.wait(5), "the broker did not accept a device over TLS"
            probe.close()
        finally:
            broker.stop()
        key = pki.root / "broker" / "server.key"
        assert key.stat().st_mode & 0o077 == 0  # still private, now to the broker's user
        assert key.stat().st_uid == pwd.getpwnam("mosquitto").pw_uid
    finally:
        shutil.rmtree(root, ignore_errors=True)
