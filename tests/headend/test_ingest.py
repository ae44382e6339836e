"""Ingest's guarantees, as a gateway and an operator see them: a message is acknowledged only
once the transaction holding it has committed, a resent message changes nothing, a gap in a
gateway's seq is reported, meters are registered, and messages that arrive while a transaction
is being written keep their order. On SQLite and on a real PostgreSQL (readings COPYed)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorFromThreads
from zope.interface import implementer

from headend.config import HeadendConfig
from headend.ingest import Ingest, thd_ingest
from headend.store import make_engine, upgrade
from headend.store.schema import gateways, meters, readings, uplink_seen
from protocols.link import (
    Ack,
    Event,
    EventBatch,
    EventState,
    GatewayState,
    Reading,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
)
from protocols.link.fast import fast_readings
from tests.support.postgres import Postgres

T0 = 1_767_225_600.0
CONFIG = HeadendConfig()


def batch(seq: int, gateway: str = "gw-1", meters_: int = 3,
          at: float | None = None) -> ReadingBatch:  # fmt: skip
    """``meters_`` readings of seq ``seq``; gw-1's meters are 4700000000<n>, others' 4800000000<n>."""
    at = T0 + seq * 900 if at is None else at
    prefix = "4700000000" if gateway == "gw-1" else "4800000000"
    return ReadingBatch(gateway, seq, at, tuple(
        Reading(f"{prefix}{m}", at + m, {"energy_import_total": Decimal("1000.05") + m,
                                           "credit_remaining": 12 + m, "relay_state": 0},
                at - 1 if m else None)
        for m in range(meters_)))  # fmt: skip


def payload_of(message: Any) -> tuple[str, bytes]:
    topic, payload = encode_message(message)
    return gateway_topic(message.gateway, topic), payload


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/he.db"
    else:
        postgres: Postgres = request.getfixturevalue("postgres")
        url = postgres.create_database(f"ingest_{abs(hash(request.node.name)) % 10**8}")
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def stored(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            sa.select(readings.c.meter_id, readings.c.ts, readings.c.meter_ts,
                      readings.c.gateway_id, readings.c.energy_wh, readings.c.credit_wh,
                      readings.c["values"]).order_by(readings.c.meter_id, readings.c.ts))]  # fmt: skip


def ingest_now(engine: sa.Engine, messages: list[Any], now: float = T0) -> Any:
    with engine.begin() as connection:
        return thd_ingest(connection, messages, CONFIG, now)


def fast(message: ReadingBatch) -> Any:
    decoded = fast_readings(encode_message(message)[1])
    assert decoded is not None
    return decoded


# --- thd_ingest: one transaction ---------------------------------------------------------------


def test_readings_are_stored_once_with_their_energy_credit_and_values(engine: sa.Engine) -> None:
    result = ingest_now(engine, [fast(batch(1)), batch(2)])  # the fast path and the full one

    assert result.readings == 6 and result.duplicates == 0 and result.gaps == []
    rows = stored(engine)
    assert len(rows) == 6
    first = rows[0]
    assert first[:6] == ("47000000000", T0 + 900, None, "gw-1", 1_000_050, 12_000)
    assert json.loads(first[6]) == {"energy_import_total": 1000.05, "credit_remaining": 12,
                                    "relay_state": 0}  # fmt: skip
    assert rows[2][:3] == ("47000000001", T0 + 901, T0 + 899)  # the meter's own clock
    assert result.acks == {"gw-1": [1, 2]}
    assert result.ensured == {"gw-1": {"47000000000", "47000000001", "47000000002"}}
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(meters)).scalar() == 3
        assert connection.execute(sa.select(gateways.c.max_seq)).scalar() == 2


def test_a_resent_message_is_acknowledged_again_and_changes_nothing(engine: sa.Engine) -> None:
    ingest_now(engine, [fast(batch(1))])
    before = stored(engine)

    # again in a later transaction, and twice within one
    result = ingest_now(engine, [fast(batch(1)), fast(batch(2)), fast(batch(2))], now=T0 + 60)

    assert result.duplicates == 2
    assert result.readings == 3  # batch 2 once
    assert result.acks == {"gw-1": [1, 2, 2]}
    assert set(before) < set(stored(engine))
    assert len(stored(engine)) == 6
    with engine.connect() as connection:
        seen = connection.execute(sa.select(uplink_seen.c.seq, uplink_seen.c.topic)).all()
    assert sorted(seen) == [(1, "readings"), (2, "readings")]


def test_a_meter_read_behind_another_gateway_moves_to_it(engine: sa.Engine) -> None:
    ingest_now(engine, [fast(batch(1))])
    moved = ReadingBatch("gw-2", 1, T0, (Reading("47000000001", T0, {"credit_remaining": 1}),))
    new = ReadingBatch("gw-3", 1, T0, (Reading("49000000000", T0 + 1, {}),
                                       Reading("47000000002", T0 + 1, {})))  # fmt: skip
    later = ReadingBatch("gw-2", 2, T0, (Reading("47000000002", T0 + 2, {}),))

    result = ingest_now(engine, [moved, new, later], now=T0 + 60)

    assert result.new_meters == 1  # 49000000000
    assert result.ensured == {"gw-2": {"47000000001", "47000000002"},
                              "gw-3": {"49000000000", "47000000002"}}  # fmt: skip
    with engine.connect() as connection:
        behind = dict(connection.execute(sa.select(meters.c.id, meters.c.gateway_id)).all())
    # 47000000002 is named by gw-2 and gw-3: gateways are taken in the order they first appear
    # in the transaction (as before batching), and the last one keeps the meter
    assert behind == {"47000000000": "gw-1", "47000000001": "gw-2", "47000000002": "gw-3",
                      "49000000000": "gw-3"}  # fmt: skip


def test_two_messages_under_one_seq_the_first_counts(engine: sa.Engine) -> None:
    event = EventBatch("gw-1", 1, T0, (Event("47000000000", T0, "tamper", EventState.RAISED),))
    result = ingest_now(engine, [fast(batch(1)), event])

    assert result.duplicates == 1 and result.readings == 3 and result.alarms == []
    with engine.connect() as connection:
        assert connection.execute(sa.select(uplink_seen.c.topic)).all() == [("readings",)]


def test_a_gap_in_a_gateways_seq_is_listed_and_max_seq_advances(engine: sa.Engine) -> None:
    result = ingest_now(engine, [fast(batch(1)), fast(batch(2)), fast(batch(5)),
                                 fast(batch(3, gateway="gw-2"))])  # fmt: skip

    assert result.gaps == [("gw-1", 3, 4), ("gw-2", 1, 2)]
    later = ingest_now(engine, [fast(batch(4))], now=T0 + 60)  # late, not a duplicate
    assert later.gaps == [] and later.duplicates == 0 and later.readings == 3
    with engine.connect() as connection:
        max_seqs = dict(connection.execute(sa.select(gateways.c.id, gateways.c.max_seq)).all())
    assert max_seqs == {"gw-1": 5, "gw-2": 3}


def test_a_reading_stored_under_another_seq_is_not_stored_twice(engine: sa.Engine) -> None:
    """A gateway that lost its journal's seqs resends old readings under new ones: on PostgreSQL
    the COPY meets the unique key and takes the slow way round, keeping the new readings."""
    ingest_now(engine, [fast(batch(1, meters_=2))])
    again = batch(2, meters_=3, at=T0 + 900)  # two of its three readings are stored already

    result = ingest_now(engine, [fast(again)], now=T0 + 60)

    assert result.duplicates == 0 and result.readings == 1
    assert len(stored(engine)) == 3


def test_gateway_state_events_and_readings_in_one_transaction(engine: sa.Engine) -> None:
    state = GatewayState("gw-1", T0, True, "1.2.3", ("47000000009",))
    events = EventBatch("gw-1", 2, T0, (Event("47000000000", T0, "tamper", EventState.RAISED),))
    result = ingest_now(engine, [state, fast(batch(1)), events])

    assert result.new_meters == 4 and result.readings == 3 and len(result.alarms) == 1
    assert result.acks == {"gw-1": [1, 2]}
    with engine.connect() as connection:
        row = connection.execute(sa.select(gateways.c.online, gateways.c.version)).one()
    assert tuple(row) == (True, "1.2.3")


# --- Ingest: acknowledgement after commit, order while a transaction writes ----------------------


@implementer(IReactorFromThreads)
class Reactor(task.Clock):
    """A clock whose callFromThread runs at once (the test's 'database thread' is this one)."""

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None:  # noqa: N802 - Twisted's name
        callable(*args, **kw)


class SteppedDatabase:
    """Runs each transaction on a real database when the test says: :meth:`write` runs the
    ``thd_`` function (which signals that it has written everything), :meth:`commit` commits and
    fires the caller's Deferred."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.waiting: list[tuple[Any, tuple[Any, ...], defer.Deferred[Any]]] = []
        self.open: tuple[Any, Any, Any, defer.Deferred[Any]] | None = None
        self.transactions: list[list[Any]] = []

    def run(self, function: Any, *args: Any) -> defer.Deferred[Any]:
        done: defer.Deferred[Any] = defer.Deferred()
        self.waiting.append((function, args, done))
        return done

    def write(self) -> None:
        function, args, done = self.waiting.pop(0)
        self.transactions.append(list(args[0]))
        connection = self.engine.connect()
        transaction = connection.begin()
        self.open = (connection, transaction, function(connection, *args), done)

    def commit(self) -> None:
        assert self.open is not None
        connection, transaction, result, done = self.open
        self.open = None
        transaction.commit()
        connection.close()
        done.callback(result)


class Gateway:
    """What the broker and the gateway see of the head-end: PUBACKs and application acks."""

    def __init__(self) -> None:
        self.pubacks: list[int] = []
        self.app_acks: list[tuple[int, int]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        ack = decode_message(Topic.ACK, payload)
        assert isinstance(ack, Ack)
        self.app_acks.extend(ack.ranges)

    def deliver(self, ingest: Ingest, message: Any, number: int) -> None:
        topic, payload = payload_of(message)
        ingest.receive(topic, payload, lambda: self.pubacks.append(number))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/he.db")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_nothing_is_acknowledged_before_the_commit(sqlite_engine: sa.Engine) -> None:
    clock = Reactor()
    db = SteppedDatabase(sqlite_engine)
    gateway = Gateway()
    ingest = Ingest(db, clock, CONFIG, gateway.publish)

    gateway.deliver(ingest, batch(1), 1)
    clock.advance(0)  # the writer starts on the reactor's next turn
    db.write()
    assert gateway.pubacks == [] and gateway.app_acks == []  # written, not committed
    db.commit()

    assert gateway.pubacks == [1] and gateway.app_acks == [(1, 1)]
    assert ingest.messages == 1 and ingest.readings == 3


def test_messages_arriving_during_a_write_follow_in_order(sqlite_engine: sa.Engine) -> None:
    clock = Reactor()
    db = SteppedDatabase(sqlite_engine)
    gateway = Gateway()
    ingest = Ingest(db, clock, CONFIG, gateway.publish)
    gateway.deliver(ingest, batch(1), 1)
    clock.advance(0)  # the first transaction starts

    gateway.deliver(ingest, batch(2), 2)  # these arrive while it is being written
    gateway.deliver(ingest, EventBatch("gw-1", 3, T0, ()), 3)
    ingest.receive(
        gateway_topic("gw-1", Topic.READINGS), b"{not json", lambda: gateway.pubacks.append(4)
    )
    gateway.deliver(ingest, batch(4), 5)
    db.write()
    assert ingest.malformed == 1 and gateway.pubacks == [4]  # refused: acknowledged at once
    db.commit()
    db.write()
    db.commit()

    assert [[m.seq for m in t] for t in db.transactions] == [[1], [2, 3, 4]]
    assert sorted(gateway.pubacks) == [1, 2, 3, 4, 5]
    assert gateway.app_acks == [(1, 1), (2, 4)]
    assert ingest.gaps == 0 and ingest.duplicates == 0 and ingest.readings == 9


def test_a_failed_transaction_is_retried_and_acknowledged_once_committed(
    sqlite_engine: sa.Engine,
) -> None:
    clock = Reactor()
    db = SteppedDatabase(sqlite_engine)
    gateway = Gateway()
    ingest = Ingest(db, clock, CONFIG, gateway.publish)
    gateway.deliver(ingest, batch(1), 1)
    clock.advance(0)
    _, _, done = db.waiting.pop(0)
    gateway.deliver(ingest, batch(2), 2)  # held while the first transaction runs

    done.errback(RuntimeError("database gone"))
    _, _, probe = db.waiting.pop(0)  # does the store answer? (is it the message, or the store?)
    probe.errback(RuntimeError("database gone"))
    assert ingest.failures == 1 and gateway.pubacks == []
    clock.advance(1.0)
    for _ in range(2):
        db.write()
        db.commit()

    # after a failure the failed transaction's messages go one at a time
    assert [[m.seq for m in t] for t in db.transactions] == [[1], [2]]
    assert gateway.pubacks == [1, 2] and ingest.readings == 6 and ingest.set_aside == 0


def test_a_burst_is_committed_in_transactions_of_ingest_batch_rows(
    sqlite_engine: sa.Engine,
) -> None:
    """A backlog arriving at once (a reconnect, the broker's in-flight window) fills the first
    transaction up to ingest_batch_rows; the rest waits for the next one, in order."""
    clock = Reactor()
    db = SteppedDatabase(sqlite_engine)
    gateway = Gateway()
    config = HeadendConfig.model_validate({"database": {"ingest_batch_rows": 6}})
    ingest = Ingest(db, clock, config, gateway.publish)
    for seq in range(1, 6):
        gateway.deliver(ingest, batch(seq), seq)  # 3 readings each
    clock.advance(0)
    while db.waiting:
        db.write()
        db.commit()

    assert [[m.seq for m in t] for t in db.transactions] == [[1, 2], [3, 4], [5]]
    assert gateway.pubacks == [1, 2, 3, 4, 5] and ingest.readings == 15 and ingest.gaps == 0


class ImmediateDatabase:
    """Runs each transaction at once on a real database, failing the Deferred as it fails."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def run(self, function: Any, *args: Any) -> defer.Deferred[Any]:
        try:
            with self.engine.begin() as connection:
                return defer.succeed(function(connection, *args))
        except Exception as error:
            return defer.fail(error)


def test_a_message_the_store_refuses_is_set_aside_and_the_rest_flow_on(
    sqlite_engine: sa.Engine,
) -> None:
    with sqlite_engine.begin() as connection:  # a store that refuses one meter's readings
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.meter_id = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the store'); END"
        )
    clock = Reactor()
    gateway = Gateway()
    ingest = Ingest(ImmediateDatabase(sqlite_engine), clock, CONFIG, gateway.publish)
    poison = ReadingBatch("gw-1", 2, T0 + 1800, (Reading("poison", T0 + 1800, {"x": 1}),))
    for number, message in enumerate([batch(1), poison, batch(3)], start=1):
        gateway.deliver(ingest, message, number)
    for _ in range(5):
        clock.advance(1.0)

    assert gateway.app_acks == [(1, 1), (3, 3)]  # the refused one is not acknowledged
    assert sorted(gateway.pubacks) == [1, 2, 3]  # but the broker's window moves on
    assert ingest.set_aside == 1 and ingest.readings == 6
    assert {row[0] for row in stored(sqlite_engine)} == {"47000000000", "47000000001",
                                                         "47000000002"}  # fmt: skip


def test_a_store_that_is_down_sets_nothing_aside(sqlite_engine: sa.Engine) -> None:
    clock = Reactor()
    db = SteppedDatabase(sqlite_engine)
    gateway = Gateway()
    ingest = Ingest(db, clock, CONFIG, gateway.publish)
    gateway.deliver(ingest, batch(1), 1)
    clock.advance(0)
    for _ in range(5):  # the transaction fails, and so does the question whether the store answers
        _, _, done = db.waiting.pop(0)
        done.errback(RuntimeError("database gone"))
        if db.waiting:
            _, _, probe = db.waiting.pop(0)
            probe.errback(RuntimeError("database gone"))
        clock.advance(1.0)
    db.write()
    db.commit()
    assert ingest.set_aside == 0 and gateway.app_acks == [(1, 1)] and gateway.pubacks == [1]
