"""Read schedules: due times in UTC across DST, month ends, catch-up after an outage.

DST transitions used:

* Europe/London 2024: spring forward Sunday 03-31 at 01:00 UTC (local 01:00..02:00 never happens),
  fall back Sunday 10-27 at 01:00 UTC (local 01:00..02:00 happens twice).
* America/New_York 2024: spring forward Sunday 03-10 at 07:00 UTC (02:00 EST -> 03:00 EDT), fall
  back Sunday 11-03 at 06:00 UTC (02:00 EDT -> 01:00 EST: local 01:00..02:00 twice).
* Africa/Johannesburg: UTC+2 all year, no DST.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headend.schedule import (
    ReadSchedule,
    ScheduleError,
    ScheduleKind,
    missed_windows,
    next_window,
    windows,
)

FIFTEEN = timedelta(minutes=15)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local_day(zone: str, day: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local calendar day."""
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=tz).astimezone(UTC)
    return start, end


def assert_evenly_spaced(found: list[datetime], step: timedelta) -> None:
    assert len(set(found)) == len(found)  # no duplicates
    assert all(b - a == step for a, b in pairwise(found))  # no holes


# --------------------------------------------------------------------------------------------
# Interval schedules


@pytest.mark.parametrize(
    ("zone", "day", "hours", "count"),
    [
        ("Europe/London", date(2024, 3, 31), 23, 92),
        ("Europe/London", date(2024, 10, 27), 25, 100),
        ("Europe/London", date(2024, 6, 1), 24, 96),
        ("America/New_York", date(2024, 3, 10), 23, 92),
        ("America/New_York", date(2024, 11, 3), 25, 100),
        ("Africa/Johannesburg", date(2024, 3, 31), 24, 96),
        ("Africa/Johannesburg", date(2024, 10, 27), 24, 96),
    ],
)
def test_fifteen_minutes_over_23_24_and_25_hour_days(
    zone: str, day: date, hours: int, count: int
) -> None:
    start, end = local_day(zone, day)
    assert end - start == timedelta(hours=hours)
    found = windows(ReadSchedule.interval("quarter-hourly", zone, 15), start, end)
    assert len(found) == count
    assert found[0] == start  # aligned to local midnight
    assert found[-1] == end - FIFTEEN
    assert_evenly_spaced(found, FIFTEEN)
    assert all(w.tzinfo is UTC for w in found)


def test_interval_windows_around_londons_jumps() -> None:
    schedule = ReadSchedule.interval("quarter-hourly", "Europe/London", 15)
    # Spring: 00:45 GMT (00:45 UTC) is followed by 02:00 BST (01:00 UTC); 01:00..01:45 local
    # never happen.
    spring = windows(schedule, utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 1))
    assert spring == [utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 0, 45), utc(2024, 3, 31, 1)]
    assert spring[-1].astimezone(schedule.tz).strftime("%H:%M %Z") == "02:00 BST"
    # Fall: 01:00..01:45 local twice, BST then GMT.
    fall = windows(schedule, utc(2024, 10, 27), utc(2024, 10, 27, 2))
    assert [w.astimezone(schedule.tz).strftime("%H:%M %Z") for w in fall] == [
        "01:00 BST",
        "01:15 BST",
        "01:30 BST",
        "01:45 BST",
        "01:00 GMT",
        "01:15 GMT",
        "01:30 GMT",
        "01:45 GMT",
    ]


def test_hourly_and_daily_midnight_intervals() -> None:
    hourly = ReadSchedule.interval("hourly", "America/New_York", 60)
    assert len(windows(hourly, *local_day("America/New_York", date(2024, 3, 10)))) == 23
    assert len(windows(hourly, *local_day("America/New_York", date(2024, 11, 3)))) == 25
    once = ReadSchedule.interval("midnight", "Africa/Johannesburg", 1440)
    # Local midnight in Johannesburg is 22:00 UTC the day before.
    assert windows(once, utc(2024, 5, 1), utc(2024, 5, 3)) == [
        utc(2024, 5, 1, 22),
        utc(2024, 5, 2, 22),
    ]


# --------------------------------------------------------------------------------------------
# Daily schedules


def test_london_daily_0130_once_per_local_day_across_both_changes() -> None:
    schedule = ReadSchedule.daily("nightly", "Europe/London", "01:30")
    spring = windows(schedule, utc(2024, 3, 29), utc(2024, 4, 2))
    assert spring == [
        utc(2024, 3, 29, 1, 30),  # 01:30 GMT
        utc(2024, 3, 30, 1, 30),
        utc(2024, 3, 31, 1, 0),  # 01:30 does not exist: 02:00 BST, the first instant after the gap
        utc(2024, 4, 1, 0, 30),  # 01:30 BST
    ]
    fall = windows(schedule, utc(2024, 10, 25), utc(2024, 10, 29))
    assert fall == [
        utc(2024, 10, 25, 0, 30),  # 01:30 BST
        utc(2024, 10, 26, 0, 30),
        utc(2024, 10, 27, 0, 30),  # the first 01:30 (BST) only, not 01:30 GMT = 01:30 UTC
        utc(2024, 10, 28, 1, 30),  # 01:30 GMT
    ]


def test_new_york_daily_across_both_changes() -> None:
    # 02:30 does not exist on 2024-03-10: 03:00 EDT = 07:00 UTC.
    gap = ReadSchedule.daily("nightly", "America/New_York", "02:30")
    assert windows(gap, utc(2024, 3, 9, 12), utc(2024, 3, 11, 12)) == [
        utc(2024, 3, 10, 7, 0),
        utc(2024, 3, 11, 6, 30),  # 02:30 EDT
    ]
    # 01:30 happens twice on 2024-11-03: the first, 01:30 EDT = 05:30 UTC.
    repeated = ReadSchedule.daily("nightly", "America/New_York", "01:30")
    assert windows(repeated, utc(2024, 11, 2, 12), utc(2024, 11, 4, 12)) == [
        utc(2024, 11, 3, 5, 30),
        utc(2024, 11, 4, 6, 30),  # 01:30 EST
    ]


def test_daily_in_a_zone_without_dst() -> None:
    schedule = ReadSchedule.daily("nightly", "Africa/Johannesburg", "00:05")
    found = windows(schedule, utc(2024, 1, 1), utc(2025, 1, 1))
    assert len(found) == 366
    assert_evenly_spaced(found, timedelta(days=1))
    assert found[0] == utc(2024, 1, 1, 22, 5)  # 00:05 SAST on 01-02 (01-01's was 2023-12-31)


@settings(deadline=None)
@given(
    st.sampled_from(["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kathmandu"]),
    st.sampled_from(["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00", "12:00"]),
    st.dates(date(2020, 1, 1), date(2030, 12, 31)),
)
def test_daily_is_due_exactly_once_every_local_day(zone: str, at: str, day: date) -> None:
    schedule = ReadSchedule.daily("nightly", zone, at)
    start, _ = local_day(zone, day)
    _, end = local_day(zone, day + timedelta(days=40))
    found = windows(schedule, start, end)
    per_day = Counter(w.astimezone(schedule.tz).date() for w in found)
    assert per_day == Counter({day + timedelta(days=n): 1 for n in range(41)})
    for w in found:  # at the wall time, or just after it when a gap swallowed it
        wall = w.astimezone(schedule.tz)
        assert wall.strftime("%H:%M") >= at


# --------------------------------------------------------------------------------------------
# Monthly schedules


def test_monthly_day_31_runs_on_the_last_day_of_shorter_months() -> None:
    schedule = ReadSchedule.monthly("billing", "Africa/Johannesburg", 31, "00:05")
    found = windows(schedule, utc(2023, 12, 31), utc(2025, 3, 30))
    local_dates = [w.astimezone(schedule.tz).date() for w in found]
    assert local_dates == [
        date(2024, 1, 31),
        date(2024, 2, 29),  # leap year
        date(2024, 3, 31),
        date(2024, 4, 30),
        date(2024, 5, 31),
        date(2024, 6, 30),
        date(2024, 7, 31),
        date(2024, 8, 31),
        date(2024, 9, 30),
        date(2024, 10, 31),
        date(2024, 11, 30),
        date(2024, 12, 31),
        date(2025, 1, 31),
        date(2025, 2, 28),
    ]
    assert found[0] == utc(2024, 1, 30, 22, 5)


def test_monthly_on_dst_days() -> None:
    # 2024-03-31 is London's spring-forward day: 01:30 is in the gap, so 02:00 BST = 01:00 UTC.
    spring = ReadSchedule.monthly("billing", "Europe/London", 31, "01:30")
    assert windows(spring, utc(2024, 3, 1), utc(2024, 5, 1)) == [
        utc(2024, 3, 31, 1),
        utc(2024, 4, 30, 0, 30),
    ]
    # 2024-10-27 is the fall-back day: the first 01:30 (BST) only.
    fall = ReadSchedule.monthly("billing", "Europe/London", 27, "01:30")
    assert windows(fall, utc(2024, 10, 1), utc(2024, 12, 1)) == [
        utc(2024, 10, 27, 0, 30),
        utc(2024, 11, 27, 1, 30),
    ]


def test_monthly_day_1_at_midnight_in_new_york() -> None:
    schedule = ReadSchedule.monthly("billing", "America/New_York", 1, "00:00")
    assert windows(schedule, utc(2024, 1, 1), utc(2024, 4, 1)) == [
        utc(2024, 1, 1, 5),
        utc(2024, 2, 1, 5),
        utc(2024, 3, 1, 5),
    ]
    assert next_window(schedule, utc(2024, 3, 1, 5)) == utc(2024, 4, 1, 4)  # EDT


# --------------------------------------------------------------------------------------------
# next_window


def test_next_window_is_strictly_after() -> None:
    schedule = ReadSchedule.interval("quarter-hourly", "Europe/London", 15)
    assert next_window(schedule, utc(2024, 6, 1, 12)) == utc(2024, 6, 1, 12, 15)
    assert next_window(schedule, utc(2024, 6, 1, 12, 0) - timedelta(microseconds=1)) == utc(
        2024, 6, 1, 12
    )
    assert next_window(schedule, utc(2024, 3, 31, 0, 45)) == utc(2024, 3, 31, 1)  # over the gap
    daily = ReadSchedule.daily("nightly", "Europe/London", "01:30")
    assert next_window(daily, utc(2024, 3, 30, 1, 30)) == utc(2024, 3, 31, 1)
    assert next_window(daily, utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 28, 1, 30)
    monthly = ReadSchedule.monthly("billing", "Africa/Johannesburg", 31, "00:05")
    assert next_window(monthly, utc(2024, 1, 31)) == utc(2024, 2, 28, 22, 5)  # 02-29 00:05 SAST


@settings(deadline=None, max_examples=50)
@given(
    st.sampled_from(["Europe/London", "America/New_York", "Africa/Johannesburg"]),
    st.sampled_from([5, 15, 30, 60, 1440]),
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31)),
    st.timedeltas(timedelta(0), timedelta(days=2)),
    st.timedeltas(timedelta(0), timedelta(days=2)),
)
def test_interval_windows_compose(
    zone: str, minutes: int, start: datetime, first: timedelta, second: timedelta
) -> None:
    schedule = ReadSchedule.interval("interval", zone, minutes)
    a = start.replace(tzinfo=UTC)
    b, c = a + first, a + first + second
    whole = windows(schedule, a, c)
    assert whole == windows(schedule, a, b) + windows(schedule, b, c)  # no loss, no double
    assert whole == sorted(set(whole))
    for w in whole:
        wall = w.astimezone(schedule.tz)
        assert (wall.hour * 60 + wall.minute) % minutes == 0 and wall.second == 0
    if whole:
        assert next_window(schedule, a - timedelta(microseconds=1)) == whole[0]
        for earlier, later in list(pairwise(whole))[:8]:
            assert next_window(schedule, earlier) == later


# --------------------------------------------------------------------------------------------
# Catch-up


def test_catch_up_after_a_three_day_outage_over_the_spring_change() -> None:
    # The head-end last ran the 12:00 UTC window of Friday 2024-03-29 and comes back at 12:00 UTC
    # on Monday 04-01: 72 hours of UTC time, 288 quarter hours, 12:00 UTC itself (13:00 BST) the
    # last. London's 23-hour Sunday has 92 windows, but no hole in UTC: 00:45 GMT is followed by
    # 02:00 BST, 15 minutes later.
    schedule = ReadSchedule.interval("quarter-hourly", "Europe/London", 15)
    last_run, now = utc(2024, 3, 29, 12), utc(2024, 4, 1, 12)
    every = missed_windows(schedule, last_run, now, max_catch_up=1000)
    assert len(every) == 288
    assert every[0] == utc(2024, 3, 29, 12, 15)
    assert every[-1] == now
    assert_evenly_spaced(every, FIFTEEN)
    # Capped: the newest 96 are kept, oldest first.
    capped = missed_windows(schedule, last_run, now, max_catch_up=96)
    assert capped == every[-96:]
    assert capped[0] == utc(2024, 3, 31, 12, 15)


def test_catch_up_in_a_zone_without_dst_and_for_daily_reads() -> None:
    quarter = ReadSchedule.interval("quarter-hourly", "Africa/Johannesburg", 15)
    last_run = utc(2024, 6, 1, 8)
    now = last_run + timedelta(days=3, minutes=7)
    assert len(missed_windows(quarter, last_run, now, 10_000)) == 3 * 96
    daily = ReadSchedule.daily("nightly", "Africa/Johannesburg", "00:05")
    assert missed_windows(daily, last_run, now, 10) == [
        utc(2024, 6, 1, 22, 5),
        utc(2024, 6, 2, 22, 5),
        utc(2024, 6, 3, 22, 5),
    ]
    assert missed_windows(daily, last_run, now, 1) == [utc(2024, 6, 3, 22, 5)]


def test_catch_up_with_nothing_missed() -> None:
    schedule = ReadSchedule.interval("quarter-hourly", "Europe/London", 15)
    run = utc(2024, 6, 1, 12)
    assert missed_windows(schedule, run, run + timedelta(minutes=14), 5) == []
    assert missed_windows(schedule, run, run + FIFTEEN, 5) == [run + FIFTEEN]
    assert missed_windows(schedule, run, run, 5) == []
    assert missed_windows(schedule, run, run - timedelta(hours=1), 5) == []  # clock stepped back
    with pytest.raises(ScheduleError, match="max_catch_up: must be an integer >= 1"):
        missed_windows(schedule, run, run + FIFTEEN, 0)


# --------------------------------------------------------------------------------------------
# Validation


def test_naive_datetimes_are_refused() -> None:
    schedule = ReadSchedule.daily("nightly", "Europe/London", "01:30")
    naive = datetime(2024, 1, 1)
    with pytest.raises(ScheduleError, match="start_utc: 2024-01-01T00:00:00 is naive"):
        windows(schedule, naive, utc(2024, 1, 2))
    with pytest.raises(ScheduleError, match=r"end_utc: .* is naive"):
        windows(schedule, utc(2024, 1, 1), naive)
    with pytest.raises(ScheduleError, match=r"after_utc: .* is naive"):
        next_window(schedule, naive)
    with pytest.raises(ScheduleError, match=r"now_utc: .* is naive"):
        missed_windows(schedule, utc(2024, 1, 1), naive, 5)


def test_aware_datetimes_in_other_zones_are_converted_to_utc() -> None:
    schedule = ReadSchedule.daily("nightly", "Europe/London", "01:30")
    paris = ZoneInfo("Europe/Paris")
    found = windows(
        schedule, datetime(2024, 6, 1, tzinfo=paris), datetime(2024, 6, 2, tzinfo=paris)
    )
    assert found == [utc(2024, 6, 1, 0, 30)]
    assert found[0].tzinfo is UTC


def test_windows_range_checks() -> None:
    schedule = ReadSchedule.daily("nightly", "Europe/London", "01:30")
    assert windows(schedule, utc(2024, 1, 1), utc(2024, 1, 1)) == []
    with pytest.raises(ScheduleError, match="is before start_utc"):
        windows(schedule, utc(2024, 1, 2), utc(2024, 1, 1))
    # [start, end): a window at start is in, one at end is out.
    assert windows(schedule, utc(2024, 1, 1, 1, 30), utc(2024, 1, 2, 1, 30)) == [
        utc(2024, 1, 1, 1, 30)
    ]


def test_schedule_validation_reports_every_problem() -> None:
    with pytest.raises(ScheduleError) as caught:
        ReadSchedule("", "Nowhere/Atlantis", ScheduleKind.MONTHLY, interval_minutes=15, at="24:00")
    assert caught.value.problems == (
        "name: must be a non-empty string",
        "zone: 'Nowhere/Atlantis' is not an IANA time zone",
        "interval_minutes: not used by a monthly schedule, got 15",
        "day_of_month: a monthly schedule needs it",
        "at: must be local time 'HH:MM' 00:00..23:59, got '24:00'",
    )
    for minutes in (0, 7, 1441, 100):
        with pytest.raises(ScheduleError, match="interval_minutes: must divide a day"):
            ReadSchedule.interval("bad", "UTC", minutes)
    with pytest.raises(ScheduleError, match=r"day_of_month: must be 1\.\.31, got 32"):
        ReadSchedule.monthly("bad", "UTC", 32, "00:00")
    with pytest.raises(ScheduleError, match="kind: must be one of interval, daily, monthly"):
        ReadSchedule("bad", "UTC", "weekly")  # type: ignore[arg-type]
    assert ReadSchedule("ok", "UTC", "daily", at="00:00").kind is ScheduleKind.DAILY  # type: ignore[arg-type]


def test_schedules_are_immutable_values() -> None:
    schedule = ReadSchedule.daily("nightly", "Europe/London", "01:30")
    assert schedule == ReadSchedule("nightly", "Europe/London", ScheduleKind.DAILY, at="01:30")
    assert hash(schedule) == hash(ReadSchedule.daily("nightly", "Europe/London", "01:30"))
    with pytest.raises(AttributeError):
        schedule.at = "02:00"  # type: ignore[misc]
