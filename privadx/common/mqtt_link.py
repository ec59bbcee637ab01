"""A thin, reconnecting MQTT connection (paho-mqtt 2, callback API v2) for edge and gateway.

Callbacks only enqueue: the network thread puts ``(topic, payload, retained)`` on
:attr:`MqttLink.inbox` and the service's own loop decodes and validates, so no message, however
malformed, can raise inside paho's loop. Sessions are persistent (MQTT 5 session expiry, or
``clean_session=False`` on 3.1.1), subscriptions are renewed on every (re)connect, and paho
reconnects by itself with back-off after a broker or network outage.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from privadx.common.compat import StrEnum
from privadx.common.errors import ExitCode, InputError, PrivadxError
from privadx.common.wire.chunks import MAX_PACKET

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class TransportError(PrivadxError):
    """The broker cannot be reached or refused the connection."""

    exit_code = ExitCode.BROKER


class MqttVersion(StrEnum):
    """Protocol version spoken to the broker."""

    V5 = "5"
    V311 = "3.1.1"


@dataclass(frozen=True, kw_only=True)
class BrokerAddress:
    """Where the broker is: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS."""
        return self.scheme == "mqtts"

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; raises :class:`InputError` with what was expected."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise InputError(
                f"broker URL {url!r}: expected mqtt://host[:port] or mqtts://host[:port]"
            )
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise InputError(f"broker URL {url!r}: bad port ({exc})") from exc
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=port,
            username=parts.username,
            password=parts.password,
        )

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class TlsFiles:
    """The CA that signed the broker's certificate, and this client's certificate and key."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


def check_transport(broker: BrokerAddress, *, has_tls: bool, insecure: bool) -> None:
    """Secure by default: ``mqtts://`` needs the CA; plain ``mqtt://`` needs ``insecure``.

    Raises:
        InputError: With what to pass instead.
    """
    if broker.tls and not has_tls:
        raise InputError(
            f"{broker} is a TLS broker: pass --identity DIR (from `privadx certs`) so the "
            "broker's certificate can be checked and this client can present its own"
        )
    if not broker.tls and not insecure:
        raise InputError(
            f"{broker} is plain MQTT: updates, models and credentials would cross the network "
            "unencrypted. Use mqtts:// with --identity, or pass --insecure (tests, loopback)"
        )


@dataclass(frozen=True, kw_only=True)
class LinkConfig:
    """How to connect."""

    broker: BrokerAddress
    client_id: str
    version: MqttVersion = MqttVersion.V5
    tls: TlsFiles | None = None
    insecure: bool = False
    """Allow plain ``mqtt://`` (no TLS)."""
    keepalive: int = 20
    session_expiry: int = 24 * 3600
    max_packet: int = MAX_PACKET
    will: tuple[str, bytes] | None = None
    subscriptions: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_transport(self.broker, has_tls=self.tls is not None, insecure=self.insecure)


Message = tuple[str, bytes, bool]


def _no_delay(client, userdata, sock) -> None:  # type: ignore[no-untyped-def]
    """Send each packet at once (TCP_NODELAY).

    With Nagle's algorithm the tail of a message waits for the peer's delayed ACK (40 ms on
    Linux) before it leaves: 40-90 ms per chunked message on loopback.
    """
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket (a proxy, a test)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttLink:
    """One MQTT connection with an inbox queue."""

    def __init__(self, config: LinkConfig, on_connect: Callable[[], None] | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.config = config
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.connected = threading.Event()
        self._on_connect_hook = on_connect
        self._stopping = False
        v5 = config.version is MqttVersion.V5
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
        )
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        if config.broker.username:
            self._client.username_pw_set(config.broker.username, config.broker.password)
        if config.broker.tls and config.tls is not None:
            files = config.tls
            try:
                self._client.tls_set(
                    ca_certs=str(files.ca_file),
                    certfile=str(files.cert_file) if files.cert_file else None,
                    keyfile=str(files.key_file) if files.key_file else None,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise InputError(
                    f"cannot use the TLS files in {files.ca_file.parent}: {exc}"
                ) from exc
        if config.will:
            self._client.will_set(config.will[0], config.will[1], qos=1, retain=True)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_socket_open = _no_delay

    # --- paho callbacks: record and enqueue only -------------------------------------------
    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            log.warning("broker %s refused the connection: %s", self.config.broker, reason_code)
            return
        for topic in self.config.subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        log.info("connected to %s as %s", self.config.broker, self.config.client_id)
        if self._on_connect_hook is not None:
            try:
                self._on_connect_hook()
            except Exception:  # a hook must never kill the network thread
                log.exception("on-connect hook failed")

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.connected.clear()
        if not self._stopping:
            log.warning("disconnected from %s (%s); reconnecting", self.config.broker, reason_code)

    def _handle_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        self.inbox.put((message.topic, bytes(message.payload), bool(message.retain)))

    # --- API ---------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Connect (retrying in the background) and wait until the first connection is up."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        kwargs: dict[str, object] = {}
        if self.config.version is MqttVersion.V5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.config.session_expiry
            props.MaximumPacketSize = self.config.max_packet
            kwargs = {"clean_start": False, "properties": props}
        try:
            self._client.connect_async(
                self.config.broker.host,
                self.config.broker.port,
                keepalive=self.config.keepalive,
                **kwargs,  # type: ignore[arg-type]
            )
        except (OSError, ValueError) as exc:
            raise TransportError(f"cannot connect to {self.config.broker}: {exc}") from exc
        self._client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            hint = (
                " (with TLS: do the broker's and this client's certificates come from the same "
                "federation CA, and does the broker certificate name this host?)"
                if self.config.broker.tls
                else ""
            )
            raise TransportError(
                f"no connection to the broker at {self.config.broker} within {timeout:.0f} s" + hint
            )

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, wait: float | None = 60.0
    ) -> None:
        """Publish with QoS 1; with ``wait``, block until the broker acknowledged it."""
        if len(payload) + len(topic) + 64 > self.config.max_packet:
            raise InputError(
                f"message of {len(payload)} bytes exceeds the packet limit {self.config.max_packet}"
            )
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if wait is not None and self.connected.is_set():
            try:
                info.wait_for_publish(wait)
            except (RuntimeError, ValueError) as exc:
                # Not sent now (connection lost): paho keeps QoS 1 messages and resends them.
                log.warning("publish to %s queued until the broker is back (%s)", topic, exc)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the network thread."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
