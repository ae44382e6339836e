"""PostgreSQL's monthly partitions of ``readings`` (migration 0002 makes the table partitioned).

``readings`` is range-partitioned on ``ts`` (UTC epoch seconds): one table per calendar month,
``readings_pYYYY_MM`` for ``[first second of the month, first second of the next)``, and
``readings_default`` for any row no monthly partition takes (a gateway whose clock says 2099), so
that an odd timestamp is stored, never refused. A month's partition must exist before its rows
arrive, or they land in the default partition: the migration creates the current month and
:data:`MONTHS_AHEAD` after it, and the retention service (``headend.retention``) keeps creating them
ahead. Creating one moves the rows the default partition already holds for that month into it
(PostgreSQL refuses to create a partition whose rows sit in the default one).

SQLite has no partitions; nothing here runs on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

__all__ = [
    "DEFAULT_PARTITION",
    "MONTHS_AHEAD",
    "Partition",
    "add_months",
    "alembic_include_name",
    "create_month_partition",
    "default_months",
    "ensure_months",
    "month_of",
    "month_partition_name",
    "month_range",
    "partitions",
]

DEFAULT_PARTITION = "readings_default"
MONTHS_AHEAD = 3  # months after the current one the migration creates
_BOUND = re.compile(r"FOR VALUES FROM \('?([^')]+)'?\) TO \('?([^')]+)'?\)")
# partitions are never made for a month more than this many before "now": a meter clock reset to
# 1970 or 2000 is not a month of data, its rows stay in the default partition
PAST_MONTHS_LIMIT = 120
_PARTITION_NAME = re.compile(r"readings_(p\d{4}_\d{2}|default)")


@dataclass(frozen=True, order=True)
class Partition:
    """One partition of ``readings``: ``lo <= ts < hi`` (epoch seconds); the default has none."""

    lo: float
    hi: float
    name: str

    @property
    def month(self) -> date | None:
        """The calendar month this partition holds, if it holds exactly one."""
        start = datetime.fromtimestamp(self.lo, UTC).date()
        if start.day != 1 or month_range(start) != (self.lo, self.hi):
            return None
        return start


def alembic_include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's ``include_name`` filter: the partitions are part of ``readings``, not tables of
    the schema, and autogenerate must not offer to drop them."""
    return not (type_ == "table" and name is not None and _PARTITION_NAME.fullmatch(name))


def month_of(ts: float) -> date:
    """The first day of the UTC calendar month holding ``ts``."""
    return datetime.fromtimestamp(ts, UTC).date().replace(day=1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def month_range(month: date) -> tuple[float, float]:
    """``(lo, hi)`` epoch seconds of the UTC calendar month starting on ``month``."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = add_months(month, 1)
    return start.timestamp(), datetime(end.year, end.month, 1, tzinfo=UTC).timestamp()


def month_partition_name(month: date) -> str:
    return f"readings_p{month.year:04d}_{month.month:02d}"


def partitions(connection: sa.Connection) -> tuple[list[Partition], bool]:
    """The range partitions of ``readings`` (oldest first), and whether a default one exists."""
    rows = connection.exec_driver_sql(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass"
    ).all()
    found, default = [], False
    for name, bound in rows:
        if bound == "DEFAULT":
            default = True
            continue
        match = _BOUND.fullmatch(bound)
        if match is None:  # not a range bound this module understands: leave it alone
            continue
        lo, hi = (_bound(value) for value in match.groups())
        found.append(Partition(lo, hi, name))
    return sorted(found), default


def _bound(text: str) -> float:
    if text == "MINVALUE":
        return float("-inf")
    if text == "MAXVALUE":
        return float("inf")
    return float(text)


def create_month_partition(connection: sa.Connection, month: date) -> str:
    """Create ``month``'s partition, moving into it the rows the default partition holds for it."""
    lo, hi = month_range(month)
    name = month_partition_name(month)
    moving = connection.exec_driver_sql(
        f"SELECT count(*) FROM {DEFAULT_PARTITION} WHERE ts >= {lo!r} AND ts < {hi!r}"
    ).scalar_one()
    if moving:
        connection.exec_driver_sql(
            "CREATE TEMP TABLE readings_moving (LIKE readings INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        connection.exec_driver_sql(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE ts >= {lo!r} AND ts < {hi!r} "
            "RETURNING *) INSERT INTO readings_moving SELECT * FROM moved"
        )
    connection.exec_driver_sql(
        f"CREATE TABLE {name} PARTITION OF readings FOR VALUES FROM ({lo!r}) TO ({hi!r})"
    )
    if moving:
        connection.exec_driver_sql("INSERT INTO readings SELECT * FROM readings_moving")
        connection.exec_driver_sql("DROP TABLE readings_moving")
    return name


def default_months(connection: sa.Connection, below: float | None = None) -> list[date]:
    """The months the default partition holds rows for (``ts < below`` only, if given)."""
    where = "" if below is None else f" WHERE ts < {below!r}"
    days = connection.exec_driver_sql(
        f"SELECT DISTINCT floor(ts / 86400) FROM {DEFAULT_PARTITION}{where}"
    ).scalars()
    return sorted({month_of(day * 86400) for day in days})


def ensure_months(connection: sa.Connection, months: Iterable[date], now: float,
                  create: bool = True) -> list[str]:  # fmt: skip
    """Create the partitions of ``months`` that do not exist yet, except months more than
    :data:`PAST_MONTHS_LIMIT` before ``now``; the names created (not ``create``: the names
    it would create), oldest first."""
    existing, _ = partitions(connection)
    taken = [(p.lo, p.hi) for p in existing]
    oldest = add_months(month_of(now), -PAST_MONTHS_LIMIT)
    created = []
    for month in sorted(set(months)):
        lo, hi = month_range(month)
        if month < oldest or any(lo < other_hi and other_lo < hi for other_lo, other_hi in taken):
            continue  # too old, or overlapping a partition made by hand: left to the default
        created.append(
            create_month_partition(connection, month) if create else month_partition_name(month)
        )
        taken.append((lo, hi))
    return created
