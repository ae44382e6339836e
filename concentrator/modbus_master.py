"""A Modbus master on one link (an RS485 line or a TCP connection): one transaction at a time.

The Twisted protocol (:class:`ModbusLinkProtocol`) only moves bytes; :class:`ModbusMaster` owns
the transaction: it writes the request, waits for the matching response with a timeout on the
given clock, keeps the inter-frame silence an RS485 line needs before the next request, and turns
exception responses and silence into typed errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from protocols.errors import ProtocolError
from protocols.modbus.adapter import (
    EXCEPTION_NAMES,
    Framing,
    Receiver,
    Request,
    Response,
    encode_request,
)

__all__ = [
    "LinkDown",
    "MeterException",
    "MeterTimeout",
    "ModbusLinkProtocol",
    "ModbusMaster",
    "TransactionError",
]


class TransactionError(Exception):
    """A transaction that did not give a usable response."""

    def __init__(self, unit_id: int, message: str) -> None:
        self.unit_id = unit_id
        super().__init__(message)


class MeterTimeout(TransactionError):
    def __init__(self, unit_id: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(unit_id, f"unit {unit_id} did not answer within {timeout_s * 1000:.0f} ms")


class MeterException(TransactionError):
    def __init__(self, unit_id: int, code: int) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(unit_id, f"unit {unit_id} answered exception {code:02X} ({name})")


class LinkDown(TransactionError):
    def __init__(self, reason: str) -> None:
        super().__init__(0, f"link down: {reason}")


@dataclass(slots=True)
class _Pending:
    request: Request
    deferred: defer.Deferred[Response]
    timer: IDelayedCall


class ModbusMaster:
    """Transactions on one link; callers serialise through :meth:`execute` (a DeferredLock)."""

    def __init__(
        self,
        clock: IReactorTime,
        framing: Framing,
        *,
        timeout_s: float = 1.0,
        inter_frame_gap_s: float = 0.0,
        retries: int = 0,
    ) -> None:
        self.clock = clock
        self.framing = framing
        self.timeout_s = timeout_s
        self.inter_frame_gap_s = inter_frame_gap_s
        self.receiver = Receiver(framing, server=False)
        self.transport: ITransport | None = None
        self._lock = defer.DeferredLock()
        self._pending: _Pending | None = None
        self._transaction_id = 0
        self._quiet_until = 0.0
        self.crc_errors = 0
        self.retries = retries
        self.retried = 0

    @property
    def connected(self) -> bool:
        return self.transport is not None

    def connection_made(self, transport: ITransport) -> None:
        self.transport = transport
        self.receiver.reset()

    def connection_lost(self, reason: str) -> None:
        self.transport = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.timer.cancel()
            pending.deferred.errback(LinkDown(reason))

    def data_received(self, data: bytes) -> None:
        before = self.receiver.discarded_bytes
        self.receiver.receive_data(data)
        try:
            event = self.receiver.next_event()
        except ProtocolError:
            self.receiver.reset()
            return
        self.crc_errors += int(self.receiver.discarded_bytes > before)
        if not isinstance(event, Response) or self._pending is None:
            return
        if not _answers(self._pending.request, event, self.framing):
            return  # a late reply to an earlier, timed-out request: not this one's answer
        pending, self._pending = self._pending, None
        pending.timer.cancel()
        self._quiet_until = self.clock.seconds() + self.inter_frame_gap_s
        if event.is_exception:
            pending.deferred.errback(
                MeterException(pending.request.unit_id, event.exception_code or 0)
            )
        else:
            pending.deferred.callback(event)

    async def execute(self, request: Request, timeout_s: float | None = None) -> Response:
        """Send ``request`` and return its response (MeterTimeout, MeterException, LinkDown).

        A request that times out is sent again up to ``retries`` times (a noisy line loses a
        frame now and then); the meter's circuit breaker takes care of meters that stay silent.
        """
        await self._lock.acquire()
        try:
            for attempt in range(self.retries + 1):
                try:
                    return await self._transact(request, timeout_s or self.timeout_s)
                except MeterTimeout:
                    if attempt == self.retries:
                        raise
                    self.retried += 1
            raise AssertionError("unreachable")
        finally:
            self._lock.release()

    async def _transact(self, request: Request, timeout_s: float) -> Response:
        wait = self._quiet_until - self.clock.seconds()
        if wait > 0:
            await _sleep(self.clock, wait)
        if self.transport is None:
            raise LinkDown("not connected")
        if self.framing is Framing.TCP:
            self._transaction_id = (self._transaction_id + 1) & 0xFFFF
            request = Request(request.unit_id, request.function, request.address, request.count,
                              request.values, self._transaction_id)  # fmt: skip
        self.receiver.expect(request)
        deferred: defer.Deferred[Response] = defer.Deferred()
        timer = self.clock.callLater(timeout_s, self._timed_out, request, timeout_s)
        self._pending = _Pending(request, deferred, timer)
        self.transport.write(encode_request(request, self.framing))
        return await deferred

    def _timed_out(self, request: Request, timeout_s: float) -> None:
        pending, self._pending = self._pending, None
        self.receiver.reset()
        self._quiet_until = self.clock.seconds() + self.inter_frame_gap_s
        if pending is not None:
            pending.deferred.errback(MeterTimeout(request.unit_id, timeout_s))


def _answers(request: Request, response: Response, framing: Framing) -> bool:
    if response.unit_id != request.unit_id or response.function != request.function:
        return False
    if framing is Framing.TCP and response.transaction_id != request.transaction_id:
        return False
    if request.function in (3, 4) and not response.is_exception:
        return len(response.values) == request.count
    return True


def _sleep(clock: IReactorTime, seconds: float) -> defer.Deferred[None]:
    done: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, done.callback, None)
    return done


class ModbusLinkProtocol(Protocol):
    """Bytes between a transport and a :class:`ModbusMaster`."""

    def __init__(self, master: ModbusMaster, on_lost: object = None) -> None:
        self.master = master
        self._on_lost = on_lost

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        assert self.transport is not None
        self.master.connection_made(self.transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.master.data_received(data)

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802 - Twisted's name
        message = reason.getErrorMessage() if reason is not None else "closed"
        self.master.connection_lost(message)
        if callable(self._on_lost):
            self._on_lost(message)
