"""Start a real Mosquitto on a free port.

With the repository's password config and ACL, or the mutual-TLS config ``privadx certs
init`` generates.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class MissingPrerequisiteError(RuntimeError):
    """Something a local federation needs is not on this machine (say, the broker binary)."""


CONFIG = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
ACL = REPO / "deploy" / "mosquitto" / "acl"
GATEWAY_USER = "privadx-gateway"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mosquitto:
    """A Mosquitto process of one test or benchmark, with its credentials."""

    port: int
    folder: Path
    passwords: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    config: Path | None = None
    pki: Path | None = None
    """With mutual TLS: the `privadx certs init` folder (identities under gateway/, sites/)."""

    @property
    def tls(self) -> bool:
        """Whether clients authenticate with certificates (else passwords)."""
        return self.pki is not None

    def url(self, user: str) -> str:
        """The broker URL ``user`` connects with."""
        if self.tls:
            return f"mqtts://localhost:{self.port}"
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    def identity(self, user: str) -> Path | None:
        """The identity folder of ``user`` (TLS brokers only)."""
        if self.pki is None:
            return None
        return self.pki / ("gateway" if user == GATEWAY_USER else f"sites/{user}")

    def client(self, user: str, client_id: str, *, v5: bool = True) -> Any:
        """A paho client with ``user``'s credentials (password, or TLS identity), not connected."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        identity = self.identity(user)
        if identity is not None:
            c.tls_set(
                ca_certs=str(identity / "ca.pem"),
                certfile=str(identity / "tls.pem"),
                keyfile=str(identity / "tls.key"),
            )
        else:
            c.username_pw_set(user, self.passwords[user])
        return c

    def connect(self, client: Any) -> None:
        """Connect ``client`` (from :meth:`client`) to this broker."""
        client.connect("localhost" if self.tls else "127.0.0.1", self.port)

    def start(self) -> None:
        """Run the broker and wait until it accepts connections."""
        log = (self.folder / "mosquitto.log").open("ab")
        config = self.config or self.folder / "mosquitto.conf"
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.folder / "mosquitto.log").read_text()) from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        """Terminate the broker."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def _prepare(folder: Path) -> int:
    """Check for the broker binary, create ``folder``; return a free port."""
    if shutil.which("mosquitto") is None:
        raise MissingPrerequisiteError("the mosquitto binary is needed (apt-get install mosquitto)")
    folder.mkdir(parents=True, exist_ok=True)
    return free_port()


def _as_root(config_text: str) -> str:
    """Tests run as root: the broker stays root so it can read the test's private files."""
    return config_text + "\nuser root\n" if os.geteuid() == 0 else config_text


def configure(folder: Path, users: list[str]) -> Mosquitto:
    """Write the repository config with this test's port, password file and persistence folder."""
    port = _prepare(folder)
    passwords = {u: f"pw-{u}" for u in [GATEWAY_USER, *users]}
    passwd = folder / "passwd"
    passwd.write_text("")
    for user, pw in passwords.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True)
    text = CONFIG.read_text()
    replacements = {
        "listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
        "password_file deploy/mosquitto/passwd": f"password_file {passwd}",
        "acl_file deploy/mosquitto/acl": f"acl_file {ACL}",
        "persistence_location ./": f"persistence_location {folder}/",
    }
    for old, new in replacements.items():
        assert old in text, f"the repository config no longer contains {old!r}"
        text = text.replace(old, new)
    (folder / "mosquitto.conf").write_text(_as_root(text))
    return Mosquitto(port=port, folder=folder, passwords=passwords)


def configure_tls(folder: Path, users: list[str]) -> Mosquitto:
    """A federation PKI from `privadx certs init` and its broker config, on a free port."""
    from privadx.common.trust.federation import init_federation

    port = _prepare(folder)
    pki = init_federation(
        folder / "pki",
        federation="default",
        hosts=["localhost", "127.0.0.1"],
        port=port,
        bind="127.0.0.1",
        sites=users,
    )
    pki.broker_config.write_text(_as_root(pki.broker_config.read_text()))
    return Mosquitto(port=port, folder=folder, passwords={}, config=pki.broker_config, pki=pki.root)


class ProbeClient:
    """A raw paho client for ACL tests: records what it receives and whether it got in."""

    def __init__(self, broker: Mosquitto, client: Any) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.c = client
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.on_connect = lambda c, u, f, rc, p: (
            self.refused if rc.is_failure else self.connected
        ).set()
        try:
            broker.connect(self.c)
        except OSError:  # TLS handshake refused outright
            self.refused.set()
            return
        self.c.loop_start()

    @classmethod
    def of(cls, broker: Mosquitto, user: str) -> ProbeClient:
        """A client with ``user``'s own credentials."""
        return cls(broker, broker.client(user, f"t-{user}-{time.time_ns()}"))

    def sub(self, topic: str) -> None:
        """Subscribe to ``topic`` (QoS 1) and give the broker a moment."""
        self.c.subscribe(topic, qos=1)
        time.sleep(0.3)

    def pub(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish and wait until the broker has it."""
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        """Disconnect."""
        self.c.disconnect()
        self.c.loop_stop()
