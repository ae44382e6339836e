"""Readings partitioned by month on PostgreSQL; daily totals of readings (readings_daily)

On PostgreSQL, ``readings`` becomes a table range-partitioned on ``ts`` (headend.store.partitions):
a partition per month that has rows (from ten years back on), the current month and the three
after it, and a default partition for anything else. Its primary key becomes (id, ts), since a
partitioned table's unique keys must include the partition key; UNIQUE (meter_id, ts) already
does. The rows are copied into the new table (allow the time and disk of one copy of the table);
ids and their sequence are kept. SQLite keeps its plain table.

Both: ``readings_daily``, the daily totals retention writes before it drops readings.

Downgrade copies the rows back into a plain table and drops ``readings_daily``: the daily totals
of days whose readings were dropped are lost with it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

from headend.store.partitions import (
    DEFAULT_PARTITION,
    MONTHS_AHEAD,
    add_months,
    ensure_months,
    month_of,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = 'id, meter_id, ts, meter_ts, gateway_id, energy_wh, credit_wh, "values"'


def _table_sql(name: str, primary_key: str, suffix: str) -> str:
    return (
        f"CREATE TABLE {name} ("
        "id bigint NOT NULL DEFAULT nextval('readings_id_seq'::regclass), "
        "meter_id varchar(64) NOT NULL, ts double precision NOT NULL, "
        "meter_ts double precision, gateway_id varchar(64) NOT NULL, energy_wh bigint, "
        'credit_wh bigint, "values" text NOT NULL, '
        f"CONSTRAINT pk_{name} PRIMARY KEY ({primary_key}), "
        f"CONSTRAINT uq_{name}_meter_ts UNIQUE (meter_id, ts)){suffix}"
    )


def upgrade() -> None:
    op.create_table(
        "readings_daily",
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("first_ts", sa.Float(precision=53), nullable=True),
        sa.Column("first_energy_wh", sa.BigInteger(), nullable=True),
        sa.Column("last_ts", sa.Float(precision=53), nullable=True),
        sa.Column("last_energy_wh", sa.BigInteger(), nullable=True),
        sa.Column("used_wh", sa.BigInteger(), nullable=True),
        sa.Column("credit_ts", sa.Float(precision=53), nullable=True),
        sa.Column("credit_wh", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("meter_id", "day", name=op.f("pk_readings_daily")),
    )
    with op.batch_alter_table("readings_daily", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_readings_daily_day"), ["day"], unique=False)

    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE readings RENAME TO readings_old")
    op.execute("ALTER TABLE readings_old RENAME CONSTRAINT pk_readings TO pk_readings_old")
    op.execute(
        "ALTER TABLE readings_old RENAME CONSTRAINT uq_readings_meter_ts TO uq_readings_old_meter_ts"
    )
    op.execute(_table_sql("readings", "id, ts", " PARTITION BY RANGE (ts)"))
    op.execute("ALTER SEQUENCE readings_id_seq OWNED BY readings.id")
    op.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF readings DEFAULT")
    now = time.time()
    current = month_of(now)
    days = connection.exec_driver_sql("SELECT DISTINCT floor(ts / 86400) FROM readings_old")
    months = {month_of(day * 86400) for day in days.scalars()}
    # rows dated beyond the months made ahead (a clock in 2099) stay in the default partition
    months = {m for m in months if m <= add_months(current, MONTHS_AHEAD)}
    months.update(add_months(current, n) for n in range(MONTHS_AHEAD + 1))
    ensure_months(connection, months, now)
    op.execute(f"INSERT INTO readings ({COLUMNS}) SELECT {COLUMNS} FROM readings_old")
    op.execute("DROP TABLE readings_old")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_table_sql("readings_old", "id", ""))
        op.execute(f"INSERT INTO readings_old ({COLUMNS}) SELECT {COLUMNS} FROM readings")
        op.execute("ALTER SEQUENCE readings_id_seq OWNED BY readings_old.id")
        op.execute("DROP TABLE readings")  # and its partitions
        op.execute("ALTER TABLE readings_old RENAME TO readings")
        op.execute("ALTER TABLE readings RENAME CONSTRAINT pk_readings_old TO pk_readings")
        op.execute(
            "ALTER TABLE readings RENAME CONSTRAINT uq_readings_old_meter_ts TO uq_readings_meter_ts"
        )
    with op.batch_alter_table("readings_daily", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_readings_daily_day"))
    op.drop_table("readings_daily")
