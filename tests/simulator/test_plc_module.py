"""The simulated Q/GDW 1376.2 PLC module, as a concentrator on its UART sees it.

The module is driven through its Twisted protocol over a StringTransport on a task.Clock, so the
PLC delay is checked to the millisecond without waiting for it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from protocols import dlt645
from protocols.qgdw13762 import (
    CommunicationMode,
    Confirm,
    Deny,
    DenyReason,
    Direction,
    DownstreamInfo,
    Frame,
    FrameReceiver,
    InfoField,
    MasterAddress,
    Message,
    MonitorSlaveNodeReply,
    QueryMasterAddress,
    StartBroadcast,
    decode_frame,
    encode_frame,
    make_control,
    monitor_slave_node,
    parse_message,
    request,
)
from simulator.dlt645_bus import Dlt645Meter
from simulator.meter import RelayState
from simulator.modbus_bus import character_time_s
from simulator.plc_module import PlcModule, PlcModuleProtocol

from .meters import START, START_LOCAL, dlt645_meter

MASTER = "000000000099"
METER = "000000000101"


class Concentrator:
    """The concentrator's end of the module's UART."""

    def __init__(
        self,
        *meters: Dlt645Meter,
        delay_s: float = 2.0,
        delay_jitter_s: float = 0.0,
        loss: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.clock = task.Clock()
        self.module = PlcModule("plc1", {m.address: m for m in meters}, self.clock, lambda: START,
                                master_address=MASTER, baud=9600, delay_s=delay_s,
                                delay_jitter_s=delay_jitter_s, loss=loss, seed=seed)  # fmt: skip
        self.protocol = PlcModuleProtocol(self.module)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)  # type: ignore[no-untyped-call]  # Twisted

    def send(self, frame: Frame) -> None:
        self.protocol.dataReceived(encode_frame(frame))

    def frames(self) -> list[Frame]:
        receiver = FrameReceiver()
        receiver.receive_data(bytes(self.transport.value()))
        self.transport.clear()
        found = []
        while isinstance(event := receiver.next_event(), Frame):
            found.append(event)
        assert receiver.buffered == 0
        return found

    def read_frame(self, seq: int, meter: str, di: str) -> Frame:
        meter_frame = dlt645.encode_frame(dlt645.ReadRequest(meter, di).to_frame())
        return monitor_slave_node(seq=seq, master_address=MASTER, meter_address=meter,
                                  meter_frame=meter_frame, expected_reply_length=0x14)  # fmt: skip

    def answer(self, frame: Frame, wait_s: float = 10.0) -> tuple[Frame, Message | None]:
        self.send(frame)
        self.clock.advance(wait_s)
        (reply,) = self.frames()
        return reply, parse_message(reply)


def meter_reply(message: Message | None) -> dlt645.Reply:
    assert isinstance(message, MonitorSlaveNodeReply), message
    return dlt645.parse_reply(dlt645.decode_frame(message.frame))


def test_a_read_goes_to_the_meter_and_its_answer_comes_back_with_seq_and_addresses() -> None:
    meter = dlt645_meter(METER, credit_kwh=12.34)
    plc = Concentrator(meter, dlt645_meter("000000000102"))
    reply, message = plc.answer(plc.read_frame(0x5A, METER, "00900100"))
    assert reply.seq == 0x5A and reply.direction is Direction.UP and not reply.prm
    assert (reply.source, reply.destination) == (METER, MASTER)
    assert isinstance(message, MonitorSlaveNodeReply)
    assert message.protocol == 0x02 and message.transit_time_s == 2
    answer = meter_reply(message)
    assert isinstance(answer, dlt645.ReadReply) and answer.address == METER
    assert answer.value() == Decimal("12.34")
    assert plc.module.stats.requests == 1 and plc.module.stats.replies == 1


def test_the_reply_waits_for_the_plc_delay() -> None:
    plc = Concentrator(dlt645_meter(METER), delay_s=2.0)
    request_frame = plc.read_frame(1, METER, "00010000")
    plc.send(request_frame)
    plc.clock.advance(2.0)
    assert plc.frames() == []  # the request's own UART time is still to come on top
    tc = character_time_s(9600)
    plc.clock.advance(request_frame.length * tc + 60 * tc)
    assert len(plc.frames()) == 1


def test_jitter_only_ever_adds_to_the_delay() -> None:
    for seed in range(8):
        plc = Concentrator(dlt645_meter(METER), delay_s=1.0, delay_jitter_s=0.5, seed=seed)
        plc.send(plc.read_frame(seed, METER, "00010000"))
        plc.clock.advance(1.0)
        assert plc.frames() == []
        plc.clock.advance(0.6)
        assert len(plc.frames()) == 1


def test_plc_loss_comes_back_as_a_deny_after_the_delay() -> None:
    plc = Concentrator(dlt645_meter(METER), delay_s=2.0, loss=1.0)
    plc.send(plc.read_frame(7, METER, "00010000"))
    plc.clock.advance(1.9)
    assert plc.frames() == []
    plc.clock.advance(1.0)
    (reply,) = plc.frames()
    assert reply.seq == 7 and (reply.source, reply.destination) == (METER, MASTER)
    assert parse_message(reply) == Deny(reason=DenyReason.METER_NO_REPLY)
    assert plc.module.stats.unanswered == 1


def test_some_reads_are_lost_at_a_partial_loss_rate() -> None:
    plc = Concentrator(dlt645_meter(METER), delay_s=0.1, loss=0.5, seed=3)
    outcomes = []
    for seq in range(40):
        _, message = plc.answer(plc.read_frame(seq, METER, "00010000"), wait_s=1.0)
        outcomes.append(type(message).__name__)
    assert 8 < outcomes.count("Deny") < 32
    assert outcomes.count("Deny") + outcomes.count("MonitorSlaveNodeReply") == 40


def test_a_meter_that_does_not_answer_is_denied_as_such() -> None:
    meter = dlt645_meter(METER)
    meter.meter.faults.no_answer = True
    plc = Concentrator(meter)
    _, message = plc.answer(plc.read_frame(2, METER, "00010000"))
    assert message == Deny(reason=DenyReason.METER_NO_REPLY)


def test_an_unknown_meter_is_denied_at_once() -> None:
    plc = Concentrator(dlt645_meter(METER))
    reply, message = plc.answer(plc.read_frame(3, "000000000777", "00010000"), wait_s=0.2)
    assert message == Deny(reason=DenyReason.NO_SUCH_METER) and reply.seq == 3


def test_the_meters_refusal_travels_back_inside_the_reply() -> None:
    plc = Concentrator(dlt645_meter(METER))
    _, message = plc.answer(plc.read_frame(4, METER, "00900200"))
    answer = meter_reply(message)
    assert isinstance(answer, dlt645.ErrorReply) and answer.reasons == ("no_requested_data",)


def test_relay_control_through_the_module_uses_the_same_meter_logic() -> None:
    meter = dlt645_meter(METER)
    plc = Concentrator(meter)
    trip = dlt645.RelayControl(METER, dlt645.Password(3, "123456"), "12345678",
                               dlt645.RelayCommand.TRIP, START_LOCAL + timedelta(hours=1))  # fmt: skip
    frame = monitor_slave_node(seq=9, master_address=MASTER, meter_address=METER,
                               meter_frame=dlt645.encode_frame(trip.to_frame()))  # fmt: skip
    _, message = plc.answer(frame)
    assert isinstance(meter_reply(message), dlt645.Acknowledgement)
    assert meter.meter.relay == RelayState.OPEN


def test_master_address_query() -> None:
    plc = Concentrator(dlt645_meter(METER))
    reply, message = plc.answer(request(QueryMasterAddress(), seq=0x21), wait_s=0.2)
    assert message == MasterAddress(address=MASTER) and reply.seq == 0x21


def test_an_unsupported_afn_is_denied() -> None:
    plc = Concentrator(dlt645_meter(METER))
    route_query = Frame(  # AFN 10H F1: query the number of slave nodes (not simulated)
        control=make_control(
            Direction.DOWN, prm=True, mode=CommunicationMode.CENTRALISED_ROUTING_PLC
        ),
        info=InfoField.of(DownstreamInfo(seq=0x33)),
        afn=0x10,
        fn=1,
    )
    reply, message = plc.answer(route_query, wait_s=0.2)
    assert message == Deny(reason=DenyReason.NO_SUCH_INFORMATION_CLASS) and reply.seq == 0x33


def test_a_malformed_data_unit_is_denied_as_a_format_error() -> None:
    plc = Concentrator(dlt645_meter(METER))
    good = plc.read_frame(5, METER, "00010000")
    bad = Frame(control=good.control, info=good.info, afn=0x13, fn=1, data=good.data[:-3],
                source=good.source, destination=good.destination)  # fmt: skip
    _, message = plc.answer(bad)
    assert message == Deny(reason=DenyReason.FORMAT_ERROR)


def test_requests_queue_one_at_a_time() -> None:
    plc = Concentrator(dlt645_meter(METER), delay_s=2.0)
    plc.send(plc.read_frame(1, METER, "00010000"))
    plc.send(request(QueryMasterAddress(), seq=2))
    plc.clock.advance(2.2)
    assert [f.seq for f in plc.frames()] == [1]
    plc.clock.advance(0.2)
    assert [f.seq for f in plc.frames()] == [2]


def test_broadcast_time_reaches_every_meter_behind_the_module() -> None:
    meters = [dlt645_meter(METER), dlt645_meter("000000000102")]
    plc = Concentrator(*meters)
    sync = dlt645.BroadcastTimeSync(START_LOCAL + timedelta(minutes=2))
    frame = request(StartBroadcast(frame=dlt645.encode_frame(sync.to_frame())), seq=6)
    _, message = plc.answer(frame, wait_s=0.2)
    assert isinstance(message, Confirm)
    assert [m.local_time() for m in meters] == [START_LOCAL + timedelta(minutes=2)] * 2


@pytest.mark.parametrize("noise", [b"\x00\xff", bytes.fromhex("68 30 00 41")])
def test_noise_before_a_request_does_not_stop_the_module(noise: bytes) -> None:
    plc = Concentrator(dlt645_meter(METER), delay_s=0.5)
    plc.protocol.dataReceived(noise)
    plc.clock.advance(1.0)  # the line goes quiet: a partial frame is given up
    reply, message = plc.answer(plc.read_frame(8, METER, "00010000"))
    assert reply.seq == 8 and isinstance(message, MonitorSlaveNodeReply)
    assert decode_frame(encode_frame(reply)) == reply
