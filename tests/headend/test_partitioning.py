"""PostgreSQL's readings by month, as an operator relies on it: the upgrade puts the readings
already stored into monthly partitions (ids kept) and the downgrade puts them back; ingest stores
each reading in its month's partition and one with an odd time (a gateway clock in 2099, or reset
to 2000) in the default partition, never refusing it; a month's partition made later takes its
readings out of the default partition. On a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from headend.config import HeadendConfig, RetentionConfig
from headend.ingest import thd_ingest
from headend.records import thd_store_readings
from headend.retention import Chunk, run_pass_sync, thd_detach, thd_retire
from headend.store import make_engine, upgrade
from headend.store.migrate import current_revision, downgrade
from headend.store.partitions import (
    add_months,
    alembic_include_name,
    ensure_months,
    month_of,
    month_range,
)
from headend.store.schema import metadata, readings, readings_daily
from protocols.link import Reading, ReadingBatch, encode_message
from protocols.link.fast import FastReadings, fast_readings
from tests.support.pg_fixture import postgres  # noqa: F401
from tests.support.postgres import Postgres

pytestmark = pytest.mark.integration

Y2099 = datetime(2099, 1, 1, 6, tzinfo=UTC).timestamp()  # a gateway clock far ahead
Y2000 = datetime(2000, 1, 1, 0, 0, 5, tzinfo=UTC).timestamp()  # a clock reset to its epoch
Y1975 = datetime(1975, 5, 21, 12, tzinfo=UTC).timestamp()


@pytest.fixture
def engine(postgres: Postgres, request: pytest.FixtureRequest) -> Iterator[sa.Engine]:  # noqa: F811
    engine = make_engine(postgres.create_database(f"part_{abs(hash(request.node.name)) % 10**8}"))
    yield engine
    engine.dispose()


def name(month: date) -> str:
    return f"readings_p{month.year:04d}_{month.month:02d}"


def row(meter: str, ts: float, energy_wh: int) -> tuple[str, float, None, str, int, int, str]:
    return (meter, ts, None, "gw-1", energy_wh, 5000, '{"energy_import_total": 1}')


def placed(engine: sa.Engine) -> dict[tuple[str, float], str]:
    """Where each reading is: (meter, ts) -> the partition holding it."""
    with engine.connect() as connection:
        found = connection.exec_driver_sql(
            "SELECT meter_id, ts, tableoid::regclass::text FROM readings"
        ).all()
    return {(meter, ts): table for meter, ts, table in found}


def partition_names(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'readings'::regclass"
        ).scalars())  # fmt: skip


def kind(engine: sa.Engine) -> str:
    """'p': partitioned, 'r': a plain table."""
    with engine.connect() as connection:
        return str(connection.exec_driver_sql(
            "SELECT relkind FROM pg_class WHERE oid = 'readings'::regclass").scalar_one())  # fmt: skip


def everything(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(sa.select(readings).order_by(readings.c.id))]


def test_upgrade_moves_stored_readings_into_months_and_downgrade_takes_them_back(
    engine: sa.Engine,
) -> None:
    upgrade(engine, "0001")
    now = time.time()
    this = month_of(now)
    past = add_months(this, -5)
    five_months_ago = datetime(past.year, past.month, 3, 8, tzinfo=UTC).timestamp()
    with engine.begin() as connection:
        thd_store_readings(connection, [row("m1", five_months_ago, 1000), row("m1", now, 1500),
                                        row("m2", Y2099, 7), row("m3", Y1975, 9)])  # fmt: skip
    before = everything(engine)
    assert kind(engine) == "r"

    upgrade(engine)

    assert kind(engine) == "p"
    ahead = {name(add_months(this, n)) for n in range(4)}  # this month and the three after it
    assert partition_names(engine) == {name(past), "readings_default"} | ahead
    assert placed(engine) == {("m1", five_months_ago): name(past),
                              ("m1", now): name(this), ("m2", Y2099): "readings_default",
                              ("m3", Y1975): "readings_default"}  # fmt: skip
    assert everything(engine) == before  # every column, ids included
    with engine.connect() as connection:
        # the schema is still what headend.store.schema says (partitions are not tables of it)
        context = MigrationContext.configure(
            connection, opts={"include_name": alembic_include_name}
        )
        assert compare_metadata(context, metadata) == []
        key = sa.inspect(connection).get_pk_constraint("readings")
    assert key["constrained_columns"] == ["id", "ts"]
    with engine.begin() as connection:  # the id sequence carries on after the copied rows
        thd_store_readings(connection, [row("m4", now + 1, 10)])
    assert everything(engine)[-1][:2] == (max(r[0] for r in before) + 1, "m4")
    after_upgrade = everything(engine)

    downgrade(engine, "0001")

    assert current_revision(engine) == "0001"
    assert kind(engine) == "r"
    assert everything(engine) == after_upgrade
    with engine.connect() as connection:
        assert "readings_daily" not in sa.inspect(connection).get_table_names()
        assert not connection.exec_driver_sql(
            "SELECT 1 FROM pg_class WHERE relname ~ '^readings_(p|default)'"
        ).all()
    with engine.begin() as connection:
        thd_store_readings(connection, [row("m5", now + 2, 11)])
    upgrade(engine)  # and up again
    assert len(everything(engine)) == len(after_upgrade) + 1
    assert kind(engine) == "p"


def fast(message: ReadingBatch) -> FastReadings:
    decoded = fast_readings(encode_message(message)[1])
    assert decoded is not None
    return decoded


def test_ingest_stores_readings_in_their_months_and_odd_times_in_the_default(
    engine: sa.Engine,
) -> None:
    upgrade(engine)
    now = time.time()
    this, following = month_of(now), add_months(month_of(now), 1)
    early_next_month = datetime(following.year, following.month, 1, 0, 1, tzinfo=UTC).timestamp()
    times = {"m1": now, "m2": early_next_month, "m3": Y2099, "m4": Y2000}
    message = ReadingBatch("gw-1", 1, now, tuple(
        Reading(meter, at, {"energy_import_total": Decimal("12.5"), "credit_remaining": 3})
        for meter, at in times.items()))  # fmt: skip

    with engine.begin() as connection:
        result = thd_ingest(connection, [fast(message)], HeadendConfig(), now)  # COPY

    assert result.readings == 4
    assert placed(engine) == {("m1", now): name(this), ("m2", early_next_month): name(following),
                              ("m3", Y2099): "readings_default",
                              ("m4", Y2000): "readings_default"}  # fmt: skip
    # the same readings again under a new seq (a gateway's journal replayed): none stored twice,
    # the one new reading stored (ON CONFLICT through the partitioned table)
    again = ReadingBatch(
        "gw-1", 2, now, (*message.readings, Reading("m5", now + 5, {"energy_import_total": 1}))
    )
    with engine.begin() as connection:
        result = thd_ingest(connection, [fast(again)], HeadendConfig(), now + 60)
    assert result.readings == 1
    assert len(placed(engine)) == 5
    with engine.connect() as connection:
        energy = connection.execute(
            sa.select(readings.c.energy_wh).where(readings.c.meter_id == "m3")
        ).scalar_one()
    assert energy == 12_500


def test_a_month_made_later_takes_its_readings_out_of_the_default(engine: sa.Engine) -> None:
    upgrade(engine)
    now = time.time()
    this = month_of(now)
    far = add_months(this, 6)  # beyond the three months the upgrade made
    in_far = datetime(far.year, far.month, 10, tzinfo=UTC).timestamp()
    with engine.begin() as connection:
        thd_store_readings(connection, [row("m1", in_far, 1), row("m2", in_far + 60, 2),
                                        row("m3", Y2099, 3)])  # fmt: skip
    assert set(placed(engine).values()) == {"readings_default"}

    report = run_pass_sync(engine, RetentionConfig(months_ahead=6), now)

    assert report.partitions_created == [name(add_months(this, n)) for n in (4, 5, 6)]
    assert placed(engine) == {("m1", in_far): name(far), ("m2", in_far + 60): name(far),
                              ("m3", Y2099): "readings_default"}  # fmt: skip
    # a second pass has nothing left to make
    assert run_pass_sync(engine, RetentionConfig(months_ahead=6), now).partitions_created == []


def test_a_partition_left_detached_by_a_stopped_pass_is_folded_and_dropped(
    engine: sa.Engine,
) -> None:
    upgrade(engine)
    january = date(2026, 1, 1)
    jan_5 = datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp()
    now = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
    with engine.begin() as connection:
        ensure_months(connection, [january], now)
        thd_store_readings(connection, [row("m1", jan_5, 100), row("m1", jan_5 + 3600, 130)])
    lo, hi = month_range(january)
    with engine.begin() as connection:  # a pass's first step; then the process stopped
        thd_detach(connection, Chunk(lo, hi, name(january), whole=True))
    assert name(january) not in partition_names(engine)

    report = run_pass_sync(engine, RetentionConfig(readings_days=30), now)

    assert [(r.chunk.table, r.chunk.attached, r.readings, r.daily_rows) for r in report.chunks] == [
        (name(january), False, 2, 1)
    ]
    with engine.connect() as connection:
        assert sa.inspect(connection).has_table(name(january)) is False
        used = connection.execute(
            sa.select(readings_daily.c.readings, readings_daily.c.used_wh)
        ).all()
    assert [tuple(r) for r in used] == [(2, 30)]
    # another pass that planned the same chunk finds it done, and does nothing
    with engine.begin() as connection:
        again = thd_retire(connection, report.chunks[0].chunk, False)
    assert (again.readings, again.daily_rows) == (0, 0)
