"""Command-line options shared by the MQTT commands (gateway, edge, demo)."""

from __future__ import annotations

import argparse

from common.mqtt_link import BrokerAddress, MqttVersion


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


def broker_from_args(args: argparse.Namespace) -> tuple[BrokerAddress, MqttVersion]:
    """The broker address and protocol version the options ask for."""
    address = BrokerAddress.parse(args.broker)
    return address, MqttVersion(args.mqtt_version or MqttVersion.V5)
