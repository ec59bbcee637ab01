"""The gateway's side of the wire: sign, chunk and publish; receive and decode into messages.

The round logic (:mod:`gateway.service`) never touches MQTT: it asks this transport for the
next :class:`Inbound` message (already decoded, with the site its topic names) and hands it
envelopes to sign and publish. Tests give the gateway a transport over a fake link.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import GatewayConfig
from privadx.common.errors import PrivadxError
from privadx.common.mqtt_link import LinkConfig, MqttLink
from privadx.common.trust.identity import Identity
from privadx.common.wire import envelope as wire
from privadx.common.wire.chunks import split
from privadx.common.wire.envelope import Envelope, Kind, WireError
from privadx.common.wire.messages import GATEWAY_SENDER, Presence, presence_envelope
from privadx.common.wire.topics import Channel, Topics

log = logging.getLogger(__name__)


class Link(Protocol):
    """What the transport needs of an MQTT connection (:class:`MqttLink` in service)."""

    inbox: queue.Queue[tuple[str, bytes, bool]]

    def start(self) -> None:
        """Connect and subscribe."""

    def stop(self) -> None:
        """Disconnect."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish one message."""


@dataclass(frozen=True)
class Inbound:
    """One message from a site: the channel its topic names and the decoded envelope."""

    site: str
    channel: Channel
    env: Envelope
    nbytes: int


class InboundError(WireError):
    """A message that cannot be decoded; ``source`` names its site (or topic)."""

    def __init__(
        self,
        source: str,
        reason: str,
        channel: Channel | None = None,
        *,
        label: str | None = "malformed",
    ) -> None:
        super().__init__(reason)
        self.source = source
        self.channel = channel
        """The site channel its topic names, if any."""
        self.label = label
        """How the rejection is counted (``None``: already counted for its message)."""


SITE_CHANNELS = (Channel.PRESENCE, Channel.UPDATE, Channel.SECAGG, Channel.EVALUATION)


class GatewayTransport:
    """Signs, chunks and publishes the gateway's messages; decodes the sites' messages."""

    def __init__(
        self, config: GatewayConfig, identity: Identity | None, link: Link | None = None
    ) -> None:
        self.topics = Topics(config.federation)
        self.identity = identity
        self.chunk_size = config.chunk_size
        self.run_id = config.run_id
        self.bytes_published = 0
        """Bytes of models published (every chunk, envelope included)."""
        self._published_chunks: dict[Channel, int] = {}
        self.link: Link = link or MqttLink(
            LinkConfig(
                broker=config.broker,
                client_id=f"privadx-gateway-{config.federation}",
                version=config.mqtt_version,
                tls=identity.tls_files if identity else None,
                insecure=config.insecure,
                will=(
                    self.topics.gateway_status,
                    wire.to_bytes(self.sign(self._status(Presence.OFFLINE))),
                ),
                subscriptions=tuple(self._site_topic(c, "+") for c in SITE_CHANNELS),
            )
        )

    def _site_topic(self, channel: Channel, site: str) -> str:
        t = self.topics
        by_channel = {
            Channel.PRESENCE: t.presence,
            Channel.UPDATE: t.update,
            Channel.SECAGG: t.site_secagg,
            Channel.EVALUATION: t.evaluation,
        }
        return by_channel[channel](site)

    def start(self) -> None:
        """Connect, clear a previous run's retained "finished" announcement, say online."""
        self.link.start()
        self.link.publish(self.topics.round, b"", retain=True)
        self.publish_status(Presence.ONLINE)

    def stop(self) -> None:
        """Say offline and disconnect."""
        self.publish_status(Presence.OFFLINE)
        self.link.stop()

    # --- inbound ---------------------------------------------------------------------------
    def receive(self, timeout: float) -> Inbound | None:
        """The next site message, or ``None`` (nothing within ``timeout``, or a cleared one).

        Raises:
            InboundError: A message on an unexpected topic or not a valid envelope.
        """
        try:
            topic, payload, _retained = self.link.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if not payload:
            return None  # a cleared retained message
        site = self.topics.site_of(topic)
        if site is None:
            raise InboundError(topic, f"message on unexpected topic {topic}")
        channel = next((c for c in SITE_CHANNELS if topic == self._site_topic(c, site)), None)
        if channel is None:
            raise InboundError(site, f"message on unexpected topic {topic}")
        try:
            env = wire.from_bytes(payload)
        except WireError as exc:
            raise InboundError(site, str(exc), channel) from None
        return Inbound(site, channel, env, len(payload))

    # --- outbound --------------------------------------------------------------------------
    def sign(self, env: Envelope) -> Envelope:
        """``env`` signed with the gateway's key (as it is, without an identity)."""
        return self.identity.signer.sign_envelope(env) if self.identity else env

    def publish(self, topic: str, env: Envelope, *, retain: bool = False) -> None:
        """Sign and publish one envelope."""
        self.link.publish(topic, wire.to_bytes(self.sign(env)), retain=retain)

    def publish_round(self, env: Envelope) -> None:
        """The round announcement (retained)."""
        self.publish(self.topics.round, env, retain=True)

    def publish_chunked(self, channel: Channel, env: Envelope) -> None:
        """A model or the ONNX file as retained chunks; stale chunks of a larger one cleared."""
        chunks = split(self.sign(env), self.chunk_size)
        topic_of = self.topics.model if channel is Channel.MODEL else self.topics.onnx
        for chunk in chunks:
            data = wire.to_bytes(chunk)
            self.link.publish(topic_of(chunk.meta["chunk"]["index"]), data, retain=True)
            self.bytes_published += len(data)
        for stale in range(len(chunks), self._published_chunks.get(channel, 0)):
            self.link.publish(topic_of(stale), b"", retain=True)
        self._published_chunks[channel] = len(chunks)

    def publish_onnx(
        self, round_num: int, data: bytes, sha256: str, manifest: dict[str, Any] | None
    ) -> None:
        """The final ONNX model and its signed manifest, as retained chunks."""
        env = Envelope(
            kind=Kind.ONNX,
            run=self.run_id,
            round=round_num,
            sender=GATEWAY_SENDER,
            payload=data,
            meta={"onnx_sha256": sha256, "manifest": manifest},
        )
        self.publish_chunked(Channel.ONNX, env)
        log.info("published model.onnx (%d bytes) to the sites", len(data))

    def publish_secagg(self, topic: str, env: Envelope) -> None:
        """A secure-aggregation step, chunked, not retained."""
        for chunk in split(self.sign(env), self.chunk_size):
            self.link.publish(topic, wire.to_bytes(chunk))

    def publish_status(self, presence: Presence) -> None:
        """The gateway's retained online/offline status (a failure is only logged)."""
        try:
            self.publish(self.topics.gateway_status, self._status(presence), retain=True)
        except PrivadxError as exc:
            log.warning("could not publish gateway status: %s", exc)

    def _status(self, presence: Presence) -> Envelope:
        return presence_envelope(Kind.STATUS, GATEWAY_SENDER, presence, run=self.run_id)
