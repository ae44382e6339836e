"""TOU calendars: bands by local wall-clock time across DST, energy split by real time, the meter's
table, and the validation of calendars.

DST transitions used (checked in ``test_the_transitions_are_where_the_tests_expect_them``):

* Europe/London springs forward on Sunday 2024-03-31 at 01:00 UTC (01:00 GMT -> 02:00 BST: local
  01:00..02:00 never happens) and falls back on Sunday 2024-10-27 at 01:00 UTC (02:00 BST -> 01:00
  GMT: local 01:00..02:00 happens twice).
* Australia/Sydney falls back on Sunday 2024-04-07 at 16:00 UTC the day before (03:00 AEDT -> 02:00
  AEST: local 02:00..03:00 twice) and springs forward on Sunday 2024-10-06 at 16:00 UTC the day
  before (02:00 AEST -> 03:00 AEDT: local 02:00..03:00 never happens).

Both change on Sundays, so the Sunday profile gives each early hour its own band:
00:00 offpeak, 01:00 standard, 02:00 peak, 03:00 offpeak.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concentrator.modbus_driver import tou_registers
from headend.calendar import (
    CalendarError,
    MeterTableError,
    Season,
    TouCalendar,
    band_at,
    meter_table,
    meter_utc_offset_minutes,
    split_by_band,
    wall_to_utc,
)
from simulator.tou import TouTable

BANDS = ("offpeak", "standard", "peak")
PROFILES = {
    "sunday": (
        ("00:00", "offpeak"),
        ("01:00", "standard"),
        ("02:00", "peak"),
        ("03:00", "offpeak"),
    ),
    "summer_weekday": (
        ("00:00", "offpeak"),
        ("07:00", "peak"),
        ("10:00", "standard"),
        ("18:00", "peak"),
        ("20:00", "standard"),
        ("22:00", "offpeak"),
    ),
    # No switch point at 00:00: before 06:00 the day's last band (offpeak from 22:00) is in force.
    "winter_weekday": (
        ("06:00", "standard"),
        ("17:00", "peak"),
        ("19:00", "standard"),
        ("22:00", "offpeak"),
    ),
    "saturday": (("07:00", "standard"), ("22:00", "offpeak")),
    "holiday": (("00:00", "offpeak"),),
}
SEASONS = (Season("winter", "11-01", "02-29"), Season("summer", "03-01", "10-31"))


def make_calendar(zone: str = "Europe/London") -> TouCalendar:
    assignments = {}
    for season in ("winter", "summer"):
        assignments[(season, "weekday")] = f"{season}_weekday"
        for day_type in ("saturday", "sunday", "holiday"):
            assignments[(season, day_type)] = day_type
    return TouCalendar(
        name="residential TOU",
        version=7,
        zone=zone,
        bands=BANDS,
        seasons=SEASONS,
        week=("weekday",) * 5 + ("saturday", "sunday"),
        profiles=PROFILES,
        assignments=assignments,
        special_days={"12-25": "holiday", "2024-05-06": "holiday", "2025-12-25": "weekday"},
    )


LONDON = make_calendar("Europe/London")
SYDNEY = make_calendar("Australia/Sydney")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(
    calendar: TouCalendar,
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int = 0,
    fold: int = 0,
) -> datetime:
    """The UTC instant of a local wall time (fold=1: the second of a repeated hour)."""
    wall = datetime(year, month, day, hour, minute, tzinfo=calendar.tz, fold=fold)
    return wall.astimezone(UTC)


def test_the_transitions_are_where_the_tests_expect_them() -> None:
    def offsets(calendar: TouCalendar, before: datetime, after: datetime) -> tuple[int, int]:
        return (
            meter_utc_offset_minutes(calendar, before),
            meter_utc_offset_minutes(calendar, after),
        )

    second = timedelta(seconds=1)
    assert offsets(LONDON, utc(2024, 3, 31, 1) - second, utc(2024, 3, 31, 1)) == (0, 60)
    assert offsets(LONDON, utc(2024, 10, 27, 1) - second, utc(2024, 10, 27, 1)) == (60, 0)
    assert offsets(SYDNEY, utc(2024, 4, 6, 16) - second, utc(2024, 4, 6, 16)) == (660, 600)
    assert offsets(SYDNEY, utc(2024, 10, 5, 16) - second, utc(2024, 10, 5, 16)) == (600, 660)


# --------------------------------------------------------------------------------------------
# band_at across DST


def test_london_spring_forward() -> None:
    # Local 00:30 GMT = 00:30 UTC; 01:30 does not exist; 02:30 BST = 01:30 UTC.
    assert band_at(LONDON, utc(2024, 3, 31, 0, 30)) == "offpeak"
    assert band_at(LONDON, utc(2024, 3, 31, 1, 30)) == "peak"
    # The wall clock jumps from 00:59:59 GMT to 02:00 BST: the standard hour never happens.
    assert band_at(LONDON, utc(2024, 3, 31, 0, 59, 59)) == "offpeak"
    assert band_at(LONDON, utc(2024, 3, 31, 1, 0)) == "peak"


def test_london_fall_back() -> None:
    # 00:30 BST = 23:30 UTC the day before; 01:30 BST = 00:30 UTC; 01:30 GMT = 01:30 UTC;
    # 02:30 GMT = 02:30 UTC. Both 01:30s are standard: the band follows the wall clock.
    assert band_at(LONDON, utc(2024, 10, 26, 23, 30)) == "offpeak"
    assert band_at(LONDON, utc(2024, 10, 27, 0, 30)) == "standard"
    assert band_at(LONDON, utc(2024, 10, 27, 1, 30)) == "standard"
    assert band_at(LONDON, utc(2024, 10, 27, 2, 30)) == "peak"
    assert local(LONDON, 2024, 10, 27, 1, 30) == utc(2024, 10, 27, 0, 30)
    assert local(LONDON, 2024, 10, 27, 1, 30, fold=1) == utc(2024, 10, 27, 1, 30)


def test_sydney_fall_back() -> None:
    # Local 02:00..03:00 on 2024-04-07 happens twice: 15:00..16:00 UTC (AEDT) and 16:00..17:00
    # UTC (AEST); both are peak.
    at = {h: band_at(SYDNEY, local(SYDNEY, 2024, 4, 7, h, 30)) for h in (0, 1, 2, 3)}
    assert at == {0: "offpeak", 1: "standard", 2: "peak", 3: "offpeak"}
    assert band_at(SYDNEY, utc(2024, 4, 6, 15, 30)) == "peak"  # 02:30 AEDT
    assert band_at(SYDNEY, utc(2024, 4, 6, 16, 30)) == "peak"  # 02:30 AEST
    assert band_at(SYDNEY, utc(2024, 4, 6, 17, 30)) == "offpeak"  # 03:30 AEST


def test_sydney_spring_forward() -> None:
    # 01:30 AEST = 15:30 UTC; at 16:00 UTC clocks go from 02:00 AEST to 03:00 AEDT: no peak hour.
    assert band_at(SYDNEY, utc(2024, 10, 5, 14, 30)) == "offpeak"  # 00:30 AEST
    assert band_at(SYDNEY, utc(2024, 10, 5, 15, 30)) == "standard"  # 01:30 AEST
    assert band_at(SYDNEY, utc(2024, 10, 5, 15, 59, 59)) == "standard"
    assert band_at(SYDNEY, utc(2024, 10, 5, 16, 0)) == "offpeak"  # 03:00 AEDT
    assert band_at(SYDNEY, utc(2024, 10, 5, 16, 30)) == "offpeak"  # 03:30 AEDT


def test_the_local_date_and_time_decide() -> None:
    # In Sydney (AEST, UTC+10) Saturday 2024-06-08 15:30 UTC is Sunday 01:30: the Sunday profile
    # (standard), not Saturday's (offpeak before 07:00).
    assert band_at(SYDNEY, utc(2024, 6, 8, 15, 30)) == "standard"
    # Saturday 07:30 AEST (Friday 21:30 UTC) is standard; Sunday 07:30 AEST is offpeak.
    assert band_at(SYDNEY, utc(2024, 6, 7, 21, 30)) == "standard"
    assert band_at(SYDNEY, utc(2024, 6, 8, 21, 30)) == "offpeak"
    # Friday 2024-06-07 06:30 UTC is 07:30 BST, summer weekday peak; 06:30 BST is offpeak.
    assert band_at(LONDON, utc(2024, 6, 7, 6, 30)) == "peak"
    assert band_at(LONDON, utc(2024, 6, 7, 5, 30)) == "offpeak"


def test_before_the_first_switch_point_the_days_last_band_applies() -> None:
    # Winter weekday: 06:00 standard ... 22:00 offpeak; 03:00 is offpeak (wrap), 06:00 standard.
    assert band_at(LONDON, utc(2024, 1, 10, 3)) == "offpeak"
    assert band_at(LONDON, utc(2024, 1, 10, 5, 59, 59)) == "offpeak"
    assert band_at(LONDON, utc(2024, 1, 10, 6)) == "standard"
    assert band_at(LONDON, utc(2024, 1, 10, 17, 30)) == "peak"


def test_special_days_override_the_week() -> None:
    # Christmas 2024 is a Wednesday: every year's 12-25 is a holiday, offpeak all day.
    assert band_at(LONDON, utc(2024, 12, 25, 17, 30)) == "offpeak"
    assert band_at(LONDON, utc(2024, 12, 24, 17, 30)) == "peak"  # an ordinary Tuesday
    # Monday 2024-05-06 (a one-off bank holiday, BST): 08:00 local would be peak.
    assert LONDON.day_type_on(date(2024, 5, 6)) == "holiday"
    assert band_at(LONDON, local(LONDON, 2024, 5, 6, 8)) == "offpeak"
    assert band_at(LONDON, local(LONDON, 2024, 5, 13, 8)) == "peak"
    # A one-off date wins over the yearly one: 2025-12-25 is declared a weekday.
    assert LONDON.day_type_on(date(2025, 12, 25)) == "weekday"
    assert band_at(LONDON, local(LONDON, 2025, 12, 25, 17, 30)) == "peak"
    # The special day is by local date: 10:30 on 12-25 in Sydney is 23:30 UTC on 12-24.
    assert band_at(SYDNEY, utc(2024, 12, 24, 23, 30)) == "offpeak"
    assert band_at(SYDNEY, utc(2024, 12, 23, 23, 30)) == "standard"  # 10:30 Tuesday 12-24


def test_season_boundaries() -> None:
    # Winter runs 11-01..02-29, summer 03-01..10-31; 07:30 local on a weekday is standard in
    # winter and peak in summer.
    assert LONDON.season_on(date(2024, 2, 29)) == "winter"
    assert LONDON.season_on(date(2023, 2, 28)) == "winter"
    assert LONDON.season_on(date(2024, 3, 1)) == "summer"
    assert LONDON.season_on(date(2024, 10, 31)) == "summer"
    assert LONDON.season_on(date(2024, 11, 1)) == "winter"
    assert LONDON.season_on(date(2025, 1, 1)) == "winter"  # a season across the new year
    assert band_at(LONDON, utc(2024, 2, 29, 7, 30)) == "standard"  # Thursday, winter
    assert band_at(LONDON, utc(2024, 3, 1, 7, 30)) == "peak"  # Friday, summer, 07:30 GMT
    assert band_at(LONDON, utc(2024, 10, 31, 8, 30)) == "peak"  # Thursday, summer
    assert band_at(LONDON, utc(2024, 11, 1, 8, 30)) == "standard"  # Friday, winter
    # The season is that of the local date: in Sydney, 2024-10-31 13:30 UTC is 11-01 00:30 AEDT,
    # a winter Friday (offpeak by wrap), and 2024-10-31 07:00 UTC is 18:00 summer peak.
    assert SYDNEY.season_on(utc(2024, 10, 31, 13, 30).astimezone(SYDNEY.tz).date()) == "winter"
    assert band_at(SYDNEY, utc(2024, 10, 31, 7)) == "peak"
    assert band_at(SYDNEY, utc(2024, 10, 31, 13, 30)) == "offpeak"


def test_band_at_refuses_naive_datetimes_and_accepts_any_aware_one() -> None:
    with pytest.raises(CalendarError, match="naive"):
        band_at(LONDON, datetime(2024, 6, 1, 12))
    paris = datetime(2024, 6, 7, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))  # 08:30 BST
    assert band_at(LONDON, paris) == "peak"


# --------------------------------------------------------------------------------------------
# split_by_band


def test_split_over_londons_25_hour_day() -> None:
    # Sunday 2024-10-27 local: 23:00 UTC (00:00 BST) to 00:00 UTC on the 28th (00:00 GMT): 25 h.
    # offpeak 00-01 (1 h) + 03-24 (21 h) = 22 h; standard 01-02 twice = 2 h; peak 02-03 = 1 h.
    # 2500 Wh over 25 h = 100 Wh per hour.
    start, end = utc(2024, 10, 26, 23), utc(2024, 10, 28)
    assert end - start == timedelta(hours=25)
    assert split_by_band(LONDON, start, end, 2500) == {
        "offpeak": 2200,
        "standard": 200,
        "peak": 100,
    }


def test_split_over_londons_23_hour_day() -> None:
    # Sunday 2024-03-31 local: 00:00 UTC to 23:00 UTC: 23 h. The standard hour never happens:
    # offpeak 1 h + 21 h = 22 h, peak 1 h. 2300 Wh = 100 Wh per hour.
    start, end = utc(2024, 3, 31), utc(2024, 3, 31, 23)
    assert split_by_band(LONDON, start, end, 2300) == {"offpeak": 2200, "peak": 100}


def test_split_over_sydneys_25_and_23_hour_days() -> None:
    # Fall back, Sunday 2024-04-07: 13:00 UTC on the 6th to 14:00 UTC on the 7th, 25 h; the
    # repeated 02:00..03:00 is peak twice: offpeak 22 h, standard 1 h, peak 2 h.
    assert split_by_band(SYDNEY, utc(2024, 4, 6, 13), utc(2024, 4, 7, 14), 2500) == {
        "offpeak": 2200,
        "standard": 100,
        "peak": 200,
    }
    # Spring forward, Sunday 2024-10-06: 14:00 UTC on the 5th to 13:00 UTC on the 6th, 23 h;
    # no peak hour: offpeak 22 h, standard 1 h.
    assert split_by_band(SYDNEY, utc(2024, 10, 5, 14), utc(2024, 10, 6, 13), 2300) == {
        "offpeak": 2200,
        "standard": 100,
    }


def test_split_of_the_repeated_hour_alone() -> None:
    # Only the second 01:00..02:00 of London's fall-back day (01:00..02:00 UTC): all standard.
    assert split_by_band(LONDON, utc(2024, 10, 27, 1), utc(2024, 10, 27, 2), 500) == {
        "standard": 500
    }
    # 00:30..01:30 UTC: local 01:30 BST .. 01:30 GMT, standard throughout.
    assert split_by_band(LONDON, utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 1, 30), 7) == {
        "standard": 7
    }


def test_split_across_the_spring_forward_jump() -> None:
    # 00:30..01:30 UTC: 00:30..00:59 GMT offpeak (30 min), then 02:00..02:30 BST peak (30 min).
    assert split_by_band(LONDON, utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 30), 1000) == {
        "offpeak": 500,
        "peak": 500,
    }


def test_split_is_exact_with_largest_remainders() -> None:
    # 1001 Wh over the 25 h day: exact shares 880.88 offpeak, 80.08 standard, 40.04 peak;
    # floors 880 + 80 + 40 = 1000, the 1 Wh left goes to the largest remainder (offpeak).
    assert split_by_band(LONDON, utc(2024, 10, 26, 23), utc(2024, 10, 28), 1001) == {
        "offpeak": 881,
        "standard": 80,
        "peak": 40,
    }
    # A tie (1 Wh over 30 min offpeak + 30 min peak): the band listed first gets it.
    assert split_by_band(LONDON, utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 30), 1) == {
        "offpeak": 1,
        "peak": 0,
    }


def test_split_within_one_band_and_across_a_switch_point() -> None:
    # Summer weekday (BST): 06:45..07:15 local is 15 min offpeak, 15 min peak.
    start = local(LONDON, 2024, 6, 7, 6, 45)
    assert split_by_band(LONDON, start, start + timedelta(minutes=30), 301) == {
        "offpeak": 151,
        "peak": 150,
    }
    assert split_by_band(LONDON, start, start + timedelta(minutes=10), 40) == {"offpeak": 40}


def test_split_over_a_week_and_a_season_change() -> None:
    # 2024-10-28 (Mon, winter from 11-01) .. 2024-11-04 local, all in GMT: 7 days, 1 Wh per minute.
    # Mon..Thu 10-28..10-31 summer weekdays: offpeak 7 + 2 = 9 h, peak 3 + 2 = 5 h, standard 8 + 2 = 10 h
    # Fri 11-01 winter weekday: offpeak 6 + 2 = 8 h, standard 11 + 3 = 14 h, peak 2 h
    # Sat 11-02: standard 15 h, offpeak 9 h. Sun 11-03: offpeak 22 h, standard 1 h, peak 1 h.
    minutes = 7 * 24 * 60
    shares = split_by_band(LONDON, utc(2024, 10, 28), utc(2024, 11, 4), minutes)
    hours = {band: wh // 60 for band, wh in shares.items()}
    assert hours == {
        "offpeak": 4 * 9 + 8 + 9 + 22,
        "standard": 4 * 10 + 14 + 15 + 1,
        "peak": 4 * 5 + 2 + 1,
    }
    assert sum(shares.values()) == minutes


def test_split_refuses_bad_requests() -> None:
    with pytest.raises(CalendarError, match="must be after start_utc"):
        split_by_band(LONDON, utc(2024, 1, 2), utc(2024, 1, 1), 10)
    with pytest.raises(CalendarError, match="naive"):
        split_by_band(LONDON, datetime(2024, 1, 1), utc(2024, 1, 2), 10)
    with pytest.raises(CalendarError, match="energy_wh must be an integer >= 0"):
        split_by_band(LONDON, utc(2024, 1, 1), utc(2024, 1, 2), -1)


ZONES = {
    name: make_calendar(name) for name in ("Europe/London", "Australia/Sydney", "America/Chicago")
}


@settings(deadline=None, max_examples=60)
@given(
    st.sampled_from(sorted(ZONES)),
    st.datetimes(datetime(2024, 1, 1), datetime(2025, 12, 28)),
    st.integers(1, 3 * 24 * 60),
)
def test_split_matches_minute_by_minute_counting(zone: str, start: datetime, minutes: int) -> None:
    # Band changes fall on whole UTC minutes in these zones, so with 1 Wh per minute the split
    # must equal counting the band at the start of every minute.
    calendar = ZONES[zone]
    first = start.replace(second=0, microsecond=0, tzinfo=UTC)
    counted: dict[str, int] = {}
    for minute in range(minutes):
        band = band_at(calendar, first + timedelta(minutes=minute))
        counted[band] = counted.get(band, 0) + 1
    assert split_by_band(calendar, first, first + timedelta(minutes=minutes), minutes) == counted


@settings(deadline=None)
@given(
    st.datetimes(datetime(2024, 1, 1), datetime(2025, 12, 28)),
    st.timedeltas(timedelta(seconds=1), timedelta(days=4)),
    st.integers(0, 10**9),
)
def test_split_always_sums_to_the_energy(start: datetime, length: timedelta, energy: int) -> None:
    begin = start.replace(tzinfo=UTC)
    shares = split_by_band(SYDNEY, begin, begin + length, energy)
    assert sum(shares.values()) == energy
    assert all(share >= 0 for share in shares.values())


# --------------------------------------------------------------------------------------------
# wall_to_utc


def test_wall_to_utc() -> None:
    london = ZoneInfo("Europe/London")
    assert wall_to_utc(datetime(2024, 6, 1, 12), london) == utc(2024, 6, 1, 11)
    # In the spring-forward gap: the first instant after it, 02:00 BST = 01:00 UTC.
    assert wall_to_utc(datetime(2024, 3, 31, 1, 30), london) == utc(2024, 3, 31, 1)
    assert wall_to_utc(datetime(2024, 3, 31, 1, 0), london) == utc(2024, 3, 31, 1)
    # A repeated time: its first occurrence (BST).
    assert wall_to_utc(datetime(2024, 10, 27, 1, 30), london) == utc(2024, 10, 27, 0, 30)
    sydney = ZoneInfo("Australia/Sydney")
    assert wall_to_utc(datetime(2024, 10, 6, 2, 30), sydney) == utc(2024, 10, 5, 16)
    assert wall_to_utc(datetime(2024, 4, 7, 2, 30), sydney) == utc(2024, 4, 6, 15, 30)
    with pytest.raises(CalendarError, match="naive local time"):
        wall_to_utc(utc(2024, 1, 1), london)


# --------------------------------------------------------------------------------------------
# The meter's table


def make_meter_calendar(**changes: object) -> TouCalendar:
    fields: dict[str, object] = {
        "name": "meter TOU",
        "version": 3,
        "zone": "Europe/London",
        "bands": ("offpeak", "standard", "peak", "critical"),
        "seasons": (Season("all year", "01-01", "12-31"),),
        "week": ("weekday",) * 5 + ("weekend",) * 2,
        "profiles": {
            "weekday": (
                ("00:00", "offpeak"),
                ("06:00", "standard"),
                ("06:30", "standard"),  # the same band again: merged away
                ("17:00", "peak"),
                ("21:00", "standard"),
                ("22:00", "offpeak"),
            ),
            "weekend": (("07:00", "standard"), ("22:00", "offpeak")),
            "holiday": (("00:00", "offpeak"),),
        },
        "assignments": {
            ("all year", "weekday"): "weekday",
            ("all year", "weekend"): "weekend",
            ("all year", "holiday"): "holiday",
        },
        "special_days": {"12-25": "holiday"},
    }
    fields.update(changes)
    return TouCalendar(**fields)  # type: ignore[arg-type]


def test_meter_table_is_the_tou_command_format() -> None:
    # The example of docs/register-map.md 3.3 (bands: 1 offpeak, 2 standard, 3 peak).
    table = meter_table(make_meter_calendar(), date(2024, 6, 3))
    assert table == {
        "weekday": [[0, 1], [360, 2], [1020, 3], [1260, 2], [1320, 1]],
        "weekend": [[420, 2], [1320, 1]],
    }
    registers = tou_registers(table["weekday"], table["weekend"])  # what the driver writes
    assert registers[:10] == [0, 1, 360, 2, 1020, 3, 1260, 2, 1320, 1]
    assert registers[16:22] == [420, 2, 1320, 1, 0xFFFF, 0]


def test_meter_table_runs_like_the_calendar_on_the_meter() -> None:
    # The simulator's meter applies a table in its local time, UTC + utc_offset_minutes. With the
    # offset the head-end sets for BST, it finds the calendar's band every 5 minutes of a summer
    # week (no special days in it).
    calendar = make_meter_calendar()
    table = meter_table(calendar, date(2024, 6, 3))
    meter = TouTable(
        3,
        tuple((start, band) for start, band in table["weekday"]),
        tuple((start, band) for start, band in table["weekend"]),
    )
    instant = utc(2024, 6, 2, 20)
    while instant < utc(2024, 6, 10, 4):
        offset_s = meter_utc_offset_minutes(calendar, instant) * 60
        local_s = instant.timestamp() + offset_s
        assert meter.band_at(local_s) == calendar.bands.index(band_at(calendar, instant)) + 1
        instant += timedelta(minutes=5)


def test_meter_table_takes_the_season_of_the_date() -> None:
    calendar = TouCalendar(
        name="two seasons",
        version=8,
        zone="Europe/London",
        bands=BANDS,
        seasons=SEASONS,
        week=("weekday",) * 5 + ("saturday",) * 2,
        profiles=PROFILES,
        assignments={
            (s, d): (f"{s}_weekday" if d == "weekday" else d)
            for s in ("winter", "summer")
            for d in ("weekday", "saturday", "holiday")
        },
        special_days={"12-25": "holiday"},
    )
    summer = meter_table(calendar, date(2024, 7, 1))
    winter = meter_table(calendar, date(2024, 12, 2))
    assert summer["weekday"] == [[0, 1], [420, 3], [600, 2], [1080, 3], [1200, 2], [1320, 1]]
    assert winter["weekday"] == [[360, 2], [1020, 3], [1140, 2], [1320, 1]]
    assert summer["weekend"] == winter["weekend"] == [[420, 2], [1320, 1]]


def test_meter_table_refuses_what_the_meter_cannot_hold() -> None:
    # LONDON has different Saturday and Sunday profiles: one weekend table cannot run both.
    with pytest.raises(MeterTableError, match="the days use the profiles 'saturday', 'sunday'"):
        meter_table(LONDON, date(2024, 6, 3))
    ten = tuple((f"{h:02d}:00", ("offpeak", "standard")[h % 2]) for h in range(10))
    calendar = make_meter_calendar(
        profiles={"weekday": ten, "weekend": (("00:00", "critical"),), "holiday": ten},
        bands=("offpeak", "standard", "peak", "shoulder", "critical"),
    )
    with pytest.raises(MeterTableError) as caught:
        meter_table(calendar, date(2024, 6, 3))
    assert caught.value.problems == (
        "weekday: profile 'weekday' has 10 switch points; a meter holds 8",
        "weekend: band 'critical' is band 5; a meter counts bands 1..4",
    )


def test_meter_table_uses_the_midnight_wrap_to_fit_eight_points() -> None:
    # 9 points whose first and last bands are the same: the first point is redundant, because
    # before the first switch point the day's last band is in force.
    nine = (
        ("00:00", "offpeak"),
        ("06:00", "standard"),
        ("07:00", "peak"),
        ("09:00", "standard"),
        ("12:00", "critical"),
        ("14:00", "standard"),
        ("17:00", "peak"),
        ("20:00", "standard"),
        ("23:00", "offpeak"),
    )
    calendar = make_meter_calendar(
        profiles={"weekday": nine, "weekend": nine, "holiday": nine},
    )
    table = meter_table(calendar, date(2024, 6, 3))
    assert table["weekday"] == [
        [360, 2],
        [420, 3],
        [540, 2],
        [720, 4],
        [840, 2],
        [1020, 3],
        [1200, 2],
        [1380, 1],
    ]
    assert tou_registers(table["weekday"], table["weekend"])  # the driver takes it


def test_meter_utc_offset_minutes() -> None:
    assert meter_utc_offset_minutes(LONDON, utc(2024, 1, 1)) == 0
    assert meter_utc_offset_minutes(LONDON, utc(2024, 7, 1)) == 60
    assert meter_utc_offset_minutes(SYDNEY, utc(2024, 1, 1)) == 660
    assert meter_utc_offset_minutes(SYDNEY, utc(2024, 7, 1)) == 600


# --------------------------------------------------------------------------------------------
# Validation


def test_validation_reports_every_problem_with_its_path() -> None:
    with pytest.raises(CalendarError) as caught:
        TouCalendar(
            name="broken",
            version=0,
            zone="Mars/Olympus_Mons",
            bands=("offpeak", "peak", "peak"),
            seasons=(
                Season("winter", "01-01", "02-28"),
                Season("summer", "03-01", "12-31"),
                Season("festive", "12-20", "01-05"),
                Season("bad", "02-30", "13-01"),
            ),
            week=("weekday",) * 5 + ("weekend",) * 2,
            profiles={
                "day": (("07:00", "peak"), ("06:00", "offpeak"), ("25:00", "peak")),
                "night": (("00:00", "shoulder"),),
                "empty": (),
            },
            assignments={("winter", "weekday"): "day", ("summer", "holiday"): "nope"},
            special_days={"12-32": "weekday", "2024-02-30": "weekday"},
        )
    assert set(caught.value.problems) == {
        "version: must be 1..65535 (a meter's tou_version), got 0",
        "zone: 'Mars/Olympus_Mons' is not an IANA time zone",
        "bands[2]: 'peak' is listed twice",
        "seasons[3].start: must be a date 'MM-DD', got '02-30'",
        "seasons[3].end: must be a date 'MM-DD', got '13-01'",
        "seasons: 'winter' and 'festive' overlap on 01-01..01-05",
        "seasons: 'summer' and 'festive' overlap on 12-20..12-31",
        "profiles['day'][1]: switch points must start in increasing order, 06:00 comes after 07:00",
        "profiles['day'][2]: start must be 'HH:MM' 00:00..23:59, got '25:00'",
        "profiles['night'][0]: unknown band 'shoulder' (bands: offpeak, peak, peak)",
        "profiles['empty']: at least one switch point is needed",
        "special_days['12-32']: must be 'MM-DD' (every year) or 'YYYY-MM-DD' (once)",
        "special_days['2024-02-30']: must be 'MM-DD' (every year) or 'YYYY-MM-DD' (once)",
        "assignments[('summer', 'holiday')]: day type 'holiday' is used by no day of the week "
        "and no special day",
        "assignments[('summer', 'holiday')]: unknown profile 'nope'",
        "assignments: no profile for season 'winter' and day type 'weekend'",
        "assignments: no profile for season 'summer' and day type 'weekday'",
        "assignments: no profile for season 'summer' and day type 'weekend'",
        "assignments: no profile for season 'festive' and day type 'weekday'",
        "assignments: no profile for season 'festive' and day type 'weekend'",
        "assignments: no profile for season 'bad' and day type 'weekday'",
        "assignments: no profile for season 'bad' and day type 'weekend'",
    }
    assert str(caught.value).startswith("invalid TOU calendar:\n  version: must be 1..65535")


def test_seasons_must_cover_the_year() -> None:
    with pytest.raises(CalendarError) as caught:
        make_meter_calendar(
            seasons=(
                Season("all year", "01-01", "02-28"),
                Season("spring", "03-01", "06-30"),
                Season("autumn", "07-10", "12-30"),
            ),
        )
    gaps = [p for p in caught.value.problems if p.startswith("seasons:")]
    assert gaps == [
        "seasons: no season covers 02-29 (29 February of leap years)",
        "seasons: no season covers 07-01..07-09",
        "seasons: no season covers 12-31",
    ]


def test_a_season_over_the_new_year_and_a_single_season_are_fine() -> None:
    calendar = make_meter_calendar(
        seasons=(Season("all year", "07-01", "06-30"),),
    )
    assert calendar.season_on(date(2023, 12, 31)) == calendar.season_on(date(2024, 1, 1))


def test_calendars_are_immutable_values() -> None:
    special_days = {"12-25": "holiday"}
    calendar = make_meter_calendar(special_days=special_days)
    with pytest.raises(AttributeError):
        calendar.version = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        calendar.profiles["weekday"] = ()  # type: ignore[index]
    special_days["12-24"] = "holiday"  # the caller's dict is copied, not kept
    assert calendar.day_type_on(date(2024, 12, 24)) == "weekday"
    assert make_calendar() == LONDON
    assert make_calendar() != SYDNEY
    assert hash(make_calendar()) == hash(LONDON)
