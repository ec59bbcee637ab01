"""Command-line options shared by the MQTT commands (gateway, edge, demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from privadx.common.mqtt_link import BrokerAddress, MqttVersion


def add_mqtt_options(p: argparse.ArgumentParser, *, broker_required: bool) -> None:
    """``--broker``, ``--mqtt-version`` and ``--federation``."""
    p.add_argument(
        "--broker",
        required=broker_required,
        default=None,
        help="mqtt://host:port or mqtts://host:port"
        + ("" if broker_required else " (default: start an embedded broker)"),
    )
    p.add_argument(
        "--mqtt-version",
        choices=[v.value for v in MqttVersion],
        default=None,
        help="MQTT protocol version (default: 5, or 3.1.1 for the embedded broker)",
    )
    p.add_argument("--federation", default="default", help="federation name (topic root)")
    add_security_options(p)


def add_security_options(p: argparse.ArgumentParser) -> None:
    """``--identity``, ``--insecure`` and ``--allow-unsigned``."""
    p.add_argument(
        "--identity",
        type=Path,
        default=None,
        help="identity folder from `privadx certs` (TLS client certificate, signing key, CA)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a plain mqtt:// broker (unencrypted; for tests and loopback only)",
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="run without an identity: nothing is signed or verified (test federations only)",
    )


def broker_from_args(args: argparse.Namespace) -> tuple[BrokerAddress, MqttVersion]:
    """The broker address and protocol version the options ask for."""
    address = BrokerAddress.parse(args.broker)
    return address, MqttVersion(args.mqtt_version or MqttVersion.V5)
