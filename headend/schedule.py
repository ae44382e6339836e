"""Read schedules: when a meter group is due to be read, in UTC, from a rule in local time.

A utility says "read every 15 minutes", "read at 01:30 every night" or "read at 00:05 on the 1st of
the month" in the meters' local time; the head-end stores and compares instants in UTC, and the
concentrators poll on their own clocks from the plan they are given. This module turns the local
rule into UTC instants, purely (no I/O, no clock: the caller passes "now"), and settles what the
wall clock's two yearly jumps do to each kind of schedule.

The kinds
---------
* ``interval`` every N minutes (N divides 1440), **aligned to local midnight**: the due times are
  the instants whose local wall-clock time is 00:00, 00:N, 00:2N, ... A wall time in the
  spring-forward gap never happens, so it has no window; a wall time in the fall-back repeated hour
  happens twice, so it has two. Every 15 minutes therefore gives 92 windows on a 23-hour local day
  and 100 on a 25-hour day, 15 minutes apart in UTC throughout: no duplicate and no hole (in zones
  whose offsets are whole multiples of N, which all the usual ones are for N <= 60).
* ``daily`` at HH:MM local time: **once per local day**, even on the DST days. On the spring-forward
  day a time inside the gap (01:30 in London) runs at the first instant after the gap (02:00 BST =
  01:00 UTC); on the fall-back day a repeated time runs at its **first** occurrence only.
* ``monthly`` on day D at HH:MM local time, with the same DST rules. **Day 29, 30 or 31 in a shorter
  month runs on the month's last day** (day 31 runs on 30 April and on 28 or 29 February): a
  monthly read is never skipped, and never runs twice.

Instants
--------
Every datetime in and out is timezone-aware; naive datetimes raise ``ScheduleError``. Results are
in UTC (``datetime.UTC``); aware inputs in another zone are converted.

Catch-up
--------
``missed_windows(schedule, last_run_utc, now_utc, max_catch_up)`` gives the windows after the last
run up to and including now, at most ``max_catch_up`` of them, the **newest kept**: after a head-end
outage of three days, a 15-minute schedule capped at 96 reads the last day's windows and skips the
older ones (meters keep interval data in their own memory; the newest is what operators look at).
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .calendar import wall_to_utc

__all__ = [
    "ReadSchedule",
    "ScheduleError",
    "ScheduleKind",
    "missed_windows",
    "next_window",
    "windows",
]

_ONE_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)
_MINUTES_PER_DAY = 1440


class ScheduleError(ValueError):
    """An invalid schedule or request; ``problems`` lists every problem found."""

    def __init__(self, problems: str | list[str], title: str = "invalid read schedule") -> None:
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        if len(self.problems) == 1:
            message = f"{title}: {self.problems[0]}"
        else:
            message = f"{title}:\n  " + "\n  ".join(self.problems)
        super().__init__(message)


class ScheduleKind(enum.StrEnum):
    INTERVAL = "interval"
    DAILY = "daily"
    MONTHLY = "monthly"


def _parse_hh_mm(text: object) -> time | None:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        return None
    hours, minutes = text[:2], text[3:]
    if not (hours.isdigit() and minutes.isdigit()) or int(hours) > 23 or int(minutes) > 59:
        return None
    return time(int(hours), int(minutes))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class ReadSchedule:
    """When a group of meters is read; see the module docstring. Validated on creation.

    ``interval_minutes`` is for ``interval`` schedules only, ``at`` ("HH:MM" local) for ``daily``
    and ``monthly``, ``day_of_month`` (1..31) for ``monthly``. The class methods ``interval``,
    ``daily`` and ``monthly`` fill in the right ones.
    """

    name: str
    zone: str
    kind: ScheduleKind
    interval_minutes: int | None = None
    at: str | None = None
    day_of_month: int | None = None

    _tz: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _at: time = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.name, str) or not self.name:
            problems.append("name: must be a non-empty string")
        try:
            object.__setattr__(self, "_tz", ZoneInfo(self.zone))
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            problems.append(f"zone: {self.zone!r} is not an IANA time zone")
        try:
            kind = ScheduleKind(self.kind)
        except ValueError:
            kinds = ", ".join(k.value for k in ScheduleKind)
            raise ScheduleError(
                [*problems, f"kind: must be one of {kinds}, got {self.kind!r}"]
            ) from None
        object.__setattr__(self, "kind", kind)

        wanted = {
            ScheduleKind.INTERVAL: {"interval_minutes"},
            ScheduleKind.DAILY: {"at"},
            ScheduleKind.MONTHLY: {"at", "day_of_month"},
        }[kind]
        for name in ("interval_minutes", "at", "day_of_month"):
            value = getattr(self, name)
            if name in wanted and value is None:
                problems.append(f"{name}: a {kind.value} schedule needs it")
            elif name not in wanted and value is not None:
                problems.append(f"{name}: not used by a {kind.value} schedule, got {value!r}")
        minutes = self.interval_minutes
        if (
            "interval_minutes" in wanted
            and minutes is not None
            and (
                not _is_int(minutes)
                or not 1 <= minutes <= _MINUTES_PER_DAY
                or _MINUTES_PER_DAY % minutes
            )
        ):
            problems.append(
                "interval_minutes: must divide a day of 1440 minutes (1, 5, 15, 30, 60, ...), "
                f"got {minutes!r}"
            )
        if "at" in wanted and self.at is not None:
            at = _parse_hh_mm(self.at)
            if at is None:
                problems.append(f"at: must be local time 'HH:MM' 00:00..23:59, got {self.at!r}")
            else:
                object.__setattr__(self, "_at", at)
        day = self.day_of_month
        if (
            "day_of_month" in wanted
            and day is not None
            and (not _is_int(day) or not 1 <= day <= 31)
        ):
            problems.append(f"day_of_month: must be 1..31, got {day!r}")
        if problems:
            raise ScheduleError(problems)

    @classmethod
    def interval(cls, name: str, zone: str, minutes: int) -> ReadSchedule:
        return cls(name, zone, ScheduleKind.INTERVAL, interval_minutes=minutes)

    @classmethod
    def daily(cls, name: str, zone: str, at: str) -> ReadSchedule:
        return cls(name, zone, ScheduleKind.DAILY, at=at)

    @classmethod
    def monthly(cls, name: str, zone: str, day_of_month: int, at: str) -> ReadSchedule:
        return cls(name, zone, ScheduleKind.MONTHLY, at=at, day_of_month=day_of_month)

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def _windows_on(self, local_date: date) -> list[datetime]:
        """The due instants (UTC) that belong to one local date."""
        zone = self._tz
        if self.kind is ScheduleKind.INTERVAL:
            assert self.interval_minutes is not None
            midnight = datetime.combine(local_date, time())
            found: list[datetime] = []
            for minute in range(0, _MINUTES_PER_DAY, self.interval_minutes):
                wall = midnight + timedelta(minutes=minute)
                for fold in (0, 1):  # a repeated wall time is due twice, a missing one never
                    instant = wall.replace(fold=fold, tzinfo=zone).astimezone(UTC)
                    if instant.astimezone(zone).replace(tzinfo=None) == wall and (
                        not found or found[-1] != instant
                    ):
                        found.append(instant)
            return found
        if self.kind is ScheduleKind.MONTHLY:
            assert self.day_of_month is not None
            last = _stdlib_calendar.monthrange(local_date.year, local_date.month)[1]
            if local_date.day != min(self.day_of_month, last):
                return []
        return [wall_to_utc(datetime.combine(local_date, self._at), zone)]


def _as_utc(instant: datetime, name: str) -> datetime:
    if not isinstance(instant, datetime):
        raise ScheduleError(f"{name}: must be a datetime, got {instant!r}", "invalid request")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ScheduleError(
            f"{name}: {instant.isoformat()} is naive; give a timezone-aware UTC datetime",
            "invalid request",
        )
    return instant.astimezone(UTC)


def _check(schedule: ReadSchedule) -> None:
    if not isinstance(schedule, ReadSchedule):
        raise ScheduleError(
            f"schedule: must be a ReadSchedule, got {schedule!r}", "invalid request"
        )


def windows(schedule: ReadSchedule, start_utc: datetime, end_utc: datetime) -> list[datetime]:
    """The due times in [start, end), in UTC, oldest first."""
    _check(schedule)
    start, end = _as_utc(start_utc, "start_utc"), _as_utc(end_utc, "end_utc")
    if end < start:
        raise ScheduleError(
            f"end_utc {end.isoformat()} is before start_utc {start.isoformat()}", "invalid request"
        )
    if end == start:
        return []
    zone = schedule.tz
    # A local date's windows can lie up to a day either side of its UTC date: look one day wider.
    day = start.astimezone(zone).date() - _ONE_DAY
    last_day = end.astimezone(zone).date() + _ONE_DAY
    found: set[datetime] = set()
    while day <= last_day:
        found.update(w for w in schedule._windows_on(day) if start <= w < end)
        day += _ONE_DAY
    return sorted(found)


def next_window(schedule: ReadSchedule, after_utc: datetime) -> datetime:
    """The first due time strictly after ``after_utc``."""
    _check(schedule)
    start = _as_utc(after_utc, "after_utc") + _ONE_MICROSECOND
    span = timedelta(days=2)
    while span <= timedelta(days=1024):  # a monthly window is at most 31 days away
        found = windows(schedule, start, start + span)
        if found:
            return found[0]
        span *= 2
    raise ScheduleError(f"no window within {span.days} days", "invalid read schedule")


def missed_windows(
    schedule: ReadSchedule, last_run_utc: datetime, now_utc: datetime, max_catch_up: int
) -> list[datetime]:
    """The windows due after the last run up to and including now, the newest ``max_catch_up``.

    Oldest first, so the caller issues them in order. A ``now_utc`` at or before ``last_run_utc``
    (a clock stepped back) misses nothing.
    """
    _check(schedule)
    last_run = _as_utc(last_run_utc, "last_run_utc")
    now = _as_utc(now_utc, "now_utc")
    if not _is_int(max_catch_up) or max_catch_up < 1:
        raise ScheduleError(
            f"max_catch_up: must be an integer >= 1, got {max_catch_up!r}", "invalid request"
        )
    if now <= last_run:
        return []
    missed = windows(schedule, last_run + _ONE_MICROSECOND, now + _ONE_MICROSECOND)
    return missed[-max_catch_up:]
