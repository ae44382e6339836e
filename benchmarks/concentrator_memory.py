"""Resident memory of ``amr concentrator`` with 1,000 meters and a 100,000-message backlog.

Run from the repository root::

    python -m benchmarks.concentrator_memory            # 20 s per run (about 70 s, 2.5 GB of disk)
    python -m benchmarks.concentrator_memory --quick    # 8 s per run, smaller messages (about 30 s)
    python -m benchmarks.concentrator_memory --json     # the same figures as JSON
    python -m benchmarks.concentrator_memory --check    # exit 1 if the peak RSS is >= 150 MB

Subprocesses: a Mosquitto broker on a free loopback port (:class:`tests.support.mosquitto.
Mosquitto`), ``amr sim`` with 5 Modbus TCP buses of 200 meters each (the simulator allows at most
247 unit ids on a bus), and ``amr concentrator``, started twice on the same simulator:

* ``baseline``: 10 meters on one TCP bus, an empty journal;
* ``1000 meters``: all 1,000 meters on the 5 buses (named by their DRNs, as a deployed gateway's
  config names them), on a journal that already holds 100,000 unacknowledged reading messages.

Both use the shipped poll groups and batching (``config/concentrator.yaml``) except that
``status`` runs every 10 s instead of 60 s, so that polling goes on through the whole run: at
start every group of every meter is read (4 reads a meter), then each meter's status every 10 s.
The broker is reachable and this process subscribes to the gateway's topics, but no head-end
acknowledges anything, so the backlog stays: the uplink publishes up to its window of
unacknowledged messages from it, then waits, as it does when the head-end is down.

The backlog is built before the daemon starts: ReadingBatch messages of 100 status readings each
(``--quick``: 10), one per seq 1..100,000, made with :func:`protocols.link.encode_message` (one
message encoded per distinct group of meters, the seq set per entry), written through the journal's
own schema in one transaction, then opened with :class:`concentrator.journal.JournalStore` as the
daemon opens it and checked (entry count, next seq, bytes, the first entry decodes). 100 readings
is the batch the daemon itself writes for 1,000 meters (``batch.max_readings``); 100,000 of them
are 2.4 GB, so ``journal.quota_mb`` is raised to hold them (the shipped 64 MB would evict most of
the backlog on the first append). ``--readings-per-message`` changes the size: 2 readings a
message make a backlog that fits the shipped 64 MB quota.

Each run lasts a fixed window after the daemon is ready (20 s; ``--quick`` 8 s). VmRSS is sampled
every 0.25 s from /proc/PID/status; reported are VmRSS at the end, the largest sample, and VmHWM
(the kernel's peak RSS over the process's life). Target: the 1,000-meter run's peak (VmHWM) under
150 MB (10^6 bytes). The figure is also given as a ratio to the baseline run.

A run is valid only if the daemon was still running at the end, every simulated request was
answered without exception replies, the daemon announced itself online on the broker, and, after
it stopped, its journal held every backlog entry (nothing evicted) plus the readings it recorded
itself, of every configured meter; in the 1,000-meter run the broker must also have carried
messages from the backlog (the daemon read it and published a window of it).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest
from sqlalchemy import create_engine, event, func, insert, select

from benchmarks.cli import benchmark_main
from benchmarks.concentrator_line import (
    AmrProcess,
    HeadEndStub,
    bus_stats,
    control_url,
    memory_kb,
    meter_ids,
    running_broker,
)
from benchmarks.sim_fleet_cpu import process_cpu_s
from benchmarks.sim_rtu_timing import SimError
from concentrator.journal import EntryKind, JournalStore, counters, entries, metadata
from protocols.link import (
    Reading,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
)

__all__ = ["BacklogInfo", "MemoryRun", "build_backlog", "main", "run_benchmark"]

BUSES = 5
METERS_PER_BUS = 200
BASELINE_METERS = 10
BACKLOG = 100_000
FULL_READINGS_PER_MESSAGE = 100
QUICK_READINGS_PER_MESSAGE = 10
FULL_WINDOW_S = 20.0
QUICK_WINDOW_S = 8.0
SAMPLE_S = 0.25
TARGET_MB = 150.0
SHIPPED_QUOTA_MB = 64
PROFILE_NAME = "amr-prepaid-v1"
POLL_GROUPS = {
    "status": {"interval_s": 10, "alarm": True},  # shipped: 60 s
    "energy": {"interval_s": 900},
    "instant": {"interval_s": 900},
    "identity": {"interval_s": 86400},
}
BATCH = {"max_readings": 100, "max_delay_s": 10}  # as shipped
INSERT_CHUNK = 2_000


def mb(kb: int) -> float:
    """kB as /proc reports them (KiB) to MB (10^6 bytes)."""
    return kb * 1024 / 1e6


# --- the backlog -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BacklogInfo:
    messages: int
    readings_per_message: int
    payload_bytes: int  # the journal's own count: the sum of the payloads
    file_bytes: int
    build_s: float


def _status_reading(meter: str, now: float, index: int) -> Reading:
    """A status-group reading of amr-prepaid-v1, as the concentrator records it."""
    return Reading(
        meter=meter,
        time=now,
        meter_time=float(int(now) - index % 7),
        values={
            "credit_remaining": Decimal(f"{40 + index % 60}.{index % 100:02d}"),
            "emergency_credit_remaining": Decimal("0.00"),
            "relay_state": 0,
            "status_flags": 1 if index % 50 == 0 else 0,
            "meter_clock": int(now) - index % 7,
            "active_tariff_band": 1 + index % 4,
            "tou_active_version": 1,
        },
    )


def build_backlog(
    path: Path, gateway: str, drns: Sequence[str], messages: int, readings_per_message: int
) -> BacklogInfo:
    """``messages`` unacknowledged ReadingBatch entries (seq 1..messages) in a new journal.

    JournalStore.thd_append costs about 1 ms per entry (one transaction and SQLAlchemy's per
    statement work), 100 s for 100,000: the entries are inserted in one transaction, with the
    journal's own tables, and the journal is then opened as the daemon opens it and checked.
    """
    began = time.perf_counter()
    every_s = 60.0 * readings_per_message / len(drns)  # every meter's status once a minute
    now = time.time() - messages * every_s  # the outage began when the backlog did
    topic = gateway_topic(gateway, Topic.READINGS)
    groups = max(1, len(drns) // readings_per_message)
    marker = 987_654_321  # stands for the seq in the encoded template
    templates: list[tuple[bytes, bytes]] = []
    for group in range(groups):
        readings = tuple(
            _status_reading(drns[(group * readings_per_message + i) % len(drns)], now, i)
            for i in range(readings_per_message)
        )
        _, payload = encode_message(ReadingBatch(gateway, marker, now, readings))
        head, tail = payload.split(b'"seq":%d' % marker, 1)
        templates.append((head + b'"seq":', tail))

    def fast(connection: Any, _record: Any) -> None:  # a fixture: no WAL, no fsync
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=OFF")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.close()

    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", fast)
    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            rows: list[dict[str, Any]] = []
            for seq in range(1, messages + 1):
                head, tail = templates[seq % groups]
                created = now + seq * every_s
                rows.append({"seq": seq, "kind": int(EntryKind.READINGS), "topic": topic,
                             "created": created, "payload": head + b"%d" % seq + tail,
                             "attempts": 0})  # fmt: skip
                if len(rows) == INSERT_CHUNK:
                    connection.execute(insert(entries), rows)
                    rows = []
            if rows:
                connection.execute(insert(entries), rows)
            connection.execute(insert(counters).values(name="next_seq", value=messages + 1))
    finally:
        engine.dispose()
    store = JournalStore(path, 1 << 50)
    try:
        stats = store.thd_stats()
        first = store.thd_pending(1, (EntryKind.READINGS,), 0)
        last = store.thd_pending(1, None, messages - 1)
    finally:
        store.thd_close()
    if stats.entries != messages or stats.next_seq != messages + 1 or stats.evicted:
        raise SimError(f"the backlog journal is not as built: {stats}")
    for entry, seq in ((first, 1), (last, messages)):
        decoded = decode_message(Topic.READINGS, entry[0].payload) if entry else None
        if not isinstance(decoded, ReadingBatch) or decoded.seq != seq:
            raise SimError(f"backlog entry {seq} does not decode as ReadingBatch seq {seq}")
        if len(decoded.readings) != readings_per_message:
            raise SimError(f"backlog entry {seq} has {len(decoded.readings)} readings")
    return BacklogInfo(
        messages=messages,
        readings_per_message=readings_per_message,
        payload_bytes=stats.bytes,
        file_bytes=path.stat().st_size,
        build_s=time.perf_counter() - began,
    )


@dataclass(frozen=True, slots=True)
class JournalAfter:
    entries: int
    backlog_kept: int
    next_seq: int
    evicted: int
    new_readings: int  # readings in the entries the daemon wrote
    meters_read: int  # distinct meters among them


def journal_after(path: Path, backlog: int) -> JournalAfter:
    """What the daemon left in its journal: the backlog, and the readings it recorded itself."""
    store = JournalStore(path, 1 << 50)
    readings: list[str] = []
    try:
        stats = store.thd_stats()
        with store.engine.connect() as connection:
            kept = connection.execute(
                select(func.count()).where(entries.c.seq <= backlog)
            ).scalar_one()
        after = backlog
        while batch := store.thd_pending(500, (EntryKind.READINGS,), after):
            for entry in batch:
                decoded = decode_message(Topic.READINGS, entry.payload)
                assert isinstance(decoded, ReadingBatch)
                readings += [reading.meter for reading in decoded.readings]
            after = batch[-1].seq
    finally:
        store.thd_close()
    return JournalAfter(stats.entries, int(kept), stats.next_seq, stats.evicted, len(readings),
                        len(set(readings)))  # fmt: skip


# --- one run of the daemon -------------------------------------------------------------------------


@dataclass(slots=True)
class MemoryRun:
    name: str
    meters: int
    backlog: int
    window_s: float = 0.0
    start_s: float = 0.0
    rss_kb: int = 0
    max_sampled_kb: int = 0
    hwm_kb: int = 0
    samples: int = 0
    cpu_s: float = 0.0
    polls: int = 0
    requests: int = 0
    exceptions: int = 0
    unanswered: int = 0
    online: bool = False
    reading_messages: int = 0
    backlog_messages_published: int = 0
    journal_entries: int = 0
    backlog_kept: int = 0
    new_entries: int = 0
    new_readings: int = 0
    meters_read: int = 0
    evicted: int = 0
    alive: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def rss_mb(self) -> float:
        return mb(self.rss_kb)

    @property
    def peak_mb(self) -> float:
        return mb(max(self.hwm_kb, self.max_sampled_kb))

    @property
    def checks(self) -> dict[str, bool]:
        checks = {
            "rss_sampled": self.samples > 0 and self.rss_kb > 0 and self.hwm_kb > 0,
            "gateway_running": self.alive,
            "every_request_answered": self.requests == self.polls and self.unanswered == 0,
            "no_exception_replies": self.exceptions == 0,
            "every_meter_read": self.meters_read == self.meters,
            "online_on_broker": self.online,
            "new_messages_journaled": self.new_entries > 0,
            "backlog_kept": self.backlog_kept == self.backlog and self.evicted == 0,
        }
        if self.backlog:
            checks["backlog_published"] = self.backlog_messages_published > 0
        return checks

    @property
    def valid(self) -> bool:
        return all(self.checks.values())


def _tcp_ports(output: Sequence[str]) -> dict[str, int]:
    ports = {}
    for line in output:
        found = re.search(r"^\s+([a-z][a-z0-9_-]*): modbus-tcp \S+:(\d+)", line)
        if found:
            ports[found.group(1)] = int(found.group(2))
    return ports


def gateway_config(
    gateway: str,
    folder: Path,
    broker_port: int,
    ports: dict[str, int],
    drns: dict[tuple[str, int], str],
    meters: int,
    quota_mb: int,
) -> dict[str, Any]:
    buses = []
    for index in range(math.ceil(meters / METERS_PER_BUS)):
        name = f"tcp{index + 1}"
        count = min(METERS_PER_BUS, meters - index * METERS_PER_BUS)
        buses.append({
            "name": name, "type": "modbus-tcp", "host": "127.0.0.1", "port": ports[name],
            "meters": [{"address": unit, "profile": PROFILE_NAME, "meter_id": drns[(name, unit)]}
                       for unit in range(1, count + 1)],
        })  # fmt: skip
    return {
        "gateway_id": gateway,
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "keepalive_s": 60},
        "journal": {"path": str(folder / "journal.db"), "quota_mb": quota_mb},
        "poll_groups": POLL_GROUPS,
        "batch": BATCH,
        "buses": buses,
    }


def measure(
    run: MemoryRun,
    config: dict[str, Any],
    folder: Path,
    broker_port: int,
    control: str,
    window_s: float,
) -> MemoryRun:
    gateway = str(config["gateway_id"])
    before = bus_stats(control)
    with (
        HeadEndStub(broker_port, gateway, ack=False, client_id=f"bench-{gateway}") as headend,
        AmrProcess("concentrator", config, folder) as daemon,
    ):
        run.start_s = daemon.started_in_s
        pid = daemon.pid
        cpu0, began = process_cpu_s(pid), time.perf_counter()
        while True:
            run.max_sampled_kb = max(run.max_sampled_kb, memory_kb(pid).get("VmRSS", 0))
            run.samples += 1
            if time.perf_counter() - began >= window_s or not daemon.running:
                break
            time.sleep(SAMPLE_S)
        run.alive = daemon.running
        if run.alive:
            status = memory_kb(pid)
            run.rss_kb, run.hwm_kb = status.get("VmRSS", 0), status.get("VmHWM", 0)
            run.cpu_s = process_cpu_s(pid) - cpu0
        run.window_s = time.perf_counter() - began
        after = bus_stats(control)
        run.errors = [line.rstrip() for line in daemon.output if "Traceback" in line][:5]
        with headend.lock:
            run.online = headend.online
            run.reading_messages = len(headend.reading_seqs)
            run.backlog_messages_published = len(
                {s for s in headend.reading_seqs if s <= run.backlog}
            )
    for name in before:
        delta = {key: after[name][key] - before[name][key] for key in before[name]}
        run.polls += int(delta["replies"])
        run.requests += int(delta["requests"])
        run.exceptions += int(delta["exceptions"])
        run.unanswered += int(delta["unanswered"])
    journal = journal_after(folder / "journal.db", run.backlog)
    run.journal_entries, run.backlog_kept, run.evicted = (
        journal.entries,
        journal.backlog_kept,
        journal.evicted,
    )
    run.new_entries = journal.next_seq - 1 - run.backlog
    run.new_readings, run.meters_read = journal.new_readings, journal.meters_read
    return run


@dataclass(slots=True)
class MemoryResult:
    baseline: MemoryRun
    full: MemoryRun
    backlog: BacklogInfo
    quota_mb: int
    window_s: float
    sim_start_s: float

    @property
    def valid(self) -> bool:
        return self.baseline.valid and self.full.valid

    @property
    def fraction_of_target(self) -> float:
        return self.full.peak_mb / TARGET_MB

    @property
    def ratio_to_baseline(self) -> float:
        return self.full.peak_mb / self.baseline.peak_mb if self.baseline.peak_mb else 0.0

    @property
    def passed(self) -> bool:
        return self.valid and self.full.peak_mb < TARGET_MB


def run_benchmark(quick: bool = False, readings_per_message: int | None = None) -> MemoryResult:
    window_s = QUICK_WINDOW_S if quick else FULL_WINDOW_S
    per_message = readings_per_message or (
        QUICK_READINGS_PER_MESSAGE if quick else FULL_READINGS_PER_MESSAGE
    )
    meters = BUSES * METERS_PER_BUS
    with (
        tempfile.TemporaryDirectory(prefix="concentrator-memory-") as tmp,
        running_broker(Path(tmp) / "mosquitto") as broker,
    ):
        folder = Path(tmp)
        sim_config = {
            "control": {"host": "127.0.0.1", "port": 0},
            "run_dir": str(folder / "sim" / "run"),
            "buses": [
                {"name": f"tcp{index + 1}", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                 "profile": PROFILE_NAME,
                 "meters": {"count": METERS_PER_BUS, "first_serial": 10_001 + index * 1000}}
                for index in range(BUSES)
            ],
        }  # fmt: skip
        (folder / "sim").mkdir()
        with AmrProcess("sim", sim_config, folder / "sim") as sim:
            control = control_url(sim.output)
            ports = _tcp_ports(sim.output)
            if sorted(ports) != [f"tcp{index + 1}" for index in range(BUSES)]:
                raise SimError("amr sim printed no TCP ports for every bus:\n" + sim.tail())
            drns = meter_ids(control)
            full_folder = folder / "full"
            backlog = build_backlog(full_folder / "journal.db", "gw-bench-full",
                                    [drns[k] for k in sorted(drns)], BACKLOG, per_message)  # fmt: skip
            quota_mb = max(SHIPPED_QUOTA_MB, math.ceil(backlog.payload_bytes * 1.5 / 2**20))
            base_folder = folder / "baseline"
            base_folder.mkdir()
            baseline = measure(
                MemoryRun("baseline", BASELINE_METERS, 0),
                gateway_config("gw-bench-base", base_folder, broker.port, ports, drns,
                               BASELINE_METERS, quota_mb),
                base_folder, broker.port, control, window_s,
            )  # fmt: skip
            full = measure(
                MemoryRun(f"{meters} meters", meters, BACKLOG),
                gateway_config("gw-bench-full", full_folder, broker.port, ports, drns, meters,
                               quota_mb),
                full_folder, broker.port, control, window_s,
            )  # fmt: skip
            sim_start_s = sim.started_in_s
    return MemoryResult(baseline, full, backlog, quota_mb, window_s, sim_start_s)


# --- reporting -------------------------------------------------------------------------------------


def _run_json(run: MemoryRun) -> dict[str, Any]:
    return {
        "name": run.name,
        "meters": run.meters,
        "backlog_messages": run.backlog,
        "start_s": run.start_s,
        "window_s": run.window_s,
        "rss_kb": run.rss_kb,
        "rss_mb": run.rss_mb,
        "max_sampled_rss_mb": mb(run.max_sampled_kb),
        "vm_hwm_kb": run.hwm_kb,
        "peak_rss_mb": run.peak_mb,
        "samples": run.samples,
        "cpu_s": run.cpu_s,
        "polls": run.polls,
        "requests": run.requests,
        "exception_replies": run.exceptions,
        "unanswered": run.unanswered,
        "online": run.online,
        "reading_messages_received": run.reading_messages,
        "backlog_messages_published": run.backlog_messages_published,
        "journal_entries_after": run.journal_entries,
        "backlog_entries_kept": run.backlog_kept,
        "new_journal_entries": run.new_entries,
        "new_readings": run.new_readings,
        "meters_read": run.meters_read,
        "evicted": run.evicted,
        "checks": run.checks,
        "valid": run.valid,
        "errors": run.errors,
    }


def as_json(result: MemoryResult, quick: bool) -> dict[str, Any]:
    backlog = result.backlog
    return {
        "benchmark": "concentrator_memory",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": quick,
        "buses": BUSES,
        "meters": BUSES * METERS_PER_BUS,
        "poll_groups": POLL_GROUPS,
        "batch": BATCH,
        "simulator_start_s": result.sim_start_s,
        "backlog": {
            "messages": backlog.messages,
            "readings_per_message": backlog.readings_per_message,
            "payload_bytes": backlog.payload_bytes,
            "file_bytes": backlog.file_bytes,
            "build_s": backlog.build_s,
        },
        "journal_quota_mb": result.quota_mb,
        "window_s": result.window_s,
        "runs": {"baseline": _run_json(result.baseline), "full": _run_json(result.full)},
        "rss_mb": result.full.rss_mb,
        "peak_rss_mb": result.full.peak_mb,
        "baseline_rss_mb": result.baseline.rss_mb,
        "baseline_peak_rss_mb": result.baseline.peak_mb,
        "target_mb": TARGET_MB,
        "fraction_of_target": result.fraction_of_target,
        "ratio_to_baseline": result.ratio_to_baseline,
        "valid": result.valid,
        "passed": result.passed,
    }


def as_table(result: MemoryResult, quick: bool) -> str:
    backlog = result.backlog
    lines = [
        f"amr concentrator resident memory{' (--quick)' if quick else ''}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"simulator: {BUSES} Modbus TCP buses x {METERS_PER_BUS} meters ({PROFILE_NAME}); poll "
        "groups as shipped but status every 10 s; no head-end acks",
        f"backlog: {backlog.messages:,} ReadingBatch messages of {backlog.readings_per_message} "
        f"readings, {backlog.payload_bytes / 1e6:,.0f} MB of payload ({backlog.file_bytes / 1e6:,.0f}"
        f" MB file, built in {backlog.build_s:.1f} s); journal quota {result.quota_mb} MiB",
        f"each run: {result.window_s:g} s after the daemon is ready, VmRSS sampled every "
        f"{SAMPLE_S:g} s; MB = 10^6 bytes",
        "",
        f"{'run':<13}{'meters':>7}{'backlog':>9}{'start s':>8}{'polls':>7}{'RSS MB':>8}"
        f"{'peak MB':>9}{'x base':>8}{'CPU s':>7}  checks",
    ]
    for run in (result.baseline, result.full):
        failed = [name for name, ok in run.checks.items() if not ok]
        ratio = run.peak_mb / result.baseline.peak_mb if result.baseline.peak_mb else 0.0
        lines.append(
            f"{run.name:<13}{run.meters:>7}{run.backlog:>9,}{run.start_s:>8.1f}{run.polls:>7}"
            f"{run.rss_mb:>8.1f}{run.peak_mb:>9.1f}{ratio:>8.2f}{run.cpu_s:>7.2f}  "
            + ("ok" if not failed else "FAILED " + ", ".join(failed))
        )
    full = result.full
    lines += [
        "",
        f"1000 meters: {full.reading_messages} reading messages reached the broker "
        f"({full.backlog_messages_published} of them from the backlog); journal after the run: "
        f"{full.journal_entries:,} entries ({full.backlog_kept:,} backlog kept, "
        f"{full.new_entries} new with {full.new_readings:,} readings of {full.meters_read} meters, "
        f"{full.evicted} evicted)",
        f"peak RSS {full.peak_mb:.1f} MB = {result.fraction_of_target:.0%} of the {TARGET_MB:g} MB "
        f"target, {result.ratio_to_baseline:.2f} x the baseline's {result.baseline.peak_mb:.1f} MB",
    ]
    for run in (result.baseline, result.full):
        lines += [f"{run.name}: {error}" for error in run.errors]
    verdict = "PASS" if result.passed else "FAIL"
    lines.append(f"result: {verdict} (target: peak RSS < {TARGET_MB:g} MB, valid runs)")
    return "\n".join(lines)


def _readings_per_message(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("--readings-per-message must be 1..1000")
    return value


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--readings-per-message",
        type=_readings_per_message,
        metavar="N",
        help=f"readings in each backlog message (default {FULL_READINGS_PER_MESSAGE}, "
        f"--quick {QUICK_READINGS_PER_MESSAGE})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        argv, name="concentrator_memory",
        description="Resident memory of amr concentrator: 1,000 meters, 100,000-message backlog.",
        quick_help=f"{QUICK_WINDOW_S:g} s per run",
        check_help="exit 1 if the target is missed or a run is invalid", arguments=_arguments,
        run=lambda args: run_benchmark(quick=args.quick,
                                       readings_per_message=args.readings_per_message),
        as_json=as_json, as_table=as_table, passed=lambda result: result.passed,
        errors=(SimError, OSError, RuntimeError, pytest.fail.Exception),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
