"""The scheduler in the store: one leader among head-ends, windows across DST, capped catch-up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from headend.config import MeterDefaults
from headend.records import thd_ensure_meters, thd_touch_gateway
from headend.scheduler import thd_hold_lease, thd_run_schedules
from headend.store import make_engine, upgrade
from headend.store.schema import command_history, commands, read_schedules


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'he.db'}")
    upgrade(engine)
    with engine.begin() as connection:
        thd_touch_gateway(connection, "gw-1", 0.0)
        thd_ensure_meters(connection, "gw-1", {"01", "02"}, MeterDefaults(group="town"), 0.0)
        thd_ensure_meters(connection, "gw-1", {"03"}, MeterDefaults(group="farm"), 0.0)
    yield engine
    engine.dispose()


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_one_head_end_holds_the_scheduler_lease(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        assert thd_hold_lease(connection, "he-1", 100.0, 90.0)
        assert not thd_hold_lease(connection, "he-2", 150.0, 90.0)  # he-1's lease runs to 190
        assert thd_hold_lease(connection, "he-1", 160.0, 90.0)  # renewed to 250
        assert not thd_hold_lease(connection, "he-2", 249.0, 90.0)
        assert thd_hold_lease(connection, "he-2", 251.0, 90.0)  # he-1 stopped renewing: taken over
        assert not thd_hold_lease(connection, "he-1", 252.0, 90.0)


def _reads(connection: sa.Connection) -> dict[str, int]:
    rows = connection.execute(
        sa.select(commands.c.meter_id, sa.func.count())
        .join(command_history, command_history.c.command_id == commands.c.id)
        .where(commands.c.type == "read", command_history.c.state == "queued")
        .group_by(commands.c.meter_id)
    ).all()  # fmt: skip
    return {row[0]: row[1] for row in rows}


def test_a_daily_read_runs_once_per_local_day_across_the_spring_change(engine: sa.Engine) -> None:
    # Europe/London, daily at 01:30 local: on 2026-03-29 01:30 does not exist (clocks go from
    # 01:00 GMT to 02:00 BST), so that day's read runs at 02:00 BST = 01:00 UTC
    spec = {"zone": "Europe/London", "kind": "daily", "at": "01:30"}
    with engine.begin() as connection:
        connection.execute(sa.insert(read_schedules).values(name="midnight", group_name="town",
                                                            spec=json.dumps(spec)))  # fmt: skip
        assert thd_run_schedules(connection, _at("2026-03-28T00:00:00"), 4, 3600.0) == {}
        ran = thd_run_schedules(connection, _at("2026-03-28T12:00:00"), 4, 3600.0)
        assert ran == {"midnight": 1}  # 28 March 01:30 GMT = 01:30 UTC
        assert _reads(connection) == {"01": 1, "02": 1}  # the town group only
        assert thd_run_schedules(connection, _at("2026-03-29T00:59:00"), 4, 3600.0) == {}
        assert thd_run_schedules(connection, _at("2026-03-29T01:00:00"), 4, 3600.0) == {
            "midnight": 1
        }
        last = connection.execute(sa.select(read_schedules.c.last_window_at)).scalar_one()
        assert last == _at("2026-03-29T01:00:00")
        # the next day 01:30 BST is 00:30 UTC
        assert thd_run_schedules(connection, _at("2026-03-30T00:29:00"), 4, 3600.0) == {}
        assert thd_run_schedules(connection, _at("2026-03-30T00:30:00"), 4, 3600.0) == {
            "midnight": 1
        }


def test_after_an_outage_only_the_newest_windows_are_caught_up(engine: sa.Engine) -> None:
    spec = {"zone": "Europe/London", "kind": "interval", "interval_minutes": 60}
    with engine.begin() as connection:
        connection.execute(sa.insert(read_schedules).values(name="hourly", spec=json.dumps(spec)))
        thd_run_schedules(connection, _at("2026-10-24T12:00:00"), 3, 3600.0)
        # down for three days, over the autumn change (25-hour day on 25 October): 72 windows
        # missed, 3 caught up; one read per meter is queued (identical queued reads coalesce)
        ran = thd_run_schedules(connection, _at("2026-10-27T12:00:00"), 3, 3600.0)
        assert ran == {"hourly": 3}
        assert _reads(connection) == {"01": 1, "02": 1, "03": 1}
