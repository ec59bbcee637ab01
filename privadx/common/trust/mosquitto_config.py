"""Mosquitto configuration for a federation: ACL rules and the mutual-TLS listener.

The ACL text is the single definition of who may publish and read what; the repository's
``deploy/mosquitto/acl`` (password deployments) is this text, and ``privadx certs init``
writes it beside a TLS listener that requires a client certificate issued by the federation
CA and takes the MQTT username from the certificate's common name
(``use_identity_as_username``), so the ``%u`` patterns confine each device to its own subtree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from privadx.common.trust.pki import GATEWAY_IDENTITY
from privadx.common.wire.chunks import MAX_PACKET
from privadx.common.wire.topics import PREFIX, Channel

ACL_HEADER = """\
# PrivaDx topic permissions (Mosquitto acl_file).
# Topic tree: privadx/<federation>/{round, model/<i>, onnx/<i>, gateway/status,
#                                   secagg, site/<site>/{presence, update, secagg, evaluation,
#                                   inbox}}
"""


def render_acl() -> str:
    """The ACL: the gateway owns the tree; each other user writes only its own subtree."""
    site = f"{PREFIX}/+/{Channel.SITE}/%u"
    return (
        ACL_HEADER
        + f"""
# The gateway publishes rounds and models and reads every site's presence and updates.
user {GATEWAY_IDENTITY}
topic readwrite {PREFIX}/#

# Every other user is a site whose username is its site id (%u, a whole topic level):
# it reads rounds, models, the gateway's status, secure-aggregation steps and its own
# inbox, and writes only its own subtree.
pattern read {PREFIX}/+/{Channel.ROUND}
pattern read {PREFIX}/+/{Channel.MODEL}/#
pattern read {PREFIX}/+/{Channel.ONNX}/#
pattern read {PREFIX}/+/{Channel.GATEWAY}/{Channel.STATUS}
pattern read {PREFIX}/+/{Channel.SECAGG}
pattern read {site}/{Channel.INBOX}
pattern write {site}/{Channel.PRESENCE}
pattern write {site}/{Channel.UPDATE}
pattern write {site}/{Channel.SECAGG}
pattern write {site}/{Channel.EVALUATION}
"""
    )


TUNING = f"""\
# Sizes, chosen on purpose (the defaults drop QoS 1 messages silently):
# - a chunk is at most 256 KiB plus a small envelope; packets above 1 MiB are refused.
max_packet_size {MAX_PACKET}
# - every site may have the whole model (all chunks) queued while offline or slow, and the
#   gateway may have an update from every site queued; 1000 (the default) is too few.
max_queued_messages 100000
max_queued_bytes 0
max_inflight_messages 100
# Latency: without it a message's last TCP segment waits for the client's delayed ACK
# (40 ms on Linux) before the broker sends it.
set_tcp_nodelay true
"""


@dataclass(frozen=True, kw_only=True)
class TlsListener:
    """Where the broker listens and which files it uses (absolute paths)."""

    port: int = 8883
    bind: str = "0.0.0.0"
    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path
    acl_file: Path
    persistence_dir: Path


def render_tls_config(listener: TlsListener) -> str:
    """A complete ``mosquitto.conf`` for a mutual-TLS federation broker."""
    return f"""\
# Mosquitto 2.x configuration for a PrivaDx federation: mutual TLS only.
# Written by `privadx certs init`. Usage: mosquitto -c {listener.persistence_dir}/mosquitto.conf

per_listener_settings false
listener {listener.port} {listener.bind}
cafile {listener.ca_file}
certfile {listener.cert_file}
keyfile {listener.key_file}
# Revoked devices (`privadx certs revoke` rewrites it; restart or SIGHUP the broker after).
crlfile {listener.crl_file}
tls_version tlsv1.2
# Only clients holding a certificate from the federation CA get in; the certificate's common
# name is the MQTT username the ACL sees (the site id, or {GATEWAY_IDENTITY}).
require_certificate true
use_identity_as_username true
allow_anonymous false
acl_file {listener.acl_file}

{TUNING}
# Persistent sessions survive a broker restart.
persistence true
persistence_location {listener.persistence_dir}/
autosave_interval 30
persistent_client_expiration 7d

log_type error
log_type warning
log_type notice
connection_messages true
"""
