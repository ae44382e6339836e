"""DL/T 645 exchanges on a line: straight on RS485, or through a Q/GDW 1376.2 PLC module.

Both links carry one exchange at a time and turn silence into :class:`MeterTimeout`:

* :class:`Dlt645Line`: the request (with the FE wake-up preamble) on the wire, the reply frame of
  the addressed meter back; frames are cut by the codec's receiver, never by scanning for 16H.
* :class:`PlcModuleLink`: the request wrapped in AFN 13H F1 ("monitor slave node") to the module,
  which relays it over the power line and answers with the meter's reply (seconds later), or with
  AFN 00H F2 deny (the meter did not answer, ...), which becomes :class:`PlcDenied`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from protocols import dlt645, qgdw13762

from .modbus_master import LinkDown, MeterTimeout, TransactionError

__all__ = ["Dlt645Line", "LineProtocol", "PlcDenied", "PlcModuleLink"]


class PlcDenied(TransactionError):
    def __init__(self, meter: str, reason: str) -> None:
        super().__init__(0, f"PLC module: no answer from {meter} ({reason})")


class _Exchanger(ABC):
    """One outstanding exchange with a timeout on the given clock (subclasses decode replies)."""

    def __init__(self, clock: IReactorTime, timeout_s: float) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        self.transport: ITransport | None = None
        self._lock = defer.DeferredLock()
        self._waiting: defer.Deferred[object] | None = None
        self._timer: IDelayedCall | None = None
        self._label = ""

    @property
    def connected(self) -> bool:
        return self.transport is not None

    def connection_made(self, transport: ITransport) -> None:
        self.transport = transport

    def connection_lost(self, reason: str) -> None:
        self.transport = None
        self._finish(LinkDown(reason))

    @abstractmethod
    def data_received(self, data: bytes) -> None:
        """Feed received bytes; call _finish with the reply (or an error) when it is complete."""

    def _finish(self, outcome: object) -> None:
        waiting, self._waiting = self._waiting, None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if waiting is None:
            return
        if isinstance(outcome, Exception):
            waiting.errback(outcome)
        else:
            waiting.callback(outcome)

    async def _send(self, data: bytes, label: str) -> object:
        await self._lock.acquire()
        try:
            if self.transport is None:
                raise LinkDown("not connected")
            self._label = label
            waiting: defer.Deferred[object] = defer.Deferred()
            self._waiting = waiting
            self._timer = self.clock.callLater(self.timeout_s, self._finish,
                                               MeterTimeout(0, self.timeout_s))  # fmt: skip
            self.transport.write(data)
            return await waiting
        finally:
            self._lock.release()


class Dlt645Line(_Exchanger):
    """DL/T 645 meters directly on an RS485 line."""

    def __init__(self, clock: IReactorTime, timeout_s: float = 2.0) -> None:
        super().__init__(clock, timeout_s)
        self.receiver = dlt645.FrameReceiver()
        self._address = ""
        self.bad_frames = 0

    def data_received(self, data: bytes) -> None:
        self.receiver.receive_data(data)
        while True:
            event = self.receiver.next_event()
            if isinstance(event, dlt645.BadFrame):
                self.bad_frames += 1
                continue
            if not isinstance(event, dlt645.Frame):
                return
            if event.is_reply and dlt645.address_matches(self._address, event.address):
                self._finish(event)

    async def exchange(self, request: dlt645.Frame) -> dlt645.Frame:
        self._address = request.address
        reply = await self._send(dlt645.encode_frame(request, preamble=4), request.address)
        assert isinstance(reply, dlt645.Frame)
        return reply


class PlcModuleLink(_Exchanger):
    """DL/T 645 meters behind a Q/GDW 1376.2 PLC module (narrow-band PLC reads take seconds)."""

    def __init__(self, clock: IReactorTime, master_address: str, timeout_s: float = 60.0) -> None:
        super().__init__(clock, timeout_s)
        self.master_address = master_address
        self.receiver = qgdw13762.FrameReceiver()
        self._seq = 0
        self.bad_frames = 0
        self.denied = 0

    def data_received(self, data: bytes) -> None:
        self.receiver.receive_data(data)
        while True:
            event = self.receiver.next_event()
            if isinstance(event, qgdw13762.BadFrame):
                self.bad_frames += 1
                continue
            if not isinstance(event, qgdw13762.Frame):
                return
            if event.seq != self._seq:
                continue  # a late answer to an exchange that timed out
            message = qgdw13762.parse_message(event)
            if isinstance(message, qgdw13762.MonitorSlaveNodeReply):
                try:
                    self._finish(dlt645.decode_frame(message.frame))
                except dlt645.Dlt645Error as exc:
                    self._finish(PlcDenied(self._label, f"unreadable meter frame: {exc}"))
            elif isinstance(message, qgdw13762.Deny):
                self.denied += 1
                reason = getattr(message, "reason", "?")
                self._finish(PlcDenied(self._label, f"deny reason {int(reason)}"))

    async def exchange(self, request: dlt645.Frame) -> dlt645.Frame:
        self._seq = (self._seq + 1) & 0xFF
        frame = qgdw13762.monitor_slave_node(
            seq=self._seq,
            master_address=self.master_address,
            meter_address=request.address,
            meter_frame=dlt645.encode_frame(request, preamble=0),
        )
        reply = await self._send(qgdw13762.encode_frame(frame), request.address)
        assert isinstance(reply, dlt645.Frame)
        return reply


class LineProtocol(Protocol):
    """Bytes between a serial transport and a DL/T 645 line or PLC module link."""

    def __init__(self, link: _Exchanger, on_lost: object = None) -> None:
        self.link = link
        self._on_lost = on_lost

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        assert self.transport is not None
        self.link.connection_made(self.transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.link.data_received(data)

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802 - Twisted's name
        message = reason.getErrorMessage() if reason is not None else "closed"
        self.link.connection_lost(message)
        if callable(self._on_lost):
            self._on_lost(message)
