"""Versioned time-of-use (TOU) calendars: which tariff band applies at an instant, and why.

A utility's TOU tariff is written in local wall-clock time ("peak 07:00-10:00 on winter weekdays"),
but readings and the store are in UTC, and the wall clock jumps twice a year. This module is the
one place that turns one into the other, purely (no I/O), so that billing, the read scheduler and
the table pushed to meters agree.

The calendar
------------
* **Bands**: the band names in meter order (``("offpeak", "standard", "peak")``); a meter's band
  index is the position + 1 (the reference meter map has bands 1..4).
* **Seasons**: named ranges of month-day, inclusive at both ends, repeating every year (a season may
  run over the new year, 11-01..02-29). Together they cover every day of a leap year exactly once:
  a season that ends in February should end on 02-29, or 29 February of leap years has no season.
* **Day types**: ``week`` gives the day type of Monday..Sunday (``("weekday",) * 5 + ("saturday",
  "sunday")``). **Special days** override it: a fixed date every year (``"12-25"``) or a one-off
  date (``"2026-04-03"``); a one-off date wins over a yearly one.
* **Day profiles**: switch points ``(start "HH:MM" local, band)``, starting in increasing order.
  A band is in force from its start to the next switch point; before the first switch point of a
  day, the day's last band is in force (the day wraps around midnight). These are the rules of the
  meters' own TOU tables (docs/register-map.md, section 2.8), so a profile means the same thing in
  the head-end and in a meter.
* **Assignments**: (season, day type) -> profile name, for every season and every day type used.

Time
----
The band is decided by the **local wall-clock time** in the calendar's IANA zone:

* in the spring-forward gap no instant has a wall time inside the gap; the wall clock jumps, and
  whatever band starts inside the gap is in force from the jump on;
* in the fall-back repeated hour both occurrences have the same wall time and so the same band.

``split_by_band`` attributes an interval's energy in proportion to the **real (UTC) time** spent in
each band: a local day of 23 or 25 hours has 23 or 25 hours' worth of time, and a repeated hour is
counted twice for its band.

Errors: an invalid calendar raises ``CalendarError`` listing every problem at once, each with its
path (``profiles['weekday'][2]: ...``); a calendar a meter cannot hold raises ``MeterTableError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "METER_BANDS",
    "METER_SWITCH_POINTS",
    "CalendarError",
    "MeterTableError",
    "Season",
    "TouCalendar",
    "band_at",
    "meter_table",
    "meter_utc_offset_minutes",
    "split_by_band",
    "wall_to_utc",
]

METER_SWITCH_POINTS = 8
"""Switch points per day type in a meter's TOU table (docs/register-map.md, 2.8)."""
METER_BANDS = 4
"""Tariff bands a meter counts: band indexes 1..4."""

_LEAP_YEAR = 2000  # season and special-day dates are checked against a leap year
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_FULL_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_HH_MM = re.compile(r"^(\d{2}):(\d{2})$")
_ONE_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)


class CalendarError(ValueError):
    """An invalid calendar or request; ``problems`` lists every problem found."""

    def __init__(self, problems: str | list[str], title: str = "invalid TOU calendar") -> None:
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        if len(self.problems) == 1:
            message = f"{title}: {self.problems[0]}"
        else:
            message = f"{title}:\n  " + "\n  ".join(self.problems)
        super().__init__(message)


class MeterTableError(CalendarError):
    """The calendar's day profiles do not fit the table a meter holds (two day types, 8 points)."""

    def __init__(self, problems: str | list[str]) -> None:
        super().__init__(problems, "the meter's TOU table cannot express this calendar")


def _parse_month_day(text: object) -> tuple[int, int] | None:
    """``"MM-DD"`` as (month, day), valid in a leap year, or None."""
    match = _MONTH_DAY.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    month, day = int(match[1]), int(match[2])
    try:
        date(_LEAP_YEAR, month, day)
    except ValueError:
        return None
    return month, day


def _parse_date(text: object) -> date | None:
    match = _FULL_DATE.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _parse_minute(text: object) -> int | None:
    """``"HH:MM"`` (00:00..23:59) as minutes after midnight, or None."""
    match = _HH_MM.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    hours, minutes = int(match[1]), int(match[2])
    if hours > 23 or minutes > 59:
        return None
    return hours * 60 + minutes


def _runs(days: list[tuple[int, int]]) -> list[str]:
    """Consecutive (month, day) of a leap year as 'MM-DD..MM-DD' ranges."""
    ordinals = sorted(date(_LEAP_YEAR, m, d).toordinal() for m, d in days)
    runs: list[list[int]] = []
    for ordinal in ordinals:
        if runs and ordinal == runs[-1][-1] + 1:
            runs[-1].append(ordinal)
        else:
            runs.append([ordinal])
    text = []
    for run in runs:
        first, last = date.fromordinal(run[0]), date.fromordinal(run[-1])
        text.append(f"{first:%m-%d}" if first == last else f"{first:%m-%d}..{last:%m-%d}")
    return text


@dataclass(frozen=True, slots=True)
class Season:
    """A named range of days, ``start`` to ``end`` inclusive ("MM-DD"), repeating every year."""

    name: str
    start: str
    end: str

    def contains(self, month: int, day: int) -> bool:
        start, end = _parse_month_day(self.start), _parse_month_day(self.end)
        if start is None or end is None:
            return False
        if start <= end:
            return start <= (month, day) <= end
        return (month, day) >= start or (month, day) <= end


@dataclass(frozen=True, slots=True)
class TouCalendar:
    """A versioned TOU calendar; see the module docstring for the rules. Validated on creation.

    ``profiles`` maps a profile name to its switch points ``(("00:00", "offpeak"), ("07:00",
    "peak"), ...)``; ``assignments`` maps (season, day type) to a profile name; ``special_days``
    maps "MM-DD" (every year) or "YYYY-MM-DD" (once) to a day type. ``version`` (1..65535) is the
    number a meter reports back for the table made from this calendar.
    """

    name: str
    version: int
    zone: str
    bands: tuple[str, ...]
    seasons: tuple[Season, ...]
    week: tuple[str, ...]
    profiles: Mapping[str, tuple[tuple[str, str], ...]] = field(hash=False)
    assignments: Mapping[tuple[str, str], str] = field(hash=False)
    special_days: Mapping[str, str] = field(default_factory=dict, hash=False)

    _tz: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _season_by_day: Mapping[tuple[int, int], str] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _points: Mapping[str, tuple[tuple[int, str], ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _yearly: Mapping[tuple[int, int], str] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _once: Mapping[date, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        set_ = object.__setattr__
        set_(self, "bands", tuple(self.bands))
        set_(self, "seasons", tuple(self.seasons))
        set_(self, "week", tuple(self.week))
        set_(
            self,
            "profiles",
            MappingProxyType({k: tuple(tuple(p) for p in v) for k, v in self.profiles.items()}),
        )
        set_(self, "assignments", MappingProxyType(dict(self.assignments)))
        set_(self, "special_days", MappingProxyType(dict(self.special_days)))

        if not isinstance(self.name, str) or not self.name:
            problems.append("name: must be a non-empty string")
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            problems.append(f"version: must be an integer 1..65535, got {self.version!r}")
        elif not 1 <= self.version <= 0xFFFF:
            problems.append(
                f"version: must be 1..65535 (a meter's tou_version), got {self.version}"
            )
        try:
            set_(self, "_tz", ZoneInfo(self.zone))
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            problems.append(f"zone: {self.zone!r} is not an IANA time zone")
            set_(self, "_tz", ZoneInfo("UTC"))

        if not self.bands:
            problems.append("bands: at least one band is needed")
        for index, band in enumerate(self.bands):
            if not isinstance(band, str) or not band:
                problems.append(f"bands[{index}]: must be a non-empty string, got {band!r}")
            elif self.bands.index(band) != index:
                problems.append(f"bands[{index}]: {band!r} is listed twice")

        problems += self._check_seasons()

        if len(self.week) != 7:
            problems.append(
                f"week: must name the day type of Monday..Sunday (7), got {len(self.week)}"
            )
        for index, day_type in enumerate(self.week):
            if not isinstance(day_type, str) or not day_type:
                problems.append(f"week[{index}]: must be a non-empty day type, got {day_type!r}")

        problems += self._check_profiles()

        yearly: dict[tuple[int, int], str] = {}
        once: dict[date, str] = {}
        for day_key, day_type in self.special_days.items():
            path = f"special_days[{day_key!r}]"
            month_day, full = _parse_month_day(day_key), _parse_date(day_key)
            if month_day is not None:
                yearly[month_day] = day_type
            elif full is not None:
                once[full] = day_type
            else:
                problems.append(f"{path}: must be 'MM-DD' (every year) or 'YYYY-MM-DD' (once)")
            if not isinstance(day_type, str) or not day_type:
                problems.append(f"{path}: must name a day type, got {day_type!r}")
        set_(self, "_yearly", MappingProxyType(yearly))
        set_(self, "_once", MappingProxyType(once))

        season_names = [s.name for s in self.seasons]
        day_types = list(dict.fromkeys([*self.week, *self.special_days.values()]))
        for key, profile in self.assignments.items():
            path = f"assignments[{key!r}]"
            if not (isinstance(key, tuple) and len(key) == 2):
                problems.append(f"{path}: the key must be (season, day type)")
                continue
            if key[0] not in season_names:
                problems.append(f"{path}: unknown season {key[0]!r}")
            if key[1] not in day_types:
                problems.append(
                    f"{path}: day type {key[1]!r} is used by no day of the week and no special day"
                )
            if profile not in self.profiles:
                problems.append(f"{path}: unknown profile {profile!r}")
        for season in dict.fromkeys(season_names):
            for day_type in day_types:
                if (season, day_type) not in self.assignments:
                    problems.append(
                        f"assignments: no profile for season {season!r} and day type {day_type!r}"
                    )
        if problems:
            raise CalendarError(problems)

    def _check_seasons(self) -> list[str]:
        problems: list[str] = []
        if not self.seasons:
            return ["seasons: at least one season is needed"]
        names: list[str] = []
        valid: list[Season] = []
        for index, season in enumerate(self.seasons):
            path = f"seasons[{index}]"
            if not isinstance(season, Season):
                problems.append(f"{path}: must be a Season, got {season!r}")
                continue
            if not isinstance(season.name, str) or not season.name:
                problems.append(f"{path}.name: must be a non-empty string")
            elif season.name in names:
                problems.append(f"{path}.name: {season.name!r} is used twice")
            names.append(season.name)
            ok = True
            for part in ("start", "end"):
                if _parse_month_day(getattr(season, part)) is None:
                    problems.append(
                        f"{path}.{part}: must be a date 'MM-DD', got {getattr(season, part)!r}"
                    )
                    ok = False
            if ok:
                valid.append(season)
        season_by_day: dict[tuple[int, int], str] = {}
        gaps: list[tuple[int, int]] = []
        overlaps: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        day = date(_LEAP_YEAR, 1, 1)
        while day.year == _LEAP_YEAR:
            md = (day.month, day.day)
            covering = tuple(s.name for s in valid if s.contains(*md))
            if not covering:
                gaps.append(md)
            elif len(covering) > 1:
                overlaps.setdefault(covering, []).append(md)
            if covering:
                season_by_day[md] = covering[0]
            day += _ONE_DAY
        if len(valid) == len(self.seasons):  # gaps left by invalid seasons are not news
            for run in _runs(gaps):
                leap = " (29 February of leap years)" if run == "02-29" else ""
                problems.append(f"seasons: no season covers {run}{leap}")
        for covering, days in overlaps.items():
            who = " and ".join(repr(name) for name in covering)
            problems.append(f"seasons: {who} overlap on {', '.join(_runs(days))}")
        object.__setattr__(self, "_season_by_day", MappingProxyType(season_by_day))
        return problems

    def _check_profiles(self) -> list[str]:
        problems: list[str] = []
        if not self.profiles:
            problems.append("profiles: at least one day profile is needed")
        points: dict[str, tuple[tuple[int, str], ...]] = {}
        for name, switch_points in self.profiles.items():
            path = f"profiles[{name!r}]"
            if not switch_points:
                problems.append(f"{path}: at least one switch point is needed")
            parsed: list[tuple[int, str]] = []
            for index, point in enumerate(switch_points):
                if len(point) != 2:
                    problems.append(f"{path}[{index}]: must be (start 'HH:MM', band)")
                    continue
                start, band = point
                minute = _parse_minute(start)
                if minute is None:
                    problems.append(
                        f"{path}[{index}]: start must be 'HH:MM' 00:00..23:59, got {start!r}"
                    )
                elif parsed and minute <= parsed[-1][0]:
                    problems.append(
                        f"{path}[{index}]: switch points must start in increasing order, "
                        f"{start} comes after {switch_points[index - 1][0]}"
                    )
                if band not in self.bands:
                    problems.append(
                        f"{path}[{index}]: unknown band {band!r} (bands: {', '.join(self.bands)})"
                    )
                if minute is not None:
                    parsed.append((minute, band))
            points[name] = tuple(parsed)
        object.__setattr__(self, "_points", MappingProxyType(points))
        return problems

    # ------------------------------------------------------------------------------------
    # What applies on a local date

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def season_on(self, local_date: date) -> str:
        """The season of a local date."""
        return self._season_by_day[(local_date.month, local_date.day)]

    def day_type_on(self, local_date: date) -> str:
        """The day type of a local date: a one-off special day, a yearly one, or the week's."""
        once = self._once.get(local_date)
        if once is not None:
            return once
        yearly = self._yearly.get((local_date.month, local_date.day))
        return yearly if yearly is not None else self.week[local_date.weekday()]

    def profile_on(self, local_date: date) -> str:
        """The name of the day profile in force on a local date."""
        return self.assignments[(self.season_on(local_date), self.day_type_on(local_date))]

    def _switch_minutes(self, local_date: date) -> tuple[int, ...]:
        return tuple(minute for minute, _ in self._points[self.profile_on(local_date)])

    def _band_at_wall(self, wall: datetime) -> str:
        points = self._points[self.profile_on(wall.date())]
        seconds = wall.hour * 3600 + wall.minute * 60 + wall.second
        band = points[-1][1]  # before the first switch point: the day's last band
        for minute, point_band in points:
            if minute * 60 <= seconds:
                band = point_band
        return band


# ----------------------------------------------------------------------------------------
# Instants and wall-clock time


def _as_utc(instant: datetime, name: str) -> datetime:
    if not isinstance(instant, datetime):
        raise CalendarError(f"{name}: must be a datetime, got {instant!r}", "invalid request")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise CalendarError(
            f"{name}: {instant.isoformat()} is naive; give a timezone-aware UTC datetime",
            "invalid request",
        )
    return instant.astimezone(UTC)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


def _first_offset_change(zone: ZoneInfo, after: datetime, until: datetime) -> datetime:
    """The first instant in (after, until] whose UTC offset differs from ``after``'s.

    ``until``'s offset must differ. Transitions fall on whole seconds; the search is exact to the
    microsecond.
    """
    base = _offset(zone, after)
    low, high = after, until
    while high - low > _ONE_MICROSECOND:
        middle = low + (high - low) // 2
        if _offset(zone, middle) == base:
            low = middle
        else:
            high = middle
    return high


def wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the local wall clock in ``zone`` shows ``wall`` (naive).

    A wall time that occurs twice (fall-back) gives its **first** occurrence. A wall time in a
    spring-forward gap, which never occurs, gives the **first instant after the gap**: the moment of
    the jump (01:30 on the day London springs forward -> 01:00 UTC, when clocks show 02:00 BST).
    """
    if wall.tzinfo is not None:
        raise CalendarError(
            f"wall: {wall.isoformat()} must be a naive local time", "invalid request"
        )
    first = wall.replace(fold=0, tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    second = wall.replace(fold=1, tzinfo=zone).astimezone(UTC)
    low, high = min(first, second), max(first, second)
    return _first_offset_change(zone, low, high)


def band_at(calendar: TouCalendar, instant_utc: datetime) -> str:
    """The band in force at an instant, by the local wall-clock time in the calendar's zone."""
    instant = _as_utc(instant_utc, "instant_utc")
    return calendar._band_at_wall(instant.astimezone(calendar.tz).replace(tzinfo=None))


def split_by_band(
    calendar: TouCalendar, start_utc: datetime, end_utc: datetime, energy_wh: int
) -> dict[str, int]:
    """Share ``energy_wh`` consumed in [start, end) among the bands, by real time spent in each.

    The interval is cut wherever the band may change (every switch point and local midnight, in
    both folds, and every change of UTC offset); each piece's band is the band at its start, and
    its share of the energy is its UTC duration over the interval's. Shares are whole Wh that sum
    exactly to ``energy_wh``: each band gets the floor of its exact share, and the Wh left over go
    to the largest remainders (ties: the band listed first). Bands with no time in the interval
    are not in the result; the others come in the calendar's band order.
    """
    start = _as_utc(start_utc, "start_utc")
    end = _as_utc(end_utc, "end_utc")
    if end <= start:
        raise CalendarError(
            f"end_utc {end.isoformat()} must be after start_utc {start.isoformat()}",
            "invalid request",
        )
    if isinstance(energy_wh, bool) or not isinstance(energy_wh, int) or energy_wh < 0:
        raise CalendarError(
            f"energy_wh must be an integer >= 0, got {energy_wh!r}", "invalid request"
        )
    zone = calendar.tz
    cuts = {start, end}
    day = start.astimezone(zone).date() - _ONE_DAY
    last_day = end.astimezone(zone).date() + _ONE_DAY
    while day <= last_day:
        midnight = datetime.combine(day, time())
        for minute in (0, *calendar._switch_minutes(day)):
            wall = midnight + timedelta(minutes=minute)
            for fold in (0, 1):
                instant = wall.replace(fold=fold, tzinfo=zone).astimezone(UTC)
                if start < instant < end:
                    cuts.add(instant)
        day += _ONE_DAY
    ordered = sorted(cuts)
    pieces = [ordered[0]]
    for low, high in pairwise(ordered):
        if _offset(zone, low) != _offset(zone, high):
            change = _first_offset_change(zone, low, high)
            if change != high:
                pieces.append(change)
        pieces.append(high)

    spent: dict[str, int] = {}
    for low, high in pairwise(pieces):
        band = band_at(calendar, low)
        spent[band] = spent.get(band, 0) + (high - low) // _ONE_MICROSECOND
    total = (end - start) // _ONE_MICROSECOND
    shares = {band: energy_wh * us // total for band, us in spent.items()}
    left = energy_wh - sum(shares.values())
    order = sorted(
        spent, key=lambda band: (-(energy_wh * spent[band] % total), calendar.bands.index(band))
    )
    for band in order[:left]:
        shares[band] += 1
    return {band: shares[band] for band in calendar.bands if band in spent}


# ----------------------------------------------------------------------------------------
# The meter's table


def meter_utc_offset_minutes(calendar: TouCalendar, instant_utc: datetime) -> int:
    """The ``utc_offset_minutes`` a meter needs at an instant for its local time to be the zone's."""
    offset = _as_utc(instant_utc, "instant_utc").astimezone(calendar.tz).utcoffset()
    assert offset is not None  # a ZoneInfo always has an offset for an aware instant
    return int(offset // timedelta(minutes=1))


def _meter_points(
    calendar: TouCalendar, profile: str, table: str, problems: list[str]
) -> list[list[int]]:
    points: list[list[int]] = []
    for minute, band in calendar._points[profile]:
        index = calendar.bands.index(band) + 1
        if index > METER_BANDS:
            problems.append(
                f"{table}: band {band!r} is band {index}; a meter counts bands 1..{METER_BANDS}"
            )
        if points and points[-1][1] == index:
            continue  # the same band again: no switch
        points.append([minute, index])
    if len(points) > METER_SWITCH_POINTS and points[0][1] == points[-1][1]:
        points = points[1:]  # the day wraps: before the first point the last band is in force
    if len(points) > METER_SWITCH_POINTS:
        problems.append(
            f"{table}: profile {profile!r} has {len(points)} switch points; "
            f"a meter holds {METER_SWITCH_POINTS}"
        )
    return points


def meter_table(calendar: TouCalendar, for_date_local: date) -> dict[str, list[list[int]]]:
    """The TOU table for a meter on ``for_date_local``: ``{"weekday": [[start_minute, band], ...],
    "weekend": [...]}``, the ``weekday``/``weekend`` arguments of the ``tou`` command.

    This is the table of the reference map (docs/register-map.md, 2.8; ``tou_registers`` in
    concentrator/modbus_driver.py): two day types, weekday (Monday..Friday) and weekend (Saturday,
    Sunday), each with 1..8 switch points, start minute 0..1439 in increasing order, band 1..4
    (the band's position in ``calendar.bands`` + 1). Consecutive points of the same band are merged.

    The meter applies the table in **its own local time**, UTC + its fixed ``utc_offset_minutes``:
    it knows nothing of DST, seasons or special days. So the head-end must

    * set the meter's ``utc_offset_minutes`` at every DST change (``meter_utc_offset_minutes``),
    * push a new table (with its activation time) when a season with other profiles begins, and
    * accept that a special day (a public holiday) runs the meter's ordinary weekday or weekend
      table: billing from interval data (``split_by_band``) honours special days, the meter's own
      band registers do not.

    ``MeterTableError`` when Monday..Friday (or Saturday and Sunday) have different profiles in the
    date's season, a profile needs more than 8 switch points, or a band is beyond the fourth.
    """
    season = calendar.season_on(for_date_local)
    problems: list[str] = []
    table: dict[str, list[list[int]]] = {}
    for name, weekdays in (("weekday", range(5)), ("weekend", range(5, 7))):
        profiles = list(
            dict.fromkeys(calendar.assignments[(season, calendar.week[i])] for i in weekdays)
        )
        if len({calendar._points[p] for p in profiles}) > 1:
            problems.append(
                f"{name}: the meter has one {name} table, but in season {season!r} the days use "
                f"the profiles {', '.join(repr(p) for p in profiles)}"
            )
        table[name] = _meter_points(calendar, profiles[0], name, problems)
    if problems:
        raise MeterTableError(problems)
    return table
