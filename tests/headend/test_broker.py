"""The embedded MQTT broker.

Integration tests: real paho clients (MQTT 5.0 and 3.1.1, driven by the reactor through
:class:`headend.mqtt.ReactorMqtt`) and raw sockets speaking the codec, over 127.0.0.1.
Unit tests: time-driven behaviour (keep alive, expiry, will delay) on a MemoryReactorClock and
StringTransport, with no real time.

Every awaited Deferred has a timeout; fixtures stop every client and the broker.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.subscribeoptions import SubscribeOptions
from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from headend.broker import EmbeddedBroker
from headend.mqtt import ReactorMqtt
from protocols.mqtt import (
    MQTT_3_1_1,
    MQTT_5,
    NEED_DATA,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketReader,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    encode,
)
from tests.protocols.mqtt.test_hypothesis import packets as client_packets

integration = pytest.mark.integration
TIMEOUT_S = 10


# -- raw clients: bytes from the codec, over a real socket --------------------------------------


class RawClient(Protocol):
    """A test client that sends packets the codec encodes and collects what the broker sends."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.reader = PacketReader(level)
        self.packets: collections.deque[Packet] = collections.deque()
        self.closed = False
        self._waiters: list[defer.Deferred[None]] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.reader.receive_data(data)
        while (packet := self.reader.next_packet()) is not NEED_DATA:
            assert not isinstance(packet, type(NEED_DATA))
            self.packets.append(packet)
        self._wake()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    def send(self, packet: Packet) -> None:
        assert self.transport is not None
        self.transport.write(encode(packet, self.level))

    def send_bytes(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def next(self, timeout_s: float = 5.0) -> Packet:
        while not self.packets:
            assert not self.closed, "the broker closed the connection"
            waiter: defer.Deferred[None] = defer.Deferred()
            self._waiters.append(waiter)
            await waiter.addTimeout(timeout_s, reactor)
        return self.packets.popleft()

    async def nothing_more(self, wait_s: float = 0.3) -> None:
        await task.deferLater(reactor, wait_s, lambda: None)
        assert not self.packets, f"unexpected {list(self.packets)}"

    async def wait_closed(self, timeout_s: float = 5.0) -> None:
        while not self.closed:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._waiters.append(waiter)
            await waiter.addTimeout(timeout_s, reactor)

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abortConnection()  # type: ignore[attr-defined]


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    waited = 0.0
    while not condition():
        assert waited < timeout_s, "condition not met in time"
        await task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


# -- fixtures -----------------------------------------------------------------------------------


@pytest_twisted.async_yield_fixture()
async def broker() -> AsyncIterator[EmbeddedBroker]:
    service = EmbeddedBroker(reactor)
    service.startService()
    yield service
    await service.stopService().addTimeout(TIMEOUT_S, reactor)
    assert service.internal_errors == 0


class Clients:
    """Makes clients against the broker and closes all of them at the end of the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.raw: list[RawClient] = []
        self.paho: list[ReactorMqtt] = []

    async def raw_client(self, level: int = MQTT_5) -> RawClient:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        client = await connectProtocol(endpoint, RawClient(level)).addTimeout(TIMEOUT_S, reactor)
        assert isinstance(client, RawClient)
        self.raw.append(client)
        return client

    async def connected_raw(self, connect: Connect) -> tuple[RawClient, ConnAck]:
        client = await self.raw_client(connect.protocol_level)
        client.send(connect)
        connack = await client.next()
        assert isinstance(connack, ConnAck)
        return client, connack

    def paho_client(
        self,
        client_id: str,
        version: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        clean_session: bool | None = None,
    ) -> ReactorMqtt:
        extra: dict[str, Any] = {} if clean_session is None else {"clean_session": clean_session}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, **extra
        )
        wrapped = ReactorMqtt(reactor, client, min_backoff_s=0.1, max_backoff_s=0.5)
        self.paho.append(wrapped)
        return wrapped

    async def close(self) -> None:
        for client in self.raw:
            client.abort()
        waits = [c.stop() for c in self.paho]
        waits += [defer.ensureDeferred(c.wait_closed()) for c in self.raw]
        await defer.gatherResults(waits).addTimeout(TIMEOUT_S, reactor)


@pytest_twisted.async_yield_fixture()
async def clients(broker: EmbeddedBroker) -> AsyncIterator[Clients]:
    made = Clients(broker.port)
    yield made
    await made.close()


def v5_session(expiry_s: int = 3600) -> dict[str, Any]:
    properties = PahoProperties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = expiry_s
    return {"clean_start": False, "properties": properties}


async def start(client: ReactorMqtt, port: int, **connect: Any) -> None:
    await client.start("127.0.0.1", port, keepalive=30, **connect).addTimeout(TIMEOUT_S, reactor)


async def subscribe(client: ReactorMqtt, topic: str, qos: int = 1, **options: Any) -> list[int]:
    """Subscribe with paho and wait for the SUBACK; the granted QoS / reason codes."""
    done: defer.Deferred[list[int]] = defer.Deferred()

    def on_subscribe(c: Any, userdata: Any, mid: int, reason_codes: Any, props: Any) -> None:
        codes = [int(getattr(code, "value", code)) for code in reason_codes]
        reactor.callLater(0, done.callback, codes)  # outside paho's locks

    client.client.on_subscribe = on_subscribe
    if client.client.protocol == mqtt.MQTTv5 and options:
        rc, _ = client.client.subscribe(topic, options=SubscribeOptions(qos=qos, **options))
    else:
        rc, _ = client.client.subscribe(topic, qos=qos)
    assert rc == mqtt.MQTT_ERR_SUCCESS
    return await done.addTimeout(TIMEOUT_S, reactor)


def collect(client: ReactorMqtt) -> list[mqtt.MQTTMessage]:
    messages: list[mqtt.MQTTMessage] = []
    client.on_message = lambda c, u, message: messages.append(message)
    return messages


def payloads(messages: list[mqtt.MQTTMessage]) -> list[bytes]:
    return [bytes(m.payload) for m in messages]


# -- publish / subscribe ------------------------------------------------------------------------


@integration
@pytest_twisted.ensureDeferred
async def test_qos0_and_qos1_between_mqtt5_and_mqtt311_clients(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    v5 = clients.paho_client("sub-v5")
    v311 = clients.paho_client("sub-v311", mqtt.MQTTv311)
    publisher = clients.paho_client("pub", mqtt.MQTTv311)
    got5, got311 = collect(v5), collect(v311)
    for client in (v5, v311, publisher):
        await start(client, broker.port)
    assert await subscribe(v5, "t/#", qos=1) == [1]
    assert await subscribe(v311, "t/+", qos=0) == [0]
    zero = publisher.publish("t/a", b"zero", qos=0)
    one = publisher.publish("t/b", b"one", qos=1)
    assert zero.rc == one.rc == mqtt.MQTT_ERR_SUCCESS
    await _until(lambda: len(got5) == 2 and len(got311) == 2 and one.is_published())
    assert [(m.topic, m.payload, m.qos) for m in got5] == [("t/a", b"zero", 0), ("t/b", b"one", 1)]
    # the QoS a subscriber gets is the lower of the publication's and its subscription's
    assert [(m.topic, m.payload, m.qos) for m in got311] == [
        ("t/a", b"zero", 0),
        ("t/b", b"one", 0),
    ]
    assert not any(m.retain for m in got5 + got311)


@integration
@pytest_twisted.ensureDeferred
async def test_wildcards_and_dollar_topics(broker: EmbeddedBroker, clients: Clients) -> None:
    everything = clients.paho_client("everything")
    middle = clients.paho_client("middle", mqtt.MQTTv311)
    system = clients.paho_client("system")
    publisher = clients.paho_client("publisher")
    got_all, got_middle, got_system = collect(everything), collect(middle), collect(system)
    for client in (everything, middle, system, publisher):
        await start(client, broker.port)
    await subscribe(everything, "#")
    await subscribe(middle, "a/+/c")
    await subscribe(system, "$SYS/#")
    for topic in ("a/b/c", "a/b/d", "$SYS/x", "a/b/c/d", "a//c"):
        publisher.publish(topic, topic.encode(), qos=1)
    publisher.publish("end", b"end", qos=1)
    await _until(lambda: b"end" in payloads(got_all) and len(got_system) == 1)
    assert payloads(got_all) == [b"a/b/c", b"a/b/d", b"a/b/c/d", b"a//c", b"end"]  # no $SYS
    assert payloads(got_middle) == [b"a/b/c", b"a//c"]
    assert payloads(got_system) == [b"$SYS/x"]


@integration
@pytest_twisted.ensureDeferred
async def test_mqtt5_properties_pass_through_and_are_dropped_for_311(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    v5, v311, publisher = (
        clients.paho_client("p5"),
        clients.paho_client("p311", mqtt.MQTTv311),
        clients.paho_client("pp"),
    )
    got5, got311 = collect(v5), collect(v311)
    for client in (v5, v311, publisher):
        await start(client, broker.port)
    await subscribe(v5, "req")
    await subscribe(v311, "req")
    properties = PahoProperties(PacketTypes.PUBLISH)
    properties.UserProperty = [("meter", "0102"), ("kind", "reading")]
    properties.CorrelationData = b"\x01\x02"
    properties.ResponseTopic = "resp/1"
    properties.ContentType = "application/json"
    properties.PayloadFormatIndicator = 1
    properties.MessageExpiryInterval = 3600
    publisher.client.publish("req", b"{}", qos=1, properties=properties)
    await _until(lambda: len(got5) == 1 and len(got311) == 1)
    received: Any = got5[0].properties
    assert received.UserProperty == [("meter", "0102"), ("kind", "reading")]
    assert received.CorrelationData == b"\x01\x02"
    assert received.ResponseTopic == "resp/1"
    assert received.ContentType == "application/json"
    assert received.PayloadFormatIndicator == 1
    assert 3599 <= received.MessageExpiryInterval <= 3600
    assert got311[0].payload == b"{}"


@integration
@pytest_twisted.ensureDeferred
async def test_retained_messages_and_their_deletion(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    publisher = clients.paho_client("retainer")
    await start(publisher, broker.port)
    first = publisher.publish("r/1", b"on", qos=1, retain=True)
    second = publisher.publish("r/2", b"off", qos=0, retain=True)
    await _until(lambda: first.is_published() and broker.retained_topics == ["r/1", "r/2"])
    assert second.rc == mqtt.MQTT_ERR_SUCCESS

    late = clients.paho_client("late", mqtt.MQTTv311)
    got = collect(late)
    await start(late, broker.port)
    await subscribe(late, "r/#")
    await _until(lambda: len(got) == 2)
    assert sorted((m.topic, m.payload, m.retain) for m in got) == [
        ("r/1", b"on", True),
        ("r/2", b"off", True),
    ]
    # a live message on a subscribed topic arrives with RETAIN 0 [MQTT-3.3.1-9]
    publisher.publish("r/1", b"live", qos=1, retain=True)
    await _until(lambda: len(got) == 3)
    assert (got[2].payload, got[2].retain) == (b"live", False)

    deletion = publisher.publish("r/1", b"", qos=1, retain=True)  # empty retained: deletes
    await _until(lambda: deletion.is_published() and len(got) == 4)
    assert broker.retained_topics == ["r/2"]
    latest = clients.paho_client("latest")
    got_latest = collect(latest)
    await start(latest, broker.port)
    await subscribe(latest, "r/#")
    await _until(lambda: len(got_latest) == 1)
    await task.deferLater(reactor, 0.2, lambda: None)
    assert [(m.topic, m.payload) for m in got_latest] == [("r/2", b"off")]


@integration
@pytest_twisted.ensureDeferred
async def test_retain_handling_2_sends_no_retained_messages(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    client, _ = await clients.connected_raw(Connect("rh"))
    client.send(Publish("rh/x", b"kept", qos=1, retain=True, packet_id=1))
    assert await client.next() == PubAck(1)
    client.send(Subscribe(2, (Subscription("rh/#", 1, retain_handling=2),)))
    assert await client.next() == SubAck(2, (1,))
    client.send(Subscribe(3, (Subscription("rh/#", 1, retain_handling=1),)))  # exists already
    assert await client.next() == SubAck(3, (1,))
    client.send(Subscribe(4, (Subscription("rh/+", 1, retain_handling=1),)))  # new: sent
    assert await client.next() == SubAck(4, (1,))
    retained = await client.next()
    assert isinstance(retained, Publish)
    assert (retained.topic, retained.payload, retained.retain) == ("rh/x", b"kept", True)
    await client.nothing_more()


# -- wills ----------------------------------------------------------------------------------------


@integration
@pytest.mark.parametrize("level", [MQTT_5, MQTT_3_1_1])
@pytest_twisted.ensureDeferred
async def test_will_is_published_when_the_socket_closes_without_disconnect(
    broker: EmbeddedBroker, clients: Clients, level: int
) -> None:
    watcher = clients.paho_client("watcher")
    got = collect(watcher)
    await start(watcher, broker.port)
    await subscribe(watcher, "will/#")
    gateway, connack = await clients.connected_raw(
        Connect("gw-1", level, will=Will("will/gw-1", b"offline", qos=1, retain=True))
    )
    assert connack == ConnAck(False, 0, connack.properties)
    gateway.abort()  # RST, no DISCONNECT
    await _until(lambda: len(got) == 1)
    assert (got[0].topic, got[0].payload, got[0].qos) == ("will/gw-1", b"offline", 1)
    assert broker.retained_topics == ["will/gw-1"]


@integration
@pytest_twisted.ensureDeferred
async def test_no_will_after_a_clean_disconnect(broker: EmbeddedBroker, clients: Clients) -> None:
    watcher = clients.paho_client("watcher")
    got = collect(watcher)
    await start(watcher, broker.port)
    await subscribe(watcher, "will/#")
    for version in (mqtt.MQTTv5, mqtt.MQTTv311):
        leaving = clients.paho_client(f"leaving-{version}", version)
        leaving.client.will_set("will/leaving", b"offline", qos=1)
        await start(leaving, broker.port)
        await leaving.stop().addTimeout(TIMEOUT_S, reactor)  # DISCONNECT, then close
    marker = clients.paho_client("marker")
    await start(marker, broker.port)
    marker.publish("will/marker", b"marker", qos=1)
    await _until(lambda: b"marker" in payloads(got))
    assert payloads(got) == [b"marker"]


@integration
@pytest_twisted.ensureDeferred
async def test_disconnect_with_will_message_publishes_it(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    watcher, _ = await clients.connected_raw(Connect("watcher"))
    watcher.send(Subscribe(1, (Subscription("will/#", 1),)))
    assert await watcher.next() == SubAck(1, (1,))
    leaving, _ = await clients.connected_raw(Connect("leaving", will=Will("will/x", b"bye")))
    leaving.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE))
    await leaving.wait_closed()
    will = await watcher.next()
    assert isinstance(will, Publish)
    assert (will.topic, will.payload) == ("will/x", b"bye")


# -- persistent sessions ------------------------------------------------------------------------


@integration
@pytest.mark.parametrize(
    "version", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311], ids=["mqtt5", "mqtt311"]
)
@pytest_twisted.ensureDeferred
async def test_a_persistent_session_keeps_qos1_messages_while_the_subscriber_is_away(
    broker: EmbeddedBroker, clients: Clients, version: MQTTProtocolVersion
) -> None:
    v5 = version == MQTTProtocolVersion.MQTTv5
    connect = v5_session() if v5 else {}
    subscriber = clients.paho_client("head-end", version, None if v5 else False)
    connects: list[bool] = []
    subscriber.on_connect = lambda c, u, flags, rc, p: connects.append(flags.session_present)
    got = collect(subscriber)
    await start(subscriber, broker.port, **connect)
    await subscribe(subscriber, "readings/#", qos=1)
    await subscriber.stop().addTimeout(TIMEOUT_S, reactor)
    await _until(lambda: broker.connected_clients == [])
    assert broker.session_exists("head-end")

    publisher = clients.paho_client("gateway")
    await start(publisher, broker.port)
    infos = [publisher.publish("readings/7", b"%d" % i, qos=1) for i in range(300)]
    publisher.publish("readings/7", b"qos0 is not queued", qos=0)
    await _until(lambda: all(info.is_published() for info in infos))
    assert broker.queued_messages("head-end") == 300

    again = clients.paho_client("head-end", version, None if v5 else False)  # no re-subscribe
    again.on_connect = lambda c, u, flags, rc, p: connects.append(flags.session_present)
    got_again = collect(again)
    await start(again, broker.port, **connect)
    await _until(lambda: len(got_again) == 300)
    assert payloads(got_again) == [b"%d" % i for i in range(300)]
    assert connects == [False, True]
    assert got == []
    await _until(lambda: broker.queued_messages("head-end") == 0)


@integration
@pytest_twisted.ensureDeferred
async def test_a_clean_session_is_forgotten(broker: EmbeddedBroker, clients: Clients) -> None:
    client, connack = await clients.connected_raw(Connect("short", clean_start=True))
    assert connack.session_present is False
    client.send(Subscribe(1, (Subscription("x", 1),)))
    await client.next()
    client.send(Disconnect())
    await client.wait_closed()
    await _until(lambda: not broker.session_exists("short"))
    _, connack = await clients.connected_raw(Connect("short", clean_start=False))
    assert connack.session_present is False  # nothing was kept (expiry interval 0)


@integration
@pytest_twisted.ensureDeferred
async def test_unacknowledged_messages_are_resent_with_dup_on_reconnect(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    persistent = Connect(
        "slow", clean_start=False, properties=Properties(session_expiry_interval=60)
    )
    client, connack = await clients.connected_raw(persistent)
    assert connack.session_present is False
    client.send(Subscribe(1, (Subscription("q", 1),)))
    assert await client.next() == SubAck(1, (1,))
    publisher, _ = await clients.connected_raw(Connect("pub"))
    for index in range(3):
        publisher.send(Publish("q", b"%d" % index, qos=1, packet_id=index + 1))
    sent = [await client.next() for _ in range(3)]
    assert all(isinstance(p, Publish) and not p.dup for p in sent)
    first = sent[0]
    assert isinstance(first, Publish) and first.packet_id is not None
    client.send(PubAck(first.packet_id))
    client.send(Disconnect())
    await client.wait_closed()

    again, connack = await clients.connected_raw(persistent)
    assert connack.session_present is True
    resent = [await again.next() for _ in range(2)]
    assert [(p.payload, p.dup, p.packet_id) for p in resent if isinstance(p, Publish)] == [
        (p.payload, True, p.packet_id) for p in sent[1:] if isinstance(p, Publish)
    ]
    await again.nothing_more()


@integration
@pytest_twisted.ensureDeferred
async def test_receive_maximum_bounds_messages_in_flight(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    client, _ = await clients.connected_raw(
        Connect("narrow", properties=Properties(receive_maximum=2))
    )
    client.send(Subscribe(1, (Subscription("n", 1),)))
    assert await client.next() == SubAck(1, (1,))
    publisher, _ = await clients.connected_raw(Connect("pub"))
    for index in range(5):
        publisher.send(Publish("n", b"%d" % index, qos=1, packet_id=index + 1))
    window = [await client.next(), await client.next()]
    await client.nothing_more()
    delivered = []
    for _ in range(5):
        message = window.pop(0)
        assert isinstance(message, Publish) and message.packet_id is not None
        delivered.append(message.payload)
        client.send(PubAck(message.packet_id))
        if len(delivered) < 4:
            window.append(await client.next())
    assert delivered == [b"0", b"1", b"2", b"3", b"4"]


# -- QoS 2 --------------------------------------------------------------------------------------


@integration
@pytest_twisted.ensureDeferred
async def test_qos2_publish_completes_its_handshake_and_is_routed_once(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    subscriber = clients.paho_client("sub")
    got = collect(subscriber)
    await start(subscriber, broker.port)
    assert await subscribe(subscriber, "q2", qos=2) == [1]  # QoS 2 is granted as QoS 1
    publisher = clients.paho_client("paho-qos2", mqtt.MQTTv311)
    await start(publisher, broker.port)
    info = publisher.publish("q2", b"exactly", qos=2)
    await _until(lambda: info.is_published() and len(got) == 1)  # after PUBCOMP
    assert (got[0].payload, got[0].qos) == (b"exactly", 1)

    raw, _ = await clients.connected_raw(Connect("raw-qos2"))
    raw.send(Publish("q2", b"once", qos=2, packet_id=9))
    assert await raw.next() == PubRec(9)
    raw.send(Publish("q2", b"once", qos=2, packet_id=9, dup=True))  # resent before PUBREL
    assert await raw.next() == PubRec(9)
    raw.send(PubRel(9))
    assert await raw.next() == PubComp(9)
    raw.send(PubRel(9))  # unknown by now
    assert await raw.next() == PubComp(9, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
    await _until(lambda: len(got) >= 2)
    await task.deferLater(reactor, 0.2, lambda: None)
    assert payloads(got) == [b"exactly", b"once"]


# -- shared subscriptions -----------------------------------------------------------------------


@integration
@pytest_twisted.ensureDeferred
async def test_a_shared_subscription_splits_1000_messages_without_loss_or_doubles(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    first = clients.paho_client("ingest-1")
    second = clients.paho_client("ingest-2", mqtt.MQTTv311)
    audit = clients.paho_client("audit")
    got_first, got_second, got_audit = collect(first), collect(second), collect(audit)
    for client in (first, second, audit):
        await start(client, broker.port)
    assert await subscribe(first, "$share/ingest/readings/#", qos=1) == [1]
    assert await subscribe(second, "$share/ingest/readings/#", qos=1) == [1]
    await subscribe(audit, "readings/#", qos=1)
    publisher = clients.paho_client("gw")
    publisher.client.max_inflight_messages_set(100)
    await start(publisher, broker.port)
    for index in range(1000):
        assert publisher.publish(f"readings/{index % 7}", b"%d" % index).rc == 0
    await _until(lambda: len(got_first) + len(got_second) >= 1000 and len(got_audit) == 1000)
    await task.deferLater(reactor, 0.3, lambda: None)
    shared = payloads(got_first) + payloads(got_second)
    assert sorted(shared) == sorted(b"%d" % i for i in range(1000))  # none lost, none doubled
    assert len(got_first) == len(got_second) == 500  # round robin
    assert len(got_audit) == 1000  # a non-shared subscription still gets everything


@integration
@pytest_twisted.ensureDeferred
async def test_a_shared_group_queues_for_an_offline_persistent_member(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    member = Connect("member", clean_start=False, properties=Properties(session_expiry_interval=60))
    client, _ = await clients.connected_raw(member)
    client.send(Subscribe(1, (Subscription("$share/g/jobs", 1),)))
    assert await client.next() == SubAck(1, (1,))
    client.send(Disconnect())
    await client.wait_closed()
    publisher, _ = await clients.connected_raw(Connect("boss"))
    for index in range(3):
        publisher.send(Publish("jobs", b"%d" % index, qos=1, packet_id=index + 1))
        assert await publisher.next() == PubAck(index + 1)
    assert broker.queued_messages("member") == 3
    again, connack = await clients.connected_raw(member)
    assert connack.session_present
    got = [await again.next() for _ in range(3)]
    assert [p.payload for p in got if isinstance(p, Publish)] == [b"0", b"1", b"2"]


@integration
@pytest_twisted.ensureDeferred
async def test_a_leaving_shared_member_hands_its_unacknowledged_messages_over(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    leaving, _ = await clients.connected_raw(Connect("leaving"))  # session ends with it
    staying, _ = await clients.connected_raw(Connect("staying"))
    for index, client in enumerate((leaving, staying)):
        client.send(Subscribe(1, (Subscription("$share/g/w", 1),)))
        assert await client.next() == SubAck(1, (1,)), index
    publisher, _ = await clients.connected_raw(Connect("boss"))
    for index in range(4):
        publisher.send(Publish("w", b"%d" % index, qos=1, packet_id=index + 1))
    to_leaving = [await leaving.next(), await leaving.next()]
    to_staying = [await staying.next(), await staying.next()]
    leaving.abort()  # never acknowledged its two
    handed_over = [await staying.next(), await staying.next()]
    assert sorted(p.payload for p in to_staying + handed_over if isinstance(p, Publish)) == [
        b"0", b"1", b"2", b"3"
    ]  # fmt: skip
    assert {p.payload for p in to_leaving if isinstance(p, Publish)} == {
        p.payload for p in handed_over if isinstance(p, Publish)
    }


@integration
@pytest_twisted.ensureDeferred
async def test_invalid_filters_and_unsubscribe_reason_codes(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    client, connack = await clients.connected_raw(Connect("subs"))
    assert connack.properties.shared_subscription_available == 1
    assert connack.properties.wildcard_subscription_available == 1
    assert connack.properties.subscription_identifier_available == 0
    client.send(Subscribe(1, tuple(Subscription(f, 2) for f in ("a/#", "a/#/b", "$share/g", ""))))
    assert await client.next() == SubAck(1, (1, 0x8F, 0x8F, 0x8F))
    client.send(Unsubscribe(2, ("a/#", "a/#", "b+")))
    assert await client.next() == UnsubAck(2, (0x00, 0x11, 0x8F))
    old, _ = await clients.connected_raw(Connect("subs-311", MQTT_3_1_1))
    old.send(Subscribe(1, (Subscription("a/#", 0), Subscription("a/#/b", 1))))
    assert await old.next() == SubAck(1, (0, 0x80))
    old.send(Unsubscribe(2, ("a/#",)))
    assert await old.next() == UnsubAck(2)
    old.send(PingReq())
    assert await old.next() == PingResp()


# -- takeover -----------------------------------------------------------------------------------


@integration
@pytest_twisted.ensureDeferred
async def test_a_second_connection_with_the_same_client_id_takes_over(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    old, _ = await clients.connected_raw(Connect("gw-9"))
    new = clients.paho_client("gw-9")
    await start(new, broker.port)
    assert await old.next() == Disconnect(ReasonCode.SESSION_TAKEN_OVER)
    await old.wait_closed()
    assert broker.connected_clients == ["gw-9"]
    got = collect(new)
    await subscribe(new, "after")
    new.publish("after", b"still here", qos=1)
    await _until(lambda: payloads(got) == [b"still here"])


@integration
@pytest_twisted.ensureDeferred
async def test_takeover_of_an_mqtt311_client_and_its_session(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    watcher, _ = await clients.connected_raw(Connect("watcher"))
    watcher.send(Subscribe(1, (Subscription("will/#", 0),)))
    await watcher.next()
    old, _ = await clients.connected_raw(
        Connect("gw-3", MQTT_3_1_1, clean_start=False, will=Will("will/gw-3", b"lost"))
    )
    old.send(Subscribe(1, (Subscription("cmd/gw-3", 1),)))
    await old.next()
    new, connack = await clients.connected_raw(Connect("gw-3", MQTT_3_1_1, clean_start=False))
    assert connack == ConnAck(True)  # the session moved over, subscriptions included
    await old.wait_closed()
    assert not old.packets  # 3.1.1 has no DISCONNECT from the server
    will = await watcher.next()  # the old connection ended without DISCONNECT
    assert isinstance(will, Publish) and will.payload == b"lost"
    watcher.send(Publish("cmd/gw-3", b"token", qos=1, packet_id=5))
    command = await new.next()
    assert isinstance(command, Publish) and command.payload == b"token"


# -- bad input ----------------------------------------------------------------------------------


@integration
@pytest_twisted.ensureDeferred
async def test_malformed_bytes_close_that_connection_and_the_broker_serves_on(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    subscriber = clients.paho_client("steady")
    got = collect(subscriber)
    await start(subscriber, broker.port)
    await subscribe(subscriber, "ok")

    bad, _ = await clients.connected_raw(Connect("bad"))
    bad.send_bytes(bytes.fromhex("36 02 00 00"))  # PUBLISH with QoS 3
    disconnect = await bad.next()
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == ReasonCode.MALFORMED_PACKET
    await bad.wait_closed()

    http = await clients.raw_client()
    http.send_bytes(b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n")
    await http.wait_closed()
    assert not http.packets

    garbage = await clients.raw_client()
    garbage.send_bytes(bytes(range(256)))
    await garbage.wait_closed()

    assert broker.malformed_packets == 3
    subscriber.publish("ok", b"still serving", qos=1)
    await _until(lambda: payloads(got) == [b"still serving"])


@integration
@pytest_twisted.ensureDeferred
async def test_protocol_errors_get_their_reason_codes(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    cases: list[tuple[Packet, int]] = [
        (Publish("", b"x", properties=Properties(topic_alias=1)), ReasonCode.TOPIC_ALIAS_INVALID),
        (Subscribe(1, (Subscription("$share/g/t", no_local=True),)), ReasonCode.PROTOCOL_ERROR),
        (Subscribe(1, (Subscription("t"),), Properties(subscription_identifiers=(1,))), 0xA1),
        (PubRec(1), ReasonCode.PROTOCOL_ERROR),
        (Connect("again"), ReasonCode.PROTOCOL_ERROR),
        (Disconnect(properties=Properties(session_expiry_interval=5)), ReasonCode.PROTOCOL_ERROR),
    ]
    for index, (packet, reason_code) in enumerate(cases):
        client, _ = await clients.connected_raw(Connect(f"err-{index}"))
        client.send(packet)
        disconnect = await client.next()
        assert isinstance(disconnect, Disconnect), packet
        assert disconnect.reason_code == reason_code, packet
        await client.wait_closed()
    assert broker.malformed_packets == len(cases)


@integration
@pytest_twisted.ensureDeferred
async def test_an_unsupported_protocol_level_gets_connack_0x01(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    client = await clients.raw_client(MQTT_3_1_1)
    # an MQTT 3.1 CONNECT: protocol name "MQIsdp", level 3, clean session, keep alive 60, id "x"
    client.send_bytes(bytes.fromhex("10 0F 00 06 4D 51 49 73 64 70 03 02 00 3C 00 01 78"))
    assert await client.next() == ConnAck(False, 0x01)
    await client.wait_closed()


@integration
@pytest_twisted.ensureDeferred
async def test_enhanced_authentication_and_empty_ids(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    _, refused = await clients.connected_raw(
        Connect("auth", properties=Properties(authentication_method="SCRAM-SHA-1"))
    )
    assert refused.reason_code == ReasonCode.BAD_AUTHENTICATION_METHOD
    _, assigned = await clients.connected_raw(Connect(""))
    assert assigned.reason_code == 0
    assert assigned.properties.assigned_client_identifier in broker.connected_clients
    _, v311 = await clients.connected_raw(Connect("", MQTT_3_1_1, clean_start=False))
    assert v311 == ConnAck(False, 0x02)  # identifier rejected [MQTT-3.1.3-8]


@integration
@pytest_twisted.ensureDeferred
async def test_a_silent_client_is_disconnected_after_one_and_a_half_keep_alives(
    broker: EmbeddedBroker, clients: Clients
) -> None:
    watcher, _ = await clients.connected_raw(Connect("watcher"))
    watcher.send(Subscribe(1, (Subscription("will/#", 0),)))
    await watcher.next()
    silent, _ = await clients.connected_raw(
        Connect("silent", keep_alive_s=1, will=Will("will/silent", b"timed out"))
    )
    started = reactor.seconds()
    assert await silent.next(timeout_s=5) == Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)
    await silent.wait_closed()
    assert 1.4 <= reactor.seconds() - started <= 3.0
    will = await watcher.next()
    assert isinstance(will, Publish) and will.payload == b"timed out"


@integration
@pytest_twisted.ensureDeferred
async def test_stopping_the_broker_disconnects_clients_and_frees_the_port() -> None:
    service = EmbeddedBroker(reactor)
    service.startService()
    port = service.port
    assert port > 0
    client = await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port), RawClient(MQTT_5)
    ).addTimeout(TIMEOUT_S, reactor)
    assert isinstance(client, RawClient)
    client.send(Connect("c"))
    assert isinstance(await client.next(), ConnAck)
    await service.stopService().addTimeout(TIMEOUT_S, reactor)
    assert await client.next() == Disconnect(ReasonCode.SERVER_SHUTTING_DOWN)
    await client.wait_closed()
    assert not service.running
    with pytest.raises(ConnectionRefusedError):
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port), RawClient(MQTT_5)
        ).addTimeout(TIMEOUT_S, reactor)


# -- unit tests: the clock is a MemoryReactorClock ----------------------------------------------


class FakeClient:
    """One connection to a broker on a MemoryReactorClock, through a StringTransport."""

    def __init__(
        self, broker: EmbeddedBroker, reactor_clock: MemoryReactorClock, level: int
    ) -> None:
        factory = reactor_clock.tcpServers[0][1]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert protocol is not None
        self.protocol: Any = protocol
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol.makeConnection(self.transport)
        self.reader = PacketReader(level)
        self.level = level
        self.backlog: list[Packet] = []

    def send(self, packet: Packet) -> None:
        self.protocol.dataReceived(encode(packet, self.level))

    def received(self) -> list[Packet]:
        self.reader.receive_data(self.transport.value())
        self.transport.clear()
        out, self.backlog = self.backlog, []
        while (packet := self.reader.next_packet()) is not NEED_DATA:
            assert not isinstance(packet, type(NEED_DATA))
            out.append(packet)
        return out

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def clock() -> MemoryReactorClock:
    return MemoryReactorClock()


@pytest.fixture
def fake_broker(clock: MemoryReactorClock) -> Iterator[EmbeddedBroker]:
    service = EmbeddedBroker(clock)
    service.startService()
    yield service
    service.stopService()


def connect(
    broker: EmbeddedBroker, clock: MemoryReactorClock, packet: Connect
) -> tuple[FakeClient, ConnAck]:
    client = FakeClient(broker, clock, packet.protocol_level)
    client.send(packet)
    connack, *client.backlog = client.received()
    assert isinstance(connack, ConnAck)
    return client, connack


def test_keep_alive_counts_from_the_last_packet(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    client, _ = connect(fake_broker, clock, Connect("k", keep_alive_s=10))
    clock.advance(14)
    client.send(PingReq())
    assert client.received() == [PingResp()]
    clock.advance(14)  # 28 s after connecting, 14 s after the last packet
    assert not client.closing
    clock.advance(1.1)
    assert client.received() == [Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)]
    assert client.closing


def test_keep_alive_zero_never_times_out(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    client, _ = connect(fake_broker, clock, Connect("k", keep_alive_s=0))
    clock.advance(100_000)
    assert not client.closing


def test_a_connection_without_connect_is_closed(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    client = FakeClient(fake_broker, clock, MQTT_5)
    clock.advance(9.9)
    assert not client.closing
    clock.advance(0.2)
    assert client.closing
    assert client.received() == []


def test_expired_messages_are_not_delivered_and_the_interval_counts_down(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    session = Connect("away", clean_start=False, properties=Properties(session_expiry_interval=600))
    subscriber, _ = connect(fake_broker, clock, session)
    subscriber.send(Subscribe(1, (Subscription("e", 1),)))
    subscriber.received()
    subscriber.send(Disconnect())
    subscriber.lose()
    publisher, _ = connect(fake_broker, clock, Connect("pub"))
    publisher.send(Publish("e", b"short", qos=1, packet_id=1,
                           properties=Properties(message_expiry_interval=5)))  # fmt: skip
    publisher.send(Publish("e", b"long", qos=1, packet_id=2,
                           properties=Properties(message_expiry_interval=60)))  # fmt: skip
    clock.advance(20)
    back, connack = connect(fake_broker, clock, session)
    assert connack.session_present
    (message,) = back.received()
    assert isinstance(message, Publish)
    assert (message.payload, message.properties.message_expiry_interval) == (b"long", 40)


def test_a_session_expires_after_its_interval(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    session = Connect("exp", clean_start=False, properties=Properties(session_expiry_interval=30))
    client, _ = connect(fake_broker, clock, session)
    client.send(Disconnect())
    client.lose()
    clock.advance(29)
    assert fake_broker.session_exists("exp")
    clock.advance(2)
    assert not fake_broker.session_exists("exp")
    _, connack = connect(fake_broker, clock, session)
    assert not connack.session_present


def test_a_disconnect_may_shorten_the_session_expiry(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    session = Connect("exp", clean_start=False, properties=Properties(session_expiry_interval=300))
    client, _ = connect(fake_broker, clock, session)
    client.send(Disconnect(properties=Properties(session_expiry_interval=0)))
    assert not fake_broker.session_exists("exp")


def test_the_will_delay_is_honoured_and_a_reconnect_cancels_the_will(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    watcher, _ = connect(fake_broker, clock, Connect("watcher"))
    watcher.send(Subscribe(1, (Subscription("will/#", 0),)))
    watcher.received()
    delayed = Connect(
        "flaky",
        clean_start=False,
        will=Will("will/flaky", b"gone", properties=Properties(will_delay_interval=10)),
        properties=Properties(session_expiry_interval=3600),
    )
    flaky, _ = connect(fake_broker, clock, delayed)
    flaky.lose()  # network failure
    clock.advance(5)
    assert watcher.received() == []
    back, connack = connect(fake_broker, clock, delayed)  # back within the delay: no will
    assert connack.session_present
    clock.advance(60)
    assert watcher.received() == []
    back.lose()  # gone for good this time
    clock.advance(10)
    will = watcher.received()
    assert [p.payload for p in will if isinstance(p, Publish)] == [b"gone"]


def test_a_queue_full_session_drops_and_counts(clock: MemoryReactorClock) -> None:
    service = EmbeddedBroker(clock, max_queued_messages=3)
    service.startService()
    session = Connect("full", clean_start=False, properties=Properties(session_expiry_interval=60))
    client, _ = connect(service, clock, session)
    client.send(Subscribe(1, (Subscription("f", 1),)))
    client.send(Disconnect())
    client.lose()
    publisher, _ = connect(service, clock, Connect("pub"))
    for index in range(5):
        publisher.send(Publish("f", b"%d" % index, qos=1, packet_id=index + 1))
    assert service.queued_messages("full") == 3
    assert service.dropped_messages == 2
    back, _ = connect(service, clock, session)
    assert [p.payload for p in back.received() if isinstance(p, Publish)] == [b"0", b"1", b"2"]
    service.stopService()


def test_a_client_maximum_packet_size_is_respected(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    small, connack = connect(
        fake_broker, clock, Connect("small", properties=Properties(maximum_packet_size=64))
    )
    assert connack.properties.maximum_packet_size == fake_broker.max_packet_size
    small.send(Subscribe(1, (Subscription("s", 1),)))
    small.received()
    publisher, _ = connect(fake_broker, clock, Connect("pub"))
    publisher.send(Publish("s", b"x" * 100, qos=1, packet_id=1))
    publisher.send(Publish("s", b"fits", qos=1, packet_id=2))
    assert [p.payload for p in small.received() if isinstance(p, Publish)] == [b"fits"]


def test_bad_configuration_is_refused(clock: MemoryReactorClock) -> None:
    with pytest.raises(ValueError, match="max_inflight"):
        EmbeddedBroker(clock, max_inflight=0)
    with pytest.raises(ValueError, match="max_queued_messages"):
        EmbeddedBroker(clock, max_queued_messages=-1)


def test_stop_service_fires_once_connections_are_gone(
    clock: MemoryReactorClock,
) -> None:
    service = EmbeddedBroker(clock)
    service.startService()
    client, _ = connect(service, clock, Connect("c"))
    stopped = service.stopService()
    assert client.received() == [Disconnect(ReasonCode.SERVER_SHUTTING_DOWN)]
    assert client.closing
    assert not stopped.called  # waits for the connection to be lost
    client.lose()
    assert stopped.called


def test_a_shared_group_prefers_its_connected_members(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    away = Connect("away", clean_start=False, properties=Properties(session_expiry_interval=60))
    member, _ = connect(fake_broker, clock, away)
    member.send(Subscribe(1, (Subscription("$share/g/t", 1),)))
    member.send(Disconnect())
    member.lose()
    here, _ = connect(fake_broker, clock, Connect("here"))
    here.send(Subscribe(1, (Subscription("$share/g/t", 1),)))
    assert here.received() == [SubAck(1, (1,))]
    publisher, _ = connect(fake_broker, clock, Connect("pub"))
    for index in range(4):
        publisher.send(Publish("t", b"%d" % index, qos=1, packet_id=index + 1))
    assert [p.payload for p in here.received() if isinstance(p, Publish)] == [
        b"0", b"1", b"2", b"3"
    ]  # fmt: skip
    assert fake_broker.queued_messages("away") == 0


CLIENT_TYPES = frozenset(
    {"Publish", "PubAck", "PubRec", "PubRel", "PubComp", "Subscribe", "Unsubscribe", "PingReq",
     "Disconnect", "Auth", "Connect"}
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(data=st.data(), level=st.sampled_from([MQTT_3_1_1, MQTT_5]))
def test_no_sequence_of_packets_or_garbage_crashes_the_broker(
    data: st.DataObject, level: int
) -> None:
    clock = MemoryReactorClock()
    service = EmbeddedBroker(clock, max_inflight=2, max_queued_messages=5)
    service.startService()
    watcher, _ = connect(service, clock, Connect("watcher", properties=Properties(
        session_expiry_interval=60, receive_maximum=1)))  # fmt: skip
    watcher.send(Subscribe(1, (Subscription("#", 1), Subscription("$share/g/#", 1))))
    timers = Properties(session_expiry_interval=data.draw(st.sampled_from([0, 3, 10])))
    delay = Properties(will_delay_interval=data.draw(st.sampled_from([0, 2, 8])))
    v5 = level == MQTT_5
    fuzzed, _ = connect(service, clock, Connect(
        "fuzz", level, clean_start=False, properties=timers if v5 else Properties(),
        will=Will("will/fuzz", b"x", qos=1, properties=delay if v5 else Properties())))  # fmt: skip
    fuzzed.send(Subscribe(1, (Subscription("will/#", 1), Subscription("$share/g/#", 1))))
    packets = client_packets(level).filter(lambda p: type(p).__name__ in CLIENT_TYPES)
    chunks = data.draw(
        st.lists(st.one_of(packets.map(lambda p: encode(p, level)), st.binary(max_size=12)),
                 max_size=8)
    )  # fmt: skip
    for chunk in chunks:
        fuzzed.protocol.dataReceived(chunk)
        clock.advance(1)
    fuzzed.lose()
    watcher.lose()
    clock.advance(3600)
    assert service.internal_errors == 0
    service.stopService()


def test_a_session_ending_before_its_will_delay_publishes_the_will(
    fake_broker: EmbeddedBroker, clock: MemoryReactorClock
) -> None:
    watcher, _ = connect(fake_broker, clock, Connect("watcher"))
    watcher.send(Subscribe(1, (Subscription("will/#", 0),)))
    watcher.received()
    connect_packet = Connect(
        "short-lived",
        will=Will("will/short-lived", b"gone", properties=Properties(will_delay_interval=60)),
        properties=Properties(session_expiry_interval=5),
    )
    client, _ = connect(fake_broker, clock, connect_packet)
    # subscribed to its own will, shared and not: the will must not be routed to the dying session
    client.send(Subscribe(1, (Subscription("will/#", 1), Subscription("$share/g/will/#", 1))))
    client.lose()
    clock.advance(4)
    assert watcher.received() == []
    clock.advance(2)  # the session ends before the will delay: the will goes out then
    assert [p.payload for p in watcher.received() if isinstance(p, Publish)] == [b"gone"]
    assert not fake_broker.session_exists("short-lived")
    assert fake_broker.internal_errors == 0
