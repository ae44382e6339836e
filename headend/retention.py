"""Retention: readings are kept ``retention.readings_days``, then folded into daily totals and
dropped; daily totals are kept ``retention.daily_days``; PostgreSQL's monthly partitions of
``readings`` are made ahead.

One pass (every ``retention.interval_s`` on the head-end holding the ``retention`` lease, or once
with ``amr db retention``):

1. The cut: the start of the UTC day ``readings_days`` before now. Readings before it go. On
   PostgreSQL whole partitions go, so the cut moves back to the start of the partition holding it:
   a month's readings are dropped once all of them are older than ``readings_days``.
2. What goes is split into chunks, oldest first, each retired in its own transaction: first its
   readings are folded into ``readings_daily`` (a row per meter and UTC day), then they are dropped,
   in the same transaction, so no day is ever dropped without its totals. On PostgreSQL a chunk is
   a monthly partition (detached first in a transaction of its own, which holds the table's lock
   for an instant; then folded and dropped: ``DROP TABLE``, no row-by-row delete), or a month of
   the default partition's rows (deleted, under a SHARE lock that keeps new rows out of it until
   the chunk commits). On SQLite a chunk is a UTC day, deleted with ``DELETE``: each is a short
   transaction, and ingest's single writer thread gets its turn between them.
3. Daily totals of days before ``daily_days`` are deleted.
4. PostgreSQL: the partitions of this month and ``months_ahead`` after it are created, and of any
   later month the default partition holds rows for (moving them in).

A reading that arrives for a day already folded (a gateway's journal replayed a year late) is
folded into that day's totals by the next pass; the used energy of the days after it is not
recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from .config import RetentionConfig
from .scheduler import thd_hold_lease
from .store.partitions import (
    DEFAULT_PARTITION,
    add_months,
    default_months,
    ensure_months,
    month_of,
    month_range,
    partitions,
)
from .store.schema import readings_daily

__all__ = [
    "LEASE",
    "Chunk",
    "ChunkResult",
    "RetentionError",
    "RetentionReport",
    "RetentionService",
    "readings_cut",
    "run_pass",
    "run_pass_sync",
    "thd_chunks",
]

log = Logger()
LEASE = "retention"
DAY_S = 86400
EPOCH = date(1970, 1, 1)
LOCK_TIMEOUT = "10s"  # PostgreSQL: a lock not had by then fails the step, retried next pass
WRITE_BATCH = 5000  # daily rows per executemany
T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]


class RetentionError(Exception):
    """A step that found the store other than it expected; its transaction is rolled back."""


@dataclass(frozen=True, order=True)
class Chunk:
    """Readings ``lo <= ts < hi`` of ``table`` to fold and drop; ``whole``: the table is a
    partition (``attached``) or a detached one, dropped whole."""

    lo: float
    hi: float
    table: str
    whole: bool = False
    attached: bool = True

    def describe(self) -> str:
        first = _day(self.lo)
        last = _day(math.ceil(self.hi / DAY_S) * DAY_S - DAY_S)
        span = first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"
        return f"{span} ({self.table})"


@dataclass
class ChunkResult:
    chunk: Chunk
    days: int = 0  # UTC days that had readings
    daily_rows: int = 0  # (meter, day) totals written
    readings: int = 0  # readings folded into them, and dropped


@dataclass
class RetentionReport:
    dry_run: bool
    cut: float | None = None  # readings before it are dropped
    daily_before: date | None = None  # daily totals before it are deleted
    chunks: list[ChunkResult] = field(default_factory=list)
    daily_deleted: int = 0
    partitions_created: list[str] = field(default_factory=list)

    @property
    def readings_dropped(self) -> int:
        return sum(result.readings for result in self.chunks)

    def lines(self) -> list[str]:
        """What the pass did (or, on a dry run, would do), for a person."""
        done = "would be " if self.dry_run else ""
        out = []
        if self.cut is None:
            out.append("readings: kept forever (retention.readings_days is not set)")
        else:
            out.append(f"readings before {_day(self.cut).isoformat()}:")
        # a partition a line; a run of chunks deleted from one table (SQLite's days) one line
        groups: list[list[ChunkResult]] = []
        for result in self.chunks:
            chunk, before = result.chunk, groups[-1][-1].chunk if groups else None
            if before and not (chunk.whole or before.whole) and before.table == chunk.table:
                groups[-1].append(result)
            else:
                groups.append([result])
        for group in groups:
            first, last = group[0].chunk, group[-1].chunk
            then = f"partition {first.table} dropped" if first.whole else "deleted"
            out.append(
                f"  {Chunk(first.lo, last.hi, first.table).describe()}: "
                f"{_count(sum(r.readings for r in group), 'reading')} of "
                f"{_count(sum(r.days for r in group), 'day')} {done}folded into "
                f"{_count(sum(r.daily_rows for r in group), 'daily total')}, then {then}"
            )
        if self.cut is not None and not self.chunks:
            out.append("  none stored")
        if self.daily_before is None:
            out.append("daily totals: kept forever")
        else:
            out.append(f"daily totals before {self.daily_before.isoformat()}: "
                       f"{self.daily_deleted} {done or 'were '}deleted")  # fmt: skip
        if self.partitions_created:
            out.append(f"partitions {done or ''}created: {', '.join(self.partitions_created)}")
        if self.dry_run:
            out.append("dry run: nothing changed")
        return out


def _count(number: int, what: str) -> str:
    return f"{number} {what}{'' if number == 1 else 's'}"


def _day(ts: float) -> date:
    return EPOCH + timedelta(days=math.floor(ts / DAY_S))


def readings_cut(config: RetentionConfig, now: float) -> float | None:
    """The start of the UTC day ``readings_days`` ago: readings before it may go."""
    if config.readings_days is None:
        return None
    return math.floor((now - config.readings_days * DAY_S) / DAY_S) * DAY_S


def daily_before(config: RetentionConfig, now: float) -> date | None:
    if config.daily_days is None:
        return None
    return _day(now) - timedelta(days=config.daily_days)


# -- planning -----------------------------------------------------------------------------------


def thd_chunks(connection: sa.Connection, cut: float) -> tuple[float, list[Chunk]]:
    """The chunks of readings before ``cut`` (oldest first), and the cut itself: on PostgreSQL
    moved back to the start of the partition holding it."""
    if connection.dialect.name != "postgresql":
        days = connection.execute(
            sa.select(sa.func.min(_readings.c.ts)).where(_readings.c.ts < cut)
        ).scalar()
        if days is None:
            return cut, []
        base = math.floor(days / DAY_S) * DAY_S
        numbers = connection.execute(
            sa.select(_day_number(connection, _readings, base))
            .where(_readings.c.ts < cut).distinct()
        ).scalars()  # fmt: skip
        starts = sorted(base + n * DAY_S for n in numbers)
        return cut, [Chunk(lo, lo + DAY_S, "readings") for lo in starts]
    found, has_default = partitions(connection)
    for partition in found:
        if partition.lo < cut < partition.hi:
            cut = partition.lo
    chunks = [Chunk(p.lo, p.hi, p.name, whole=True) for p in found
              if p.hi <= cut and math.isfinite(p.lo)]  # fmt: skip
    detached = connection.exec_driver_sql(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
        "AND relnamespace = current_schema()::regnamespace "
        "AND relname ~ '^readings_p[0-9]{4}_[0-9]{2}$'"
    ).scalars()
    for name in detached:  # left by a pass that stopped between detach and drop
        month = date(int(name[10:14]), int(name[15:17]), 1)
        lo, hi = month_range(month)
        chunks.append(Chunk(lo, hi, name, whole=True, attached=False))
    if has_default:
        for month in default_months(connection, below=cut):
            lo, hi = month_range(month)
            chunks.append(Chunk(lo, min(hi, cut), DEFAULT_PARTITION))
    return cut, sorted(chunks)


# -- folding into daily totals ------------------------------------------------------------------

_COLUMNS = ("id", "meter_id", "ts", "energy_wh", "credit_wh")
_readings = sa.table("readings", *(sa.column(c) for c in _COLUMNS))


def _source(name: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in _COLUMNS))


def _day_number(connection: sa.Connection, table: Any, base: float) -> Any:
    """Whole days from ``base`` (a day's start, at most every ``ts`` concerned) to ``ts``."""
    offset = (table.c.ts - sa.literal_column(repr(float(base)))) / sa.literal_column("86400.0")
    if connection.dialect.name == "postgresql":
        return sa.cast(sa.func.floor(offset), sa.BigInteger)
    return sa.cast(offset, sa.Integer)  # offset >= 0: truncation is floor


@dataclass
class _Day:
    """One meter's day, as its readings say and as ``readings_daily`` has it."""

    meter_id: str
    day: date
    readings: int
    first_ts: float | None
    first_energy_wh: int | None
    last_ts: float | None
    last_energy_wh: int | None
    credit_ts: float | None
    credit_wh: int | None

    def merged(self, other: _Day) -> _Day:
        first = min((d for d in (self, other) if d.first_ts is not None),
                    key=lambda d: d.first_ts or 0.0, default=self)  # fmt: skip
        last = max((d for d in (self, other) if d.last_ts is not None),
                   key=lambda d: d.last_ts or 0.0, default=self)  # fmt: skip
        credit = max((d for d in (self, other) if d.credit_ts is not None),
                     key=lambda d: d.credit_ts or 0.0, default=self)  # fmt: skip
        return _Day(self.meter_id, self.day, self.readings + other.readings, first.first_ts,
                    first.first_energy_wh, last.last_ts, last.last_energy_wh, credit.credit_ts,
                    credit.credit_wh)  # fmt: skip

    def row(self, base_wh: int | None) -> dict[str, Any]:
        """The ``readings_daily`` row; ``base_wh``: the register at the end of the meter's
        previous day with one (None: the day's own first reading is the base)."""
        used = None
        if self.last_energy_wh is not None:
            start = base_wh if base_wh is not None else self.first_energy_wh
            used = max(self.last_energy_wh - (start or 0), 0)  # a register reset counts 0
        return {"meter_id": self.meter_id, "day": self.day, "readings": self.readings,
                "first_ts": self.first_ts, "first_energy_wh": self.first_energy_wh,
                "last_ts": self.last_ts, "last_energy_wh": self.last_energy_wh, "used_wh": used,
                "credit_ts": self.credit_ts, "credit_wh": self.credit_wh}  # fmt: skip


def _days_of(connection: sa.Connection, chunk: Chunk) -> Iterator[_Day]:
    """Each meter's days in the chunk, ordered by meter and day."""
    source = _source(chunk.table)
    base = math.floor(chunk.lo / DAY_S) * DAY_S
    first_day = _day(base)
    energy_ts = sa.case((source.c.energy_wh.is_not(None), source.c.ts))
    credit_ts = sa.case((source.c.credit_wh.is_not(None), source.c.ts))
    numbered = (
        sa.select(source.c.meter_id, _day_number(connection, source, base).label("n"),
                  source.c.ts, energy_ts.label("energy_ts"), credit_ts.label("credit_ts"))
        .where(source.c.ts >= chunk.lo, source.c.ts < chunk.hi)
        .subquery()
    )  # fmt: skip
    groups = (
        sa.select(numbered.c.meter_id, numbered.c.n, sa.func.count().label("readings"),
                  sa.func.min(numbered.c.energy_ts).label("first_ts"),
                  sa.func.max(numbered.c.energy_ts).label("last_ts"),
                  sa.func.max(numbered.c.credit_ts).label("credit_ts"))
        .group_by(numbered.c.meter_id, numbered.c.n)
        .subquery()
    )  # fmt: skip
    first, last, credit = source.alias("first"), source.alias("last"), source.alias("credit")

    def at(alias: Any, ts: Any) -> Any:
        return sa.and_(alias.c.meter_id == groups.c.meter_id, alias.c.ts == ts)

    query = (
        sa.select(groups.c.meter_id, groups.c.n, groups.c.readings, groups.c.first_ts,
                  first.c.energy_wh, groups.c.last_ts, last.c.energy_wh, groups.c.credit_ts,
                  credit.c.credit_wh)
        .outerjoin(first, at(first, groups.c.first_ts))
        .outerjoin(last, at(last, groups.c.last_ts))
        .outerjoin(credit, at(credit, groups.c.credit_ts))
        .order_by(groups.c.meter_id, groups.c.n)
    )  # fmt: skip
    rows = connection.execute(
        query.execution_options(yield_per=WRITE_BATCH)
    )  # a cursor on the server
    for meter_id, n, count, f_ts, f_wh, l_ts, l_wh, c_ts, c_wh in rows:
        yield _Day(meter_id, first_day + timedelta(days=int(n)), int(count), f_ts, f_wh, l_ts,
                   l_wh, c_ts, c_wh)  # fmt: skip


def _previous_registers(connection: sa.Connection, before: date) -> dict[str, int]:
    """Each meter's register at the end of its last day with one before ``before``."""
    daily = readings_daily
    latest = (
        sa.select(daily.c.meter_id, sa.func.max(daily.c.day).label("day"))
        .where(daily.c.day < before, daily.c.last_energy_wh.is_not(None))
        .group_by(daily.c.meter_id)
        .subquery()
    )  # fmt: skip
    query = sa.select(daily.c.meter_id, daily.c.last_energy_wh).join(
        latest, sa.and_(daily.c.meter_id == latest.c.meter_id, daily.c.day == latest.c.day)
    )
    return {meter_id: int(wh) for meter_id, wh in connection.execute(query)}


def _stored(connection: sa.Connection, meter_id: str, day: date) -> tuple[_Day | None, int | None]:
    """The meter's totals for ``day`` if it has them, and its register before that day."""
    daily = readings_daily
    row = connection.execute(
        sa.select(daily).where(daily.c.meter_id == meter_id, daily.c.day == day)
    ).first()
    stored = None
    if row is not None:
        stored = _Day(meter_id, day, row.readings, row.first_ts, row.first_energy_wh, row.last_ts,
                      row.last_energy_wh, row.credit_ts, row.credit_wh)  # fmt: skip
    base = connection.execute(
        sa.select(daily.c.last_energy_wh)
        .where(daily.c.meter_id == meter_id, daily.c.day < day,
               daily.c.last_energy_wh.is_not(None))
        .order_by(daily.c.day.desc()).limit(1)
    ).scalar()  # fmt: skip
    return stored, None if base is None else int(base)


def _fold(connection: sa.Connection, chunk: Chunk, write: bool) -> ChunkResult:
    """Fold the chunk's readings into ``readings_daily`` (or, not ``write``, count what would be)."""
    result = ChunkResult(chunk)
    daily = readings_daily
    first_day, end_day = _day(chunk.lo), _day(chunk.hi - 1e-3) + timedelta(days=1)
    # days already folded (late readings for them): merged one by one; otherwise the usual case,
    # every base from one query
    late = connection.execute(
        sa.select(sa.func.count()).select_from(daily)
        .where(daily.c.day >= first_day, daily.c.day < end_day)
    ).scalar_one()  # fmt: skip
    bases = {} if late else _previous_registers(connection, first_day)
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(daily)
    upsert = statement.on_conflict_do_update(
        index_elements=["meter_id", "day"],
        set_={c.name: statement.excluded[c.name] for c in daily.c if not c.primary_key},
    )
    batch: list[dict[str, Any]] = []
    days: set[date] = set()
    meter, register = None, None  # the register at the end of the meter's last day with one
    for found in _days_of(connection, chunk):
        result.daily_rows += 1
        result.readings += found.readings
        days.add(found.day)
        item = found
        if late:
            stored, base = _stored(connection, found.meter_id, found.day)
            if stored is not None:
                item = stored.merged(found)
        else:
            if item.meter_id != meter:
                meter, register = item.meter_id, bases.get(item.meter_id)
            base = register
            if item.last_energy_wh is not None:
                register = item.last_energy_wh
        if write:
            batch.append(item.row(base))
            if len(batch) >= WRITE_BATCH:
                connection.execute(upsert, batch)
                batch = []
    if write and batch:
        connection.execute(upsert, batch)
    result.days = len(days)
    return result


# -- the steps of a pass, each one transaction --------------------------------------------------


def _lock_timeout(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")


def thd_detach(connection: sa.Connection, chunk: Chunk) -> None:
    """Detach the chunk's partition: from now on no reading can enter it (one for its month goes
    to the default partition instead), so what is folded is what is dropped. Nothing to do if
    another pass (``amr db retention`` beside a head-end) detached it first."""
    _lock_timeout(connection)
    if any(p.name == chunk.table for p in partitions(connection)[0]):
        connection.exec_driver_sql(f"ALTER TABLE readings DETACH PARTITION {chunk.table}")


def thd_retire(connection: sa.Connection, chunk: Chunk, dry_run: bool) -> ChunkResult:
    """Fold the chunk's readings into daily totals, then drop them (unless ``dry_run``).

    Two passes at once (``amr db retention`` beside a head-end's) take turns: the second waits
    for the first's lock, then finds nothing left."""
    if not dry_run and connection.dialect.name == "postgresql":
        found = connection.execute(sa.text("SELECT to_regclass(:name)"), {"name": chunk.table})
        if found.scalar() is None:
            return ChunkResult(chunk)  # dropped by another pass
        _lock_timeout(connection)
        # a detached partition: nobody else's; the default partition: no new row in it, and no
        # other pass on it, until this commits
        mode = "ACCESS EXCLUSIVE" if chunk.whole else "SHARE ROW EXCLUSIVE"
        connection.exec_driver_sql(f"LOCK TABLE {chunk.table} IN {mode} MODE")
    result = _fold(connection, chunk, write=not dry_run)
    if dry_run:
        return result
    if chunk.whole:
        connection.exec_driver_sql(f"DROP TABLE {chunk.table}")
    else:
        source = _source(chunk.table)
        deleted = connection.execute(
            sa.delete(source).where(source.c.ts >= chunk.lo, source.c.ts < chunk.hi)
        ).rowcount
        if deleted != result.readings:  # the lock (PostgreSQL) or the one writer (SQLite) forbid it
            raise RetentionError(
                f"{chunk.describe()}: folded {result.readings} readings but deleting "
                f"{deleted}: rolled back"
            )
    return result


def thd_drop_daily(connection: sa.Connection, before: date, dry_run: bool) -> int:
    daily = readings_daily
    if dry_run:
        return int(connection.execute(
            sa.select(sa.func.count()).select_from(daily).where(daily.c.day < before)
        ).scalar_one())  # fmt: skip
    return int(connection.execute(sa.delete(daily).where(daily.c.day < before)).rowcount)


def thd_make_partitions(connection: sa.Connection, now: float, months_ahead: int,
                        cut: float | None, dry_run: bool) -> list[str]:  # fmt: skip
    """PostgreSQL: create the partitions of this month, ``months_ahead`` after it, and of the
    months after the cut that the default partition holds rows for; the names created."""
    current = month_of(now)
    last = add_months(current, months_ahead)
    months = {add_months(current, n) for n in range(months_ahead + 1)}
    held = default_months(connection)
    months.update(m for m in held if m <= last and (cut is None or month_range(m)[0] >= cut))
    if not dry_run:
        _lock_timeout(connection)
    return ensure_months(connection, months, now, create=not dry_run)


# -- a pass -------------------------------------------------------------------------------------


async def run_pass(run: Runner, dialect: str, config: RetentionConfig, now: float,
                   dry_run: bool = False) -> RetentionReport:  # fmt: skip
    """One pass; ``run(thd_fn, *args)`` runs ``thd_fn(connection, *args)`` in a transaction of
    its own (:meth:`headend.store.Database.run`)."""
    report = RetentionReport(dry_run, daily_before=daily_before(config, now))
    horizon = readings_cut(config, now)
    if horizon is not None:
        report.cut, chunks = await run(thd_chunks, horizon)
        for chunk in chunks:
            if chunk.whole and chunk.attached and not dry_run:
                await run(thd_detach, chunk)
            report.chunks.append(await run(thd_retire, chunk, dry_run))
    if report.daily_before is not None:
        report.daily_deleted = await run(thd_drop_daily, report.daily_before, dry_run)
    if dialect == "postgresql":
        report.partitions_created = await run(
            thd_make_partitions, now, config.months_ahead, report.cut, dry_run
        )
    return report


def run_pass_sync(engine: sa.Engine, config: RetentionConfig, now: float,
                  dry_run: bool = False) -> RetentionReport:  # fmt: skip
    """:func:`run_pass` in the calling thread (``amr db retention``)."""

    async def run(function: Callable[..., T], *args: Any) -> T:
        with engine.begin() as connection:
            return function(connection, *args)

    # every step completes at once (nothing is awaited but these calls), so the coroutine runs
    # to its end in one send: no event loop needed, nor allowed (the caller may run in one)
    coroutine = run_pass(run, engine.dialect.name, config, now, dry_run)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        report: RetentionReport = finished.value
        return report
    coroutine.close()
    raise RuntimeError("a retention step waited for something")


class RetentionService(service.Service):
    """A pass every ``retention.interval_s``, on the head-end holding the ``retention`` lease."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.config: RetentionConfig = app.config.retention
        self.leader = False
        self.passes = 0
        self.readings_dropped = 0
        self.last_report: RetentionReport | None = None
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = app.clock

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's, unannotated
        self._loop.start(self.config.interval_s, now=True)

    def stopService(self) -> Any:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's, unannotated
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> defer.Deferred[RetentionReport | None]:
        done = defer.ensureDeferred(self.run_once())
        done.addErrback(lambda f: log.failure("Retention pass failed", f))
        return done

    async def run_once(self) -> RetentionReport | None:
        """Take or renew the lease, and if this process holds it, run a pass; its report."""
        app = self.app
        now = app.clock.seconds()
        self.leader = await app.db.run(thd_hold_lease, app.config.node_id, now,
                                       3 * self.config.interval_s, LEASE)  # fmt: skip
        if not self.leader:
            return None
        report = await run_pass(app.db.run, app.db.dialect, self.config, now)
        self.passes += 1
        self.readings_dropped += report.readings_dropped
        self.last_report = report
        if report.chunks or report.daily_deleted or report.partitions_created:
            log.info("Retention: {summary}", summary="; ".join(report.lines()))
        return report
