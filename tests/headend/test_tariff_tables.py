"""A TOU tariff written as a calendar becomes the table the meters take, for the local date of the
activation (seasons and special days are the head-end's; the meter knows weekday and weekend)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from headend.api.framework import ApiError
from headend.api.tariffs import meter_tables, validate_body

CALENDAR: dict[str, Any] = {
    "name": "residential-tou", "version": 3, "zone": "Europe/London",
    "bands": ["peak", "standard", "offpeak"],
    "seasons": [{"name": "winter", "start": "10-01", "end": "03-31"},
                {"name": "summer", "start": "04-01", "end": "09-30"}],
    "week": ["workday"] * 5 + ["weekend"] * 2,
    "profiles": {"winter-work": [["00:00", "offpeak"], ["07:00", "peak"], ["10:00", "standard"],
                                 ["17:00", "peak"], ["20:00", "standard"], ["22:00", "offpeak"]],
                 "summer-work": [["00:00", "offpeak"], ["07:00", "standard"],
                                 ["22:00", "offpeak"]],
                 "rest": [["00:00", "offpeak"], ["08:00", "standard"], ["21:00", "offpeak"]]},
    "assignments": [{"season": "winter", "day_type": "workday", "profile": "winter-work"},
                    {"season": "summer", "day_type": "workday", "profile": "summer-work"},
                    {"season": "winter", "day_type": "weekend", "profile": "rest"},
                    {"season": "summer", "day_type": "weekend", "profile": "rest"}],
}  # fmt: skip


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_winter_activation_sends_the_winter_profiles() -> None:
    tables = meter_tables({"calendar": CALENDAR}, _at("2026-12-01T00:00:00"))
    # bands are numbered by their place in "bands": peak 1, standard 2, offpeak 3
    assert tables["weekday"] == [[0, 3], [420, 1], [600, 2], [1020, 1], [1200, 2], [1320, 3]]
    assert tables["weekend"] == [[0, 3], [480, 2], [1260, 3]]


def test_the_local_date_decides_the_season_not_the_utc_one() -> None:
    # 2026-03-31 23:30 UTC is already 1 April 00:30 BST in London: summer
    tables = meter_tables({"calendar": CALENDAR}, _at("2026-03-31T23:30:00"))
    assert tables["weekday"] == [[0, 3], [420, 2], [1320, 3]]


def test_a_plain_table_passes_through_and_a_broken_calendar_is_refused() -> None:
    table = {"weekday": [[0, 1]], "weekend": [[0, 2]]}
    assert meter_tables(table, 0.0) == table
    broken = dict(CALENDAR, seasons=[{"name": "winter", "start": "10-01", "end": "02-28"}])
    with pytest.raises(ApiError) as refused:
        validate_body("tou", {"calendar": broken})
    assert refused.value.status == 422
    assert any("not covered" in d or "02-29" in d or "covered" in d for d in refused.value.details)
