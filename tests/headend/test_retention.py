"""Retention as an operator relies on it, on SQLite and on a real PostgreSQL: readings older than
``retention.readings_days`` are folded into daily totals and then dropped (on PostgreSQL a whole
month's partition at a time, once all of it is old enough), exactly those and no others, with the
totals a person computes by hand; a reading that arrives late for a folded day is folded in by the
next pass; a dry run changes nothing and says what the real pass then does; the consumption report
still sees the energy of dropped days; daily totals go after ``daily_days``; only the head-end
holding the ``retention`` lease runs the passes; ``amr db retention`` runs one."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
import yaml
from twisted.internet import defer, reactor, task

from headend.config import HeadendConfig, RetentionConfig
from headend.records import thd_store_readings
from headend.reports import thd_consumption
from headend.retention import RetentionReport, RetentionService, run_pass_sync
from headend.store import Database, make_engine, upgrade
from headend.store.backup import backup, restore
from headend.store.partitions import ensure_months
from headend.store.schema import readings, readings_daily
from tests.support.postgres import Postgres

AMR = Path(sys.executable).with_name("amr")


def at(year: int, month: int, day: int, hour: int = 0) -> float:
    return datetime(year, month, day, hour, tzinfo=UTC).timestamp()


NOW1 = at(2026, 3, 10, 12)  # readings_days 30: the cut is the start of 2026-02-08
NOW3 = at(2026, 4, 15, 12)  # the cut is the start of 2026-03-16; daily_days 70: 2026-02-04
KEEP = RetentionConfig(readings_days=30)
Y1975 = at(1975, 5, 21, 12)  # a meter clock from long ago
Y2099 = at(2099, 1, 1, 6)  # and one far ahead: never old enough to go

# (meter, ts, energy_wh, credit_wh); a None energy is a status reading (credit only)
STORED = [
    ("A", at(2026, 1, 30, 6), 1000, 5000), ("A", at(2026, 1, 30, 18), 1100, 4900),
    ("A", at(2026, 1, 31, 6), 1150, 4850), ("A", at(2026, 1, 31, 18), None, 4800),
    ("A", at(2026, 2, 1, 6), 1300, 4700), ("A", at(2026, 2, 1, 18), 1400, 4600),
    ("A", at(2026, 2, 10, 6), 2000, 4000),
    ("B", at(2026, 1, 30, 12), 500, None), ("B", at(2026, 2, 1, 12), 400, None),  # a reset
    ("B", at(2026, 2, 2, 12), 450, None), ("B", at(2026, 2, 9, 12), 470, None),
    ("C", Y1975, 7, None), ("D", Y2099, 9, None),
]  # fmt: skip
LATE = ("A", at(2026, 1, 31, 20), 1180, 4790)  # arrives after 2026-01-31 was folded


def daily(meter: str, day: date, count: int, first: tuple[float, int] | None,
          last: tuple[float, int] | None, used: int | None,
          credit: tuple[float, int] | None) -> tuple[Any, ...]:  # fmt: skip
    """A readings_daily row as the store gives it back, in column order."""
    return (meter, day, count, *(first or (None, None)), *(last or (None, None)), used,
            *(credit or (None, None)))  # fmt: skip


# by hand: used = last register of the day - last register of the meter's previous day with
# one (none: the day's first), never below 0
C_1975 = daily("C", date(1975, 5, 21), 1, (Y1975, 7), (Y1975, 7), 0, None)
A_JAN30 = daily("A", date(2026, 1, 30), 2, (at(2026, 1, 30, 6), 1000), (at(2026, 1, 30, 18), 1100),
                100, (at(2026, 1, 30, 18), 4900))  # fmt: skip
A_JAN31 = daily("A", date(2026, 1, 31), 2, (at(2026, 1, 31, 6), 1150), (at(2026, 1, 31, 6), 1150),
                50, (at(2026, 1, 31, 18), 4800))  # 1150 - 1100  # fmt: skip
A_JAN31_LATE = daily("A", date(2026, 1, 31), 3, (at(2026, 1, 31, 6), 1150),
                     (at(2026, 1, 31, 20), 1180), 80, (at(2026, 1, 31, 20), 4790))  # fmt: skip
B_JAN30 = daily("B", date(2026, 1, 30), 1, (at(2026, 1, 30, 12), 500), (at(2026, 1, 30, 12), 500),
                0, None)  # fmt: skip
A_FEB01 = daily("A", date(2026, 2, 1), 2, (at(2026, 2, 1, 6), 1300), (at(2026, 2, 1, 18), 1400),
                250, (at(2026, 2, 1, 18), 4600))  # 1400 - 1150  # fmt: skip
A_FEB01_AFTER_LATE = (*A_FEB01[:7], 220, *A_FEB01[8:])  # 1400 - 1180
B_FEB01 = daily("B", date(2026, 2, 1), 1, (at(2026, 2, 1, 12), 400), (at(2026, 2, 1, 12), 400),
                0, None)  # 400 < 500: a reset counts 0  # fmt: skip
B_FEB02 = daily("B", date(2026, 2, 2), 1, (at(2026, 2, 2, 12), 450), (at(2026, 2, 2, 12), 450),
                50, None)  # fmt: skip
B_FEB09 = daily("B", date(2026, 2, 9), 1, (at(2026, 2, 9, 12), 470), (at(2026, 2, 9, 12), 470),
                20, None)  # fmt: skip
A_FEB10 = daily("A", date(2026, 2, 10), 1, (at(2026, 2, 10, 6), 2000), (at(2026, 2, 10, 6), 2000),
                600, (at(2026, 2, 10, 6), 4000))  # fmt: skip


def rows_of(*stored: tuple[str, float, int | None, int | None]) -> list[Any]:
    return [(meter, ts, None, "gw-1", energy, credit, "{}") for meter, ts, energy, credit in stored]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/he.db"
    else:
        postgres: Postgres = request.getfixturevalue("postgres")
        url = postgres.create_database(f"retention_{abs(hash(request.node.name)) % 10**8}")
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # as the passes before these would have made them
            ensure_months(connection, [date(2026, m, 1) for m in (1, 2, 3)], NOW1)
        thd_store_readings(connection, rows_of(*STORED))
    yield engine
    engine.dispose()


def kept(engine: sa.Engine) -> set[tuple[str, float]]:
    with engine.connect() as connection:
        return {(r[0], r[1]) for r in connection.execute(sa.select(readings.c.meter_id,
                                                                   readings.c.ts))}  # fmt: skip


def totals(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        query = sa.select(readings_daily).order_by(readings_daily.c.day, readings_daily.c.meter_id)
        return [tuple(row) for row in connection.execute(query)]


def monthly(engine: sa.Engine) -> set[str]:
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as connection:
        return set(connection.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ '^readings_p'"
        ).scalars())  # fmt: skip


def consumption(engine: sa.Engine, since: float, until: float) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows: list[dict[str, Any]] = thd_consumption(connection, since, until, "group")["rows"]
        return rows


def outline(report: RetentionReport) -> list[tuple[Any, ...]]:
    return [(r.chunk.lo, r.chunk.hi, r.chunk.table, r.chunk.whole, r.days, r.daily_rows,
             r.readings) for r in report.chunks]  # fmt: skip


def test_old_readings_become_daily_totals_and_go(engine: sa.Engine) -> None:
    pg = engine.dialect.name == "postgresql"
    everything = kept(engine)
    partitions = monthly(engine)
    windows = [(at(2026, 1, 30), at(2026, 2, 3)), (at(2026, 1, 31), at(2026, 2, 2))]
    # A 1000 -> 1400, B 500 -> 450 (a reset: 0); A 1150 -> 1400, B 400 -> 400
    before = [[{"group": None, "meters": 2, "energy_wh": 400}],
              [{"group": None, "meters": 2, "energy_wh": 250}]]  # fmt: skip
    assert [consumption(engine, *w) for w in windows] == before

    dry = run_pass_sync(engine, KEEP, NOW1, dry_run=True)

    assert kept(engine) == everything and totals(engine) == [] and monthly(engine) == partitions
    assert dry.lines()[-1] == "dry run: nothing changed"

    done = run_pass_sync(engine, KEEP, NOW1)

    assert outline(done) == outline(dry)  # the dry run said what the pass did
    assert done.partitions_created == dry.partitions_created
    if pg:
        # the cut moves back to the start of February's partition: January goes whole
        assert done.cut == at(2026, 2, 1)
        assert outline(done) == [
            (at(1975, 5, 1), at(1975, 6, 1), "readings_default", False, 1, 1, 1),
            (at(2026, 1, 1), at(2026, 2, 1), "readings_p2026_01", True, 2, 3, 5),
        ]
        assert totals(engine) == [C_1975, A_JAN30, B_JAN30, A_JAN31]
        gone = {(m, t) for m, t, _, _ in STORED if t < at(2026, 2, 1)}
        assert monthly(engine) == partitions - {"readings_p2026_01"} | {
            "readings_p2026_04", "readings_p2026_05", "readings_p2026_06"}  # fmt: skip
        assert done.partitions_created == ["readings_p2026_04", "readings_p2026_05",
                                           "readings_p2026_06"]  # fmt: skip
    else:
        assert done.cut == at(2026, 2, 8)
        assert [(r[0], r[2], r[4], r[5], r[6]) for r in outline(done)] == [
            (at(1975, 5, 21), "readings", 1, 1, 1), (at(2026, 1, 30), "readings", 1, 2, 3),
            (at(2026, 1, 31), "readings", 1, 1, 2), (at(2026, 2, 1), "readings", 1, 2, 3),
            (at(2026, 2, 2), "readings", 1, 1, 1),
        ]  # one day per transaction  # fmt: skip
        assert totals(engine) == [C_1975, A_JAN30, B_JAN30, A_JAN31, A_FEB01, B_FEB01, B_FEB02]
        gone = {(m, t) for m, t, _, _ in STORED if t < at(2026, 2, 8)}
    assert kept(engine) == everything - gone  # exactly those, no others
    assert done.readings_dropped == len(gone)
    assert [consumption(engine, *w) for w in windows] == before  # the daily totals stand in

    # a reading for a folded day, late (into the default partition on PostgreSQL)
    with engine.begin() as connection:
        thd_store_readings(connection, rows_of(LATE))
    late = run_pass_sync(engine, KEEP, NOW1)
    assert late.readings_dropped == 1
    assert kept(engine) == everything - gone
    assert A_JAN31_LATE in totals(engine) and A_JAN31 not in totals(engine)

    # five weeks on, February is old enough
    later = run_pass_sync(engine, KEEP, NOW3)
    assert kept(engine) == {("D", Y2099)}
    # on PostgreSQL February was folded after January 31 had its late reading: A's February 1
    # counts from 1180. On SQLite it was folded before that reading came, from 1150: the days
    # after a late reading are not recomputed
    feb1 = A_FEB01_AFTER_LATE if pg else A_FEB01
    assert totals(engine) == [C_1975, A_JAN30, B_JAN30, A_JAN31_LATE, feb1, B_FEB01, B_FEB02,
                              B_FEB09, A_FEB10]  # fmt: skip
    if pg:
        assert outline(later) == [
            (at(2026, 2, 1), at(2026, 3, 1), "readings_p2026_02", True, 4, 5, 6)
        ]
        assert "readings_p2026_02" not in monthly(engine)

    # daily totals older than daily_days (70) go too
    trimmed = run_pass_sync(engine, RetentionConfig(readings_days=30, daily_days=70), NOW3)
    assert trimmed.daily_before == date(2026, 2, 4)
    assert trimmed.daily_deleted == 7
    assert totals(engine) == [B_FEB09, A_FEB10]


def test_a_dry_run_of_a_pass_that_drops_nothing_changes_nothing(engine: sa.Engine) -> None:
    everything = kept(engine)
    report = run_pass_sync(engine, RetentionConfig(), NOW1, dry_run=True)
    assert report.cut is None and report.chunks == []
    assert report.lines()[0] == "readings: kept forever (retention.readings_days is not set)"
    assert kept(engine) == everything and totals(engine) == []


@pytest_twisted.ensureDeferred
async def test_only_the_head_end_holding_the_lease_runs_the_passes(tmp_path: Path) -> None:
    db = Database(reactor, f"sqlite:///{tmp_path}/he.db")
    upgrade(db.engine)
    db.run_sync(thd_store_readings, rows_of(*STORED))
    db.start()
    clock = task.Clock()
    clock.advance(NOW1)

    def service(node: str) -> RetentionService:
        config = HeadendConfig(node_id=node, retention=RetentionConfig(readings_days=30))
        return RetentionService(SimpleNamespace(config=config, clock=clock, db=db))

    async def once(retention: RetentionService) -> RetentionReport | None:
        report: RetentionReport | None = await defer.ensureDeferred(
            retention.run_once()
        ).addTimeout(30, reactor)
        return report

    first, second = service("he-1"), service("he-2")
    try:
        report = await once(first)
        assert first.leader and report is not None and report.readings_dropped == 10
        assert await once(second) is None and not second.leader
        assert kept(db.engine) == {(m, t) for m, t, _, _ in STORED if t >= at(2026, 2, 8)}

        # he-1 stops renewing: its lease (3 intervals) runs out and he-2 takes over
        clock.advance(3 * 3600 + 1)
        report = await once(second)
        assert second.leader and report is not None and report.readings_dropped == 0

        async def passes(count: int, tries: int = 1000) -> int:
            for _ in range(tries):
                if second.passes >= count:
                    break
                await task.deferLater(reactor, 0.01, lambda: None)
            return second.passes

        # the loop: a pass at start, then one every interval_s
        second.startService()
        assert await passes(2) == 2
        clock.advance(3599)
        assert await passes(3, tries=30) == 2  # not yet
        clock.advance(1)
        assert await passes(3) == 3
        second.stopService()
    finally:
        db.stop()


def test_amr_db_retention_says_what_it_does(tmp_path: Path) -> None:
    now = time.time()
    old = datetime.fromtimestamp(now, UTC).date() - timedelta(days=450)
    midday = datetime(old.year, old.month, old.day, 12, tzinfo=UTC).timestamp()
    config = tmp_path / "headend.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'he.db'}"},
                                      "retention": {"readings_days": 400}}))  # fmt: skip
    engine = make_engine(f"sqlite:///{tmp_path / 'he.db'}")
    upgrade(engine)
    with engine.begin() as connection:
        thd_store_readings(connection, rows_of(("X", midday - 7200, 100, 9), ("X", midday, 160, 8),
                                               ("X", now, 900, 1)))  # fmt: skip

    def amr(*args: str) -> list[str]:
        run = subprocess.run([str(AMR), "db", "--config", str(config), "retention", *args],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        return run.stdout.splitlines()

    cut = (datetime.fromtimestamp(now - 400 * 86400, UTC).date()).isoformat()
    said = (f"  {old.isoformat()} (readings): 2 readings of 1 day would be folded into "
            "1 daily total, then deleted")  # fmt: skip
    assert amr("--dry-run") == [f"readings before {cut}:", said, "daily totals: kept forever",
                                "dry run: nothing changed"]  # fmt: skip
    assert len(kept(engine)) == 3
    assert amr() == [f"readings before {cut}:", said.replace("would be ", ""),
                     "daily totals: kept forever"]  # fmt: skip
    assert kept(engine) == {("X", now)}
    assert totals(engine) == [daily("X", old, 2, (midday - 7200, 100), (midday, 160), 60,
                                    (midday, 8))]  # fmt: skip
    engine.dispose()


def test_daily_totals_survive_amr_db_backup_and_restore(engine: sa.Engine, tmp_path: Path) -> None:
    run_pass_sync(engine, KEEP, NOW1)
    written = totals(engine)
    assert len(written) >= 4
    assert backup(engine, tmp_path / "backup.jsonl.gz") > len(written)
    target = make_engine(f"sqlite:///{tmp_path}/restored.db")
    upgrade(target)
    restore(target, tmp_path / "backup.jsonl.gz")
    assert totals(target) == written
    assert kept(target) == kept(engine)
    target.dispose()
