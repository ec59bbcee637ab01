"""The shipped Mosquitto config and ACL confine each site to its own topic subtree."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.wire.topics import Topics
from tests.mosquitto import GATEWAY_USER, Mosquitto, configure

T = Topics("acl-test")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = configure(tmp_path / "broker", ["site-a", "site-b"])
    b.start()
    yield b
    b.stop()


class Client:
    def __init__(self, broker: Mosquitto, user: str, password: str | None = None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{user}-{time.time_ns()}",
            protocol=mqtt.MQTTv5,
        )
        if password is not None or user in broker.passwords:
            self.c.username_pw_set(
                user, password if password is not None else broker.passwords[user]
            )
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.on_connect = lambda c, u, f, rc, p: (
            self.refused if rc.is_failure else self.connected
        ).set()
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()

    def sub(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)
        time.sleep(0.3)

    def pub(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_anonymous_and_wrong_password_are_refused(broker: Mosquitto) -> None:
    anon = Client(broker, "nobody", password="")
    assert anon.refused.wait(5) and not anon.connected.is_set()
    wrong = Client(broker, "site-a", password="wrong")
    assert wrong.refused.wait(5)
    anon.close()
    wrong.close()


def test_sites_are_confined_to_their_subtree(broker: Mosquitto) -> None:
    gw, a, b = Client(broker, GATEWAY_USER), Client(broker, "site-a"), Client(broker, "site-b")
    assert gw.connected.wait(5) and a.connected.wait(5) and b.connected.wait(5)
    gw.sub("privadx/#")
    b.sub("privadx/#")
    a.pub(T.update("site-a"), b"own update")
    a.pub(T.update("site-b"), b"forged update for b")
    a.pub(T.round, b"forged round", retain=True)
    a.pub(T.model(0), b"forged model", retain=True)
    gw.pub(T.round, b"real round", retain=True)
    time.sleep(1.0)
    gw_topics = {t: p for t, p in gw.got}
    assert gw_topics.get(T.update("site-a")) == b"own update"
    assert b"forged update for b" not in gw_topics.values()
    assert gw_topics.get(T.round) == b"real round"
    assert T.model(0) not in gw_topics
    b_topics = [t for t, _ in b.got]
    assert T.update("site-a") not in b_topics, "a site must not read another site's update"
    assert T.round in b_topics
    for c in (gw, a, b):
        c.close()
