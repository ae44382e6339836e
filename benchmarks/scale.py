"""Scale-out: readings per second a head-end sustains, with one and two processes, the meters that
makes at 15-minute reads, and the token push latency under load; on a real Mosquitto and PostgreSQL.

Run from the repository root::

    python -m benchmarks.scale            # about 8 minutes
    python -m benchmarks.scale --quick    # a tiny configuration, about 30 s (the CI smoke test)
    python -m benchmarks.scale --json     # the same figures as JSON
    python -m benchmarks.scale --check    # exit 1 if the run is invalid or a target is not met

Processes, all on this machine: PostgreSQL (:class:`tests.support.postgres.Postgres`, its test
settings: ``fsync = off``), and for each phase a fresh Mosquitto (:class:`tests.support.mosquitto.
Mosquitto`: persistence on, autosave every second; its folder is made writable by the broker's user
so that the persistence file is really written, as in a deployment), a fresh database, ``amr
headend`` processes (default settings: group commits of up to 5000 readings, one MQTT connection
each, shared subscriptions ``$share/<group>/...``) and ``amr loadgen`` (:mod:`simulator.loadgen`:
one process, each gateway its own MQTT client, 100 meters per gateway, each batch the full read of
every meter, 25 values, ~65 KB). Before a head-end starts, the gateways and their meters are
registered in the database as their retained state messages would register them (what a running
system has), and the tables are ANALYZEd; the load generator still announces every gateway when it
connects. Each phase's database is a copy of one migrated once (``CREATE DATABASE ... TEMPLATE``);
the head-ends of a phase start together and count as started once connected to the broker.

(a) One head-end, saturated: 200 gateways (``--quick`` 10 of 20 meters) publish as fast as the
head-end acknowledges, each with at most 4 batches unacknowledged: 800 batches, 80,000 readings in
flight, against the 100 messages Mosquitto hands a subscriber at a time, so the broker always holds
a backlog for the head-end. The load generator competes with the head-end for this machine's 2
CPUs as little as it can: it runs at nice 10 (it takes only the CPU that the head-end, PostgreSQL
and Mosquitto leave) and builds each gateway's values afresh only every 20 polls (in between, only
the times and seq of the batch change: the bytes encode_message would give, for a tenth of the
CPU; a full build costs more per reading than the head-end's whole ingest). Sustained rate =
readings acknowledged by the head-end (its application ack, sent only after the commit) per second
over a steady window: from 15 s after the first poll (``--quick`` 1 s) to the end of the 75 s of
polling (``--quick`` 3 s).

(b) The same with two head-end processes sharing the subscription (the same database and group),
and the ratio two / one.

(c) Meters this machine carries at one reading per 15 minutes: the better of (a) and (b) x 900 s,
against the target of 1,000,000 meters (1,111 readings/s).

(d) Token push latency under load: 2,000 gateways (``--quick`` 40 of 10 meters) publish at the
target rate (one batch per gateway every 180 s), or at 0.9 x the better sustained rate when that is
lower (``--quick``: at most 200 readings/s), with the head-end count of (c); the load generator at
normal priority, as it plays the meters. After 20 s (``--quick`` 1.5 s), 100 tokens (``--quick`` 5) are
sold through the API (POST /api/v1/vends, one every 0.3 s, round robin over 20 meters of different
gateways); the load generator answers each token command as a meter would (``received`` at once,
``applied`` 0.1 s later). Latency = the command's ``queued`` (the sale) to ``applied`` (the status
committed), both from the head-end's history. Target: p99 < 2 s.

A run is valid when, in every phase: every gateway connected; at the end everything published was
acknowledged; every published reading is stored exactly once (per gateway, the rows in ``readings``
and the batches in ``uplink_seen`` equal what the load generator published; (meter, time) is unique,
so a resent batch stores nothing twice); every meter is registered; no head-end died or logged a
traceback. (a) and (b) are valid only if the head-ends were the bottleneck: the load generator kept
at least half its window unacknowledged throughout the steady window (a backlog never drained) and
used less than 90 % of a CPU (so it was not what set the pace). (d) is valid only if the head-ends
kept up with the load (readings acknowledged at >= 90 % of the offered rate while the tokens were
sold) and every token was applied.

The machine's load average is recorded before and after each phase: on a shared 2-CPU machine the
figures move with whatever else runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pwd
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest
import sqlalchemy as sa
import yaml

from benchmarks.cli import benchmark_main
from benchmarks.headend_vending import (
    MASTER_KEY,
    MASTER_KEY_ENV,
    PACE_S,
    PASSWORD,
    PASSWORD_ENV,
    TARIFF,
    VENDING_KEY,
    Daemon,
    LatencyRun,
    add_admin,
    open_accounts,
    push_tokens,
    summary_ms,
)
from benchmarks.sim_fleet_cpu import process_cpu_s
from benchmarks.sim_rtu_timing import AMR, REPO_ROOT, START_TIMEOUT_S, SimError
from headend.config import HeadendConfig
from headend.records import thd_gateway_state
from headend.service import ensure_signing_key
from headend.store import make_engine, upgrade
from headend.store.schema import meters, readings, uplink_seen
from protocols.link import GatewayState
from simulator.loadgen import LoadConfig, gateway_ids, meter_ids
from tests.support.api import Api, ApiFailure
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import Postgres

__all__ = ["IngestPhase", "PushPhase", "Report", "main", "run_benchmark"]

TARGET_METERS = 1_000_000
READ_INTERVAL_S = 900.0  # one reading per meter every 15 minutes
TARGET_RATE = TARGET_METERS / READ_INTERVAL_S  # 1,111 readings/s
TARGET_P99_MS = 2000.0
APPLY_DELAY_S = 0.1  # the meter's write and read-back, as the load generator plays it
MIN_BACKLOG = 0.5  # of the load generator's window, held unacknowledged during a saturated run
MAX_LOADGEN_CPU = 0.9  # of one CPU: above it, the load generator may be what limits the rate
MIN_KEPT_UP = 0.9  # of the offered rate, acknowledged while tokens are pushed
LOAD_MARGIN = 0.9  # (d) runs at this share of the sustained rate when that is below the target
LOADGEN_NICE = 10  # (a), (b): the load generator takes only the CPU the head-end side leaves
REBUILD_EVERY = 20  # (a), (b): each gateway's values built afresh every 20 polls (a tenth the CPU)


@dataclass(frozen=True)
class Plan:
    """The sizes of one run (full or --quick)."""

    saturate_gateways: int
    saturate_meters: int
    window: int
    poll_s: float  # polling time of a saturated run
    warm_s: float  # excluded from the steady window
    push_gateways: int
    push_meters: int
    push_warm_s: float
    tokens: int
    token_meters: int
    start_delay_s: float


FULL = Plan(200, 100, 4, 75.0, 15.0, 2000, 100, 20.0, 100, 20, 5.0)
QUICK = Plan(10, 20, 4, 3.0, 1.0, 40, 10, 1.5, 5, 5, 0.5)


# --- processes -------------------------------------------------------------------------------------


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def server_cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` and its children: PostgreSQL's postmaster and its backends
    (each backend calls setsid(), so they are not in the postmaster's process group). Backends that
    already exited are not counted: the benchmark's own connections come and go, the head-ends'
    pools stay."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(entry.name) == pid or int(fields[1]) == pid:  # field 4 of proc(5): the parent
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextlib.contextmanager
def broker(folder: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto whose persistence file can be written: Mosquitto started as root runs as
    the ``mosquitto`` user, which cannot write to (or reach) a folder of root's."""
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam("mosquitto")
            for parent in (folder.parent, *folder.parent.parents):
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o001)  # search only
            shutil.chown(folder, account.pw_uid, account.pw_gid)
    mosquitto = Mosquitto(folder)
    try:
        mosquitto.start()
        yield mosquitto
    finally:
        mosquitto.stop()


def mosquitto_version() -> str:
    done = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()[:1]
    return first[0].replace("mosquitto version ", "") if first else "?"


class Loadgen:
    """``amr loadgen --json --batches ...`` as a subprocess; its progress rows are read as they
    come and ``on_progress`` is called with each (in the reader thread)."""

    def __init__(self, config: LoadConfig, folder: Path,
                 on_progress: Callable[[dict[str, Any]], None] | None = None,
                 nice: int = 0) -> None:  # fmt: skip
        self.config = config
        self.folder = folder
        self.nice = nice
        self.on_progress = on_progress
        self.progress: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None
        self.other: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._rows: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def command(self) -> list[str]:
        c = self.config
        amr = [str(AMR)] if AMR.exists() else [sys.executable, "-m", "headend.cli.main"]
        if self.nice:
            amr = ["nice", "-n", str(self.nice), *amr]  # nice execs: the pid stays the loadgen's
        return [*amr, "loadgen", "--json", "--batches", "--broker", f"{c.host}:{c.port}",
                "--gateways", str(c.gateways), "--meters-per-gateway", str(c.meters_per_gateway),
                "--interval", repr(c.interval_s), "--duration", repr(c.duration_s),
                "--window", str(c.window), "--ack-timeout", repr(c.ack_timeout_s),
                "--apply-delay", repr(c.apply_delay_s), "--prefix", c.prefix,
                "--first-serial", str(c.first_serial), "--start-delay", repr(c.start_delay_s),
                "--drain-timeout", repr(c.drain_timeout_s),
                "--rebuild-every", str(c.rebuild_every)]  # fmt: skip

    def start(self) -> None:
        stderr = (self.folder / "loadgen.log").open("w")
        self.process = subprocess.Popen(self.command(), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
        stderr.close()
        self._reader = threading.Thread(target=self._read, name="loadgen-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                row = json.loads(line)
            except ValueError:
                self.other.append(line)
                continue
            if row.get("type") == "progress":
                if self.on_progress is not None:
                    self.on_progress(row)
                self.progress.append(row)
                self._rows.put(row)
            elif row.get("type") == "summary":
                self.summary = row
        self._rows.put(None)

    def wait_until(self, condition: Callable[[dict[str, Any]], bool], timeout_s: float) -> None:
        """Block until a progress row satisfies ``condition``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SimError("amr loadgen: timed out waiting for its progress")
            try:
                row = self._rows.get(timeout=remaining)
            except queue.Empty:
                continue
            if row is None:
                raise SimError(f"amr loadgen ended early:\n{self.log_tail()}")
            if condition(row):
                return

    def wait(self, timeout_s: float) -> dict[str, Any]:
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise SimError(f"amr loadgen did not finish in {timeout_s:.0f} s") from None
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self.summary is None:
            raise SimError(f"amr loadgen exited with {self.process.returncode} and no summary:\n"
                           + self.log_tail())  # fmt: skip
        return self.summary

    def log_tail(self, lines: int = 20) -> str:
        path = self.folder / "loadgen.log"
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(text[-lines:] + self.other[-5:])

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def headend_config(folder: Path, db_url: str, broker_port: int, phase: str,
                   index: int) -> dict[str, Any]:  # fmt: skip
    name = f"scale-{phase}-{index + 1}"
    return {
        "node_id": name,
        "database": {"url": db_url},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "client_id": name,
                 "share_group": f"scale_{phase}"},
        "keys": {"signing_key_file": str(folder / "signing.pem")},
        "api": {"host": "127.0.0.1", "port": 0},
    }  # fmt: skip


@contextlib.contextmanager
def headends(count: int, folder: Path, db_url: str, broker_port: int, phase: str,
             env: dict[str, str]) -> Iterator[list[Daemon]]:  # fmt: skip
    """``count`` head-end processes on one database and one broker, started together (the
    command-signing key they share is made first), each until it is connected to the broker."""
    ensure_signing_key(folder / "signing.pem")
    daemons = [
        Daemon("headend", headend_config(folder, db_url, broker_port, phase, index),
               folder / f"headend-{index + 1}", "API on http://", env)
        for index in range(count)
    ]  # fmt: skip
    failures: list[BaseException] = []

    def start(daemon: Daemon) -> None:
        try:
            daemon.folder.mkdir(parents=True, exist_ok=True)
            daemon.start()
            deadline = time.monotonic() + START_TIMEOUT_S
            while not any("Connected to the broker" in line for line in daemon.output):
                if time.monotonic() > deadline or not daemon.running:
                    raise SimError("amr headend did not connect to the broker:\n" + daemon.tail())
                time.sleep(0.05)
        except BaseException as exc:
            failures.append(exc)

    try:
        starting = [threading.Thread(target=start, args=(d,), name=f"start-{d.config['node_id']}")
                    for d in daemons]  # fmt: skip
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        if failures:
            raise failures[0]
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def api_base(daemon: Daemon) -> str:
    found = re.search(r"API on (http://127\.0\.0\.1:\d+)/", "".join(daemon.output))
    if found:
        return found.group(1)
    raise SimError("amr headend printed no API address:\n" + daemon.tail())


TEMPLATE = "scale_template"


def fresh_database(postgres: Postgres, name: str) -> str:
    """A new database with the head-end's schema: a copy of a template migrated once (running
    every migration for each phase would take longer than a --quick phase)."""
    with postgres.admin() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
            engine = make_engine(postgres.url_for(TEMPLATE))
            try:
                upgrade(engine)
            finally:
                engine.dispose()
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return postgres.url_for(name)


def seed_gateways(db_url: str, config: LoadConfig) -> float:
    """Register the load generator's gateways and meters as their state messages would (what a
    running system already has), then ANALYZE; the seconds it took."""
    began = time.perf_counter()
    engine = make_engine(db_url)
    try:
        defaults = HeadendConfig().meter_defaults
        now = time.time()
        ids = gateway_ids(config)
        for first in range(0, len(ids), 50):
            with engine.begin() as connection:
                for index in range(first, min(first + 50, len(ids))):
                    state = GatewayState(ids[index], now, False, "loadgen",
                                         meter_ids(config, index))  # fmt: skip
                    thd_gateway_state(connection, state, defaults, now)
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return time.perf_counter() - began


@dataclass
class Stored:
    """What the database holds of one load generator run, per gateway."""

    readings: dict[str, int]
    batches: dict[str, int]
    meters: int


def stored(db_url: str, prefix: str) -> Stored:
    engine = make_engine(db_url)
    like = f"{prefix}-%"
    try:
        with engine.connect() as connection:
            by_gateway = connection.execute(
                sa.select(readings.c.gateway_id, sa.func.count())
                .where(readings.c.gateway_id.like(like))
                .group_by(readings.c.gateway_id)
            ).all()
            seen = connection.execute(
                sa.select(uplink_seen.c.gateway_id, sa.func.count())
                .where(uplink_seen.c.gateway_id.like(like), uplink_seen.c.topic == "readings")
                .group_by(uplink_seen.c.gateway_id)
            ).all()
            meter_count = connection.execute(
                sa.select(sa.func.count()).select_from(meters).where(meters.c.gateway_id.like(like))
            ).scalar()
    finally:
        engine.dispose()
    return Stored({str(g): int(n) for g, n in by_gateway}, {str(g): int(n) for g, n in seen},
                  int(meter_count or 0))  # fmt: skip


def delivery_checks(summary: dict[str, Any], store: Stored, config: LoadConfig) -> dict[str, bool]:
    """Every published reading stored exactly once, every batch seen once, every meter known."""
    published = summary["batches_by_gateway"]
    expected_readings = {
        g: sum(n for _, n in batches) for g, batches in published.items() if batches
    }
    expected_batches = {g: len(batches) for g, batches in published.items() if batches}
    return {
        "every_gateway_connected": summary["connected"] == config.gateways,
        "everything_acknowledged": summary["drained"] and summary["unacked_left"] == 0
        and summary["due_left"] == 0,
        "something_published": summary["readings"] > 0,
        "every_reading_stored_once": store.readings == expected_readings
        and sum(store.readings.values()) == summary["readings"],
        "every_batch_committed_once": store.batches == expected_batches,
        "every_meter_registered": store.meters == config.gateways * config.meters_per_gateway,
    }  # fmt: skip


def daemon_errors(daemons: Sequence[Daemon]) -> list[str]:
    errors = [f"amr headend ({d.config['node_id']}) exited with {d.process.returncode}"
              for d in daemons if d.process is not None and d.process.poll() is not None]  # fmt: skip
    errors += [line.rstrip() for d in daemons for line in d.output if "Traceback" in line]
    return errors[:5]


@dataclass
class CpuSample:
    t: float
    acked_readings: int
    unacked: int
    producing: bool
    cpu_s: dict[str, float]


class CpuWatch:
    """CPU seconds of every process of the run, sampled at each of the load generator's rows."""

    def __init__(self, pids: dict[str, int], pg_pid: int) -> None:
        self.pids = pids
        self.pg_pid = pg_pid
        self.samples: list[CpuSample] = []

    def __call__(self, row: dict[str, Any]) -> None:
        cpu: dict[str, float] = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError, ValueError, IndexError):
                cpu[name] = process_cpu_s(pid)
        cpu["postgresql"] = server_cpu_s(self.pg_pid)
        self.samples.append(CpuSample(float(row["t"]), int(row["acked_readings"]),
                                      int(row["unacked"]), bool(row["producing"]), cpu))  # fmt: skip


def steady(samples: Sequence[CpuSample], warm_s: float) -> tuple[CpuSample, CpuSample] | None:
    """The first sample at or after ``warm_s`` and the last one while polling went on."""
    producing = [s for s in samples if s.producing]
    after = [s for s in producing if s.t >= warm_s]
    if len(after) < 2:
        return None
    return after[0], producing[-1]


# --- (a), (b): saturated ingest ----------------------------------------------------------------


@dataclass
class IngestPhase:
    name: str
    headends: int
    config: LoadConfig
    window_s: float
    acked_in_window: int
    min_unacked: int
    cpu_share: dict[str, float]  # CPUs used by each process over the steady window
    summary: dict[str, Any]
    checks: dict[str, bool]
    seed_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.acked_in_window / self.window_s if self.window_s > 0 else 0.0

    @property
    def valid(self) -> bool:
        return all(self.checks.values()) and not self.errors


def _cpu_share(first: CpuSample, last: CpuSample) -> dict[str, float]:
    span = last.t - first.t
    return {name: (last.cpu_s[name] - first.cpu_s.get(name, 0.0)) / span
            for name in last.cpu_s if span > 0}  # fmt: skip


def run_ingest(postgres: Postgres, root: Path, plan: Plan, count: int, env: dict[str, str],
               quick: bool) -> IngestPhase:  # fmt: skip
    phase = "one" if count == 1 else "two"
    folder = root / phase
    folder.mkdir()
    config = LoadConfig(gateways=plan.saturate_gateways, meters_per_gateway=plan.saturate_meters,
                        interval_s=0.0, duration_s=plan.poll_s, window=plan.window,
                        prefix=f"sat{count}", start_delay_s=plan.start_delay_s,
                        drain_timeout_s=120.0, rebuild_every=REBUILD_EVERY)  # fmt: skip
    load_before = load_average()
    db_url = fresh_database(postgres, f"scale_{phase}")
    seed_s = seed_gateways(db_url, config)
    with (
        broker(folder / "mosquitto") as mosquitto,
        headends(count, folder, db_url, mosquitto.port, phase, env) as daemons,
    ):
        config = _with_broker(config, mosquitto.port)
        pids = {d.config["node_id"]: d.pid for d in daemons}
        pids["mosquitto"] = _pid(mosquitto.process)
        watch = CpuWatch(pids, _pg_pid(postgres))
        loadgen = Loadgen(config, folder, watch, nice=LOADGEN_NICE)
        loadgen.start()
        watch.pids["loadgen"] = loadgen.pid
        try:
            summary = loadgen.wait(_loadgen_timeout(config))
        finally:
            loadgen.stop()
        errors = daemon_errors(daemons)
    store = stored(db_url, config.prefix)
    window = steady(watch.samples, plan.warm_s)
    checks = delivery_checks(summary, store, config)
    if window is None:
        errors.append("no steady window: the load generator reported too little progress")
        window_s, acked, min_unacked, share = 0.0, 0, 0, {}
    else:
        first, last = window
        inside = [s for s in watch.samples if first.t <= s.t <= last.t]
        window_s, acked = last.t - first.t, last.acked_readings - first.acked_readings
        min_unacked = min(s.unacked for s in inside)
        share = _cpu_share(first, last)
    checks["headends_were_the_bottleneck"] = (
        min_unacked >= MIN_BACKLOG * config.gateways * config.window
        and share.get("loadgen", 1.0) < MAX_LOADGEN_CPU
    )
    return IngestPhase(phase, count, config, window_s, acked, min_unacked, share, summary, checks,
                       seed_s, load_before, load_average(), errors)  # fmt: skip


def _with_broker(config: LoadConfig, port: int) -> LoadConfig:
    from dataclasses import replace

    return replace(config, port=port)


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    assert process is not None
    return process.pid


def _pg_pid(postgres: Postgres) -> int:
    assert postgres.process is not None
    return postgres.process.pid  # setpriv (when root) execs the postmaster in place


def _loadgen_timeout(config: LoadConfig) -> float:
    c = config
    return c.connect_timeout_s + c.start_delay_s + c.duration_s + c.drain_timeout_s + 60


# --- (d): token push latency under load ----------------------------------------------------------


@dataclass
class PushPhase:
    headends: int
    config: LoadConfig
    latency: LatencyRun
    offered_rate: float
    acked_rate: float  # readings acknowledged per second while the tokens were sold
    cpu_share: dict[str, float]
    summary: dict[str, Any]
    checks: dict[str, bool]
    seed_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    errors: list[str] = field(default_factory=list)

    @property
    def totals_ms(self) -> dict[str, float]:
        return summary_ms(self.latency.spans("queued", "applied"))

    @property
    def p99_ms(self) -> float:
        return self.totals_ms["p99"]

    @property
    def valid(self) -> bool:
        return all(self.checks.values()) and not self.errors


def token_meters(config: LoadConfig, count: int) -> list[str]:
    """The first meter of ``count`` gateways spread over the fleet."""
    step = max(1, config.gateways // count)
    return [meter_ids(config, g)[0] for g in range(0, config.gateways, step)][:count]


def run_push(postgres: Postgres, root: Path, plan: Plan, count: int, rate: float,
             env: dict[str, str]) -> PushPhase:  # fmt: skip
    folder = root / "push"
    folder.mkdir()
    meters_total = plan.push_gateways * plan.push_meters
    duration = plan.push_warm_s + plan.tokens * PACE_S + (30.0 if plan is FULL else 2.0)
    config = LoadConfig(gateways=plan.push_gateways, meters_per_gateway=plan.push_meters,
                        interval_s=meters_total / rate, duration_s=duration, window=10,
                        prefix="push", apply_delay_s=APPLY_DELAY_S,
                        start_delay_s=plan.start_delay_s * (4 if plan is FULL else 1),
                        drain_timeout_s=120.0)  # fmt: skip
    load_before = load_average()
    db_url = fresh_database(postgres, "scale_push")
    config_path = folder / "admin.yaml"  # amr user add reads the head-end's configuration
    config_path.write_text(yaml.safe_dump(headend_config(folder, db_url, 1883, "push", 0)))
    admin_failed: list[BaseException] = []

    def admin() -> None:
        try:
            add_admin(config_path, env)
        except BaseException as exc:
            admin_failed.append(exc)

    adding = threading.Thread(target=admin, name="amr-user-add")  # alongside the seeding
    adding.start()
    seed_s = seed_gateways(db_url, config)
    adding.join()
    if admin_failed:
        raise admin_failed[0]
    chosen = token_meters(config, plan.token_meters)
    with (
        broker(folder / "mosquitto") as mosquitto,
        headends(count, folder, db_url, mosquitto.port, "push", env) as daemons,
    ):
        config = _with_broker(config, mosquitto.port)
        api = Api(api_base(daemons[0])).login("admin", PASSWORD)
        api.post("/api/v1/keys", VENDING_KEY)
        tariff = api.post("/api/v1/tariffs", TARIFF)
        open_accounts(api, int(tariff["id"]), chosen)
        pids = {d.config["node_id"]: d.pid for d in daemons}
        pids["mosquitto"] = _pid(mosquitto.process)
        watch = CpuWatch(pids, _pg_pid(postgres))
        loadgen = Loadgen(config, folder, watch)
        loadgen.start()
        watch.pids["loadgen"] = loadgen.pid
        try:
            loadgen.wait_until(lambda row: row["t"] >= plan.push_warm_s,
                               _loadgen_timeout(config))  # fmt: skip
            began = len(watch.samples)
            latency = push_tokens(api, chosen, plan.tokens)
            ended = len(watch.samples)
            summary = loadgen.wait(_loadgen_timeout(config))
        finally:
            loadgen.stop()
        errors = daemon_errors(daemons)
    store = stored(db_url, config.prefix)
    checks = delivery_checks(summary, store, config)
    during = [s for s in watch.samples[max(0, began - 1) : ended] if s.producing]
    if len(during) >= 2 and during[-1].t > during[0].t:
        first, last = during[0], during[-1]
        acked_rate = (last.acked_readings - first.acked_readings) / (last.t - first.t)
        share = _cpu_share(first, last)
    else:
        acked_rate, share = 0.0, {}
        errors.append("the load generator reported no progress while the tokens were sold")
    checks["headends_kept_up_with_the_load"] = acked_rate >= MIN_KEPT_UP * config.readings_per_s
    checks["every_token_applied"] = (len(latency.complete) == latency.tokens == plan.tokens
                                     and latency.timed_out == 0)  # fmt: skip
    checks["every_token_answered_by_the_load_generator"] = summary["tokens_applied"] == plan.tokens
    return PushPhase(count, config, latency, config.readings_per_s, acked_rate, share, summary,
                     checks, seed_s, load_before, load_average(), errors)  # fmt: skip


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Report:
    one: IngestPhase
    two: IngestPhase
    push: PushPhase
    postgres_version: str
    mosquitto_version: str
    quick: bool

    @property
    def best(self) -> IngestPhase:
        return self.two if self.two.rate > self.one.rate else self.one

    @property
    def ratio(self) -> float:
        return self.two.rate / self.one.rate if self.one.rate else 0.0

    @property
    def meters(self) -> float:
        return self.best.rate * READ_INTERVAL_S

    @property
    def targets(self) -> dict[str, bool]:
        return {
            "meters_at_15_min": self.meters >= TARGET_METERS,
            "push_p99_under_2_s": self.push.p99_ms < TARGET_P99_MS,
            "push_measured_at_target_rate": self.push.offered_rate >= TARGET_RATE * 0.999,
        }

    @property
    def valid(self) -> bool:
        return self.one.valid and self.two.valid and self.push.valid

    @property
    def passed(self) -> bool:
        return self.valid and all(self.targets.values())


def run_benchmark(quick: bool = False) -> Report:
    plan = QUICK if quick else FULL
    env = {MASTER_KEY_ENV: MASTER_KEY, PASSWORD_ENV: PASSWORD}
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        root = Path(tmp)
        postgres = Postgres(root / "pg")
        try:
            postgres.start()
            with postgres.admin() as conn:
                row = conn.execute("SHOW server_version").fetchone()
                pg_version = str(row[0]) if row else "?"
            one = run_ingest(postgres, root, plan, 1, env, quick)
            two = run_ingest(postgres, root, plan, 2, env, quick)
            best = max(one, two, key=lambda p: p.rate)
            rate = TARGET_RATE if best.rate >= TARGET_RATE else LOAD_MARGIN * best.rate
            if quick:  # the smoke test: a light load whatever the figures, to keep it short
                rate = min(rate, 200.0)
            push = run_push(postgres, root, plan, best.headends, max(rate, 1.0), env)
        finally:
            postgres.stop()
    return Report(one, two, push, pg_version, mosquitto_version(), quick)


# --- reporting -------------------------------------------------------------------------------------


def _config_json(c: LoadConfig) -> dict[str, Any]:
    return {"gateways": c.gateways, "meters_per_gateway": c.meters_per_gateway,
            "meters": c.gateways * c.meters_per_gateway, "interval_s": c.interval_s,
            "poll_s": c.duration_s, "window": c.window, "ack_timeout_s": c.ack_timeout_s,
            "start_delay_s": c.start_delay_s, "offered_readings_per_s": c.readings_per_s}  # fmt: skip


def _loadgen_json(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("connected", "connect_s", "run_s", "drain_s", "batches", "readings", "payload_bytes",
            "resent", "forced_reconnects", "acked_readings", "ack_latency_ms", "cpu_s",
            "cpu_us_per_reading", "max_rss_kb", "tokens_applied", "commands")  # fmt: skip
    return {k: s[k] for k in keys}


def _ingest_json(p: IngestPhase) -> dict[str, Any]:
    return {
        "headends": p.headends,
        "load_generator": _config_json(p.config),
        "steady_window_s": p.window_s,
        "acked_readings_in_window": p.acked_in_window,
        "readings_per_s": p.rate,
        "min_unacked_messages": p.min_unacked,
        "cpu_share": p.cpu_share,
        "seed_s": p.seed_s,
        "loadgen": _loadgen_json(p.summary),
        "load_average_before": p.load_before,
        "load_average_after": p.load_after,
        "checks": p.checks,
        "valid": p.valid,
        "errors": p.errors,
    }


def as_json(report: Report) -> dict[str, Any]:
    push = report.push
    return {
        "benchmark": "scale",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": report.quick,
        "postgres_version": report.postgres_version,
        "mosquitto_version": report.mosquitto_version,
        "one_headend": _ingest_json(report.one),
        "two_headends": _ingest_json(report.two),
        "two_to_one": report.ratio,
        "meters_at_15_min": {
            "readings_per_s": report.best.rate,
            "headends": report.best.headends,
            "meters": report.meters,
            "target": TARGET_METERS,
            "target_readings_per_s": TARGET_RATE,
        },
        "push": {
            "headends": push.headends,
            "load_generator": _config_json(push.config),
            "offered_readings_per_s": push.offered_rate,
            "acked_readings_per_s": push.acked_rate,
            "tokens": push.latency.tokens,
            "token_meters": push.latency.meters,
            "pace_s": PACE_S,
            "apply_delay_s": APPLY_DELAY_S,
            "applied": len(push.latency.complete),
            "total_ms": push.totals_ms,
            "headend_ms": summary_ms(push.latency.spans("queued", "sent")),
            "link_ms": summary_ms(push.latency.spans("sent", "received")),
            "gateway_ms": summary_ms(push.latency.spans("received", "applied")),
            "vend_request_ms": summary_ms([p.request_s for p in push.latency.pushes]),
            "target_p99_ms": TARGET_P99_MS,
            "cpu_share": push.cpu_share,
            "seed_s": push.seed_s,
            "loadgen": _loadgen_json(push.summary),
            "load_average_before": push.load_before,
            "load_average_after": push.load_after,
            "failures": push.latency.failures[:5],
            "checks": push.checks,
            "valid": push.valid,
            "errors": push.errors,
        },
        "targets": report.targets,
        "valid": report.valid,
        "passed": report.passed,
    }


def _share(share: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in sorted(share.items()))


def _load(before: Sequence[float], after: Sequence[float]) -> str:
    return f"load average {before[0]:.1f} before, {after[0]:.1f} after"


def as_table(report: Report) -> str:
    one, two, push = report.one, report.two, report.push
    totals = push.totals_ms
    p99_text = f"{totals['p99']:,.0f} ms"
    yes = {True: "yes", False: "NO"}
    lines = [
        f"scale-out{' (--quick)' if report.quick else ''}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, Mosquitto {report.mosquitto_version} (persistence on), "
        f"PostgreSQL {report.postgres_version} (test settings, fsync=off), everything on this "
        "machine",
        "",
        f"{'figure':<52}{'measured':>22}  {'target':<26}{'met':>4}",
        f"{'(a) ingest, 1 head-end, sustained readings/s':<52}{one.rate:>22,.0f}  {'-':<26}{'':>4}",
        f"{'(b) ingest, 2 head-ends, sustained readings/s':<52}{two.rate:>22,.0f}  {'-':<26}{'':>4}",
        f"{'    two / one':<52}{report.ratio:>21.2f}x  {'-':<26}{'':>4}",
        f"{f'(c) meters at 15-min reads ({report.best.headends} head-end(s) x 900 s)':<52}"
        f"{report.meters:>22,.0f}  {f'{TARGET_METERS:,} ({TARGET_RATE:,.0f}/s)':<26}"
        f"{yes[report.targets['meters_at_15_min']]:>4}",
        f"{f'(d) token push p99 at {push.offered_rate:,.0f} readings/s':<52}"
        f"{p99_text:>22}  {f'< {TARGET_P99_MS:,.0f} ms':<26}"
        f"{yes[report.targets['push_p99_under_2_s']]:>4}",
        f"{'    load of (d) at the 1,111 readings/s target':<52}"
        f"{f'{push.offered_rate:,.0f} readings/s':>22}  {f'{TARGET_RATE:,.0f} readings/s':<26}"
        f"{yes[report.targets['push_measured_at_target_rate']]:>4}",
        "",
    ]
    for phase in (one, two):
        c = phase.config
        s = phase.summary
        failed = [k for k, ok in phase.checks.items() if not ok]
        lines += [
            f"({'a' if phase is one else 'b'}) {phase.headends} head-end(s): {c.gateways} gateways x "
            f"{c.meters_per_gateway} meters, saturating (window {c.window} batches each); steady "
            f"window {phase.window_s:.0f} s, {phase.acked_in_window:,} readings acknowledged; "
            f"at least {phase.min_unacked} batches unacknowledged throughout",
            f"    published {s['readings']:,} readings in {s['batches']:,} batches, resent "
            f"{s['resent']}, all acknowledged after {s['drain_s']:.1f} s of drain; ack latency "
            f"p50 {s['ack_latency_ms']['p50']:,.0f} ms",
            f"    CPUs used over the window: {_share(phase.cpu_share)}; "
            f"{_load(phase.load_before, phase.load_after)}",
            "    checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed)),
        ]
        lines += [f"    error: {e}" for e in phase.errors]
    c = push.config
    s = push.summary
    failed = [k for k, ok in push.checks.items() if not ok]
    parts = [("head-end: queued -> sent", "queued", "sent"),
             ("link: sent -> received", "sent", "received"),
             ("gateway: received -> applied (incl. 0.1 s meter)", "received", "applied")]  # fmt: skip
    lines += [
        "",
        f"(d) {push.headends} head-end(s): {c.gateways:,} gateways x {c.meters_per_gateway} meters "
        f"= {c.gateways * c.meters_per_gateway:,} meters, one batch each every "
        f"{c.interval_s:.1f} s = {push.offered_rate:,.0f} readings/s offered, "
        f"{push.acked_rate:,.0f}/s acknowledged while {push.latency.tokens} tokens were sold "
        f"(one every {PACE_S} s over {push.latency.meters} meters); "
        f"{len(push.latency.complete)} applied",
        f"    queued -> applied: p50 {totals['p50']:,.0f} ms, p99 {totals['p99']:,.0f} ms, "
        f"max {totals['max']:,.0f} ms; "
        + "; ".join(
            f"{label} p99 {summary_ms(push.latency.spans(a, b))['p99']:,.0f} ms"
            for label, a, b in parts
        ),
        f"    load generator: connected in {s['connect_s']:.1f} s, {s['cpu_us_per_reading']:.0f} "
        f"µs CPU per reading, max RSS {s['max_rss_kb'] / 1024:,.0f} MiB; CPUs used: "
        f"{_share(push.cpu_share)}; {_load(push.load_before, push.load_after)}",
        "    checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed)),
    ]
    lines += [f"    push: {f}" for f in push.latency.failures[:3]]
    lines += [f"    error: {e}" for e in push.errors]
    verdict = "PASS" if report.passed else ("FAIL (valid run)" if report.valid else "INVALID RUN")
    lines += ["", f"result: {verdict}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        argv, name="scale",
        description="Sustained ingest with one and two head-ends, meters at 15-minute reads, and "
        "token push latency under load, on Mosquitto and PostgreSQL.",
        quick_help="a tiny configuration (~30 s)",
        check_help="exit 1 if the run is invalid or a target is not met",
        run=lambda args: run_benchmark(quick=args.quick),
        as_json=lambda report, quick: as_json(report), as_table=lambda report, quick: as_table(report),
        passed=lambda report: report.passed,
        errors=(SimError, OSError, RuntimeError, ApiFailure, sa.exc.SQLAlchemyError,
                pytest.fail.Exception),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
