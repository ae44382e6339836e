"""What ingest writes: gateways and their meters, readings, events and the alarms they raise.

All ``thd_*`` (database thread, inside the ingest transaction). Readings go in with
``ON CONFLICT DO NOTHING`` on (meter, timestamp), so a resent batch changes nothing. On SQLite that
is the driver's ``executemany`` of plain tuples (2-3x faster than Core's executemany of dicts,
``benchmarks/headend_ingest.py``). On PostgreSQL they are COPYed (2-3x faster than INSERT, STACK.md
section 4), in the binary format: straight into ``readings`` inside a savepoint, and only if that
meets a reading already stored, again through a temporary table and
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.

A statement whose ``rowcount`` is read asks for it with ``preserve_rowcount``: SQLAlchemy 2.1 with
psycopg reports -1 for an INSERT otherwise, and -1 would count a duplicate event as new.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from itertools import chain, repeat
from sqlite3 import SQLITE_LIMIT_VARIABLE_NUMBER
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from protocols.link import EventBatch, EventState, GatewayState, ReadingBatch
from protocols.link.fast import FastReadings

from .config import MeterDefaults
from .store.schema import alarms, events, gateways, meter_groups, meters, readings

__all__ = [
    "RaisedAlarm",
    "ReadingRow",
    "reading_rows",
    "thd_apply_events",
    "thd_ensure_meters",
    "thd_gateway_state",
    "thd_register_meters",
    "thd_store_readings",
]

READING_COLUMNS = ("meter_id", "ts", "meter_ts", "gateway_id", "energy_wh", "credit_wh", "values")
# identity points a meter reports, and the meters columns they keep current
IDENTITY = {"sts_supply_group_code": "sgc", "sts_tariff_index": "tariff_index",
            "sts_key_revision_number": "key_revision", "sts_base_date": "base_date"}  # fmt: skip
_IDENTITY_POINTS = frozenset(IDENTITY)


# a row of ``readings`` in READING_COLUMNS order: what the drivers take without adaptation
ReadingRow = tuple[str, float, float | None, str, int | None, int | None, str]
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
# the columns' PostgreSQL types, in READING_COLUMNS order, for a binary COPY: psycopg then packs
# each row in C (less than half the client's CPU of a text COPY's write_row), and the server reads
# floats and integers without parsing text. A type that differs from the table's is an error.
_COPY_TYPES = ("varchar", "float8", "float8", "varchar", "int8", "int8", "text")
_COLUMNS_SQL = ", ".join(f'"{c}"' for c in READING_COLUMNS)
# rows per multi-row INSERT on SQLite (7 parameters each: within even the 32766 parameters a
# statement may have by default since SQLite 3.32); two for the default ingest_batch_rows
SQLITE_CHUNK_ROWS = 2500
_ON_CONFLICT = "ON CONFLICT (meter_id, ts) DO NOTHING"
_SQLITE_INSERT = (
    f"INSERT INTO readings ({_COLUMNS_SQL}) VALUES ({', '.join('?' for _ in READING_COLUMNS)}) "
    + _ON_CONFLICT
)
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
_NUMBERS = frozenset({int, float})
# meters.drn holds 32 characters; a meter id may have 64 (a DRN has 11 or 13 digits: an id that
# long is not one, and vending refuses it either way)
DRN_LENGTH = 32
# energy_wh and credit_wh are BIGINTs: kWh beyond this (9.2e15) is not an energy a meter has
_KWH_LIMIT = 2**63 // 1000
# the meters columns identity readings update are INTEGERs
_INTEGER_MIN, _INTEGER_LIMIT = -(2**31), 2**31


def _wh(value: Any) -> int | None:
    """kWh as sent (at most 3 decimals: the registers count 0.01 kWh) to integer Wh."""
    kind = type(value)
    if kind is not int and kind is not float and kind is not Decimal:
        return None  # text, true/false, null: not an energy
    if not -_KWH_LIMIT < value < _KWH_LIMIT:
        return None  # the value stays in the reading's values; no column holds it as Wh
    if kind is int:
        return int(value) * 1000
    if kind is float:
        return round(float(value) * 1000)
    return int(value * 1000)


def _values_json(values: Mapping[str, Any]) -> str:
    """A reading's values as compact JSON, Decimals as floats (exact for the <= 15 significant
    digits readings carry). Converting them first is faster than a ``default`` hook."""
    return _compact_json({k: float(v) if isinstance(v, Decimal) else v for k, v in values.items()})


def reading_rows(batch: ReadingBatch) -> list[ReadingRow]:
    gateway = batch.gateway
    return [
        (r.meter, r.time, r.meter_time, gateway, _wh(r.values.get("energy_import_total")),
         _wh(r.values.get("credit_remaining")), _values_json(r.values))
        for r in batch.readings
    ]  # fmt: skip


def fast_reading_rows(batch: FastReadings) -> list[ReadingRow]:
    """Rows straight from the batch's columns (``zip`` builds them in C)."""
    return list(zip(batch.meters, batch.times, batch.meter_times, repeat(batch.gateway),
                    _wh_column(batch.energy_kwh), _wh_column(batch.credit_kwh),
                    batch.values_json))  # fmt: skip


def _wh_column(column: Sequence[Any]) -> list[int | None]:
    """:func:`_wh` of each, without a call per value in the usual columns (all floats, all ints)."""
    kinds = set(map(type, column))
    if kinds and kinds <= _NUMBERS and min(column) > -_KWH_LIMIT and max(column) < _KWH_LIMIT:
        if kinds == {float}:
            return [round(v * 1000) for v in column]
        if kinds == {int}:
            return [v * 1000 for v in column]
    return list(map(_wh, column))


def _insert(connection: sa.Connection, table: sa.Table) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def thd_store_readings(connection: sa.Connection, rows: list[ReadingRow],
                       written: Callable[[], None] | None = None) -> int:  # fmt: skip
    """Insert readings, skipping (meter, ts) already stored; the number inserted.

    ``written`` is called (in this thread) as soon as what is left is mostly the database's own
    work, done without the GIL (PostgreSQL finishing the COPY, SQLite inserting whole chunks), so
    that the caller can overlap it with Python work of its own."""
    if not rows:
        if written is not None:
            written()
        return 0
    if connection.dialect.name == "postgresql":
        return _copy_readings(connection, rows, written)
    return _insert_sqlite(connection, rows, written)


def _insert_sqlite(connection: sa.Connection, rows: list[ReadingRow],
                   written: Callable[[], None] | None) -> int:  # fmt: skip
    """The rows in order: the first ``len(rows) % chunk`` with executemany, the rest in chunks of
    one multi-row INSERT each.

    sqlite3's executemany releases the GIL for each row's step and takes it back after, which
    waits up to the interpreter's switch interval (5 ms) while another thread computes: next to
    a decoding reactor thread, it inserts a row per 5 ms. One statement for a chunk of rows is one
    step, which inserts the whole chunk without the GIL; it takes the same CPU as executemany
    (benchmarks/headend_ingest.py). Its statement is prepared once per connection (sqlite3's
    statement cache: preparing it costs about 2 us per row)."""
    dbapi: Any = connection.connection.driver_connection
    limit = dbapi.getlimit(SQLITE_LIMIT_VARIABLE_NUMBER) // len(READING_COLUMNS)
    chunk = min(SQLITE_CHUNK_ROWS, limit)
    head = len(rows) % chunk
    inserted = 0
    cursor = dbapi.cursor()
    try:
        if head:
            cursor.executemany(_SQLITE_INSERT, rows[:head])
            inserted += max(int(cursor.rowcount), 0)
        if written is not None:
            written()
        statement = _sqlite_insert_rows(chunk)
        for start in range(head, len(rows), chunk):
            cursor.execute(statement, list(chain.from_iterable(rows[start : start + chunk])))
            inserted += max(int(cursor.rowcount), 0)
        return inserted
    finally:
        cursor.close()


@cache
def _sqlite_insert_rows(count: int) -> str:
    values = ", ".join([f"({', '.join('?' for _ in READING_COLUMNS)})"] * count)
    return f"INSERT INTO readings ({_COLUMNS_SQL}) VALUES {values} {_ON_CONFLICT}"


def _copy_readings(connection: sa.Connection, rows: list[ReadingRow],
                   written: Callable[[], None] | None) -> int:  # fmt: skip
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        # the usual case: none of these readings is stored yet (a resent message never gets here,
        # uplink_seen stops it), so COPY them straight in
        with connection.begin_nested():
            _copy(cursor, "readings", rows, written)
        return len(rows)
    except Exception as exc:  # psycopg's own error: the cursor is the driver's, not SQLAlchemy's
        if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        # some are stored already (a gateway's journal replayed under new seqs): the slow way
    connection.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS readings_in (meter_id varchar(64), ts double precision,"
        " meter_ts double precision, gateway_id varchar(64), energy_wh bigint, credit_wh bigint,"
        ' "values" text) ON COMMIT DELETE ROWS'
    )
    _copy(cursor, "readings_in", rows, None)
    result = connection.exec_driver_sql(
        f"INSERT INTO readings ({_COLUMNS_SQL}) SELECT {_COLUMNS_SQL} FROM readings_in "
        "ON CONFLICT (meter_id, ts) DO NOTHING"
    )
    connection.exec_driver_sql("DELETE FROM readings_in")
    return max(result.rowcount, 0)


def _copy(cursor: Any, table: str, rows: list[ReadingRow],
          written: Callable[[], None] | None) -> None:  # fmt: skip
    with cursor.copy(f"COPY {table} ({_COLUMNS_SQL}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_COPY_TYPES)
        write_row = copy.write_row
        for row in rows:
            write_row(row)
        if written is not None:
            written()  # before the end of the COPY, which waits for the server to store it all


def thd_ensure_meters(connection: sa.Connection, gateway_id: str, meter_ids: set[str],
                      defaults: MeterDefaults, now: float) -> list[str]:  # fmt: skip
    """Register meters not yet known (behind ``gateway_id``); move known ones to it. New ids."""
    return thd_register_meters(connection, {gateway_id: meter_ids}, defaults, now)[gateway_id]


def thd_register_meters(connection: sa.Connection, wanted: Mapping[str, AbstractSet[str]],
                        defaults: MeterDefaults, now: float) -> dict[str, list[str]]:  # fmt: skip
    """:func:`thd_ensure_meters` for several gateways, all looked up in one query; gateways in
    ``wanted``'s order (a meter named by two ends up behind the last). The new ids of each.

    The ids travel as one parameter (a PostgreSQL array, a JSON array SQLite's json_each reads),
    not one each: an ``IN`` of 4,000 parameters took 100 ms on PostgreSQL, this 20."""
    everyone = sorted(set().union(*wanted.values()))
    if connection.dialect.name == "postgresql":
        listed: Any = sa.any_(sa.bindparam("ids", everyone, type_=postgresql.ARRAY(sa.String)))
        named = meters.c.id == listed
    else:
        listed = sa.text("SELECT value FROM json_each(:ids)").bindparams(ids=json.dumps(everyone))
        named = meters.c.id.in_(listed)
    lookup = sa.select(meters.c.id, meters.c.gateway_id).where(named)
    known: dict[str, str | None] = {row[0]: row[1] for row in connection.execute(lookup)}
    created: dict[str, list[str]] = {}
    for gateway_id, meter_ids in wanted.items():
        new = created[gateway_id] = sorted(meter_ids - known.keys())
        if new and defaults.group:
            thd_ensure_group(connection, defaults.group)
        if new:
            connection.execute(
                _insert(connection, meters).on_conflict_do_nothing(index_elements=["id"]),
                [{"id": m, "drn": m[:DRN_LENGTH], "gateway_id": gateway_id, "group_name": defaults.group,
                  "sgc": defaults.sgc, "tariff_index": defaults.tariff_index,
                  "key_revision": defaults.key_revision, "key_type": defaults.key_type,
                  "base_date": defaults.base_date, "algorithm": defaults.algorithm,
                  "registered_at": now} for m in new],
            )  # fmt: skip
        moved = sorted(m for m in meter_ids if m in known and known[m] != gateway_id)
        if moved:
            connection.execute(
                sa.update(meters).where(meters.c.id.in_(moved)).values(gateway_id=gateway_id)
            )
        known.update(dict.fromkeys(meter_ids, gateway_id))
    return created


def thd_ensure_group(connection: sa.Connection, name: str) -> None:
    """A meter group, created on first use."""
    connection.execute(
        _insert(connection, meter_groups)
        .values(name=name)
        .on_conflict_do_nothing(index_elements=["name"])
    )


def _fits_integer(value: object) -> bool:
    # true/false is not a number here (int(str(True)) would fail the whole transaction)
    return type(value) is int and _INTEGER_MIN <= value < _INTEGER_LIMIT


def thd_update_identity(connection: sa.Connection, batch: ReadingBatch) -> None:
    """Keep a meter's STS attributes as the meter itself reports them (daily identity reads)."""
    for reading in batch.readings:
        if _IDENTITY_POINTS.isdisjoint(reading.values):
            continue  # the usual reading: no identity point in it
        values = {
            column: int(str(reading.values[point]))
            for point, column in IDENTITY.items()
            if _fits_integer(reading.values.get(point))
        }
        if values:
            connection.execute(sa.update(meters).where(meters.c.id == reading.meter).values(values))


def thd_gateway_state(connection: sa.Connection, state: GatewayState, defaults: MeterDefaults,
                      now: float) -> list[str]:  # fmt: skip
    """A gateway's retained state: online or not, its version, and the meters it announces."""
    thd_touch_gateway(connection, state.gateway, now, online=state.online, version=state.version)
    if state.meters:
        return thd_ensure_meters(connection, state.gateway, set(state.meters), defaults, now)
    return []


def thd_touch_gateway(connection: sa.Connection, gateway_id: str, now: float,
                      **values: Any) -> None:  # fmt: skip
    values = {k: v for k, v in values.items() if v is not None}
    connection.execute(
        _insert(connection, gateways)
        .values(id=gateway_id, first_seen_at=now, last_seen_at=now, **values)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    connection.execute(
        sa.update(gateways).where(gateways.c.id == gateway_id).values(last_seen_at=now, **values)
    )


@dataclass(frozen=True, slots=True)
class RaisedAlarm:
    id: int
    meter_id: str
    gateway_id: str
    kind: str
    severity: str
    detail: str
    raised_at: float


def thd_apply_events(connection: sa.Connection, batch: EventBatch, severity: dict[str, str],
                     now: float) -> list[RaisedAlarm]:  # fmt: skip
    """Store events; raise and clear alarms (one open alarm per meter and kind). New alarms."""
    raised: list[RaisedAlarm] = []
    for event in batch.events:
        inserted = connection.execute(
            _insert(connection, events)
            .values(gateway_id=batch.gateway, meter_id=event.meter, ts=event.time,
                    kind=event.kind, state=event.state.value, detail=event.detail)
            .on_conflict_do_nothing(index_elements=["meter_id", "ts", "kind", "state"])
            .execution_options(preserve_rowcount=True)
        ).rowcount  # fmt: skip
        if not inserted or event.state is EventState.EVENT:
            continue
        open_alarm = sa.and_(alarms.c.meter_id == event.meter, alarms.c.kind == event.kind,
                             alarms.c.state == "open")  # fmt: skip
        if event.state is EventState.CLEARED:
            connection.execute(
                sa.update(alarms).where(open_alarm).values(state="cleared", cleared_at=event.time)
            )
            continue
        if connection.execute(sa.select(alarms.c.id).where(open_alarm)).first() is not None:
            continue
        level = severity.get(event.kind, "warning")
        alarm_id = connection.execute(
            sa.insert(alarms)
            .values(meter_id=event.meter, gateway_id=batch.gateway, kind=event.kind,
                    severity=level, state="open", raised_at=event.time, detail=event.detail)
            .returning(alarms.c.id)
        ).scalar_one()  # fmt: skip
        raised.append(RaisedAlarm(int(alarm_id), event.meter, batch.gateway, event.kind, level,
                                  event.detail, event.time))  # fmt: skip
    return raised


def thd_days_of_credit(connection: sa.Connection, meter_id: str, now: float,
                       window_days: int) -> float | None:  # fmt: skip
    """Days of credit left at the recent rate of consumption, or None when it cannot be told.

    The rate is the energy register's rise over the last ``window_days`` (or as much of that as
    has readings, at least an hour), and the credit is the latest reported.
    """
    since = now - window_days * 86400
    window = connection.execute(
        sa.select(sa.func.min(readings.c.ts), sa.func.max(readings.c.ts),
                  sa.func.min(readings.c.energy_wh), sa.func.max(readings.c.energy_wh))
        .where(readings.c.meter_id == meter_id, readings.c.ts >= since,
               readings.c.energy_wh.is_not(None))
    ).one()  # fmt: skip
    credit = connection.execute(
        sa.select(readings.c.credit_wh)
        .where(readings.c.meter_id == meter_id, readings.c.credit_wh.is_not(None))
        .order_by(readings.c.ts.desc()).limit(1)
    ).scalar()  # fmt: skip
    first_ts, last_ts, low, high = window
    if credit is None or first_ts is None or last_ts - first_ts < 3600 or high <= low:
        return None
    per_day = (high - low) / ((last_ts - first_ts) / 86400)
    return float(max(credit, 0) / per_day)
