"""The Modbus master: one transaction at a time, timeouts, exceptions, silence between frames."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from concentrator.modbus_master import LinkDown, MeterException, MeterTimeout, ModbusMaster
from protocols.modbus.adapter import Framing, Request, Response, encode_response

READ = Request(unit_id=5, function=4, address=20, count=2)


def make(
    framing: Framing = Framing.RTU, gap_s: float = 0.004
) -> tuple[ModbusMaster, StringTransport, task.Clock]:
    clock = task.Clock()
    master = ModbusMaster(clock, framing, timeout_s=0.5, inter_frame_gap_s=gap_s)
    transport = StringTransport()
    master.connection_made(transport)
    return master, transport, clock


def outcome(deferred: defer.Deferred[Any]) -> Any:
    """The result or the exception a fired Deferred holds (consuming a failure)."""
    assert deferred.called, "the transaction has not finished"
    box: list[Any] = []
    deferred.addCallbacks(box.append, lambda failure: box.append(failure.value))
    return box[0]


def test_a_read_returns_the_registers() -> None:
    master, transport, _ = make()
    result = defer.ensureDeferred(master.execute(READ))
    assert transport.value()[:-2].hex() == "050400140002"  # unit 5, FC4, address 20, 2 registers
    reply = encode_response(READ, Framing.RTU, [1, 2])
    master.data_received(reply[:3])
    assert not result.called  # half a frame: keep waiting
    master.data_received(reply[3:])
    assert outcome(result) == Response(unit_id=5, function=4, values=(1, 2))


def test_silence_is_a_timeout_and_the_next_request_waits_the_inter_frame_gap() -> None:
    master, transport, clock = make()
    first = defer.ensureDeferred(master.execute(READ))
    second = defer.ensureDeferred(master.execute(READ))
    assert transport.value().count(b"\x05\x04") == 1  # one transaction in flight
    clock.advance(0.5)
    timeout = outcome(first)
    assert isinstance(timeout, MeterTimeout) and "did not answer within 500 ms" in str(timeout)
    assert transport.value().count(b"\x05\x04") == 1  # t3.5 silence before the next request
    clock.advance(0.004)
    assert transport.value().count(b"\x05\x04") == 2
    master.data_received(encode_response(READ, Framing.RTU, exception_code=2))
    error = outcome(second)
    assert isinstance(error, MeterException) and error.code == 2
    assert "illegal data address" in str(error)


def test_garbage_and_another_units_reply_are_ignored() -> None:
    master, _, _ = make()
    result = defer.ensureDeferred(master.execute(READ))
    other = encode_response(
        Request(unit_id=6, function=4, address=20, count=2), Framing.RTU, [9, 9]
    )
    master.data_received(b"\xff\x00" + other)
    assert not result.called
    master.data_received(encode_response(READ, Framing.RTU, [3, 4]))
    assert outcome(result).values == (3, 4)


def test_tcp_transaction_ids_and_a_lost_link() -> None:
    master, transport, _ = make(Framing.TCP, gap_s=0)
    result = defer.ensureDeferred(master.execute(READ))
    assert transport.value()[:2] == b"\x00\x01"  # the first transaction id
    master.connection_lost("connection refused")
    assert isinstance(outcome(result), LinkDown)
    later = outcome(defer.ensureDeferred(master.execute(READ)))
    assert isinstance(later, LinkDown) and "not connected" in str(later)


@pytest.mark.parametrize("framing", list(Framing))
def test_late_reply_after_a_timeout_does_not_answer_the_next_request(framing: Framing) -> None:
    master, _, clock = make(framing, gap_s=0)
    first = defer.ensureDeferred(master.execute(READ))
    clock.advance(0.5)
    assert isinstance(outcome(first), MeterTimeout)
    second = defer.ensureDeferred(
        master.execute(Request(unit_id=5, function=3, address=0, count=1))
    )
    master.data_received(encode_response(READ, framing, [7, 7]))  # the late reply to the first
    assert not second.called
    clock.advance(0.5)
    assert isinstance(outcome(second), MeterTimeout)


def test_a_lost_frame_is_sent_again_before_giving_up() -> None:
    clock = task.Clock()
    master = ModbusMaster(clock, Framing.RTU, timeout_s=0.5, inter_frame_gap_s=0.0, retries=1)
    transport = StringTransport()
    master.connection_made(transport)
    result = defer.ensureDeferred(master.execute(READ))
    clock.advance(0.5)  # the first frame is lost
    assert not result.called and transport.value().count(b"\x05\x04") == 2
    master.data_received(encode_response(READ, Framing.RTU, [1, 2]))
    assert outcome(result).values == (1, 2) and master.retried == 1
    silent = defer.ensureDeferred(master.execute(READ))
    clock.advance(0.5)
    clock.advance(0.5)
    assert isinstance(outcome(silent), MeterTimeout)  # one resend, then the timeout stands
