"""The load generator's virtual gateway: what it publishes, and that it sends again what the head-end
does not acknowledge, as the concentrator's uplink does (no network, a fake clock)."""

from __future__ import annotations

import random
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import task

from protocols.link import (
    Ack,
    Command,
    CommandState,
    CommandStatus,
    CommandType,
    GatewayState,
    Reading,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    parse_topic,
)
from simulator.loadgen import (
    BatchTemplate,
    LoadConfig,
    LoadStats,
    VirtualGateway,
    drn,
    gateway_ids,
    meter_ids,
)
from simulator.workload import FullRead

GATEWAY = "lg-0007"
ACK_TIMEOUT_S = 120.0


class FakeLink:
    """The MQTT client as the gateway sees it: it records what is published; the test connects,
    disconnects and delivers messages."""

    def __init__(self) -> None:
        self.connected = False
        self.published: list[tuple[str, bytes, bool]] = []
        self.subscribed: list[list[tuple[str, int]]] = []
        self.reconnects = 0
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_message: Any = None

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Any:
        assert qos == 1
        self.published.append((topic, payload, retain))
        return SimpleNamespace(rc=0)

    def subscribe(self, topics: list[tuple[str, int]]) -> None:
        self.subscribed.append(topics)

    def connect(self) -> None:
        self.connected = True
        self.on_connect(self, None, None, SimpleNamespace(is_failure=False), None)

    def drop(self) -> None:
        self.connected = False
        self.on_disconnect(self, None, None, SimpleNamespace(is_failure=True), None)

    def force_reconnect(self) -> None:
        self.reconnects += 1
        self.drop()
        self.connect()

    def start(self, host: str, port: int, keepalive: int = 30, **connect: Any) -> Any:
        self.connect()

    def stop(self) -> None:
        self.connected = False

    def deliver(self, topic: Topic, payload: bytes) -> None:
        message = SimpleNamespace(topic=gateway_topic(GATEWAY, topic), payload=payload)
        self.on_message(self, None, message)

    def take(self) -> list[tuple[Topic, Any]]:
        """What was published since the last call, decoded."""
        out = []
        for topic, payload, _ in self.published:
            _, kind = parse_topic(topic)
            out.append((kind, decode_message(kind, payload)))
        self.published = []
        return out

    def seqs(self) -> list[int]:
        return [m.seq for kind, m in self.take() if kind is not Topic.STATE]


def make_gateway(window: int = 10, meters: int = 3) -> tuple[VirtualGateway, FakeLink, task.Clock]:
    clock = task.Clock()
    clock.advance(1_767_225_600)
    link = FakeLink()
    meter_list = [drn(4_800_000_000 + n) for n in range(meters)]
    gateway = VirtualGateway(clock, link, GATEWAY, meter_list, 0, FullRead(exact=False),
                             random.Random(1), LoadStats(), window=window,
                             ack_timeout_s=ACK_TIMEOUT_S, apply_delay_s=0.2)  # fmt: skip
    return gateway, link, clock


def ack(*ranges: tuple[int, int]) -> bytes:
    return encode_message(Ack(tuple(ranges)))[1]


def test_on_connect_it_subscribes_announces_its_meters_and_publishes_full_reads() -> None:
    gateway, link, clock = make_gateway()
    link.connect()
    assert link.subscribed == [[(gateway_topic(GATEWAY, Topic.COMMAND), 1),
                                (gateway_topic(GATEWAY, Topic.ACK), 1)]]  # fmt: skip
    (topic, payload, retain), = link.published  # fmt: skip
    state = decode_message(Topic.STATE, payload)
    assert retain and topic == gateway_topic(GATEWAY, Topic.STATE)
    assert isinstance(state, GatewayState) and state.online
    assert state.meters == tuple(sorted(gateway.meters))
    link.published = []

    gateway.poll(clock.seconds())
    clock.advance(900)
    gateway.poll(clock.seconds())
    first, second = (m for _, m in link.take())
    assert isinstance(first, ReadingBatch) and isinstance(second, ReadingBatch)
    assert (first.seq, second.seq) == (1, 2)
    assert [r.meter for r in first.readings] == list(gateway.meters)
    assert set(first.readings[0].values) == set(FullRead().names)  # the 25 values of a full read
    energy = [b.readings[0].values["energy_import_total"] for b in (first, second)]
    assert isinstance(energy[0], Decimal) and isinstance(energy[1], Decimal)
    assert energy[0] < energy[1]  # a meter's energy grows from poll to poll
    assert max(r.time for r in first.readings) < min(r.time for r in second.readings)


def test_a_batch_with_no_ack_is_sent_again_after_the_ack_timeout_with_the_same_bytes() -> None:
    gateway, link, clock = make_gateway()
    link.connect()
    link.published = []
    gateway.poll(clock.seconds())
    (_, sent, _), = link.published  # fmt: skip
    link.published = []

    clock.advance(ACK_TIMEOUT_S - 1)
    gateway.check_acks(clock.seconds())
    assert link.published == [] and link.reconnects == 0  # not yet

    clock.advance(2)  # nothing acknowledged for longer than the timeout: reconnect, send again
    gateway.check_acks(clock.seconds())
    assert link.reconnects == 1
    again = [(t, p) for t, p, _ in link.published if not t.endswith("/state")]
    assert again == [(gateway_topic(GATEWAY, Topic.READINGS), sent)]  # same seq, same bytes
    assert gateway.stats.resent == 1

    link.published = []
    link.deliver(Topic.ACK, ack((1, 1)))
    assert gateway.unacked == {} and gateway.stats.acked_readings == 3
    clock.advance(10 * ACK_TIMEOUT_S)
    gateway.check_acks(clock.seconds())
    assert link.published == [] and link.reconnects == 1  # acknowledged: never again


def test_a_batch_whose_ack_was_lost_is_sent_again_while_others_are_acknowledged() -> None:
    gateway, link, clock = make_gateway()
    link.connect()
    link.published = []
    gateway.poll(clock.seconds())  # seq 1: its ack will be lost
    lost = link.published[0][1]
    for _ in range(4):  # seqs 2..5, each acknowledged, within the timeout of seq 1
        clock.advance(ACK_TIMEOUT_S / 4)
        gateway.poll(clock.seconds())
        link.deliver(Topic.ACK, ack((gateway.next_seq - 1, gateway.next_seq - 1)))
        gateway.check_acks(clock.seconds())
    assert link.seqs() == [1, 2, 3, 4, 5]  # seq 1 went out once, nothing sent again yet
    assert list(gateway.unacked) == [1]

    clock.advance(1)  # seq 1 has waited longer than the timeout; acks still come
    gateway.check_acks(clock.seconds())
    assert link.reconnects == 0
    assert [p for _, p, _ in link.published] == [lost]
    assert gateway.stats.resent == 1
    link.published = []
    link.deliver(Topic.ACK, ack((1, 1)))
    assert gateway.unacked == {}
    assert gateway.stats.acked_batches == 5 and gateway.stats.acked_readings == 15


def test_everything_unacknowledged_is_sent_again_after_a_reconnect() -> None:
    gateway, link, clock = make_gateway()
    link.connect()
    gateway.poll(clock.seconds())
    gateway.poll(clock.seconds())
    link.deliver(Topic.ACK, ack((1, 1)))
    link.published = []
    link.drop()
    gateway.poll(clock.seconds())  # polled while offline: kept for later
    assert link.published == []
    link.connect()
    assert link.seqs() == [2, 3]  # the unacknowledged one again, then the new one


def test_the_window_holds_batches_back_until_acks_free_it() -> None:
    gateway, link, clock = make_gateway(window=2)
    link.connect()
    link.published = []
    for _ in range(5):
        gateway.poll(clock.seconds())
    assert link.seqs() == [1, 2]
    assert len(gateway.due) == 3
    link.deliver(Topic.ACK, ack((1, 2)))
    assert link.seqs() == [3, 4]
    gateway.saturate = True  # saturate: a new batch whenever an ack frees room
    link.deliver(Topic.ACK, ack((3, 3)))
    assert link.seqs() == [5]
    link.deliver(Topic.ACK, ack((4, 5)))
    assert link.seqs() == [6, 7]


def test_a_token_command_is_received_then_applied_and_acknowledged_like_readings() -> None:
    gateway, link, clock = make_gateway(window=1)
    link.connect()
    gateway.poll(clock.seconds())
    gateway.poll(clock.seconds())  # the window is full: statuses do not wait behind readings
    link.published = []
    command = Command("c-1", CommandType.TOKEN, gateway.meters[1], clock.seconds() + 3600,
                      args={"tokens": ["1234 5678 9012 3456 7890"]})  # fmt: skip
    link.deliver(Topic.COMMAND, encode_message(command)[1])
    link.deliver(Topic.COMMAND, encode_message(command)[1])  # the same id again: ignored
    ((kind, received),) = link.take()
    assert kind is Topic.COMMAND_STATUS and isinstance(received, CommandStatus)
    assert (received.cmd_id, received.state, received.seq) == ("c-1", CommandState.RECEIVED, 2)
    clock.advance(0.2)
    ((_, applied),) = link.take()
    assert isinstance(applied, CommandStatus)
    assert (applied.state, applied.code, applied.detail) == (CommandState.APPLIED, 1, "Accept")
    assert gateway.stats.repeated_commands == 1 and gateway.stats.tokens_applied == 1

    clock.advance(ACK_TIMEOUT_S + 1)  # statuses are resent like readings until acknowledged
    link.deliver(Topic.ACK, ack((1, 1)))
    gateway.check_acks(clock.seconds())
    # the ack freed the window: the next batch (4); then everything unacknowledged again
    assert link.seqs() == [4, 2, 3, 4]
    link.deliver(Topic.ACK, ack((2, 4)))
    assert gateway.unacked == {} and gateway.stats.acked_statuses == 2


def test_other_commands_and_other_meters_are_rejected() -> None:
    gateway, link, clock = make_gateway()
    link.connect()
    link.published = []
    relay = Command("c-2", CommandType.RELAY, gateway.meters[0], clock.seconds() + 60,
                    args={"action": "disconnect"}, signature="x")  # fmt: skip
    stranger = Command("c-3", CommandType.TOKEN, "01234567897", clock.seconds() + 60,
                       args={"tokens": ["1234 5678 9012 3456 7890"]})  # fmt: skip
    link.deliver(Topic.COMMAND, encode_message(relay)[1])
    link.deliver(Topic.COMMAND, encode_message(stranger)[1])
    states = [(m.cmd_id, m.state) for _, m in link.take()]
    assert states == [("c-2", CommandState.REJECTED), ("c-3", CommandState.REJECTED)]


def test_config_checks_and_ids() -> None:
    config = LoadConfig(gateways=12, meters_per_gateway=3, prefix="x")
    assert gateway_ids(config)[:2] == ["x-0000", "x-0001"]
    assert meter_ids(config, 1) == (drn(4_800_000_003), drn(4_800_000_004), drn(4_800_000_005))
    assert all(len(m) == 11 and m.isdigit() for m in meter_ids(config, 11))
    assert config.readings_per_s == pytest.approx(12 * 3 / 900)
    with pytest.raises(ValueError, match="window must be >= 1; seq start must be >= 1"):
        LoadConfig(window=0, seq_start=0)


def _full_read(meters: list[str], step: int, at: float, spacing: float) -> list[Reading]:
    full_read, rng = FullRead(exact=False), random.Random(step)
    readings = []
    for index, meter in enumerate(meters):
        values = full_read.values(index, step, rng, at)
        clock = values["meter_clock"]
        assert isinstance(clock, int)
        readings.append(Reading(meter, at - (len(meters) - index) * spacing, values, float(clock)))
    return readings


def test_a_template_fills_to_the_bytes_encode_message_gives() -> None:
    meters = [drn(4_800_000_000 + n) for n in range(30)]
    first = _full_read(meters, 3, 1_767_225_600.25, 0.01)
    template = BatchTemplate(GATEWAY, first, 1_767_225_600.25)
    for seq, at, spacing in ((1, 1_767_225_600.25, 0.01), (987_654, 1_767_312_345.678, 0.5)):
        later = [
            Reading(r.meter, at - (len(meters) - i) * spacing,
                    {**r.values, "meter_clock": int(at) - i % 7}, float(int(at) - i % 7))
            for i, r in enumerate(first)
        ]  # fmt: skip
        expected = encode_message(ReadingBatch(GATEWAY, seq, at + 1, tuple(later)))[1]
        assert template.fill(seq, at + 1, at, spacing) == expected


def test_rebuild_every_keeps_values_for_n_polls_and_moves_times_and_seq() -> None:
    clock = task.Clock()
    clock.advance(1_767_225_600)
    link = FakeLink()
    gateway = VirtualGateway(clock, link, GATEWAY, [drn(4_800_000_000 + n) for n in range(4)], 0,
                             FullRead(exact=False), random.Random(1), LoadStats(), window=100,
                             rebuild_every=3)  # fmt: skip
    link.connect()
    link.published = []
    for _ in range(7):
        clock.advance(60)
        gateway.poll(clock.seconds())
    batches = [m for _, m in link.take()]
    assert [b.seq for b in batches] == list(range(1, 8))
    energy = [b.readings[0].values["energy_import_total"] for b in batches]
    assert energy[0] == energy[1] == energy[2] != energy[3] == energy[4] == energy[5] != energy[6]
    times = [r.time for b in batches for r in b.readings]
    assert times == sorted(times) and len(set(times)) == len(times)
    for poll, batch in enumerate(batches, start=1):
        end = 1_767_225_600 + 60 * poll  # each poll cycle ends when it was polled
        for index, reading in enumerate(batch.readings):
            assert reading.values["meter_clock"] == end - index % 7
            assert reading.meter_time == reading.values["meter_clock"]
