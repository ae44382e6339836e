"""The gateway's journal: nothing is published that was not first written here, and nothing leaves
here before the head-end says it has committed it.

Theory of operation::

    reading/event/status --append()--> entries (seq, kind, topic, payload)  [SQLite WAL, fsync]
    uplink --pending()--> publish; broker PUBACK changes nothing (a broker can lose what it acked)
    head-end ack [first, last] --acknowledge()--> entries deleted
    reconnect --> every entry still here is sent again, with its original seq (the head-end
                  drops duplicates by gateway seq)

Sequence numbers come from a counter kept in the same database and never go backwards, even
when every entry has been acknowledged and deleted, or the daemon is killed mid-write (the counter
and the entry are written in one transaction).

Disk quota: when the journal passes ``quota_bytes``, whole entries are evicted by class, oldest
first: interval readings before events, and events and command results last of all. Every
eviction is counted; health messages are never journaled (they are only current).

The store is synchronous and confined to one thread (:class:`Journal` runs it on a one-thread
pool); SQLAlchemy Core, ``synchronous=FULL``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine

__all__ = ["EntryKind", "JournalEntry", "JournalStats", "JournalStore"]


class EntryKind(IntEnum):
    """Eviction classes: lower values go first when the quota is reached."""

    READINGS = 1
    EVENTS = 2
    COMMAND_STATUS = 3


metadata = MetaData()
entries = Table(
    "entries",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", Integer, nullable=False, index=True),
    Column("topic", String, nullable=False),
    Column("created", Float, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
)
commands_seen = Table(
    "commands_seen",
    metadata,
    Column("cmd_id", String, primary_key=True),
    Column("received", Float, nullable=False),
)
counters = Table(
    "counters",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    kind: EntryKind
    topic: str
    created: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class JournalStats:
    entries: int
    bytes: int
    oldest_created: float | None
    next_seq: int
    evicted: int


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class JournalStore:
    """The journal's database; call it from one thread only (``thd_`` methods)."""

    def __init__(self, path: Path, quota_bytes: int = 64 * 1024 * 1024) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.quota_bytes = quota_bytes
        self.engine: Engine = create_engine(f"sqlite:///{path}", future=True)
        event.listen(self.engine, "connect", _pragmas)
        metadata.create_all(self.engine)
        self._thread: int | None = None
        with self.engine.begin() as connection:
            self._bytes = int(
                connection.execute(
                    select(func.coalesce(func.sum(func.length(entries.c.payload)), 0))
                ).scalar_one()
            )
            self._evicted = self._counter(connection, "evicted", 0)

    def _check_thread(self) -> None:
        current = threading.get_ident()
        if self._thread is None:
            self._thread = current
        elif self._thread != current:
            raise RuntimeError("the journal store is used from two threads")

    @staticmethod
    def _counter(connection: Connection, name: str, default: int) -> int:
        value = connection.execute(select(counters.c.value).where(counters.c.name == name)).scalar()
        return default if value is None else int(value)

    @staticmethod
    def _set_counter(connection: Connection, name: str, value: int) -> None:
        updated = connection.execute(
            update(counters).where(counters.c.name == name).values(value=value)
        ).rowcount
        if not updated:
            connection.execute(insert(counters).values(name=name, value=value))

    def thd_append(
        self, kind: EntryKind, topic: str, build: Callable[[int], bytes], now: float
    ) -> JournalEntry:
        """Allocate the next seq, build the payload with it, store both in one transaction."""
        self._check_thread()
        with self.engine.begin() as connection:
            seq = self._counter(connection, "next_seq", 1)
            payload = build(seq)
            connection.execute(
                insert(entries).values(
                    seq=seq, kind=int(kind), topic=topic, created=now, payload=payload, attempts=0
                )
            )
            self._set_counter(connection, "next_seq", seq + 1)
        self._bytes += len(payload)
        if self._bytes > self.quota_bytes:
            self._evict()
        return JournalEntry(seq, kind, topic, now, payload)

    def _evict(self) -> None:
        with self.engine.begin() as connection:
            while self._bytes > self.quota_bytes:
                oldest = connection.execute(
                    select(entries.c.seq, func.length(entries.c.payload))
                    .order_by(entries.c.kind, entries.c.seq)
                    .limit(256)
                ).all()
                if not oldest:
                    break
                doomed = []
                for seq, size in oldest:
                    doomed.append(seq)
                    self._bytes -= int(size)
                    if self._bytes <= self.quota_bytes:
                        break
                connection.execute(delete(entries).where(entries.c.seq.in_(doomed)))
                self._evicted += len(doomed)
            self._set_counter(connection, "evicted", self._evicted)

    def thd_pending(self, limit: int, kinds: tuple[EntryKind, ...] | None = None,
                    after_seq: int = 0) -> list[JournalEntry]:  # fmt: skip
        """Unacknowledged entries, oldest first (optionally of some kinds, after a seq)."""
        self._check_thread()
        query = (
            select(entries).where(entries.c.seq > after_seq).order_by(entries.c.seq).limit(limit)
        )
        if kinds is not None:
            query = query.where(entries.c.kind.in_([int(k) for k in kinds]))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [JournalEntry(r.seq, EntryKind(r.kind), r.topic, r.created, r.payload) for r in rows]

    def thd_acknowledge(self, ranges: tuple[tuple[int, int], ...]) -> int:
        """Delete the entries in ``ranges``; returns how many were deleted."""
        self._check_thread()
        deleted = 0
        with self.engine.begin() as connection:
            for first, last in ranges:
                sizes = connection.execute(
                    select(
                        func.coalesce(func.sum(func.length(entries.c.payload)), 0), func.count()
                    ).where(entries.c.seq.between(first, last))
                ).one()
                connection.execute(delete(entries).where(entries.c.seq.between(first, last)))
                self._bytes -= int(sizes[0])
                deleted += int(sizes[1])
        return deleted

    def thd_first_sight(self, cmd_id: str, now: float) -> bool:
        """Record a command id; False when it was seen before (even before a restart)."""
        self._check_thread()
        with self.engine.begin() as connection:
            seen = connection.execute(
                select(commands_seen.c.cmd_id).where(commands_seen.c.cmd_id == cmd_id)
            ).first()
            if seen is not None:
                return False
            connection.execute(insert(commands_seen).values(cmd_id=cmd_id, received=now))
            connection.execute(
                delete(commands_seen).where(commands_seen.c.received < now - 30 * 86_400)
            )
        return True

    def thd_stats(self) -> JournalStats:
        self._check_thread()
        with self.engine.connect() as connection:
            count, oldest = connection.execute(
                select(func.count(), func.min(entries.c.created))
            ).one()
            next_seq = self._counter(connection, "next_seq", 1)
        return JournalStats(int(count), self._bytes, oldest, next_seq, self._evicted)

    def thd_checkpoint(self) -> None:
        self._check_thread()
        with self.engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

    def thd_close(self) -> None:
        self.engine.dispose()
