"""A Q/GDW 1376.2 PLC module on a UART (or a pty), with DL/T 645-2007 meters behind it.

A concentrator does not modulate PLC itself; it talks Q/GDW 1376.2 to a "router" module, which
tunnels DL/T 645 frames to the meters (notes §9). This is that module, as a concentrator sees it::

    concentrator                        PLC module (this)                  meter (Dlt645Meter)
      | AFN 13H F1, A = master, meter     |                                   |
      | protocol 02 | ... | 645 frame     |                                   |
      | --------------------------------> | ----- the 645 frame over PLC ---> |
      |                                   | <---------- the 645 reply ------- |
      | AFN 13H F1 up, SEQ echoed,        |   delay_s + uniform(0, jitter)    |
      | A = meter, master, 645 reply      |                                   |
      | <-------------------------------- |                                   |

What the module answers, and when (after the UART time of the request and of the answer at the
configured baud rate, 11-bit characters, as on the RS485 bus):

    AFN 13H F1 to a known meter   13H F1 up with the meter's reply    after the PLC delay
      PLC loss or meter silent    00H F2 deny, METER_NO_REPLY (8)     after the PLC delay
      meter not in the module     00H F2 deny, NO_SUCH_METER (7)      at once
      protocol other than 02H     00H F2 deny, INVALID_DATA_UNIT (1)  at once
      no meter address (A)        00H F2 deny, FORMAT_ERROR (5)       at once
    AFN 03H F4                    03H F4 up: the master node address  at once
    AFN 05H F3 broadcast          00H F1 confirm; the frame reaches every meter (time sync)
    a data unit that does not parse                 00H F2 deny, FORMAT_ERROR (5)
    any other AFN / Fn                              00H F2 deny, NO_SUCH_INFORMATION_CLASS (4)

The PLC delay is ``delay_s`` plus a uniform jitter in ``[0, delay_jitter_s]`` (so ``delay_s`` is the
shortest it can be), plus the meter's ``slow_turnaround_ms`` fault; ``loss`` is the probability that
an exchange is lost on the PLC side. The meter's own faults apply as on the RS485 bus (no answer
and intermittent give a deny, a corrupt checksum reaches the concentrator inside the 13H F1 reply).
Meter frames travel without the FEH wake-up preamble. Replies echo SEQ and swap the addresses
(:func:`protocols.qgdw13762.reply_to`).

One request at a time: others queue behind it (a real module would often deny with "busy"
instead; queueing is kinder to a test concentrator). Frames from the concentrator that are not
start frames (PRM = 0, e.g. its confirm of a report) are ignored.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from protocols import dlt645
from protocols.qgdw13762 import (
    BadFrame,
    BroadcastControl,
    Confirm,
    Deny,
    DenyReason,
    Direction,
    Frame,
    FrameReceiver,
    MasterAddress,
    MonitorSlaveNodeReply,
    MonitorSlaveNodeRequest,
    ProtocolType,
    Qgdw13762Error,
    Qgdw13762UsageError,
    QueryMasterAddress,
    StartBroadcast,
    encode_frame,
    parse_message,
    reply_to,
)

from .dlt645_bus import (
    INTER_BYTE_GAP_S,
    Dlt645Meter,
    Exchange,
    QuietLineTimer,
    TransactionScheduler,
)
from .modbus_bus import BusStats, character_time_s

__all__ = ["PlcModule", "PlcModuleProtocol"]

log = Logger()

MODULE_TURNAROUND_S: Final = 0.02  # the module answering from its own memory (no PLC involved)


@dataclass(slots=True)
class PlcModule:
    """The module's behaviour: its master address, its meter table, the PLC delay and loss."""

    name: str
    meters: dict[str, Dlt645Meter]
    clock: IReactorTime
    now_s: Callable[[], float]
    master_address: str = "000000000099"
    baud: int = 9600
    delay_s: float = 2.0
    delay_jitter_s: float = 0.5
    loss: float = 0.0
    seed: int = 0
    stats: BusStats = field(default_factory=BusStats)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def exchange(self, frame: Frame) -> Exchange:
        """One request from the concentrator: the answer's bytes and the timing of the exchange."""
        tc = character_time_s(self.baud)
        answer, wait_s = self.answer(frame)
        raw = encode_frame(answer) if answer is not None else None
        reply_s = len(raw) * tc if raw is not None else 0.0
        return Exchange(raw, frame.length * tc, wait_s, reply_s)

    def answer(self, frame: Frame) -> tuple[Frame | None, float]:
        """The module's answer to ``frame`` (None: none) and the seconds before it starts."""
        if frame.direction is not Direction.DOWN or not frame.prm:
            return None, 0.0
        self.stats.requests += 1
        try:
            message = parse_message(frame)
        except (Qgdw13762Error, Qgdw13762UsageError):
            return self._deny(frame, DenyReason.FORMAT_ERROR), MODULE_TURNAROUND_S
        if isinstance(message, MonitorSlaveNodeRequest):
            return self._monitor_slave_node(frame, message)
        if isinstance(message, QueryMasterAddress):
            self.stats.replies += 1
            reply = reply_to(frame, MasterAddress(address=self.master_address))
            return reply, MODULE_TURNAROUND_S
        if isinstance(message, StartBroadcast):
            return self._broadcast(frame, message), MODULE_TURNAROUND_S
        return self._deny(frame, DenyReason.NO_SUCH_INFORMATION_CLASS), MODULE_TURNAROUND_S

    def _plc_delay_s(self) -> float:
        jitter = self._rng.uniform(0.0, self.delay_jitter_s) if self.delay_jitter_s else 0.0
        return self.delay_s + jitter

    def _monitor_slave_node(
        self, frame: Frame, request: MonitorSlaveNodeRequest
    ) -> tuple[Frame, float]:
        destination = frame.destination
        if destination is None:  # module flag 0: no meter address to deliver to
            return self._deny(frame, DenyReason.FORMAT_ERROR), MODULE_TURNAROUND_S
        if request.protocol != ProtocolType.DLT645_2007:
            return self._deny(frame, DenyReason.INVALID_DATA_UNIT), MODULE_TURNAROUND_S
        meter = self.meters.get(destination)
        if meter is None:
            return self._deny(frame, DenyReason.NO_SUCH_METER), MODULE_TURNAROUND_S
        delay_s = self._plc_delay_s()
        if self.loss and self._rng.random() < self.loss:
            log.debug("PLC module {bus}: exchange with {address} lost",
                      bus=self.name, address=destination)  # fmt: skip
            self.stats.unanswered += 1
            return self._deny(frame, DenyReason.METER_NO_REPLY), delay_s
        try:
            meter_frame = dlt645.decode_frame(request.frame)
        except dlt645.Dlt645Error:  # the meter ignores what it cannot read
            return self._deny(frame, DenyReason.METER_NO_REPLY), delay_s
        response = meter.respond(meter_frame, self.now_s(), self._rng)
        if response.lost:
            self.stats.unanswered += 1
        if response.raw is None:
            return self._deny(frame, DenyReason.METER_NO_REPLY), delay_s
        self.stats.replies += 1
        delay_s += response.extra_delay_s
        reply = MonitorSlaveNodeReply(
            frame=response.raw,
            protocol=request.protocol,
            transit_time_s=min(round(delay_s), 0xFFFF),
        )
        return reply_to(frame, reply), delay_s

    def _broadcast(self, frame: Frame, request: StartBroadcast) -> Frame:
        if request.control not in (BroadcastControl.TRANSPARENT, BroadcastControl.DLT645_2007):
            return self._deny(frame, DenyReason.INVALID_DATA_UNIT)
        try:
            meter_frame = dlt645.decode_frame(request.frame)
        except dlt645.Dlt645Error:
            return self._deny(frame, DenyReason.FORMAT_ERROR)
        now_s = self.now_s()
        for meter in self.meters.values():
            meter.respond(meter_frame, now_s, self._rng)  # broadcast: acted on, never answered
        self.stats.replies += 1
        wait_s = math.ceil(self.delay_s + self.delay_jitter_s)
        return reply_to(frame, Confirm(wait_time_s=min(wait_s, 0xFFFF)))

    def _deny(self, frame: Frame, reason: DenyReason) -> Frame:
        self.stats.exceptions += 1
        return reply_to(frame, Deny(reason=reason))


class PlcModuleProtocol(Protocol):
    """The module's UART: Q/GDW 1376.2 frames in, answers out, one exchange at a time."""

    def __init__(self, module: PlcModule) -> None:
        self.module = module
        self.receiver = FrameReceiver()
        self.line = TransactionScheduler(module.clock, self._send, module.stats)
        self.gap = QuietLineTimer(module.clock, INTER_BYTE_GAP_S, self._on_quiet)
        self._discarded = 0  # bytes earlier receivers dropped

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        try:
            self.receiver.receive_data(data)
        except Qgdw13762UsageError:  # more than the receive buffer holds: start afresh
            self._discarded += self.receiver.garbage_bytes + self.receiver.buffered + len(data)
            self.receiver = FrameReceiver()
        self._drain()

    def _drain(self) -> None:
        receiver = self.receiver
        while True:
            event = receiver.next_event()
            if isinstance(event, Frame):
                self.line.submit(partial(self.module.exchange, event))
            elif isinstance(event, BadFrame):
                log.debug("PLC module {bus}: bad frame ({error})",
                          bus=self.module.name, error=str(event.error))  # fmt: skip
            else:
                break
        self.module.stats.discarded_bytes = self._discarded + receiver.garbage_bytes
        if receiver.buffered:
            self.gap.restart()
        else:
            self.gap.cancel()

    def _on_quiet(self) -> None:
        self.receiver.discard_partial()
        self._drain()

    def _send(self, reply: bytes) -> None:
        if self.transport is not None:
            self.transport.write(reply)

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.line.stop()
        self.gap.cancel()
