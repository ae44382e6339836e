"""Ingest: everything the gateways send, committed before it is acknowledged.

Theory of operation::

    MQTT message (manual ack) --decode--> malformed: counted, logged, acknowledged to the broker
         |                                 (it would be malformed on every redelivery)
         v
    pending list  --one writer at a time-->  one transaction for everything pending:
                                               (gateway, seq) seen before?  -> duplicate, skipped
                                               readings (ON CONFLICT / COPY), events -> alarms,
                                               command statuses -> the command queue,
                                               health, gateway state -> gateways and meters
         |  committed
         v
    app-level ack to each gateway (seq ranges, duplicates included: the gateway may drop them),
    then the broker's PUBACK for each message, then side effects (notifications, dispatch).

A crash anywhere before the commit loses nothing: the broker redelivers what it never got a PUBACK
for, and the gateway resends what it never got an application ack for. A crash after the commit but
before the acks makes both resend, and the (gateway, seq) table turns the resends into no-ops.
Messages that arrive while a transaction runs are committed together in the next one (group commit),
which is what keeps SQLite's per-commit fsync off the critical path.

Decoding and writing share one GIL. While a transaction is sending its rows (sqlite3 gives the GIL
up and takes it back on every row, so a decoding reactor thread would leave it one row per switch
interval), what arrives is held undecoded; the transaction signals when only the database's own
work is left (PostgreSQL finishing the COPY, the commit's fsync) and the held messages are decoded
then, alongside it. Held or not, messages are decoded and committed in the order they arrived.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from protocols.link import (
    Ack,
    CommandStatus,
    EventBatch,
    GatewayState,
    Health,
    LinkError,
    Message,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    parse_topic,
    to_ranges,
)
from protocols.link.fast import FastReadings, fast_readings

from .commands import StatusOutcome, thd_apply_status
from .config import HeadendConfig
from .records import (
    IDENTITY,
    RaisedAlarm,
    ReadingRow,
    fast_reading_rows,
    reading_rows,
    thd_apply_events,
    thd_gateway_state,
    thd_register_meters,
    thd_store_readings,
    thd_update_identity,
)
from .store.schema import gateways, uplink_seen

__all__ = ["Ingest", "IngestResult"]

Uplink = Message | FastReadings
IDENTITY_POINTS = frozenset(IDENTITY)
KNOWN_LIMIT = 2_000_000

log = Logger()
ACKED_TOPICS = (Topic.READINGS, Topic.EVENTS, Topic.COMMAND_STATUS)
# the topic each journaled message travels on (encoding a message to learn it costs as much as
# storing its readings)
TOPIC_OF: dict[type, Topic] = {
    ReadingBatch: Topic.READINGS, FastReadings: Topic.READINGS, EventBatch: Topic.EVENTS,
    CommandStatus: Topic.COMMAND_STATUS, Health: Topic.HEALTH,
}  # fmt: skip
# what the gateway journals (and resends until acknowledged): deduplicated by seq
JOURNALED = (ReadingBatch, FastReadings, EventBatch, CommandStatus)


@dataclass
class IngestResult:
    acks: dict[str, list[int]] = field(default_factory=dict)
    duplicates: int = 0
    readings: int = 0
    gaps: list[tuple[str, int, int]] = field(default_factory=list)  # gateway, first, last missing
    alarms: list[RaisedAlarm] = field(default_factory=list)
    outcomes: list[StatusOutcome] = field(default_factory=list)
    new_meters: int = 0
    ensured: dict[str, set[str]] = field(default_factory=dict)  # gateway -> meters registered


def thd_ingest(connection: sa.Connection, messages: list[Uplink], config: HeadendConfig,
               now: float, known: Mapping[str, AbstractSet[str]] | None = None,
               written: Callable[[], None] | None = None) -> IngestResult:  # fmt: skip
    """Store ``messages`` in this transaction. ``known``: the meters each gateway has had
    registered by earlier committed transactions, so that they are not looked up again.
    ``written``: called (in this thread) once everything is sent and only the database's own work
    is left (the end of the COPY, the commit); it may not be called at all, on a failure.

    A handful of statements per transaction, not per message: the gateways are touched (and their
    ``max_seq`` read) in one upsert, every journaled message's (gateway, seq) goes into
    ``uplink_seen`` in one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (what comes back is
    new, the rest are duplicates), the readings in one bulk insert, the new ``max_seq`` values in
    one executemany. On PostgreSQL each statement is a round trip, so this is most of the ingest's
    time once per message (benchmarks/headend_ingest.py)."""
    result = IngestResult()
    rows: list[ReadingRow] = []
    by_gateway: dict[str, list[Uplink]] = {}
    for message in messages:
        by_gateway.setdefault(message.gateway, []).append(message)  # type: ignore[union-attr]
    max_seqs = thd_touch_gateways(connection, by_gateway, now)
    fresh = thd_first_seen(connection, [m for m in messages if isinstance(m, JOURNALED)], now)
    # first what is new (seqs, gaps) and which meters its readings name that this Ingest has not
    # seen registered behind their gateway: those are looked up in one go, not per message
    advanced: dict[str, int] = {}
    new_messages: list[tuple[str, Uplink]] = []
    for gateway_id, batch in by_gateway.items():
        max_seq = first_max_seq = max_seqs[gateway_id]
        registered = known.get(gateway_id, frozenset()) if known else frozenset()
        unseen: set[str] = set()
        for message in batch:
            if isinstance(message, GatewayState | Health):  # no seq (Health's is not journaled)
                new_messages.append((gateway_id, message))
                continue
            assert isinstance(message, JOURNALED)
            if TOPIC_OF[type(message)] in ACKED_TOPICS:
                result.acks.setdefault(gateway_id, []).append(message.seq)
            key = (gateway_id, message.seq)
            if key not in fresh:
                result.duplicates += 1
                continue
            fresh.discard(key)  # the same message twice in one transaction: once is new
            if message.seq > max_seq + 1:
                result.gaps.append((gateway_id, max_seq + 1, message.seq - 1))
            max_seq = max(max_seq, message.seq)
            new_messages.append((gateway_id, message))
            if isinstance(message, FastReadings | ReadingBatch):
                unseen |= _meters(message) - registered
        if unseen:
            result.ensured[gateway_id] = unseen  # registered behind it by this transaction
        if max_seq != first_max_seq:
            advanced[gateway_id] = max_seq
    if result.ensured:
        registered_now = thd_register_meters(connection, result.ensured, config.meter_defaults,
                                             now)  # fmt: skip
        result.new_meters += sum(len(new) for new in registered_now.values())
    for gateway_id, message in new_messages:
        if isinstance(message, GatewayState):
            result.new_meters += len(
                thd_gateway_state(connection, message, config.meter_defaults, now)
            )
        elif isinstance(message, Health):
            connection.execute(
                sa.update(gateways)
                .where(gateways.c.id == gateway_id)
                .values(health=json.dumps(dict(message.metrics), default=str), health_at=now)
            )
        elif isinstance(message, FastReadings):
            rows.extend(fast_reading_rows(message))
        elif isinstance(message, ReadingBatch):
            rows.extend(reading_rows(message))
            thd_update_identity(connection, message)
        elif isinstance(message, EventBatch):
            result.alarms.extend(
                thd_apply_events(connection, message, dict(config.alarms.severity), now)
            )
        elif isinstance(message, CommandStatus):
            outcome = thd_apply_status(connection, message, now,
                                       config.commands.max_attempts)  # fmt: skip
            if outcome is not None:
                result.outcomes.append(outcome)
                thd_follow_up(connection, outcome, now)
    if advanced:
        connection.execute(
            sa.update(gateways)
            .where(gateways.c.id == sa.bindparam("gateway"))
            .values(max_seq=sa.bindparam("max_seq")),
            [{"gateway": g, "max_seq": s} for g, s in sorted(advanced.items())],
        )
    result.readings = thd_store_readings(connection, rows, written)
    return result


def _meters(message: FastReadings | ReadingBatch) -> set[str]:
    if isinstance(message, FastReadings):
        return set(message.meters)
    return {r.meter for r in message.readings}


def _reading_count(message: Uplink) -> int:
    if isinstance(message, FastReadings):
        return len(message)
    return len(message.readings) if isinstance(message, ReadingBatch) else 0


def thd_touch_gateways(connection: sa.Connection, gateway_ids: Iterable[str],
                       now: float) -> dict[str, int]:  # fmt: skip
    """Each gateway registered if new and seen ``now``, in one upsert; its ``max_seq``.

    In id order, so that two head-ends' transactions lock the rows in the same order."""
    insert = _insert(connection, gateways)
    statement = insert.on_conflict_do_update(
        index_elements=["id"], set_={"last_seen_at": insert.excluded.last_seen_at}
    ).returning(gateways.c.id, gateways.c.max_seq)
    values = [{"id": g, "first_seen_at": now, "last_seen_at": now} for g in sorted(gateway_ids)]
    if not values:
        return {}
    return {row[0]: int(row[1]) for row in connection.execute(statement, values)}


def thd_first_seen(connection: sa.Connection, messages: list[Any],
                   now: float) -> set[tuple[str, int]]:  # fmt: skip
    """Note each journaled message's (gateway, seq) in ``uplink_seen``, in one statement; the
    pairs that were not there before (the rest are duplicates).

    ``preserve_rowcount`` is not needed: RETURNING lists exactly the rows inserted. Sorted, so
    that concurrent transactions meeting the same pairs wait on each other in the same order."""
    if not messages:
        return set()
    topics: dict[tuple[str, int], str] = {}
    for m in messages:  # the first message with a seq is the one that counts
        topics.setdefault((m.gateway, m.seq), TOPIC_OF[type(m)].value)
    statement = (
        _insert(connection, uplink_seen)
        .on_conflict_do_nothing(index_elements=["gateway_id", "seq"])
        .returning(uplink_seen.c.gateway_id, uplink_seen.c.seq)
    )
    values = [{"gateway_id": g, "seq": s, "topic": topic, "received_at": now}
              for (g, s), topic in sorted(topics.items())]  # fmt: skip
    return {(row[0], int(row[1])) for row in connection.execute(statement, values)}


def _insert(connection: sa.Connection, table: sa.Table) -> Any:
    return (postgresql if connection.dialect.name == "postgresql" else sqlite).insert(table)


def thd_follow_up(connection: sa.Connection, outcome: StatusOutcome, now: float) -> None:
    """What a finished command means beyond itself: a TOU rollout or a key change confirmed."""
    from .followups import thd_command_finished

    thd_command_finished(connection, outcome, now)


SET_ASIDE_AFTER = 3  # failures alone, the store answering, before a message is set aside


class Ingest:
    """Receives decoded-or-not uplink messages, commits them in groups, then acknowledges."""

    def __init__(self, db: Any, clock: Any, config: HeadendConfig,
                 publish: Callable[[str, bytes], Any],
                 on_committed: Callable[[IngestResult], None] | None = None) -> None:  # fmt: skip
        self.db = db
        self.clock = clock
        self.config = config
        self.publish = publish
        self.on_committed = on_committed
        self._pending: list[tuple[Uplink, Callable[[], None]]] = []
        # meters known to be registered behind each gateway (committed): not looked up again
        self._known: dict[str, set[str]] = {}
        self._known_count = 0
        self._writing: defer.Deferred[None] | None = None
        # messages that arrived while a transaction was writing, not decoded yet
        self._arrived: deque[tuple[str, bytes, Callable[[], None]]] = deque()
        self._holding = False
        self._pending_readings = 0  # in self._pending
        # called in the database thread when the transaction has sent everything
        self._written: Callable[[], None] | None = None
        if IReactorFromThreads.providedBy(clock):
            self._written = partial(clock.callFromThread, self._on_written)
        self.malformed = 0
        self.duplicates = 0
        self.messages = 0
        self.readings = 0
        self.gaps = 0
        self.failures = 0
        # a message the store refuses on its own must not hold back every later one: after a
        # failed transaction its messages go one at a time; one that fails alone while the store
        # answers, SET_ASIDE_AFTER times in a row, is set aside unacknowledged (the gateway keeps
        # it and sends it again after its next reconnect)
        self.set_aside = 0
        self._solo = 0
        self._alone_failures: dict[int, int] = {}

    def receive(self, topic_name: str, payload: bytes, ack: Callable[[], None]) -> None:
        """One MQTT message; ``ack`` sends the broker's PUBACK (called after the commit)."""
        self._arrived.append((topic_name, payload, ack))
        if not self._holding and not self._full():
            self._decode_arrived()
            self._kick()

    def _full(self) -> bool:
        """A transaction's worth is decoded: what comes next waits for it to be written."""
        return (self._written is not None
                and self._pending_readings >= self.config.database.ingest_batch_rows)  # fmt: skip

    def _decode(self, topic_name: str, payload: bytes, ack: Callable[[], None]) -> None:
        try:
            gateway_id, topic = parse_topic(topic_name)
            if not topic.uplink:
                raise LinkError(f"{topic_name} is a downlink topic")
            message: Message | FastReadings | None = None
            if topic is Topic.READINGS:
                message = fast_readings(payload, IDENTITY_POINTS)  # None: decode it fully
                if message is not None and message.flagged:
                    message = None  # identity points update the meter: the full path does that
            if message is None:
                message = decode_message(topic, payload)
            if getattr(message, "gateway", gateway_id) != gateway_id:
                raise LinkError(f"message from {message.gateway} on {gateway_id}'s topic")  # type: ignore[union-attr]
        except LinkError as exc:
            self.malformed += 1
            log.warn("Malformed message on {topic}: {error}", topic=topic_name, error=str(exc))
            ack()
            return
        self._pending.append((message, ack))
        self._pending_readings += _reading_count(message)

    def _decode_arrived(self) -> None:
        """Decode what arrived and was held, in arrival order."""
        self._holding = False
        while self._arrived:
            self._decode(*self._arrived.popleft())

    def _on_written(self) -> None:
        """The transaction has sent everything and waits on the database: decode now."""
        self._decode_arrived()

    def _kick(self) -> None:
        if self._writing is None and self._pending:
            self._writing = defer.ensureDeferred(self._write())
            self._writing.addErrback(lambda f: log.failure("Ingest writer failed", f))

    def drained(self) -> defer.Deferred[None]:
        """Fires when nothing is pending or being written (tests, clean stop)."""
        if self._idle():
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()

        def check() -> None:
            if self._idle():
                waiter.callback(None)
            else:
                self.clock.callLater(0.01, check)

        check()
        return waiter

    def _idle(self) -> bool:
        return self._writing is None and not self._pending and not self._arrived

    def _take(self) -> list[tuple[Uplink, Callable[[], None]]]:
        if self._solo:
            self._solo -= 1
            item = self._pending.pop(0)
            self._pending_readings -= _reading_count(item[0])
            return [item]
        limit = self.config.database.ingest_batch_rows
        taken: list[tuple[Uplink, Callable[[], None]]] = []
        count = 0
        while self._pending and (count < limit or not taken):
            item = self._pending.pop(0)
            taken.append(item)
            count += _reading_count(item[0])
        self._pending_readings -= count
        return taken

    async def _write(self) -> None:
        try:
            # the rest of a burst (a reconnect's backlog, the broker's in-flight window) arrives
            # in this same reactor turn: let it, so that the first transaction is a full one
            await _sleep(self.clock, 0)
            while True:
                self._decode_arrived()  # whatever was held goes before the next batch is taken
                if not self._pending:
                    break
                batch = self._take()
                # decoding competes with the transaction's own Python work for the GIL, and
                # sqlite3 gives the GIL up on every row: hold what arrives until it is written
                self._holding = self._written is not None
                try:
                    result = await self.db.run(thd_ingest, [m for m, _ in batch], self.config,
                                               self.clock.seconds(), self._known,
                                               self._written)  # fmt: skip
                except Exception:
                    # not committed: nothing is acknowledged; put it back and try again
                    self.failures += 1
                    if not await self._retry(batch):
                        await _sleep(self.clock, 1.0)
                    continue
                self._alone_failures.pop(id(batch[0][0]), None)
                self._after_commit(batch, result)
        finally:
            self._holding = False
            self._writing = None

    async def _retry(self, batch: list[tuple[Uplink, Callable[[], None]]]) -> bool:
        """After a failed transaction: True to go on at once, False to wait a second first."""
        if len(batch) > 1:  # one at a time, to find a message the store refuses
            log.failure("Ingest transaction failed; retrying its {count} messages one at a time",
                        count=len(batch))  # fmt: skip
            self._put_back(batch, len(batch))
            return True
        message, puback = batch[0]
        try:
            await self.db.run(thd_alive)
        except Exception:
            log.failure("Ingest transaction failed and the store does not answer; retrying")
            self._put_back(batch, 1)
            return False
        failures = self._alone_failures.get(id(message), 0) + 1
        if failures < SET_ASIDE_AFTER:
            self._alone_failures[id(message)] = failures
            log.failure("The store refused one message ({failures} time(s)); retrying it",
                        failures=failures)  # fmt: skip
            self._put_back(batch, 1)
            return False
        self._alone_failures.pop(id(message), None)
        self.set_aside += 1
        log.error("The store refuses gateway {gateway}'s message seq {seq} on its own: set aside "
                  "unacknowledged (the gateway keeps it), ingest goes on",
                  gateway=getattr(message, "gateway", "?"), seq=getattr(message, "seq", "?"))  # fmt: skip
        puback()  # the broker's PUBACK only: the gateway has no application ack for it
        return True

    def _put_back(self, batch: list[tuple[Uplink, Callable[[], None]]], solo: int) -> None:
        self._pending[:0] = batch
        self._pending_readings += sum(_reading_count(m) for m, _ in batch)
        self._solo += solo

    def _after_commit(self, batch: list[tuple[Uplink, Callable[[], None]]],
                      result: IngestResult) -> None:  # fmt: skip
        for gateway_id, meters in result.ensured.items():
            self._known.setdefault(gateway_id, set()).update(meters)
            self._known_count += len(meters)
        if self._known_count > KNOWN_LIMIT:  # bounded: forget, and look them up again
            self._known.clear()
            self._known_count = 0
        now = self.clock.seconds()  # in each ack: a gateway judges not_after on our clock
        for gateway_id, seqs in result.acks.items():
            _, payload = encode_message(Ack(tuple(to_ranges(seqs)), now))
            self.publish(gateway_topic(gateway_id, Topic.ACK), payload)
        for _, ack in batch:
            ack()
        self.messages += len(batch)
        self.duplicates += result.duplicates
        self.readings += result.readings
        for gateway_id, first, last in result.gaps:
            self.gaps += 1
            log.info("Gap in {gateway}'s seq: {first}..{last} not (yet) received",
                     gateway=gateway_id, first=first, last=last)  # fmt: skip
        if self.on_committed is not None:
            try:
                self.on_committed(result)
            except Exception:
                log.failure("Ingest follow-up failed")


def thd_alive(connection: sa.Connection) -> bool:
    """Does the store answer? (Telling a refused message from a store that is down.)"""
    connection.execute(sa.text("SELECT 1"))
    return True


def _sleep(clock: Any, seconds: float) -> defer.Deferred[None]:
    done: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, done.callback, None)
    return done
