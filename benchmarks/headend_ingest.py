"""Readings per second through the head-end's ingest, against a raw bulk insert of the same rows.

Run from the repository root::

    python -m benchmarks.headend_ingest            # 100,000 readings, 2 rounds (about 3 min)
    python -m benchmarks.headend_ingest --quick    # 10,000 readings, 1 round (about 15 s)
    python -m benchmarks.headend_ingest --json     # the same figures as JSON
    python -m benchmarks.headend_ingest --check    # exit 1 if ingest < 0.5 x the raw insert

The workload: 40 gateways (``--quick`` 10) with 100 meters each send ReadingBatch messages of 100
readings (one poll cycle of their meters), 25 messages each (``--quick`` 10), interleaved as they
would arrive from the broker. Each reading carries the 25 values of the ``amr-prepaid-v1`` map a
meter reports in a full read (energy per band, credit, instantaneous values, relay, status, clock,
tariff band, TOU version, last token, four months of history; identity points are read daily and
are left out), typed as the concentrator sends them (scaled points as Decimal, the rest int). The
payloads are encoded with :func:`protocols.link.encode_message` before anything is timed.

Ingest, timed: the real :class:`headend.ingest.Ingest` on a real :class:`headend.store.Database`
(its thread pool; one writer thread on SQLite) in a running reactor. A stand-in for the broker
delivers the payloads as paho would, at most 100 unacknowledged QoS 1 messages at a time (the
head-end's ``max_inflight_messages``), each freed slot refilled on the reactor's next turn. So
decoding (:func:`~protocols.link.decode_message`, on the reactor thread) overlaps the previous
transaction, and the transactions are the real group commits: everything pending, up to
``database.ingest_batch_rows`` (5000) readings, in one ``thd_ingest``. The clock runs from the first
delivery to the broker's ack (after commit) of the last message. Before it starts, each gateway's
retained state message (online, its 100 meters) is ingested, as when the head-end subscribes, and
on PostgreSQL the tables are ANALYZEd, as autovacuum does within a minute of that many new rows:
the timed run is the steady state, gateways and meters known. (Without the statistics, the plan
psycopg's prepared SELECT of a batch's meters settles on after 5 runs takes ~15 ms instead of ~1,
and PostgreSQL ingest runs at half the rate.) Then the same payloads are delivered again: every
message is a duplicate, nothing new may be stored; its rate is reported.

Baselines, same rows (built by :func:`headend.records.reading_rows` from the decoded messages
before timing), same database server and settings, a freshly migrated database each, transactions
of 5000 rows, in this process:

* SQLite (file, WAL, ``synchronous=FULL``, as :func:`headend.store.make_engine` sets it): Core
  ``conn.execute(insert(readings), rows)`` with dicts, and the driver's ``executemany`` with tuples.
* PostgreSQL (a server started here by :class:`tests.support.postgres.Postgres`; its test settings,
  ``fsync = off``): ``COPY readings FROM STDIN`` with psycopg's ``write_row``, and Core executemany.

The ratio is ingest readings/s over the fastest of those raw paths (reported, with the ratio to each).
A full run repeats everything twice on fresh databases and keeps each figure's best. The garbage
collector is off while anything is timed (ingest and baselines alike).

The run is valid only if: every message was acknowledged to the broker only after the transaction
holding it committed, and to its gateway (application ack) as well; every reading was stored once
(the same count, energy sum and values length as the baseline's); every meter was registered; no
gap, malformed message or failed transaction was reported; the second delivery stored nothing and
counted every message as a duplicate.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest
import sqlalchemy as sa
from twisted.internet import defer

from benchmarks.cli import benchmark_main
from headend.config import HeadendConfig
from headend.ingest import Ingest, IngestResult
from headend.records import READING_COLUMNS, reading_rows
from headend.store import Database, make_engine, upgrade
from headend.store.schema import gateways, meters, readings
from protocols.link import (
    Ack,
    GatewayState,
    Reading,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
)
from protocols.link.fast import FastReadings
from simulator.workload import POLL_INTERVAL_S, T0, FullRead
from tests.support.postgres import Postgres

__all__ = ["BackendResult", "Workload", "main", "make_workload", "run_benchmark"]

REPO_ROOT = Path(__file__).resolve().parent.parent
FULL = (40, 25)  # gateways, messages per gateway
QUICK = (10, 10)
METERS_PER_GATEWAY = 100  # one reading per meter per message: a poll cycle
FULL_ROUNDS = 2
QUICK_ROUNDS = 1
INFLIGHT = 100  # unacknowledged QoS 1 messages the broker sends the head-end (HeadendLink)
TARGET_RATIO = 0.5


# --- the workload ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    gateways: int
    messages_per_gateway: int
    points: tuple[str, ...]
    payloads: tuple[tuple[str, bytes], ...]  # (topic, payload), in arrival order
    ids: tuple[tuple[str, int], ...]  # (gateway, seq) of each payload
    readings: int
    states: tuple[tuple[str, bytes], ...]  # each gateway's retained state: online, its meters

    @property
    def messages(self) -> int:
        return len(self.payloads)

    @property
    def meters(self) -> int:
        return self.gateways * METERS_PER_GATEWAY

    @property
    def payload_bytes(self) -> int:
        return sum(len(p) for _, p in self.payloads)


def make_workload(gateways: int, messages_per_gateway: int, seed: int = 1) -> Workload:
    rng = random.Random(seed)
    full_read = FullRead()  # exact: scaled values as Decimal, as the concentrator decodes them
    payloads: list[tuple[str, bytes]] = []
    ids: list[tuple[str, int]] = []
    states: list[tuple[str, bytes]] = []
    for g in range(gateways):
        gateway = f"gw-bench-{g:03d}"
        announced = tuple(f"{47_000_000_000 + g * METERS_PER_GATEWAY + m:011d}"
                          for m in range(METERS_PER_GATEWAY))  # fmt: skip
        topic, payload = encode_message(GatewayState(gateway, T0, True, "bench", announced))
        states.append((gateway_topic(gateway, topic), payload))
    for step in range(1, messages_per_gateway + 1):
        for g in range(gateways):
            gateway = f"gw-bench-{g:03d}"
            at = T0 + step * POLL_INTERVAL_S
            batch = []
            for m in range(METERS_PER_GATEWAY):
                index = g * METERS_PER_GATEWAY + m
                values = full_read.values(index, step, rng, at)
                meter_clock = values["meter_clock"]
                assert isinstance(meter_clock, int)
                batch.append(Reading(f"{47_000_000_000 + index:011d}", at + m * 0.5, values,
                                     float(meter_clock)))  # fmt: skip
            message = ReadingBatch(gateway, step, at + METERS_PER_GATEWAY * 0.5, tuple(batch))
            topic, payload = encode_message(message)
            payloads.append((gateway_topic(gateway, topic), payload))
            ids.append((gateway, step))
    names = full_read.names
    count = gateways * messages_per_gateway * METERS_PER_GATEWAY
    return Workload(gateways, messages_per_gateway, names, tuple(payloads), tuple(ids), count,
                    tuple(states))  # fmt: skip


def baseline_rows(workload: Workload) -> list[tuple[Any, ...]]:
    """The rows ingest stores, in READING_COLUMNS order, built by the ingest's own row builder."""
    rows: list[tuple[Any, ...]] = []
    for _, payload in workload.payloads:
        message = decode_message(Topic.READINGS, payload)
        assert isinstance(message, ReadingBatch)
        for row in reading_rows(message):
            rows.append(_as_tuple(row))
    return rows


def _as_tuple(row: Any) -> tuple[Any, ...]:
    if isinstance(row, dict):
        return tuple(row[c] for c in READING_COLUMNS)
    return tuple(row)


def decode_us_per_reading(workload: Workload) -> tuple[float, float]:
    """µs per reading of decode_message alone, on this thread (what ingest spends before its
    transaction), and of the ``json.loads`` inside it (the floor for any JSON decoder)."""
    with _gc_paused():
        start = time.perf_counter()
        for _, payload in workload.payloads:
            decode_message(Topic.READINGS, payload)
        decode = time.perf_counter() - start
        start = time.perf_counter()
        for _, payload in workload.payloads:
            json.loads(payload, parse_float=Decimal)
        parse = time.perf_counter() - start
    return decode / workload.readings * 1e6, parse / workload.readings * 1e6


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- ingest, through the real Ingest and Database -----------------------------------------------------


@dataclass
class Transaction:
    messages: int
    readings: int
    seconds: float


class TimedDatabase(Database):
    """The head-end's Database, noting each ingest transaction and what it committed.

    A failed transaction fires ``failed`` (Ingest itself would retry it for ever); the pool is
    stopped when the reactor shuts down, so an interrupted run still exits."""

    def __init__(self, reactor: Any, url: str) -> None:
        super().__init__(reactor, url)
        self.transactions: list[Transaction] = []
        self.committed: set[tuple[str, int]] = set()
        self.failed: defer.Deferred[str] = defer.Deferred()
        reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    async def run(self, function: Any, *args: Any, **kw: Any) -> Any:
        messages = args[0] if args and isinstance(args[0], list) else []
        start = time.perf_counter()
        try:
            result = await super().run(function, *args, **kw)
        except Exception as exc:
            if not self.failed.called:
                self.failed.callback(f"{type(exc).__name__}: {exc}")
            raise
        elapsed = time.perf_counter() - start
        # readings come as ReadingBatch (the full decoder) or FastReadings (ingest's fast path)
        count = sum(len(m.meters) if isinstance(m, FastReadings) else len(m.readings)
                    for m in messages if isinstance(m, ReadingBatch | FastReadings))  # fmt: skip
        self.transactions.append(Transaction(len(messages), count, elapsed))
        self.committed.update((m.gateway, m.seq) for m in messages if hasattr(m, "seq"))
        return result

    async def until(self, done: defer.Deferred[None], what: str) -> None:
        """Wait for ``done``; raise if an ingest transaction fails first."""
        racing: list[defer.Deferred[Any]] = [done, self.failed]
        first = await defer.DeferredList(racing, fireOnOneCallback=True, consumeErrors=True)
        if first[1] == 1:
            raise RuntimeError(f"an ingest transaction failed during {what}: {first[0]}")


@dataclass
class Pass:
    """One delivery of every payload to a fresh Ingest."""

    seconds: float
    messages: int
    readings_offered: int
    stored: int  # readings the ingest reported inserted
    duplicates: int
    gaps: int
    malformed: int
    failures: int
    broker_acks: int
    acked_before_commit: int
    app_acked: dict[str, set[int]]
    transactions: list[Transaction]

    @property
    def rate(self) -> float:
        return self.readings_offered / self.seconds

    @property
    def mean_batch(self) -> float:
        return self.readings_offered / len(self.transactions) if self.transactions else 0.0

    @property
    def store_us_per_reading(self) -> float:
        """Wall time inside Database.run (thread hop, thd_ingest, commit) per reading."""
        return sum(t.seconds for t in self.transactions) / self.readings_offered * 1e6


class BrokerStandIn:
    """Delivers payloads to ``ingest.receive`` as the broker and paho do: at most ``inflight``
    unacknowledged messages; a PUBACK (ingest's ack after commit) frees a slot, refilled on the
    reactor's next turn."""

    def __init__(self, reactor: Any, ingest: Ingest, db: TimedDatabase, workload: Workload,
                 inflight: int) -> None:  # fmt: skip
        self.reactor = reactor
        self.ingest = ingest
        self.db = db
        self.payloads = workload.payloads
        self.ids = workload.ids
        self.inflight = inflight
        self.next = 0
        self.acked = 0
        self.acked_before_commit = 0
        self.done: defer.Deferred[None] = defer.Deferred()

    def start(self) -> defer.Deferred[None]:
        for _ in range(min(self.inflight, len(self.payloads))):
            self._deliver()
        return self.done

    def _deliver(self) -> None:
        if self.next >= len(self.payloads):
            return
        index = self.next
        self.next += 1
        topic, payload = self.payloads[index]
        self.ingest.receive(topic, payload, partial(self._on_puback, index))

    def _on_puback(self, index: int) -> None:
        if self.ids[index] not in self.db.committed:
            self.acked_before_commit += 1
        self.acked += 1
        if self.acked == len(self.payloads):
            self.done.callback(None)
        else:
            self.reactor.callLater(0, self._deliver)


async def announce(reactor: Any, db: TimedDatabase, config: HeadendConfig,
                   workload: Workload) -> None:  # fmt: skip
    """Each gateway's retained state, as the broker delivers it when the head-end subscribes: the
    gateways and their meters registered before anything is timed, as in a running system."""
    ingest = Ingest(db, reactor, config, lambda topic, payload: None)
    acked: list[None] = []
    for topic, payload in workload.states:
        ingest.receive(topic, payload, lambda: acked.append(None))
    await db.until(ingest.drained(), "the gateways' announcements")
    if len(acked) != len(workload.states) or ingest.failures or ingest.malformed:
        raise RuntimeError("the gateways' state messages were not all ingested")
    if db.dialect == "postgresql":
        # what autovacuum does within a minute of the 4,000 new meters: without statistics the
        # plan psycopg's prepared statements settle on reads each batch's meters in ~15 ms, not 1
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


async def ingest_pass(reactor: Any, db: TimedDatabase, config: HeadendConfig,
                      workload: Workload) -> Pass:  # fmt: skip
    app_acked: dict[str, set[int]] = {}

    def publish(topic: str, payload: bytes) -> None:
        ack = decode_message(Topic.ACK, payload)
        assert isinstance(ack, Ack)
        seqs = app_acked.setdefault(topic.split("/")[3], set())
        for first, last in ack.ranges:
            seqs.update(range(first, last + 1))

    def on_committed(result: IngestResult) -> None:
        """Nothing follows a reading batch (no outcomes, no alarms)."""

    ingest = Ingest(db, reactor, config, publish, on_committed)
    db.transactions = []
    broker = BrokerStandIn(reactor, ingest, db, workload, INFLIGHT)
    with _gc_paused():
        start = time.perf_counter()
        await db.until(broker.start(), "ingest")
        elapsed = time.perf_counter() - start
    await ingest.drained()  # the PUBACKs go out before Ingest counts the last transaction
    return Pass(elapsed, ingest.messages, workload.readings, ingest.readings, ingest.duplicates, ingest.gaps,
                ingest.malformed, ingest.failures, broker.acked, broker.acked_before_commit,
                app_acked, list(db.transactions))  # fmt: skip


# --- the raw baselines -------------------------------------------------------------------------------


@dataclass
class BaselineRun:
    key: str
    name: str
    seconds: float
    readings: int

    @property
    def rate(self) -> float:
        return self.readings / self.seconds


COLUMNS_SQL = ", ".join(f'"{c}"' for c in READING_COLUMNS)


def _chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for first in range(0, len(rows), size):
        yield rows[first : first + size]


def core_executemany(engine: sa.Engine, rows: Sequence[tuple[Any, ...]], size: int) -> float:
    dicts = [dict(zip(READING_COLUMNS, row, strict=True)) for row in rows]
    statement = sa.insert(readings)
    with _gc_paused():
        start = time.perf_counter()
        for chunk in _chunks(dicts, size):
            with engine.begin() as connection:
                connection.execute(statement, list(chunk))
        return time.perf_counter() - start


def sqlite_executemany(engine: sa.Engine, rows: Sequence[tuple[Any, ...]], size: int) -> float:
    marks = ", ".join("?" for _ in READING_COLUMNS)
    sql = f"INSERT INTO readings ({COLUMNS_SQL}) VALUES ({marks})"
    with _gc_paused():
        start = time.perf_counter()
        for chunk in _chunks(rows, size):
            with engine.begin() as connection:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cursor.executemany(sql, chunk)
                cursor.close()
        return time.perf_counter() - start


def postgres_copy(engine: sa.Engine, rows: Sequence[tuple[Any, ...]], size: int) -> float:
    sql = f"COPY readings ({COLUMNS_SQL}) FROM STDIN"
    with _gc_paused():
        start = time.perf_counter()
        for chunk in _chunks(rows, size):
            with engine.begin() as connection:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                with cursor.copy(sql) as copy:
                    for row in chunk:
                        copy.write_row(row)
        return time.perf_counter() - start


BaselineFn = Callable[[sa.Engine, Sequence[tuple[Any, ...]], int], float]
BASELINES: dict[str, list[tuple[str, str, BaselineFn]]] = {
    "sqlite": [
        ("core_executemany", "Core insert(readings), dicts", core_executemany),
        ("dbapi_executemany", "sqlite3 executemany, tuples", sqlite_executemany),
    ],
    "postgresql": [
        ("copy", "COPY readings FROM STDIN, write_row", postgres_copy),
        ("core_executemany", "Core insert(readings), dicts", core_executemany),
    ],
}


# --- one backend -------------------------------------------------------------------------------------


@dataclass
class Fingerprint:
    """What was stored, to compare ingest's rows with the baseline's."""

    count: int
    energy_wh: int
    credit_wh: int
    values_chars: int


def fingerprint(engine: sa.Engine) -> Fingerprint:
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(readings.c.energy_wh), 0),
                sa.func.coalesce(sa.func.sum(readings.c.credit_wh), 0),
                sa.func.coalesce(sa.func.sum(sa.func.length(readings.c["values"])), 0),
            )
        ).one()
    return Fingerprint(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def count_meters(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        meter_count = connection.execute(sa.select(sa.func.count()).select_from(meters)).scalar()
        max_seq = connection.execute(sa.select(sa.func.min(gateways.c.max_seq))).scalar()
    return int(meter_count or 0), int(max_seq or 0)


@dataclass
class BackendResult:
    name: str
    description: str
    ingest: Pass
    duplicates: Pass
    baselines: dict[str, BaselineRun]
    ingest_fingerprint: Fingerprint
    after_duplicates: Fingerprint
    baseline_fingerprint: Fingerprint
    meters_registered: int
    min_max_seq: int
    workload: Workload
    rounds: int
    errors: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> BaselineRun:
        return max(self.baselines.values(), key=lambda b: b.rate)

    @property
    def ratio(self) -> float:
        return self.ingest.rate / self.baseline.rate

    @property
    def duplicates_ratio(self) -> float:
        return self.duplicates.rate / self.baseline.rate

    @property
    def checks(self) -> dict[str, bool]:
        w = self.workload
        every_seq = {f"gw-bench-{g:03d}": set(range(1, w.messages_per_gateway + 1))
                     for g in range(w.gateways)}  # fmt: skip
        first, again = self.ingest, self.duplicates
        return {
            "every_message_committed_then_acked": first.broker_acks == w.messages
            and again.broker_acks == w.messages
            and first.acked_before_commit == 0
            and again.acked_before_commit == 0,
            "every_seq_acked_to_its_gateway": first.app_acked == every_seq
            and again.app_acked == every_seq,
            "every_reading_stored_once": first.stored == w.readings
            and self.ingest_fingerprint.count == w.readings,
            "same_rows_as_baseline": self.ingest_fingerprint == self.baseline_fingerprint,
            "every_meter_registered": self.meters_registered == w.meters,
            "max_seq_advanced": self.min_max_seq == w.messages_per_gateway,
            "no_gap_malformed_or_failure": first.gaps + first.malformed + first.failures == 0
            and again.gaps + again.malformed + again.failures == 0,
            "duplicates_store_nothing": again.stored == 0
            and again.duplicates == w.messages
            and self.after_duplicates == self.ingest_fingerprint,
            "group_commits_up_to_batch_rows": bool(first.transactions)
            and max(t.readings for t in first.transactions)
            <= HeadendConfig().database.ingest_batch_rows + METERS_PER_GATEWAY,
        }

    @property
    def valid(self) -> bool:
        return all(self.checks.values()) and not self.errors

    @property
    def passed(self) -> bool:
        return self.valid and self.ratio >= TARGET_RATIO


def _best(runs: list[Pass]) -> Pass:
    return min(runs, key=lambda p: p.seconds)


async def run_backend(reactor: Any, name: str, description: str, new_url: Callable[[str], str],
                      workload: Workload, rows: list[tuple[Any, ...]], rounds: int,
                      config: HeadendConfig) -> BackendResult:  # fmt: skip
    size = config.database.ingest_batch_rows
    firsts: list[Pass] = []
    agains: list[Pass] = []
    baselines: dict[str, list[BaselineRun]] = {}
    ingest_print = after_print = baseline_print = Fingerprint(0, 0, 0, 0)
    meter_count = max_seq = 0
    for round_no in range(rounds):
        for key, label, insert in BASELINES[name]:
            engine = make_engine(new_url(f"base_{key}_{round_no}"))
            try:
                upgrade(engine)
                seconds = insert(engine, rows, size)
                baselines.setdefault(key, []).append(
                    BaselineRun(key, label, seconds, workload.readings)
                )
                baseline_print = fingerprint(engine)
            finally:
                engine.dispose()
        db = TimedDatabase(reactor, new_url(f"ingest_{round_no}"))
        try:
            upgrade(db.engine)
            db.start()
            await announce(reactor, db, config, workload)
            firsts.append(await ingest_pass(reactor, db, config, workload))
            ingest_print = fingerprint(db.engine)
            meter_count, max_seq = count_meters(db.engine)
            agains.append(await ingest_pass(reactor, db, config, workload))
            after_print = fingerprint(db.engine)
        finally:
            db.stop()
    best = {key: min(runs, key=lambda b: b.seconds) for key, runs in baselines.items()}
    return BackendResult(name, description, _best(firsts), _best(agains), best, ingest_print,
                         after_print, baseline_print, meter_count, max_seq, workload, rounds)  # fmt: skip


async def run_all(reactor: Any, folder: Path, postgres: Postgres, workload: Workload,
                  rounds: int) -> list[BackendResult]:  # fmt: skip
    config = HeadendConfig()
    rows = baseline_rows(workload)
    results = [
        await run_backend(reactor, "sqlite", "SQLite file, WAL, synchronous=FULL",
                          lambda n: f"sqlite:///{folder}/{n}.db", workload, rows, rounds, config)
    ]  # fmt: skip
    results.append(
        await run_backend(reactor, "postgresql", "PostgreSQL, test server (fsync=off)",
                          postgres.create_database, workload, rows, rounds, config)
    )  # fmt: skip
    return results


def run_in_reactor(work: Callable[[Any], Any]) -> Any:
    """Run ``work(reactor)`` (a coroutine function) in the global reactor; its result or its error."""
    from twisted.internet import reactor

    outcome: list[Any] = []

    def start() -> None:
        done = defer.ensureDeferred(work(reactor))
        done.addBoth(outcome.append)
        done.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    if not outcome:
        raise KeyboardInterrupt
    result = outcome[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


@dataclass
class Report:
    workload: Workload
    rounds: int
    decode_us: float
    json_us: float
    backends: list[BackendResult]
    postgres_version: str

    @property
    def valid(self) -> bool:
        return all(b.valid for b in self.backends)

    @property
    def passed(self) -> bool:
        return all(b.passed for b in self.backends)


def run_benchmark(quick: bool = False) -> Report:
    gateways_count, per_gateway = QUICK if quick else FULL
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    workload = make_workload(gateways_count, per_gateway)
    decodes = [decode_us_per_reading(workload) for _ in range(rounds)]
    decode_us, json_us = min(d for d, _ in decodes), min(j for _, j in decodes)
    with tempfile.TemporaryDirectory(prefix="headend-ingest-") as tmp:
        folder = Path(tmp)
        postgres = Postgres(folder / "pg")
        try:
            postgres.start()
            with postgres.admin() as conn:
                row = conn.execute("SHOW server_version").fetchone()
                version = str(row[0]) if row else "?"
            backends = run_in_reactor(
                lambda reactor: run_all(reactor, folder, postgres, workload, rounds)
            )
        finally:
            postgres.stop()
    return Report(workload, rounds, decode_us, json_us, backends, version)


# --- reporting -------------------------------------------------------------------------------------


def _pass_json(p: Pass) -> dict[str, Any]:
    batches = [t.readings for t in p.transactions]
    return {
        "seconds": p.seconds,
        "readings": p.readings_offered,
        "readings_per_s": p.rate,
        "messages": p.messages,
        "stored": p.stored,
        "duplicate_messages": p.duplicates,
        "transactions": len(p.transactions),
        "mean_readings_per_transaction": p.mean_batch,
        "max_readings_per_transaction": max(batches, default=0),
        "store_us_per_reading": p.store_us_per_reading,
        "broker_acks": p.broker_acks,
        "acked_before_commit": p.acked_before_commit,
        "gaps": p.gaps,
        "malformed": p.malformed,
        "failures": p.failures,
    }


def as_json(report: Report, quick: bool) -> dict[str, Any]:
    w = report.workload
    return {
        "benchmark": "headend_ingest",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": quick,
        "rounds": report.rounds,
        "postgres_version": report.postgres_version,
        "workload": {
            "gateways": w.gateways,
            "meters": w.meters,
            "messages": w.messages,
            "messages_per_gateway": w.messages_per_gateway,
            "readings_per_message": METERS_PER_GATEWAY,
            "values_per_reading": len(w.points),
            "points": list(w.points),
            "readings": w.readings,
            "payload_bytes": w.payload_bytes,
            "inflight_messages": INFLIGHT,
            "ingest_batch_rows": HeadendConfig().database.ingest_batch_rows,
        },
        "decode_us_per_reading": report.decode_us,
        "json_loads_us_per_reading": report.json_us,
        "backends": [
            {
                "name": b.name,
                "database": b.description,
                "ingest": _pass_json(b.ingest),
                "duplicates": _pass_json(b.duplicates),
                "baselines": [
                    {
                        "key": r.key,
                        "name": r.name,
                        "seconds": r.seconds,
                        "readings_per_s": r.rate,
                        "ratio": b.ingest.rate / r.rate,
                    }
                    for r in b.baselines.values()
                ],
                "baseline": b.baseline.key,
                "baseline_readings_per_s": b.baseline.rate,
                "ratio": b.ratio,
                "duplicates_ratio": b.duplicates_ratio,
                "meters_registered": b.meters_registered,
                "stored_readings": b.ingest_fingerprint.count,
                "checks": b.checks,
                "valid": b.valid,
                "passed": b.passed,
                "errors": b.errors,
            }
            for b in report.backends
        ],
        "target_ratio": TARGET_RATIO,
        "valid": report.valid,
        "passed": report.passed,
    }


def as_table(report: Report, quick: bool) -> str:
    w = report.workload
    lines = [
        f"head-end ingest{' (--quick)' if quick else ''}: {w.readings:,} readings = {w.messages:,} "
        f"ReadingBatch messages of {METERS_PER_GATEWAY} readings x {len(w.points)} values "
        f"({w.payload_bytes / w.messages / 1024:.0f} KiB each), {w.gateways} gateways, "
        f"{w.meters:,} meters; best of {report.rounds} round(s)",
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, PostgreSQL "
        f"{report.postgres_version}; broker stand-in: {INFLIGHT} messages in flight; group commit "
        f"up to {HeadendConfig().database.ingest_batch_rows} readings",
        f"decode_message alone: {report.decode_us:.1f} µs/reading "
        f"({1e6 / report.decode_us:,.0f} readings/s on one thread), of which json.loads "
        f"{report.json_us:.1f} µs",
        "",
        f"{'database':<12}{'path':<48}{'readings/s':>12}{'µs/reading':>12}{'x baseline':>12}",
    ]
    for b in report.backends:
        rows: list[tuple[str, float, str]] = [
            (f"raw: {r.name}" + (" [baseline]" if r is b.baseline else ""), r.rate,
             f"{b.baseline.rate and r.rate / b.baseline.rate:.2f}")
            for r in b.baselines.values()
        ]  # fmt: skip
        rows.append(("ingest: decode + Ingest + thd_ingest, commit", b.ingest.rate,
                     f"{b.ratio:.2f}"))  # fmt: skip
        rows.append(("ingest again: every message a duplicate", b.duplicates.rate,
                     f"{b.duplicates_ratio:.2f}"))  # fmt: skip
        for index, (label, rate, ratio) in enumerate(rows):
            name = b.name if index == 0 else ""
            lines.append(f"{name:<12}{label:<48}{rate:>12,.0f}{1e6 / rate:>12.1f}{ratio:>11}x")
        failed = [k for k, ok in b.checks.items() if not ok]
        lines.append(
            f"{'':<12}{b.description}; {len(b.ingest.transactions)} transactions, mean "
            f"{b.ingest.mean_batch:,.0f} readings, {b.ingest.store_us_per_reading:.1f} µs/reading "
            f"in Database.run; duplicates stored {b.duplicates.stored}"
        )
        lines.append(f"{'':<12}checks: " + ("all passed" if not failed else "FAILED " +
                                             ", ".join(failed)))  # fmt: skip
        lines.append("")
    for b in report.backends:
        verdict = "PASS" if b.passed else "FAIL"
        lines.append(
            f"{b.name}: ingest {b.ingest.rate:,.0f} readings/s = {b.ratio:.2f}x the raw "
            f"{b.baseline.key} ({b.baseline.rate:,.0f}/s); duplicates {b.duplicates.rate:,.0f}/s "
            f"-> {verdict} (target >= {TARGET_RATIO}x, valid run)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        argv, name="headend_ingest",
        description="Head-end ingest readings/s on SQLite and PostgreSQL vs a raw bulk insert.",
        quick_help="10,000 readings, one round",
        check_help="exit 1 if a ratio is below 0.5 or the run is invalid",
        run=lambda args: run_benchmark(quick=args.quick), as_json=as_json, as_table=as_table,
        passed=lambda report: report.passed,
        errors=(OSError, RuntimeError, sa.exc.SQLAlchemyError, pytest.fail.Exception),
        stopped="", on_sigterm=False,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
