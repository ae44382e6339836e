"""Polling: poll groups on the clock, readings batched into the journal, alarms from status edges.

* A poll group runs every ``interval_s`` aligned to the clock (every 900 s: on the quarter hour),
  plus ``offset_s``; a group marked ``alarm`` is a fast status poll whose jobs run at alarm
  priority. A meter is identified (its DRN read) before it is polled.
* Readings carry the gateway's time and the meter's own clock (when the profile has one), and are
  journaled in batches of ``max_readings`` or after ``max_delay_s``.
* Status flags become events on their edges only (raised/cleared), deduplicated per meter; a meter
  whose circuit breaker opens raises ``meter_unreachable``, cleared when it answers again.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from protocols.link import Event, EventBatch, EventState, Reading, ReadingBatch, encode_message
from protocols.modbus import Value

from .access import IdentityMismatch, MeterAccess
from .bus import BusActor, Priority
from .journal import EntryKind
from .modbus_master import LinkDown, TransactionError
from .uplink import Journal

__all__ = ["AlarmTracker", "BusPoller", "PollGroup", "Recorder", "next_aligned"]

log = Logger()

STATUS_FLAGS_POINT = "status_flags"
UNREACHABLE = "meter_unreachable"
LINK_RETRY_S = 5.0


def next_aligned(now: float, interval_s: float, offset_s: float = 0.0) -> float:
    """The first time after ``now`` that is a multiple of ``interval_s`` plus ``offset_s``."""
    slot = math.floor((now - offset_s) / interval_s) + 1
    return slot * interval_s + offset_s


@dataclass(frozen=True, slots=True)
class PollGroup:
    name: str
    interval_s: float
    offset_s: float = 0.0
    alarm: bool = False


class Recorder:
    """Turns readings and events into journal entries (events at once, readings in batches)."""

    def __init__(self, journal: Journal, gateway_id: str, clock: Any, on_appended: Callable[[], None],
                 max_readings: int = 100, max_delay_s: float = 10.0) -> None:  # fmt: skip
        self.journal = journal
        self.gateway_id = gateway_id
        self.clock = clock
        self.on_appended = on_appended
        self.max_readings = max_readings
        self.max_delay_s = max_delay_s
        self._readings: list[Reading] = []
        self._flush_call: IDelayedCall | None = None
        self.readings_recorded = 0
        self.events_recorded = 0

    def reading(self, reading: Reading) -> None:
        self._readings.append(reading)
        if len(self._readings) >= self.max_readings:
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self.clock.callLater(self.max_delay_s, self.flush)

    def flush(self) -> defer.Deferred[None]:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        batch, self._readings = tuple(self._readings), []
        if not batch:
            return defer.succeed(None)
        now = self.clock.seconds()

        def build(seq: int) -> bytes:
            return encode_message(ReadingBatch(self.gateway_id, seq, now, batch))[1]

        return self._append(EntryKind.READINGS, "readings", build, len(batch))

    def events(self, events: list[Event]) -> defer.Deferred[None]:
        if not events:
            return defer.succeed(None)
        now = self.clock.seconds()

        def build(seq: int) -> bytes:
            return encode_message(EventBatch(self.gateway_id, seq, now, tuple(events)))[1]

        return self._append(EntryKind.EVENTS, "events", build, len(events))

    def _append(
        self, kind: EntryKind, topic: str, build: Callable[[int], bytes], count: int
    ) -> defer.Deferred[None]:
        from protocols.link import Topic, gateway_topic

        topic_name = gateway_topic(
            self.gateway_id, Topic.READINGS if topic == "readings" else Topic.EVENTS
        )

        async def append() -> None:
            await self.journal.append(kind, topic_name, build, self.clock.seconds())
            if kind is EntryKind.READINGS:
                self.readings_recorded += count
            else:
                self.events_recorded += count
            self.on_appended()

        done = defer.ensureDeferred(append())
        done.addErrback(lambda failure: log.failure("Journal write failed", failure))
        return done


@dataclass(slots=True)
class AlarmTracker:
    """Edges of each meter's flags, as raised/cleared events (deduplicated)."""

    watched: frozenset[str] = frozenset(
        {"low_credit", "credit_exhausted", "tamper", "cover_open", "relay_fault", "over_power",
         "power_fail", UNREACHABLE}
    )  # fmt: skip
    _active: dict[str, set[str]] = field(default_factory=dict)

    def update(
        self, meter: str, flags: set[str], now: float, scope: set[str] | None = None
    ) -> list[Event]:
        """Events for the changes in ``flags`` (only flags in ``scope``, default: all watched)."""
        scope = scope if scope is not None else set(self.watched - {UNREACHABLE})
        active = self._active.setdefault(meter, set())
        events = []
        for flag in sorted(scope & self.watched):
            if flag in flags and flag not in active:
                active.add(flag)
                events.append(Event(meter, now, flag, EventState.RAISED))
            elif flag not in flags and flag in active:
                active.discard(flag)
                events.append(Event(meter, now, flag, EventState.CLEARED))
        return events

    def active(self, meter: str) -> frozenset[str]:
        return frozenset(self._active.get(meter, set()))


class BusPoller:
    """Schedules the poll groups of one bus's meters and records what comes back."""

    def __init__(self, bus: BusActor, meters: list[MeterAccess], groups: dict[str, PollGroup],
                 recorder: Recorder, alarms: AlarmTracker, clock: Any) -> None:  # fmt: skip
        self.bus = bus
        self.meters = meters
        self.groups = groups
        self.recorder = recorder
        self.alarms = alarms
        self.clock = clock
        self._calls: dict[str, IDelayedCall] = {}
        self.skipped = 0
        self.last_good: dict[str, float] = {}
        self.error_streak: dict[str, int] = {}
        self.mismatched: set[str] = set()  # configured meter ids another meter answers for
        self._in_flight: set[tuple[int, str]] = set()  # (meter, group) polls queued or running

    def start(self) -> None:
        for group in self.groups.values():
            self._schedule(group)
        self.poll_now(None)

    def stop(self) -> None:
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()

    def _schedule(self, group: PollGroup) -> None:
        now = self.clock.seconds()
        at = next_aligned(now, group.interval_s, group.offset_s)
        self._calls[group.name] = self.clock.callLater(at - now, self._tick, group)

    def _tick(self, group: PollGroup) -> None:
        self._schedule(group)
        self.poll_now(group)

    def poll_now(
        self, group: PollGroup | None, meter_ids: set[str] | None = None
    ) -> list[defer.Deferred[Any]]:
        """Poll ``group`` (every configured group for None) on the meters (all for None) now."""
        started = []
        for meter in self.meters:
            if meter_ids is not None and meter.meter_id not in meter_ids:
                continue
            names = list(self.groups) if group is None else [group.name]
            for name in names:
                if name not in meter.groups():
                    continue
                alarm = self.groups[name].alarm if name in self.groups else False
                started.append(self._poll(meter, name, Priority.ALARM if alarm else Priority.POLL))
        return started

    def _poll(self, meter: MeterAccess, group: str, priority: Priority) -> defer.Deferred[Any]:
        slot = (id(meter), group)
        if slot in self._in_flight:
            # the line cannot keep up: do not queue the same read twice, so every group gets a turn
            self.skipped += 1
            return defer.succeed(None)
        self._in_flight.add(slot)

        async def work() -> dict[str, Value]:
            if not meter.meter_id:
                await meter.identify()
            elif not meter.verified:
                await meter.verify_identity()
            return await meter.read_group(group)

        done = self.bus.submit(priority, meter.key, work)

        def finished(result: object) -> object:
            self._in_flight.discard(slot)
            return result

        done.addBoth(finished)
        done.addCallbacks(lambda values: self.record(meter, values),
                          lambda f: self._failed(meter, f, group, priority))  # fmt: skip
        return done

    def record(self, meter: MeterAccess, values: dict[str, Value]) -> None:
        """A successful read: a reading, and alarm edges from its status flags."""
        if not values:
            return
        now = self.clock.seconds()
        self.last_good[meter.key] = now
        self.error_streak[meter.key] = 0
        meter_time = values.get("meter_clock")
        self.recorder.reading(Reading(
            meter=meter.key, time=now, values=dict(values),
            meter_time=float(meter_time) if isinstance(meter_time, int | Decimal) else None,
        ))  # fmt: skip
        flags = meter.flags(values)
        if flags is not None:
            self.recorder.events(self.alarms.update(meter.key, set(flags), now))
        self.recorder.events(self.alarms.update(meter.key, set(), now, {UNREACHABLE}))

    def _failed(self, meter: MeterAccess, failure: Any, group: str = "",
                priority: Priority = Priority.POLL) -> None:  # fmt: skip
        key = meter.key
        if failure.check(LinkDown):
            # the bus is not (yet) connected, e.g. at start-up: try this read again shortly
            # rather than waiting for the group's next interval (up to a day for identity)
            if group and self._calls:
                self.clock.callLater(LINK_RETRY_S, self._retry, meter, group, priority)
            return
        self.error_streak[key] = self.error_streak.get(key, 0) + 1
        if failure.check(IdentityMismatch):
            if key not in self.mismatched:
                log.error("Bus {bus}: {error}", bus=self.bus.name, error=failure.getErrorMessage())
                self.mismatched.add(key)
                event = Event(key, self.clock.seconds(), "identity_mismatch", EventState.RAISED,
                              failure.getErrorMessage())  # fmt: skip
                self.recorder.events([event])
            return
        if key in self.mismatched:
            return  # the breaker keeps a wrong meter quiet; it is not "unreachable"
        if not failure.check(TransactionError):
            log.failure("Polling {meter} failed", failure, meter=key)
            return
        if meter.meter_id and self.bus.breaker(key).is_open:
            self.recorder.events(
                self.alarms.update(key, {UNREACHABLE}, self.clock.seconds(), {UNREACHABLE})
            )

    def _retry(self, meter: MeterAccess, group: str, priority: Priority) -> None:
        if self._calls:  # still running
            self._poll(meter, group, priority)

    def submit_command(
        self, meter: MeterAccess, work: Callable[[], Awaitable[Any]]
    ) -> defer.Deferred[Any]:
        return self.bus.submit(Priority.COMMAND, meter.key, work)
