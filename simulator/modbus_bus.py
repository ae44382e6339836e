"""Modbus buses of virtual meters: RTU on a serial line (or pty) and TCP with many unit ids.

An RS485 bus carries one transaction at a time, and a pty or a socket carries bytes instantly, so
an RTU bus here delays every reply by the time the bytes would take on the wire
(Modbus over Serial Line V1.02 2.5: 11-bit characters, t3.5 silence):

    reply at  t_request_received + request_bytes * Tc + max(turnaround, t3.5) + reply_bytes * Tc
    Tc = 11 / baud;  t3.5 = 3.5 * Tc, or 1.75 ms above 19 200 baud

and the bus stays busy until the reply has gone out. A master that also keeps the t3.5 gap before
its next request then sees exactly the throughput a real line of that baud rate allows.

Meters answer only their own unit id; on RTU an unknown id is silence (as on a real multi-drop
line), on TCP the answer is exception 0B (gateway target device failed to respond). Faults per
meter (no answer, corrupt CRC, slow turnaround, intermittent) are applied to each reply.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from protocols.errors import ProtocolError
from protocols.modbus import Table
from protocols.modbus.adapter import (
    Framing,
    InvalidRequest,
    Receiver,
    Request,
    encode_exception,
    encode_request,
    encode_response,
)
from protocols.modbus.timing import character_time_s, silent_interval_s

from .meter import VirtualMeter
from .registers import ModbusException, RegisterMap

__all__ = ["BusStats", "ModbusBus", "RtuBusProtocol", "TcpBusFactory", "character_time_s"]

log = Logger()

GATEWAY_TARGET_FAILED = 0x0B
MAX_TIMER_LEAD_S = 0.005
_READ_TABLES = {1: Table.COIL, 2: Table.DISCRETE, 3: Table.HOLDING, 4: Table.INPUT}


@dataclass(slots=True)
class BusStats:
    requests: int = 0
    replies: int = 0
    exceptions: int = 0
    unanswered: int = 0
    busy_s: float = 0.0
    discarded_bytes: int = 0


@dataclass(slots=True)
class ModbusBus:
    """The meters on one bus and how they answer; transports feed it decoded requests."""

    name: str
    meters: dict[int, VirtualMeter]
    register_map: RegisterMap
    clock: IReactorTime
    now_s: Callable[[], float]
    baud: int = 9600
    turnaround_ms: float = 10.0
    seed: int = 0
    stats: BusStats = field(default_factory=BusStats)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def answer(self, request: Request) -> tuple[int | None, list[int]] | None:
        """(exception code or None, values) for ``request``, or None for silence."""
        self.stats.requests += 1
        meter = self.meters.get(request.unit_id)
        if meter is None:
            return None
        faults = meter.faults
        if faults.no_answer or (faults.intermittent and self._rng.random() < faults.intermittent):
            self.stats.unanswered += 1
            return None
        meter.advance(self.now_s())
        try:
            if request.is_read:
                table = _READ_TABLES[request.function]
                return None, self.register_map.read(meter, table, request.address, request.count)
            if request.function in (6, 16):
                self.register_map.write(meter, request.address, list(request.values))
                return None, list(request.values)
            raise ModbusException(1, "function not supported by this meter")
        except ModbusException as exc:
            self.stats.exceptions += 1
            return exc.code, []

    def turnaround_s(self, unit_id: int) -> float:
        meter = self.meters.get(unit_id)
        slow = meter.faults.slow_turnaround_ms if meter else 0.0
        return max(self.turnaround_ms + slow, 0.0) / 1000.0

    def corrupt(self, unit_id: int) -> bool:
        meter = self.meters.get(unit_id)
        return bool(meter and meter.faults.corrupt_checksum)


def _reply_bytes(bus: ModbusBus, request: Request, framing: Framing) -> bytes | None:
    answer = bus.answer(request)
    if answer is None:
        return None
    code, values = answer
    data = encode_response(request, framing, values, exception_code=code)
    if framing is Framing.RTU and bus.corrupt(request.unit_id):
        data = data[:-1] + bytes([data[-1] ^ 0x5A])
    bus.stats.replies += 1
    return data


class RtuBusProtocol(Protocol):
    """The meters' side of an RS485 line: one transaction at a time, with line timing."""

    def __init__(self, bus: ModbusBus) -> None:
        self.bus = bus
        self.receiver = Receiver(Framing.RTU, server=True)
        self._queue: deque[tuple[Request, float]] = deque()
        self._busy: IDelayedCall | None = None
        # Timers fire late (asyncio rounds select timeouts up to whole milliseconds, plus wake-up
        # latency): schedule early by the lateness observed so far, so replies keep line timing.
        self._lead_s = 0.0
        self._due_s = 0.0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.receiver.receive_data(data)
        self.bus.stats.discarded_bytes = self.receiver.discarded_bytes
        while True:
            try:
                request = self.receiver.next_event()
            except ProtocolError:
                self.receiver.reset()
                return
            if request is None:
                return
            if isinstance(request, InvalidRequest):
                self._refuse(request)
                continue
            if isinstance(request, Request):
                self._queue.append((request, self.bus.clock.seconds()))
                self._serve_next()

    def _refuse(self, refused: InvalidRequest) -> None:
        """A request a meter answers with an exception (a read of 0 or 200 registers, say)."""
        self.bus.stats.requests += 1
        if refused.unit_id in self.bus.meters and self.transport is not None:
            self.bus.stats.exceptions += 1
            self.transport.write(encode_exception(refused, Framing.RTU))

    def _serve_next(self) -> None:
        if self._busy is not None or not self._queue:
            return
        request, received_at = self._queue.popleft()
        bus = self.bus
        tc = character_time_s(bus.baud)
        request_s = len(encode_request(request, Framing.RTU)) * tc
        reply = _reply_bytes(bus, request, Framing.RTU)
        turnaround = max(bus.turnaround_s(request.unit_id), silent_interval_s(bus.baud))
        reply_s = len(reply) * tc if reply is not None else 0.0
        start = max(received_at, bus.clock.seconds())
        send_at = start + request_s + turnaround
        done_at = send_at + reply_s
        if reply is None:
            done_at = start + request_s  # silence: the line is free again after the request
        bus.stats.busy_s += done_at - start
        self._due_s = done_at
        delay = max(0.0, done_at - bus.clock.seconds() - self._lead_s)
        self._busy = bus.clock.callLater(delay, self._sent, reply)

    def _sent(self, reply: bytes | None) -> None:
        self._busy = None
        late = self.bus.clock.seconds() - self._due_s
        self._lead_s = min(max(self._lead_s + 0.2 * late, 0.0), MAX_TIMER_LEAD_S)
        if reply is not None and self.transport is not None:
            self.transport.write(reply)
        self._serve_next()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        if self._busy is not None and self._busy.active():
            self._busy.cancel()
        self._busy = None
        self._queue.clear()


class _TcpBusProtocol(Protocol):
    def __init__(self, bus: ModbusBus) -> None:
        self.bus = bus
        self.receiver = Receiver(Framing.TCP, server=True)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.receiver.receive_data(data)
        while True:
            try:
                request = self.receiver.next_event()
            except ProtocolError as exc:
                log.warn(
                    "Dropping Modbus TCP client on {bus}: {error}", bus=self.bus.name, error=exc
                )
                if self.transport is not None:
                    self.transport.loseConnection()
                return
            if request is None:
                return
            if isinstance(request, InvalidRequest):
                self.bus.stats.requests += 1
                self.bus.stats.exceptions += 1
                if self.transport is not None:
                    self.transport.write(encode_exception(refused=request, framing=Framing.TCP))
                continue
            if isinstance(request, Request):
                self._serve(request)

    def _serve(self, request: Request) -> None:
        if request.unit_id not in self.bus.meters:
            self.bus.stats.requests += 1
            reply: bytes | None = encode_response(
                request, Framing.TCP, exception_code=GATEWAY_TARGET_FAILED
            )
        else:
            reply = _reply_bytes(self.bus, request, Framing.TCP)
        if reply is None or self.transport is None:
            return
        delay = self.bus.turnaround_s(request.unit_id)
        if delay:
            self.bus.clock.callLater(delay, self._write, reply)
        else:
            self.transport.write(reply)

    def _write(self, reply: bytes) -> None:
        if self.transport is not None:
            self.transport.write(reply)


class TcpBusFactory(Factory):
    """Modbus TCP server: every meter of the bus behind one port, by unit id."""

    def __init__(self, bus: ModbusBus) -> None:
        self.bus = bus

    def buildProtocol(self, addr: object) -> Protocol:  # noqa: N802 - Twisted's name
        return _TcpBusProtocol(self.bus)
