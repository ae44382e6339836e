"""The reactor-driven paho client against a real Mosquitto: round trips, and surviving a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import pytest_twisted
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.internet import defer, reactor, task

from headend.mqtt import ReactorMqtt
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "mosquitto")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def make_client(client_id: str) -> ReactorMqtt:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    return ReactorMqtt(reactor, client, min_backoff_s=0.1, max_backoff_s=0.5)


def session() -> dict[str, Any]:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    return {"clean_start": False, "properties": properties}


@pytest_twisted.ensureDeferred
async def test_publish_subscribe_and_resubscribe_after_a_broker_restart(broker: Mosquitto) -> None:
    received: list[bytes] = []
    subscriber = make_client("sub-1")
    subscriber.on_connect = lambda c, u, f, rc, p: c.subscribe("t/#", qos=1)
    subscriber.on_message = lambda c, u, message: received.append(message.payload)
    publisher = make_client("pub-1")
    try:
        await subscriber.start("127.0.0.1", broker.port, keepalive=5, **session()).addTimeout(
            10, reactor
        )
        await publisher.start("127.0.0.1", broker.port, keepalive=5, **session()).addTimeout(
            10, reactor
        )
        await task.deferLater(reactor, 0.3, lambda: None)
        for index in range(50):
            assert publisher.publish("t/x", b"%d" % index).rc == mqtt.MQTT_ERR_SUCCESS
        await _until(lambda: len(received) == 50)
        broker.stop()
        await _until(lambda: not publisher.connected and not subscriber.connected)
        broker.start()
        await publisher.when_connected().addTimeout(15, reactor)
        await subscriber.when_connected().addTimeout(15, reactor)
        await task.deferLater(reactor, 0.3, lambda: None)
        assert publisher.publish("t/x", b"after").rc == mqtt.MQTT_ERR_SUCCESS
        await _until(lambda: b"after" in received)
        assert publisher.reconnects >= 1 and subscriber.reconnects >= 1
        assert received[:50] == [b"%d" % i for i in range(50)]
    finally:
        await defer.gatherResults([publisher.stop(), subscriber.stop()]).addTimeout(10, reactor)


async def _until(condition: Any, timeout_s: float = 15.0) -> None:
    waited = 0.0
    while not condition():
        assert waited < timeout_s, "condition not met in time"
        await task.deferLater(reactor, 0.05, lambda: None)
        waited += 0.05
