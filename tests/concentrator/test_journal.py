"""The journal: nothing lost, nothing renumbered, the right things evicted when the disk fills."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest_twisted
from sqlalchemy.exc import OperationalError
from twisted.internet import reactor
from twisted.internet.task import deferLater

from concentrator.journal import EntryKind, JournalEntry, JournalStore
from concentrator.uplink import Journal


def payload(seq: int, size: int = 10) -> bytes:
    return f"{seq:08d}".encode() + b"x" * size


def test_entries_stay_until_acknowledged_and_keep_their_seq(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "j.db")
    seqs = [
        store.thd_append(EntryKind.READINGS, "readings", payload, now=1.0).seq for _ in range(5)
    ]
    assert seqs == [1, 2, 3, 4, 5]
    assert [e.seq for e in store.thd_pending(10)] == seqs
    assert store.thd_pending(10)[2].payload.startswith(b"00000003")
    assert store.thd_acknowledge(((1, 2), (4, 4))) == 3
    assert [e.seq for e in store.thd_pending(10)] == [3, 5]
    assert store.thd_acknowledge(((1, 2),)) == 0  # a duplicate ack changes nothing
    store.thd_close()
    reopened = JournalStore(tmp_path / "j.db")
    assert [e.seq for e in reopened.thd_pending(10)] == [3, 5]
    reopened.thd_acknowledge(((3, 5),))
    assert reopened.thd_append(EntryKind.EVENTS, "events", payload, now=2.0).seq == 6
    assert reopened.thd_stats().entries == 1


def test_kinds_can_be_drained_separately(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "j.db")
    for kind in (
        EntryKind.READINGS,
        EntryKind.EVENTS,
        EntryKind.READINGS,
        EntryKind.COMMAND_STATUS,
    ):
        store.thd_append(kind, kind.name.lower(), payload, now=1.0)
    urgent = store.thd_pending(10, kinds=(EntryKind.EVENTS, EntryKind.COMMAND_STATUS))
    assert [e.seq for e in urgent] == [2, 4]
    assert [e.seq for e in store.thd_pending(10, after_seq=2)] == [3, 4]


def test_quota_evicts_old_readings_before_alarms_and_command_results(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "j.db", quota_bytes=10 * 118)
    kinds = [EntryKind.EVENTS, EntryKind.COMMAND_STATUS] + [EntryKind.READINGS] * 12
    for kind in kinds:
        store.thd_append(kind, "t", lambda seq: payload(seq, 110), now=float(len(kinds)))
    left = store.thd_pending(100)
    assert [e.kind for e in left[:2]] == [EntryKind.EVENTS, EntryKind.COMMAND_STATUS]
    readings = [e.seq for e in left if e.kind is EntryKind.READINGS]
    assert readings == list(range(7, 15))  # the oldest readings went first
    stats = store.thd_stats()
    assert stats.evicted == 4 and stats.bytes <= store.quota_bytes


def test_a_kill_mid_burst_loses_no_committed_entry(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    writer = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from concentrator.journal import EntryKind, JournalStore
        store = JournalStore(Path({str(path)!r}))
        while True:
            entry = store.thd_append(EntryKind.READINGS, "readings", lambda s: b"%d" % s, now=0.0)
            print(entry.seq, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    confirmed = 0
    deadline = time.monotonic() + 30
    while confirmed < 300 and time.monotonic() < deadline:
        confirmed = int(process.stdout.readline())
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    store = JournalStore(path)
    seqs = [e.seq for e in store.thd_pending(100_000)]
    assert seqs[:confirmed] == list(range(1, confirmed + 1))  # every confirmed write survived
    assert seqs == list(range(1, len(seqs) + 1))  # and nothing is torn or renumbered
    assert store.thd_append(EntryKind.EVENTS, "events", payload, now=1.0).seq == len(seqs) + 1


def test_command_ids_are_remembered_across_restarts(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "j.db")
    assert store.thd_first_sight("cmd-1", now=100.0) is True
    assert store.thd_first_sight("cmd-1", now=101.0) is False
    store.thd_close()
    reopened = JournalStore(tmp_path / "j.db")
    assert reopened.thd_first_sight("cmd-1", now=102.0) is False  # the same command after a restart
    assert reopened.thd_first_sight("cmd-2", now=103.0) is True
    assert reopened.thd_first_sight("cmd-3", now=100.0 + 31 * 86_400) is True  # old ids expire
    assert reopened.thd_first_sight("cmd-1", now=100.0 + 31 * 86_400) is True


class FullDisk(JournalStore):
    """A journal whose disk is full for the next ``failures`` writes (as SQLite reports it)."""

    failures = 0

    def thd_append(self, kind: EntryKind, topic: str, build: Callable[[int], bytes],
                   now: float) -> JournalEntry:  # fmt: skip
        if self.failures:
            self.failures -= 1
            raise OperationalError(
                "INSERT", {}, sqlite3.OperationalError("database or disk is full")
            )
        return super().thd_append(kind, topic, build, now)


def _payload(body: bytes) -> Callable[[int], bytes]:
    return lambda seq: body


async def _settle(journal: Journal, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while journal.held and time.monotonic() < deadline:
        await deferLater(reactor, 0.02)


@pytest_twisted.ensureDeferred
async def test_entries_that_meet_a_full_disk_are_held_and_written_in_order(tmp_path: Path) -> None:
    store = FullDisk(tmp_path / "journal.db")
    store.failures = 3
    journal = Journal(store, reactor, retry_s=0.05)
    written: list[str] = []
    journal.on_written = lambda: written.append("kick")
    journal.start()
    try:
        for i in range(5):
            await journal.append(EntryKind.READINGS, "readings", _payload(b"r%d" % i), 0.0)
        await _settle(journal)
        entries = await journal.pending(10, None, 0)
    finally:
        journal.stop()
    assert [e.payload for e in entries] == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert journal.write_failures == 3 and written == ["kick"]
    assert sum(journal.dropped.values()) == 0


@pytest_twisted.ensureDeferred
async def test_past_the_memory_limit_old_readings_go_first_and_are_counted(tmp_path: Path) -> None:
    store = FullDisk(tmp_path / "journal.db")
    store.failures = 1000
    journal = Journal(store, reactor, max_held=3, retry_s=0.05)
    journal.start()
    try:
        for kind, body in [(EntryKind.READINGS, b"r1"), (EntryKind.COMMAND_STATUS, b"c1"),
                           (EntryKind.READINGS, b"r2"), (EntryKind.EVENTS, b"e1"),
                           (EntryKind.READINGS, b"r3")]:  # fmt: skip
            await journal.append(kind, "t", _payload(body), 0.0)
        store.failures = 0
        await _settle(journal)
        entries = await journal.pending(10, None, 0)
    finally:
        journal.stop()
    assert [e.payload for e in entries] == [b"c1", b"e1", b"r3"]
    assert journal.dropped == {"readings": 2, "events": 0, "command_status": 0}
