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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from twisted.internet import defer
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
    thd_ensure_meters,
    thd_gateway_state,
    thd_store_readings,
    thd_touch_gateway,
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
               now: float, known: Mapping[str, AbstractSet[str]] | None = None) -> IngestResult:  # fmt: skip
    """Store ``messages`` in this transaction. ``known``: the meters each gateway has had
    registered by earlier committed transactions, so that they are not looked up again."""
    result = IngestResult()
    insert = (postgresql if connection.dialect.name == "postgresql" else sqlite).insert
    rows: list[ReadingRow] = []
    by_gateway: dict[str, list[Uplink]] = {}
    for message in messages:
        by_gateway.setdefault(message.gateway, []).append(message)  # type: ignore[union-attr]
    for gateway_id, batch in by_gateway.items():
        thd_touch_gateway(connection, gateway_id, now)
        max_seq = connection.execute(
            sa.select(gateways.c.max_seq).where(gateways.c.id == gateway_id)
        ).scalar_one()
        registered = known.get(gateway_id, frozenset()) if known else frozenset()
        # meters registered behind this gateway in this transaction
        ensured = result.ensured.setdefault(gateway_id, set())
        for message in batch:
            if isinstance(message, GatewayState):
                result.new_meters += len(
                    thd_gateway_state(connection, message, config.meter_defaults, now)
                )
                continue
            if isinstance(message, Health):  # not journaled by the gateway: no seq to dedupe
                connection.execute(
                    sa.update(gateways)
                    .where(gateways.c.id == gateway_id)
                    .values(health=json.dumps(dict(message.metrics), default=str), health_at=now)
                )
                continue
            assert isinstance(message, ReadingBatch | FastReadings | EventBatch | CommandStatus)
            topic = TOPIC_OF[type(message)]
            # preserve_rowcount: without it psycopg's rowcount is -1, and nothing is a duplicate
            fresh = connection.execute(
                insert(uplink_seen)
                .values(gateway_id=gateway_id, seq=message.seq, topic=topic.value, received_at=now)
                .on_conflict_do_nothing(index_elements=["gateway_id", "seq"])
                .execution_options(preserve_rowcount=True)
            ).rowcount
            if topic in ACKED_TOPICS:
                result.acks.setdefault(gateway_id, []).append(message.seq)
            if not fresh:
                result.duplicates += 1
                continue
            if message.seq > max_seq + 1:
                result.gaps.append((gateway_id, max_seq + 1, message.seq - 1))
            max_seq = max(max_seq, message.seq)
            if isinstance(message, FastReadings | ReadingBatch):
                unseen = {r.meter for r in message.readings} - registered - ensured
                if unseen:
                    new = thd_ensure_meters(connection, gateway_id, unseen, config.meter_defaults,
                                            now)  # fmt: skip
                    result.new_meters += len(new)
                    ensured |= unseen
                if isinstance(message, FastReadings):
                    rows.extend(fast_reading_rows(message))
                else:
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
        connection.execute(
            sa.update(gateways).where(gateways.c.id == gateway_id).values(max_seq=max_seq)
        )
    result.readings = thd_store_readings(connection, rows)
    return result


def thd_follow_up(connection: sa.Connection, outcome: StatusOutcome, now: float) -> None:
    """What a finished command means beyond itself: a TOU rollout or a key change confirmed."""
    from .followups import thd_command_finished

    thd_command_finished(connection, outcome, now)


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
        self.malformed = 0
        self.duplicates = 0
        self.messages = 0
        self.readings = 0
        self.gaps = 0
        self.failures = 0

    def receive(self, topic_name: str, payload: bytes, ack: Callable[[], None]) -> None:
        """One MQTT message; ``ack`` sends the broker's PUBACK (called after the commit)."""
        try:
            gateway_id, topic = parse_topic(topic_name)
            if not topic.uplink:
                raise LinkError(f"{topic_name} is a downlink topic")
            message: Message | FastReadings | None = None
            if topic is Topic.READINGS:
                message = fast_readings(payload, IDENTITY_POINTS)  # None: decode it fully
                if message is not None and any(r.flagged for r in message.readings):
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
        self._kick()

    def _kick(self) -> None:
        if self._writing is None and self._pending:
            self._writing = defer.ensureDeferred(self._write())
            self._writing.addErrback(lambda f: log.failure("Ingest writer failed", f))

    def drained(self) -> defer.Deferred[None]:
        """Fires when nothing is pending or being written (tests, clean stop)."""
        if self._writing is None and not self._pending:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()

        def check() -> None:
            if self._writing is None and not self._pending:
                waiter.callback(None)
            else:
                self.clock.callLater(0.01, check)

        check()
        return waiter

    def _take(self) -> list[tuple[Uplink, Callable[[], None]]]:
        limit = self.config.database.ingest_batch_rows
        taken: list[tuple[Uplink, Callable[[], None]]] = []
        count = 0
        while self._pending and (count < limit or not taken):
            item = self._pending.pop(0)
            taken.append(item)
            if isinstance(item[0], ReadingBatch | FastReadings):
                count += len(item[0].readings)
        return taken

    async def _write(self) -> None:
        try:
            while self._pending:
                batch = self._take()
                try:
                    result = await self.db.run(thd_ingest, [m for m, _ in batch], self.config,
                                               self.clock.seconds(), self._known)  # fmt: skip
                except Exception:
                    # not committed: nothing is acknowledged; put it back and try again shortly
                    self.failures += 1
                    log.failure("Ingest transaction failed; retrying {count} messages",
                                count=len(batch))  # fmt: skip
                    self._pending[:0] = batch
                    await _sleep(self.clock, 1.0)
                    continue
                self._after_commit(batch, result)
        finally:
            self._writing = None

    def _after_commit(self, batch: list[tuple[Uplink, Callable[[], None]]],
                      result: IngestResult) -> None:  # fmt: skip
        for gateway_id, meters in result.ensured.items():
            self._known.setdefault(gateway_id, set()).update(meters)
            self._known_count += len(meters)
        if self._known_count > KNOWN_LIMIT:  # bounded: forget, and look them up again
            self._known.clear()
            self._known_count = 0
        for gateway_id, seqs in result.acks.items():
            _, payload = encode_message(Ack(tuple(to_ranges(seqs))))
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


def _sleep(clock: Any, seconds: float) -> defer.Deferred[None]:
    done: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, done.callback, None)
    return done
