"""The shipped Mosquitto config (passwords) and ACL confine each site to its own subtree."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from harness.mosquitto import GATEWAY_USER, Mosquitto, ProbeClient, configure
from privadx.common.wire.topics import Topics

T = Topics("acl-test")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = configure(tmp_path / "broker", ["site-a", "site-b"])
    b.start()
    yield b
    b.stop()


def password_client(broker: Mosquitto, user: str, password: str) -> ProbeClient:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.time_ns()}", protocol=mqtt.MQTTv5
    )
    if user:
        c.username_pw_set(user, password)
    return ProbeClient(broker, c)


def test_anonymous_and_wrong_password_are_refused(broker: Mosquitto) -> None:
    anon = password_client(broker, "", password="")
    assert anon.refused.wait(5) and not anon.connected.is_set()
    wrong = password_client(broker, "site-a", password="wrong")
    assert wrong.refused.wait(5)
    anon.close()
    wrong.close()


def test_sites_are_confined_to_their_subtree(broker: Mosquitto) -> None:
    check_confinement(broker)


def check_confinement(broker: Mosquitto) -> None:
    """site-a cannot write b's update, the round, the model or secure-aggregation steps;
    b cannot read a's update, secure-aggregation messages or inbox; b reads its own inbox."""
    gw, a, b = (ProbeClient.of(broker, u) for u in (GATEWAY_USER, "site-a", "site-b"))
    assert gw.connected.wait(5) and a.connected.wait(5) and b.connected.wait(5)
    gw.sub("privadx/#")
    b.sub("privadx/#")
    a.pub(T.update("site-a"), b"own update")
    a.pub(T.update("site-b"), b"forged update for b")
    a.pub(T.round, b"forged round", retain=True)
    a.pub(T.model(0), b"forged model", retain=True)
    a.pub(T.site_secagg("site-a"), b"own masked input")
    a.pub(T.secagg, b"forged unmask request")
    a.pub(T.inbox("site-b"), b"forged shares for b")
    gw.pub(T.round, b"real round", retain=True)
    gw.pub(T.inbox("site-a"), b"shares for a")
    gw.pub(T.inbox("site-b"), b"shares for b")
    time.sleep(1.0)
    gw_topics = {t: p for t, p in gw.got}
    assert gw_topics.get(T.update("site-a")) == b"own update"
    assert b"forged update for b" not in gw_topics.values()
    assert gw_topics.get(T.round) == b"real round"
    assert T.model(0) not in gw_topics
    assert gw_topics.get(T.site_secagg("site-a")) == b"own masked input"
    assert T.secagg not in gw_topics
    assert b"forged shares for b" not in gw_topics.values()
    b_topics = [t for t, _ in b.got]
    assert T.update("site-a") not in b_topics, "a site must not read another site's update"
    assert T.site_secagg("site-a") not in b_topics
    assert T.inbox("site-a") not in b_topics, "a site must not read another site's shares"
    assert (T.inbox("site-b"), b"shares for b") in b.got
    assert T.round in b_topics
    for c in (gw, a, b):
        c.close()


def test_shipped_acl_is_the_generated_one() -> None:
    from harness.mosquitto import ACL
    from privadx.common.trust.mosquitto_config import render_acl

    assert ACL.read_text() == render_acl()


def test_shipped_config_has_the_generated_tuning() -> None:
    """Queue sizes, packet limit and TCP_NODELAY: the shipped and generated configs agree."""
    from harness.mosquitto import CONFIG
    from privadx.common.trust.mosquitto_config import TUNING

    assert TUNING in CONFIG.read_text()
    assert "set_tcp_nodelay true" in TUNING
