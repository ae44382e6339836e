"""DL/T 645-2007 prepaid meters on an RS485 line (or a pty), answering as real meters do.

Four parts, from the meter outwards:

* :class:`Dlt645Meter` is one :class:`VirtualMeter`'s DL/T 645 personality: given a decoded frame it
  returns the reply message a prepaid meter would send (or None). It does no I/O and reads no
  clock; the PLC module (:mod:`.plc_module`) hands it the frames it tunnels, so both transports
  answer with the same meter logic.
* :class:`Dlt645Bus` is the meters on one line: which meter a frame is for, the meters' faults,
  counters, and how long each exchange keeps the line busy.
* :class:`TransactionScheduler` and :class:`QuietLineTimer` hold the timing (they take a clock).
* :class:`Dlt645BusProtocol` is the Twisted adapter: bytes -> :class:`FrameReceiver` -> bus -> bytes.

Line timing (notes "RS485 timing" §7: 11-bit characters, 8E1, meter response delay Td of
20-500 ms), in the same model as the Modbus RTU bus (:mod:`.modbus_bus`)::

    reply at  t_request_received + request_bytes * Tc + turnaround + reply_bytes * Tc
    Tc = 11 / baud; request_bytes counts every byte the request took on the line (its FE
    wake-up preamble included); replies go out with 4 FEH in front, as meters send them

One transaction at a time; the line is free again after the reply (or, when nobody answers,
after the request).

Who answers (notes §1, §5): a frame to a meter's own address is answered by that meter; a frame to
``999999999999`` (broadcast) is acted on by every meter and answered by none (only 08H broadcast
time does anything). A frame to the wildcard ``AAAAAAAAAAAA`` or to an abbreviated address is
answered only when exactly one meter on the line matches it: real meters would all answer at
once and their replies would collide on the wire, so the simulator stays silent instead (read
address 13H therefore works on a bus with one meter). Frames addressed to no meter are ignored.

What a meter answers:

    11H read      the DIs below from the VirtualMeter; any other DI: error "no requested data"
    13H address   93H with the meter's address
    1CH relay     plaintext form, PA = 03H and the configured password, valid-until N3..N8 not
                  past the meter's clock (else error "unauthorised"): 1AH trip (refused with
                  error "other" while power-protect is on), 1BH close allowed / 1CH direct close
                  (both connect the meter), 2AH/2BH alarm on/off, 3AH/3BH power-protect on/off;
                  accepted: 9CH. The encrypted (opaque) form: error "unauthorised"
    08H time      no reply; applied with SY03A's rules (notes §5): once per meter-day, not
                  before 00:05 or after 23:55, at most +-5 min correction
    12H/14H/15H   follow-up read: "no requested data"; write data / write address: "unauthorised"
    anything else error "other"

    00000000, 000000t00  combined active energy total / tariff t = band register t (kWh)
    00010000, 000100t00  forward active energy, the same values; 0001FF00 the block of both
    00020000, 000200t00  reverse active energy: 0 (the virtual meter never exports)
    00900100 / 00900101  remaining / overdraft energy: credit >= 0 -> remaining, < 0 -> overdraft
    02010100, 02020100   voltage, current (phase A; single-phase meter)
    02030000, 02060000   total active power (kW), power factor
    02800002             frequency
    04000101, 04000102   date + weekday, time (the meter's local clock)
    04000401, 04000402   communication address, meter number (the DRN's last 12 digits)
    04000503             status word 3: bit4 relay open, bit6 relay commanded open, bit7 alarm,
                         bits 8-9 energy-prepaid, bit12 power-protect
    03330201, 03320201   purchase count (the meter's accepted-token count)
    1D000101, 1E000101   last trip / last close time (never: all zeros)

Energies are cut (not rounded) to 0.01 kWh, as meter registers are.
"""

from __future__ import annotations

import calendar
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Final

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from protocols.dlt645 import (
    BROADCAST_ADDRESS,
    BadFrame,
    BroadcastTimeSync,
    Dlt645UsageError,
    ErrorFlag,
    ErrorReply,
    Frame,
    FrameReceiver,
    MessageError,
    ReadAddressRequest,
    ReadFollowUpRequest,
    ReadRequest,
    RelayCommand,
    RelayControl,
    RelayControlOpaque,
    Reply,
    Request,
    WriteAddressRequest,
    WriteRequest,
    address_matches,
    encode_frame,
    encode_value,
    normalise_address,
    parse_request,
)

from .meter import RelayState, VirtualMeter
from .modbus_bus import MAX_TIMER_LEAD_S, BusStats, character_time_s

__all__ = [
    "REPLY_PREAMBLE",
    "Dlt645Bus",
    "Dlt645BusProtocol",
    "Dlt645Meter",
    "Exchange",
    "MeterResponse",
    "QuietLineTimer",
    "TransactionScheduler",
    "address_from_drn",
]

log = Logger()

REPLY_PREAMBLE: Final = 4  # FEH wake-up bytes in front of every reply on the RS485 line
INTER_BYTE_GAP_S: Final = 0.5  # notes §7: inter-byte gap <= 500 ms; longer drops a partial frame
TIME_SYNC_LIMIT_S: Final = 300  # notes §5: broadcast time corrects at most +-5 min
MIDNIGHT_GUARD_S: Final = 300  # ... and is refused before 00:05 and after 23:55
RELAY_PASSWORD_LEVEL: Final = 0x03  # notes §4: plaintext relay control needs PA = 03H
_EPOCH: Final = datetime(1970, 1, 1)


def address_from_drn(drn: str) -> str:
    """A DL/T 645 address from a DRN: its last 12 digits, zero-padded (11-digit DRNs)."""
    return drn[-12:].rjust(12, "0")


# -- one meter ----------------------------------------------------------------------------------


def _energy(wh: float) -> Decimal:
    """XXXXXX.XX kWh, cut to 0.01 kWh (the register shows what was fully counted)."""
    return Decimal(math.floor(round(max(wh, 0.0), 3) / 10)).scaleb(-2)


def _fixed(value: float, decimals: int) -> Decimal:
    return Decimal(round(value * 10**decimals)).scaleb(-decimals)


def _near_midnight(when: datetime) -> bool:
    seconds = when.hour * 3600 + when.minute * 60 + when.second
    return seconds < MIDNIGHT_GUARD_S or seconds > 86_400 - MIDNIGHT_GUARD_S


def _local_datetime(seconds: float) -> datetime:
    return _EPOCH + timedelta(seconds=math.floor(seconds))


@dataclass(frozen=True, slots=True)
class MeterResponse:
    """What a meter did with one frame: its reply, the bytes on the wire, and fault effects."""

    reply: Reply | None = None  # the answer the meter meant to give (None: silence)
    raw: bytes | None = None  # the bytes sent (checksum damaged by the corrupt_checksum fault)
    lost: bool = False  # a no_answer / intermittent fault swallowed the frame
    extra_delay_s: float = 0.0  # the slow_turnaround fault


@dataclass(slots=True)
class Dlt645Meter:
    """One virtual prepaid meter speaking DL/T 645-2007 (the meter side of notes §1-5).

    ``alarm``, ``power_protect`` and the day of the last accepted broadcast time sync are the
    meter's own DL/T 645 state; energy, credit and the relay live in :attr:`meter`.
    """

    address: str
    meter: VirtualMeter
    relay_password: str = field(default="123456", repr=False)
    alarm: bool = False
    power_protect: bool = False
    time_synced_on: date | None = None

    def __post_init__(self) -> None:
        address = normalise_address(self.address)
        if "A" in address or address == BROADCAST_ADDRESS:
            raise Dlt645UsageError(f"{address} cannot be a meter's own address")
        self.address = address
        self.relay_password = self.relay_password.upper()

    def local_time(self) -> datetime:
        """The meter's wall clock (local time, whole seconds), as its DL/T 645 registers show it."""
        return _local_datetime(self.meter.local_s)

    def hears(self, frame: Frame) -> bool:
        """Whether ``frame`` is addressed to this meter (own, broadcast, wildcard, abbreviated)."""
        return address_matches(frame.address, self.address)

    def answer(self, frame: Frame) -> Reply | None:
        """The reply to ``frame``, or None when the meter stays silent (not for it, broadcast)."""
        if frame.is_reply or not self.hears(frame):
            return None
        broadcast = frame.address == BROADCAST_ADDRESS
        try:
            request = parse_request(frame)
        except MessageError:
            return None if broadcast else ErrorReply(self.address, frame.function, ErrorFlag.OTHER)
        if isinstance(request, BroadcastTimeSync):
            self.sync_time(request.when)
            return None
        if broadcast:
            return None  # freeze and the like: not modelled, and never answered
        return self._answer(request)

    def respond(
        self, frame: Frame, now_s: float, rng: random.Random, *, preamble: int = 0
    ) -> MeterResponse:
        """:meth:`answer` at simulated time ``now_s`` with the meter's faults applied, encoded."""
        if frame.is_reply or not self.hears(frame):
            return MeterResponse()
        faults = self.meter.faults
        if faults.no_answer or (faults.intermittent and rng.random() < faults.intermittent):
            return MeterResponse(lost=True)
        self.meter.advance(now_s)
        reply = self.answer(frame)
        if reply is None:
            return MeterResponse()
        raw = encode_frame(reply.to_frame(), preamble)
        if faults.corrupt_checksum:
            raw = raw[:-2] + bytes((raw[-2] ^ 0x5A,)) + raw[-1:]
        return MeterResponse(reply, raw, extra_delay_s=max(faults.slow_turnaround_ms, 0.0) / 1000)

    # -- requests -------------------------------------------------------------------------------

    def _answer(self, request: Request) -> Reply:
        address = self.address
        if isinstance(request, ReadRequest):
            return self._read(request)
        if isinstance(request, ReadAddressRequest):
            return request.reply(address)
        if isinstance(request, RelayControl):
            return self._relay_control(request)
        if isinstance(request, RelayControlOpaque):
            # An ESAM-encrypted command (notes §4): this meter has no ESAM to decrypt it with.
            return request.error(ErrorFlag.UNAUTHORISED, address=address)
        if isinstance(request, ReadFollowUpRequest):
            return request.error(ErrorFlag.NO_REQUESTED_DATA, address=address)
        if isinstance(request, WriteRequest | WriteAddressRequest):
            return request.error(ErrorFlag.UNAUTHORISED, address=address)  # programming disabled
        if isinstance(request, BroadcastTimeSync):  # handled by answer(); never replied to
            raise AssertionError("broadcast time sync has no reply")
        return request.error(ErrorFlag.OTHER, address=address)

    def _read(self, request: ReadRequest) -> Reply:
        getter = _READERS.get(request.di)
        if getter is None:
            return request.error(ErrorFlag.NO_REQUESTED_DATA, address=self.address)
        try:
            payload = encode_value(request.di, getter(self))
        except Dlt645UsageError:  # e.g. a clock outside 2000-2099, an energy past 999999.99
            return request.error(ErrorFlag.OTHER, address=self.address)
        return request.reply(payload, address=self.address)

    def _relay_control(self, request: RelayControl) -> Reply:
        # notes §4 after SY03A uartx.c case 0x1C: PA must be 03H, the password must match, and the
        # command is refused once the meter's clock is past N3..N8. The password is never logged.
        address = self.address
        password = request.password
        if password.level != RELAY_PASSWORD_LEVEL or password.code != self.relay_password:
            log.info("Meter {address} refused relay command {command}: wrong password",
                     address=address, command=request.command.name)  # fmt: skip
            return request.error(ErrorFlag.UNAUTHORISED, address=address)
        if self.local_time() > request.valid_until:
            log.info("Meter {address} refused relay command {command}: expired at {valid_until}",
                     address=address, command=request.command.name,
                     valid_until=request.valid_until.isoformat())  # fmt: skip
            return request.error(ErrorFlag.UNAUTHORISED, address=address)
        command = request.command
        if command is RelayCommand.TRIP:
            if self.power_protect:
                log.info("Meter {address} refused a trip: power-protect is on", address=address)
                return request.error(ErrorFlag.OTHER, address=address)
            self.meter.command_relay(1)
        elif command in (RelayCommand.CLOSE_ALLOWED, RelayCommand.CLOSE_DIRECT):
            self.meter.command_relay(2)
        elif command in (RelayCommand.ALARM, RelayCommand.ALARM_RELEASE):
            self.alarm = command is RelayCommand.ALARM
        else:
            self.power_protect = command is RelayCommand.POWER_PROTECT
        log.info("Meter {address} accepted relay command {command} from operator {operator}",
                 address=address, command=command.name, operator=request.operator)  # fmt: skip
        return request.reply(address=address)

    def sync_time(self, when: datetime) -> str | None:
        """Apply a broadcast time (08H) by the meter-side rules; the refusal reason, or None."""
        now = self.local_time()
        reason = None
        if self.time_synced_on == now.date():
            reason = "already synchronised today"
        elif _near_midnight(now) or _near_midnight(when):
            reason = "within 5 minutes of midnight"
        elif abs((when - now).total_seconds()) > TIME_SYNC_LIMIT_S:
            reason = "correction larger than 5 minutes"
        if reason is not None:
            log.info("Meter {address} refused broadcast time {when}: {reason}",
                     address=self.address, when=when.isoformat(), reason=reason)  # fmt: skip
            return reason
        utc_s = calendar.timegm(when.timetuple()) - 60 * self.meter.utc_offset_min
        self.meter.set_clock(float(utc_s))
        self.time_synced_on = when.date()
        return None


# -- what each data identifier reads ------------------------------------------------------------


def _local_or_none(meter: VirtualMeter, utc_s: float | None) -> datetime | None:
    return None if utc_s is None else _local_datetime(utc_s + 60 * meter.utc_offset_min)


def _status_word_3(m: Dlt645Meter) -> dict[str, object]:
    meter = m.meter
    return {
        "time_slot_table_2": False,
        "supply": "battery" if meter.power_fail else "mains",
        "programming_enabled": False,
        "relay_open": meter.relay == RelayState.OPEN,
        "time_zone_table_2": False,
        "relay_command_open": meter.remote_disconnect,
        "pre_trip_alarm": m.alarm,
        "meter_type": "energy-prepaid",
        "step_tariff_table_2": False,
        "step_set_2": False,
        "power_protect": m.power_protect,
        "identity_auth_valid": False,
        "local_account_opened": True,
        "remote_account_opened": True,
    }


def _band_energy(m: Dlt645Meter, band: int) -> Decimal:
    return _energy(m.meter.band_wh[band - 1])


def _current_a(m: Dlt645Meter) -> Decimal:
    meter = m.meter
    return _fixed(meter.power_w / meter.voltage_v if meter.voltage_v > 0 else 0.0, 3)


def _readers() -> dict[str, Callable[[Dlt645Meter], object]]:
    readers: dict[str, Callable[[Dlt645Meter], object]] = {}
    for quantity in ("00", "01"):  # combined and forward active: the meter only imports
        readers[f"00{quantity}0000"] = lambda m: _energy(m.meter.energy_wh)
        for band in range(1, 5):
            readers[f"00{quantity}{band:02d}00"] = partial(_band_energy, band=band)
    for tariff in range(5):  # reverse active, total and tariffs
        readers[f"0002{tariff:02d}00"] = lambda m: Decimal(0)
    readers["0001FF00"] = lambda m: {
        "total": _energy(m.meter.energy_wh),
        **{f"tariff_{b}": _energy(m.meter.band_wh[b - 1]) for b in range(1, 5)},
    }
    readers["00900100"] = lambda m: _energy(m.meter.credit_wh)  # 0 when in overdraft
    readers["00900101"] = lambda m: _energy(-m.meter.credit_wh)  # 0 while credit is left
    readers["02010100"] = lambda m: _fixed(m.meter.voltage_v, 1)
    readers["02020100"] = _current_a
    readers["02030000"] = lambda m: _fixed(m.meter.power_w / 1000, 4)
    readers["02060000"] = lambda m: Decimal("0.980") if m.meter.power_w else Decimal("1.000")
    readers["02800002"] = lambda m: _fixed(m.meter.frequency_hz, 2)
    readers["04000101"] = lambda m: m.local_time().date()
    readers["04000102"] = lambda m: m.local_time().time()
    readers["04000401"] = lambda m: m.address
    readers["04000402"] = lambda m: address_from_drn(m.meter.identity.drn)
    readers["04000503"] = _status_word_3
    readers["03330201"] = lambda m: m.meter.token_count  # purchase count after the last purchase
    readers["03320201"] = lambda m: m.meter.token_count  # the same, kWh purchase records
    readers["1D000101"] = lambda m: _local_or_none(m.meter, m.meter.last_trip_s)
    readers["1E000101"] = lambda m: _local_or_none(m.meter, m.meter.last_close_s)
    return readers


_READERS: Final = _readers()


# -- line timing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exchange:
    """One transaction on a half-duplex line: the reply (None: silence) and its timing."""

    reply: bytes | None
    request_s: float  # line time of the request
    wait_s: float  # from the end of the request to the start of the reply (turnaround, PLC)
    reply_s: float = 0.0  # line time of the reply


class TransactionScheduler:
    """One transaction at a time on a shared line, each reply held back by its wire time.

    Requests queue up in arrival order; when the line is free the next one is served (the meters
    answer from their state at that moment) and its reply is sent at::

        start + request_s + wait_s + reply_s      start = max(arrival, line free)

    A request nobody answers frees the line after ``request_s``. ``stats.busy_s`` adds up the
    time the line was busy. Real timers fire late (asyncio rounds select timeouts up to whole
    milliseconds), so, as the Modbus RTU bus does, each timer is set early by a running estimate
    of that lateness (at most ``MAX_TIMER_LEAD_S``), keeping replies on the line's timing.
    """

    def __init__(self, clock: IReactorTime, send: Callable[[bytes], None], stats: BusStats) -> None:
        self._clock = clock
        self._send = send
        self._stats = stats
        self._queue: deque[tuple[Callable[[], Exchange], float]] = deque()
        self._busy: IDelayedCall | None = None
        self._due_s = 0.0  # when the transaction in progress should end
        self._lead_s = 0.0  # how early timers are set, learnt from how late they fired

    @property
    def waiting(self) -> int:
        """Requests queued behind the one in progress."""
        return len(self._queue)

    def submit(self, serve: Callable[[], Exchange]) -> None:
        """Queue a request; ``serve`` is called when the line is free and says what happens."""
        self._queue.append((serve, self._clock.seconds()))
        self._serve_next()

    def stop(self) -> None:
        if self._busy is not None and self._busy.active():
            self._busy.cancel()
        self._busy = None
        self._queue.clear()

    def _serve_next(self) -> None:
        while self._busy is None and self._queue:
            serve, received_at = self._queue.popleft()
            try:
                exchange = serve()
            except Exception:  # a bug answering one request must not kill the line
                log.failure("Answering a request failed; the line stays silent")
                continue
            now = self._clock.seconds()
            start = max(received_at, now)
            done_at = start + exchange.request_s
            if exchange.reply is not None:
                done_at += exchange.wait_s + exchange.reply_s
            self._stats.busy_s += done_at - start
            self._due_s = done_at
            delay = max(0.0, done_at - now - self._lead_s)
            self._busy = self._clock.callLater(delay, self._sent, exchange.reply)

    def _sent(self, reply: bytes | None) -> None:
        self._busy = None
        late = self._clock.seconds() - self._due_s
        self._lead_s = min(max(self._lead_s + 0.2 * late, 0.0), MAX_TIMER_LEAD_S)
        if reply is not None:
            self._send(reply)
        self._serve_next()


class QuietLineTimer:
    """Calls ``on_quiet`` once no byte has arrived for ``gap_s`` (a UART's inter-byte timeout).

    A receiver holding part of a frame after the gap gives it up, so a stray 68H with a plausible
    length cannot make it wait for bytes that never come.
    """

    def __init__(self, clock: IReactorTime, gap_s: float, on_quiet: Callable[[], None]) -> None:
        self._clock = clock
        self._gap_s = gap_s
        self._on_quiet = on_quiet
        self._call: IDelayedCall | None = None

    def restart(self) -> None:
        self.cancel()
        self._call = self._clock.callLater(self._gap_s, self._fire)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        self._call = None
        self._on_quiet()


# -- the bus ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Dlt645Bus:
    """The DL/T 645 meters on one RS485 line, by address; transports feed it decoded frames."""

    name: str
    meters: dict[str, Dlt645Meter]
    clock: IReactorTime
    now_s: Callable[[], float]
    baud: int = 2400
    turnaround_ms: float = 50.0
    seed: int = 0
    stats: BusStats = field(default_factory=BusStats)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def exchange(self, frame: Frame, request_bytes: int) -> Exchange:
        """Deliver ``frame`` (which took ``request_bytes`` on the line) to the meters it is for."""
        self.stats.requests += 1
        tc = character_time_s(self.baud)
        listeners = [m for m in self.meters.values() if m.hears(frame)]
        if frame.address != BROADCAST_ADDRESS and len(listeners) > 1:
            # Wildcard or abbreviated address matching several meters: on a real line they
            # would all answer at once and the replies would collide. Silence instead.
            log.debug("Bus {bus}: {count} meters match {address}; nobody answers",
                      bus=self.name, count=len(listeners), address=frame.address)  # fmt: skip
            listeners = []
        now = self.now_s()
        reply: bytes | None = None
        extra_delay_s = 0.0
        for meter in listeners:
            response = meter.respond(frame, now, self._rng, preamble=REPLY_PREAMBLE)
            if response.lost:
                self.stats.unanswered += 1
            if response.raw is not None:
                reply, extra_delay_s = response.raw, response.extra_delay_s
                self.stats.replies += 1
                if isinstance(response.reply, ErrorReply):
                    self.stats.exceptions += 1
        wait_s = max(self.turnaround_ms / 1000 + extra_delay_s, 0.0)
        reply_s = len(reply) * tc if reply is not None else 0.0
        return Exchange(reply, request_bytes * tc, wait_s, reply_s)


class Dlt645BusProtocol(Protocol):
    """The meters' side of the RS485 line: frames in, replies out with line timing."""

    def __init__(self, bus: Dlt645Bus) -> None:
        self.bus = bus
        self.receiver = FrameReceiver()
        self.line = TransactionScheduler(bus.clock, self._send, bus.stats)
        self.gap = QuietLineTimer(bus.clock, INTER_BYTE_GAP_S, self._on_quiet)
        self._line_bytes = 0  # bytes consumed since the last frame: its preamble, noise
        self._discarded = 0  # bytes earlier receivers dropped

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        receiver = self.receiver
        receiver.receive_data(data)
        while True:
            before = receiver.buffered
            event = receiver.next_event()
            self._line_bytes += before - receiver.buffered
            if isinstance(event, Frame):
                self.line.submit(partial(self.bus.exchange, event, self._line_bytes))
                self._line_bytes = 0
            elif not isinstance(event, BadFrame):
                break
        self.bus.stats.discarded_bytes = (
            self._discarded + receiver.skipped_bytes + receiver.dropped_bytes
        )
        if receiver.buffered:
            self.gap.restart()
        else:
            self.gap.cancel()

    def _on_quiet(self) -> None:
        receiver = self.receiver
        self._discarded += receiver.skipped_bytes + receiver.dropped_bytes + receiver.buffered
        self.bus.stats.discarded_bytes = self._discarded
        self.receiver = FrameReceiver()
        self._line_bytes = 0

    def _send(self, reply: bytes) -> None:
        if self.transport is not None:
            self.transport.write(reply)

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.line.stop()
        self.gap.cancel()
