"""An embedded MQTT broker for a gateway host that has none (rumqttd via ``iotcore``).

It speaks MQTT 3.1.1, which the protocol degrades to cleanly (retained messages, last wills,
QoS 1 and persistent sessions all exist in 3.1.1); clients connected to it must use
``--mqtt-version 3.1.1``. Production deployments use Mosquitto with the shipped config
(``deploy/mosquitto/``) and MQTT 5.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from privadx.common.deps import require
from privadx.common.mqtt_link import BrokerAddress, MqttVersion
from privadx.common.wire.chunks import MAX_PACKET

log = logging.getLogger(__name__)

EMBEDDED_VERSION = MqttVersion.V311
MAX_PAYLOAD = MAX_PACKET


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A broker process on loopback for the lifetime of a ``with`` block."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port()
        self._broker: Any = None

    @property
    def address(self) -> BrokerAddress:
        """Where clients connect."""
        return BrokerAddress(scheme="mqtt", host=self.host, port=self.port)

    def __enter__(self) -> EmbeddedBroker:
        iotcore = require("iotcore")
        self._broker = iotcore.Broker(
            port=self.port, listen=self.host, max_payload_size=MAX_PAYLOAD, max_inflight_count=1000
        )
        self._broker.start()
        log.info("embedded MQTT broker listening on %s (MQTT 3.1.1)", self.address)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._broker is not None:
            self._broker.stop()
