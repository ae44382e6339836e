"""A flood of bad uplink messages through a real Mosquitto into a real ``amr headend`` process.

Three hundred messages that break the contract, on every uplink topic of one gateway (and on
topics that only look like its own), then the gateway's valid messages, with two resends. The
head-end must still be running and answering its API, have stored exactly the valid messages
(every reading once, nothing under another gateway's name), acknowledged exactly their seqs,
and count each bad message it received in ``amr_ingest_malformed`` on /metrics.
"""

from __future__ import annotations

import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from protocols.link import (
    Ack,
    CommandState,
    CommandStatus,
    Event,
    EventBatch,
    EventState,
    GatewayState,
    Health,
    Message,
    Reading,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
)
from tests.support.gateway import wait_for

from .process import Headend, running_headend
from .uplink import GATEWAY, T0, RandomPicker, Sent, corrupt

pytestmark = pytest.mark.integration

BAD_MESSAGES = 300
# what the head-end subscribes to (amr/v1/gw/+/<topic>, shared or not): only these reach it
DELIVERED = re.compile(r"amr/v1/gw/[^/]*/(readings|events|cmd/status|health|state)")


def valid_messages() -> list[Message]:
    readings = [
        ReadingBatch(GATEWAY, seq, T0 + seq * 100, tuple(
            Reading(f"4700000000{m}", T0 + seq * 100 + m,
                    {"energy_import_total": Decimal(f"{1000 + seq}.{m}5"), "credit_remaining": seq})
            for m in range(3)))
        for seq in range(1, 21)
    ]  # fmt: skip
    events = [
        EventBatch(GATEWAY, seq, T0 + seq * 100,
                   (Event("47000000001", T0 + seq * 100, "tamper", EventState.RAISED),))
        for seq in range(21, 24)
    ]  # fmt: skip
    status = CommandStatus(GATEWAY, 24, T0, "unknown-cmd", CommandState.APPLIED, 1, "Accept")
    state = GatewayState(GATEWAY, T0, True, "1.0", ("47000000000", "47000000001", "47000000002"))
    health = Health(GATEWAY, 0, T0, {"uptime_s": 60})
    return [state, *readings, *events, status, health]


class Broker:
    """A publisher for the gateway's topics that also hears what the head-end acknowledges."""

    def __init__(self, port: int) -> None:
        self.acked: dict[str, set[int]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="badinput-flood",
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", port)
        # no local: the flood's own bad messages on the ack topic are not the head-end's acks
        self.client.subscribe("amr/v1/gw/+/ack", options=SubscribeOptions(qos=1, noLocal=True))
        self.client.loop_start()

    def _on_ack(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        ack = decode_message(Topic.ACK, bytes(message.payload))
        assert isinstance(ack, Ack)
        with self.lock:
            seqs = self.acked.setdefault(message.topic.split("/")[3], set())
            for first, last in ack.ranges:
                seqs.update(range(first, last + 1))

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=30)
        assert info.is_published(), f"the broker did not take {topic}"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def headend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Headend]:
    with running_headend(tmp_path_factory.mktemp("flood")) as running:
        yield running


def _stored(headend: Headend, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(headend.db_path) as connection:
        return [tuple(row) for row in connection.execute(query)]


@pytest.mark.reliability("bad input", "300 bad uplink messages through Mosquitto into a running "
                         "amr headend: alive, answering, only the valid messages stored, "
                         "each bad one counted")  # fmt: skip
def test_a_flood_of_bad_messages_changes_nothing_but_the_counter(
    headend: Headend, reliability: dict[str, object]
) -> None:
    rng = random.Random(7)
    valid = valid_messages()
    templates = [m for m in valid if not isinstance(m, Health)] + [valid[-1]]
    bad: list[Sent] = []
    for number in range(BAD_MESSAGES):
        topic, payload = encode_message(templates[number % len(templates)])
        template = Sent(gateway_topic(GATEWAY, topic), payload, True)
        bad.append(corrupt(template, RandomPicker(rng)))
    delivered = [s for s in bad if DELIVERED.fullmatch(s.topic)]
    broker = Broker(headend.broker.port)
    try:
        for sent in bad:
            broker.publish(sent.topic, sent.payload)
        for message in valid:
            topic, payload = encode_message(message)
            broker.publish(gateway_topic(GATEWAY, topic), payload)
        resent = [valid[5], valid[21]]  # a readings batch and an events batch, again
        for message in resent:
            topic, payload = encode_message(message)
            broker.publish(gateway_topic(GATEWAY, topic), payload)

        def settled() -> bool:
            metrics = headend.metrics()
            return metrics["amr_ingest_messages"] == len(valid) + len(resent) and (
                metrics["amr_ingest_malformed"] == len(delivered)
            )

        wait_for(settled, 90, "the head-end to take every message")
        time.sleep(1.0)  # anything more (it must not come) would show in the counters now
        metrics = headend.metrics()
        with broker.lock:
            acked = {gateway: set(seqs) for gateway, seqs in broker.acked.items()}
    finally:
        broker.close()

    assert headend.process.poll() is None, "the head-end died"
    assert metrics["amr_ingest_malformed"] == len(delivered)
    assert metrics["amr_ingest_failures"] == 0
    assert metrics["amr_ingest_duplicates"] == len(resent)
    assert metrics["amr_ingest_messages"] == len(valid) + len(resent)
    gateway = headend.api.get(f"/api/v1/gateways/{GATEWAY}")
    assert gateway["online"] is True and gateway["meters"] == 3
    assert acked == {GATEWAY: set(range(1, 25))}, "acknowledged: exactly the valid seqs"

    batches = [m for m in valid if isinstance(m, ReadingBatch)]
    wanted = sorted((r.meter, r.time, GATEWAY) for b in batches for r in b.readings)
    readings = _stored(headend, "SELECT meter_id, ts, gateway_id FROM readings")
    assert sorted(readings) == wanted, "every valid reading stored once, nothing else"
    assert _stored(headend, "SELECT id FROM gateways") == [(GATEWAY,)]
    assert sorted(_stored(headend, "SELECT seq FROM uplink_seen")) == [(s,) for s in range(1, 25)]
    assert len(_stored(headend, "SELECT id FROM events")) == 3
    assert not [line for line in headend.log if "Traceback" in line], "".join(headend.log[-60:])
    reliability.update(bad_sent=len(bad), bad_delivered=len(delivered),
                       malformed_counted=int(metrics["amr_ingest_malformed"]),
                       valid=len(valid), resent=len(resent), readings_stored=len(readings),
                       lost=len(wanted) - len(set(readings) & set(wanted)),
                       duplicated=len(readings) - len(set(readings)))  # fmt: skip
