"""Bad input into the head-end's uplink handling: what the MQTT callback hands to
``Ingest.receive`` (topic, payload, PUBACK), on a real store, SQLite and PostgreSQL.

Each example is one gateway's conversation (tests/badinput/uplink.py): valid messages with bad
ones in between (bytes, wrong types, NaN, huge numbers, deep nesting, missing fields, another
gateway's id, seq negative or 2**70) and resends. Whatever arrives, no exception escapes, no
transaction fails (a message the store cannot hold would be retried for ever and hold back every
message after it), every message gets its PUBACK once, each bad one is counted in
``amr_ingest_malformed`` and leaves every table as it was, each resend is counted as a duplicate,
and the valid ones are stored exactly once: the store ends the same as after the valid messages
alone, and holds exactly their readings and events.

The database runs in the calling thread (the same ``Database``, its ``run`` without the thread
pool) so that Hypothesis can run many conversations; ``test_mqtt_headend.py`` does the same
through Mosquitto and a real ``amr headend`` process.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task

from headend.config import HeadendConfig
from headend.ingest import Ingest
from headend.store import Database, upgrade
from headend.store.schema import commands, events, gateways, metadata, readings, uplink_seen
from protocols.link import Ack, EventBatch, ReadingBatch, Topic, decode_message
from tests.support.postgres import Postgres

from .profiles import HANDLER, POSTGRES
from .uplink import GATEWAY, T0, Sent, conversation

P = ParamSpec("P")
R = TypeVar("R")
NOW = T0 + 10**6  # the head-end's clock stands still: a replay writes the same times
CONFIG = HeadendConfig()


class InlineDatabase(Database):
    """The head-end's Database, its transactions run in the calling thread."""

    async def run(
        self, function: Callable[Concatenate[sa.Connection, P], R], *args: P.args, **kw: P.kwargs
    ) -> R:
        return self.run_sync(function, *args, **kw)


Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(db: Database) -> Snapshot:
    """Every row of every table, in a stable order."""
    found: Snapshot = {}
    with db.engine.connect() as connection:
        for table in metadata.sorted_tables:
            order = [sa.func.coalesce(sa.cast(c, sa.Text), "") for c in table.columns]
            rows = connection.execute(sa.select(table).order_by(*order)).all()
            found[table.name] = [tuple(row) for row in rows]
    return found


def reset(db: Database) -> None:
    """Empty every table ingest can write, then add the two commands the gateway reports on."""
    with db.engine.begin() as connection:
        if db.dialect == "postgresql":  # the ids start again at 1, as in a fresh database
            names = ", ".join(table.name for table in metadata.sorted_tables)
            connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY")
        for table in reversed(metadata.sorted_tables):
            if connection.execute(sa.select(sa.func.count()).select_from(table)).scalar():
                connection.execute(sa.delete(table))
        for cmd_id, kind in (("cmd-1", "relay"), ("cmd-2", "token")):
            connection.execute(sa.insert(commands).values(
                id=cmd_id, meter_id="47000000001", gateway_id=GATEWAY, type=kind,
                args=json.dumps({"action": "disconnect"}), priority=3, state="sent", attempts=1,
                created_at=NOW - 60, updated_at=NOW - 60, not_after=NOW + 86400,
                created_by="badinput"))  # fmt: skip


class Run:
    """One conversation through a fresh Ingest: what the broker and the gateway got back."""

    def __init__(self, db: Database) -> None:
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.pubacks: Counter[int] = Counter()
        self.app_acked: set[int] = set()
        self.ingest = Ingest(db, self.clock, CONFIG, self._publish)
        self.db = db

    def _publish(self, topic: str, payload: bytes) -> None:
        assert topic == f"amr/v1/gw/{GATEWAY}/ack", topic
        ack = decode_message(Topic.ACK, payload)
        assert isinstance(ack, Ack)
        for first, last in ack.ranges:
            self.app_acked.update(range(first, last + 1))

    def deliver(self, number: int, sent: Sent) -> None:
        self.ingest.receive(sent.topic, sent.payload, lambda: self.pubacks.update([number]))

    def settle(self) -> None:
        self.clock.advance(0)  # the writer starts on the reactor's next turn
        assert not self.ingest._pending and not self.ingest._arrived, "ingest did not drain"


def feed(db: Database, messages: list[Sent], each: bool) -> Run:
    """Deliver ``messages``; with ``each``, commit after every message and check that each bad
    one changed no row of any table; else all in one burst (group commit with bad ones inside)."""
    run = Run(db)
    before = snapshot(db) if each else None
    for number, sent in enumerate(messages):
        run.deliver(number, sent)
        if each:
            run.settle()
            after = snapshot(db)
            if not sent.good:
                assert after == before, f"bad message changed the store: {sent.why}"
            before = after
    run.settle()
    return run


def expected(messages: list[Sent]) -> tuple[list[Sent], int]:
    """The valid messages that are new (first of their seq), and how many are duplicates."""
    new: list[Sent] = []
    seen: set[int] = set()
    duplicates = 0
    for sent in messages:
        if not sent.good:
            continue
        if sent.journaled:
            assert sent.seq is not None
            if sent.seq in seen:
                duplicates += 1
                continue
            seen.add(sent.seq)
        new.append(sent)
    return new, duplicates


def check(db: Database, messages: list[Sent], each: bool, figures: Counter[str]) -> None:
    reset(db)
    run = feed(db, messages, each)
    bad = [s for s in messages if not s.good]
    good = [s for s in messages if s.good]
    new, duplicates = expected(messages)
    ingest = run.ingest
    assert ingest.failures == 0, "a transaction failed: a message the store cannot hold"
    assert ingest.malformed == len(bad), [s.why for s in bad]
    assert ingest.duplicates == duplicates
    assert ingest.messages == len(good)
    assert run.pubacks == Counter(range(len(messages))), "every message gets one PUBACK"
    assert run.app_acked == {s.seq for s in good if s.journaled and s.seq is not None}
    stored = snapshot(db)
    _check_rows(db, new)

    # the bad ones changed nothing: the store is what the valid messages alone make of it
    reset(db)
    alone = feed(db, good, each=False)
    assert alone.ingest.malformed == 0 and alone.ingest.failures == 0
    assert snapshot(db) == stored
    figures.update(examples=1, messages=len(messages), bad=len(bad), duplicates=duplicates)


def _check_rows(db: Database, new: list[Sent]) -> None:
    batches = [s.message for s in new if isinstance(s.message, ReadingBatch)]
    wanted = sorted((r.meter, r.time, GATEWAY) for b in batches for r in b.readings)
    values = {(r.meter, r.time): dict(r.values) for b in batches for r in b.readings}
    event_batches = [s.message for s in new if isinstance(s.message, EventBatch)]
    wanted_events = sorted((e.meter, e.time, e.kind, e.state.value)
                           for b in event_batches for e in b.events)  # fmt: skip
    wanted_seqs = sorted((s.seq, s.topic.rsplit(f"{GATEWAY}/", 1)[1])
                         for s in new if s.journaled)  # fmt: skip
    with db.engine.connect() as connection:
        rows = connection.execute(sa.select(readings.c.meter_id, readings.c.ts,
                                            readings.c.gateway_id, readings.c["values"])).all()  # fmt: skip
        found_events = connection.execute(
            sa.select(events.c.meter_id, events.c.ts, events.c.kind, events.c.state)
        ).all()
        seqs = connection.execute(sa.select(uplink_seen.c.seq, uplink_seen.c.topic)).all()
        gateway_ids = connection.execute(sa.select(gateways.c.id)).scalars().all()
    assert sorted((r[0], r[1], r[2]) for r in rows) == wanted, "each valid reading stored once"
    for meter, ts, _, text in rows:
        assert json.loads(text, parse_float=Decimal) == values[(meter, ts)]
    assert sorted(tuple(e) for e in found_events) == wanted_events
    assert sorted(tuple(s) for s in seqs) == wanted_seqs
    assert gateway_ids == ([GATEWAY] if new else [])


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("badinput") / "headend.db"
    db = InlineDatabase(None, f"sqlite:///{path}")
    upgrade(db.engine)
    yield db
    db.stop()


@pytest.fixture(scope="module")
def postgres_db(postgres: Postgres) -> Iterator[Database]:
    db = InlineDatabase(None, postgres.create_database("badinput_ingest"))
    upgrade(db.engine)
    yield db
    db.stop()


@pytest.mark.reliability("bad input", "head-end ingest (SQLite): bad uplink messages among valid "
                         "ones are counted and change nothing; the valid ones are stored once")  # fmt: skip
def test_ingest_on_sqlite_survives_bad_uplink_messages(
    sqlite_db: Database, reliability: dict[str, object]
) -> None:
    figures: Counter[str] = Counter()

    @HANDLER
    @given(messages=conversation(), each=st.booleans())
    def conversations(messages: list[Sent], each: bool) -> None:
        check(sqlite_db, messages, each, figures)

    conversations()
    reliability.update(figures)


@pytest.mark.integration
@pytest.mark.reliability("bad input", "head-end ingest (PostgreSQL, COPY): bad uplink messages "
                         "among valid ones are counted and change nothing")  # fmt: skip
def test_ingest_on_postgresql_survives_bad_uplink_messages(
    postgres_db: Database, reliability: dict[str, object]
) -> None:
    figures: Counter[str] = Counter()

    @POSTGRES
    @given(messages=conversation(), each=st.booleans())
    def conversations(messages: list[Sent], each: bool) -> None:
        check(postgres_db, messages, each, figures)

    conversations()
    reliability.update(figures)
