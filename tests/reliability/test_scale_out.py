"""Scale-out: three head-end processes on one PostgreSQL database, exact counts of what they do.

Real processes: Mosquitto, PostgreSQL (the session's server, a database of this module's own),
three ``amr headend`` (distinct node and client ids, one share group, scheduler tick 1 s so the
scheduler lease lives 3 s, a command resent after 8 s without the gateway's receipt) and
``amr loadgen`` playing 20 gateways of 3 meters each: each gateway its own MQTT client, a batch of
readings every 20 s, every token command answered ``received`` at once and ``applied`` 0.5 s later
(the meter's write), every other command rejected, a repeated cmd_id recognised as the same
command (counted, not run again), what the head-end has not acknowledged sent again after 12 s.

What is counted, and where:

* the wire: a plain MQTT v5 client subscribed to ``amr/v1/gw/+/cmd`` and ``amr/v1/gw/+/cmd/status``
  keeps every command the head-ends published (each publication, with its cmd_id) and every status
  the gateways published (by gateway and seq: a status resent by the gateway is one status, a
  second ``applied`` for one command would be a second application at the meter);
* the ``leases`` row, sampled every 50 ms from the test process, and each head-end's log line
  "<node> is now the scheduler";
* the database: ``commands`` (the schedule's reads by the minute of their ``created_at``, which is
  the window they were queued for), ``command_history`` (every transition, and every send) and
  ``tokens`` (a TID twice for one meter: the meter would take only the first token).

The tests share the one cluster and run in the file's order: one scheduler over two schedule
windows (every minute is the smallest schedule the product takes, so the windows are real
minutes), 300 tokens at once, 300 tokens with a head-end SIGKILLed while it dispatches (back 5 s
later, as systemd restarts it), then the scheduler SIGKILLed one tick before a window. Three
minutes or so, a third of it waiting for minute boundaries; the store-level regressions of the
bugs these tests found come last.

Mosquitto (2.0) goes on handing a dead head-end its share of the shared subscription's messages:
its session (``mqtt.session_expiry_s``, a day by default) queues them until it comes back. Nothing
is lost (the gateways keep what is not acknowledged and send it again), but until the process
returns every message, and every resend, has a one-in-N chance of waiting for it; hence the
restart, as in a deployment.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import secrets
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.headend_vending import (
    MASTER_KEY,
    MASTER_KEY_ENV,
    PASSWORD,
    PASSWORD_ENV,
    TARIFF,
    VENDING_KEY,
    Daemon,
    add_admin,
    open_accounts,
)
from benchmarks.scale import Loadgen
from headend.commands import (
    FINAL,
    CommandError,
    NewCommand,
    command_id_of,
    thd_apply_status,
    thd_cancel,
    thd_due,
    thd_enqueue,
)
from headend.config import MeterDefaults
from headend.keystore import SealedKeyStore
from headend.records import thd_ensure_meters, thd_touch_gateway
from headend.scheduler import thd_run_schedules
from headend.service import ensure_signing_key
from headend.store import make_engine, upgrade
from headend.store.schema import (
    accounts,
    command_history,
    commands,
    leases,
    meters,
    read_schedules,
    tokens,
)
from headend.vending import Seller, thd_vend
from protocols.link import Command, CommandState, CommandStatus, CommandType, Topic, decode_message
from simulator.loadgen import LoadConfig, meter_ids
from tests.headend.seed import START as SEED_START
from tests.headend.seed import (
    add_customer,
    add_keys,
    add_meters,
    add_tariff,
    open_account,
)
from tests.headend.seed import drn as seed_drn
from tests.support.api import Api
from tests.support.gateway import wait_for
from tests.support.mosquitto import Mosquitto
from tests.support.pg_fixture import postgres  # noqa: F401
from tests.support.postgres import Postgres

pytestmark = pytest.mark.integration

NODES = ("node-1", "node-2", "node-3")
TICK_S = 1.0
LEASE_TTL_S = 3 * TICK_S  # headend.scheduler: the lease is taken for three ticks
RETRY_S = 8.0
RESTART_S = 5.0  # RestartSec of deploy/systemd/amr-headend.service
SCHEDULE = "every-minute"
WINDOW_S = 60.0  # interval schedules take whole minutes; one is the smallest
LOAD = LoadConfig(gateways=20, meters_per_gateway=3, interval_s=20.0, duration_s=900.0, window=4,
                  ack_timeout_s=12.0, apply_delay_s=0.5, prefix="so", drain_timeout_s=5.0)  # fmt: skip
METERS = [m for g in range(LOAD.gateways) for m in meter_ids(LOAD, g)]
TOKENS = 300
VEND_MINOR = 500
SCHEDULER_LINE = re.compile(r"(\S+) is now the scheduler")


@dataclass
class Wire:
    """Every command publication on ``amr/v1/gw/+/cmd`` and every gateway status, as seen."""

    commands: list[tuple[float, Command]] = field(default_factory=list)
    statuses: dict[tuple[str, int], CommandStatus] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        if message.topic.endswith("/cmd"):
            command = decode_message(Topic.COMMAND, bytes(message.payload))
            assert isinstance(command, Command)
            with self.lock:
                self.commands.append((now, command))
        else:
            status = decode_message(Topic.COMMAND_STATUS, bytes(message.payload))
            assert isinstance(status, CommandStatus)
            with self.lock:
                self.statuses.setdefault((status.gateway, status.seq), status)

    def publications(self) -> dict[str, list[float]]:
        """Command id (attempt suffix dropped) -> the times it was published."""
        out: dict[str, list[float]] = {}
        with self.lock:
            for at, command in self.commands:
                out.setdefault(command_id_of(command.cmd_id), []).append(at)
        return out

    def count(self) -> int:
        with self.lock:
            return len(self.commands)

    def applications(self) -> Counter[str]:
        """Command id -> distinct ``applied`` statuses the gateways published for it."""
        with self.lock:
            return Counter(command_id_of(s.cmd_id) for s in self.statuses.values()
                           if s.state is CommandState.APPLIED)  # fmt: skip


@dataclass
class LeaseWatch:
    """The ``leases`` row, sampled every 50 ms: (wall time, holder, expires_at) at each change."""

    engine: sa.Engine
    samples: list[tuple[float, str, float]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="lease-watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.engine.connect() as connection:
            while not self.stopping.is_set():
                row = connection.execute(sa.select(leases.c.holder, leases.c.expires_at)
                                         .where(leases.c.name == "scheduler")).first()  # fmt: skip
                connection.commit()
                at = time.time()
                if row is not None and (not self.samples or self.samples[-1][1:] != tuple(row)):
                    self.samples.append((at, str(row[0]), float(row[1])))
                self.stopping.wait(0.05)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def between(self, first: float, last: float) -> list[tuple[float, str, float]]:
        """The samples in [first, last], with the one in force at ``first``."""
        before = [s for s in self.samples if s[0] < first][-1:]
        return before + [s for s in self.samples if first <= s[0] <= last]


@dataclass
class Cluster:
    folder: Path
    db_url: str
    engine: sa.Engine
    broker: Mosquitto
    env: dict[str, str]
    wire: Wire
    lease: LeaseWatch
    loadgen: Loadgen | None = None
    token: str = ""
    schedule_started: float = 0.0  # the schedule's first tick (it has missed nothing before)
    daemons: dict[str, list[Daemon]] = field(default_factory=dict)  # every run of each node
    apis: dict[str, Api] = field(default_factory=dict)

    def config(self, name: str) -> dict[str, Any]:
        return {
            "node_id": name,
            "database": {"url": self.db_url},
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "client_id": name,
                     "keepalive_s": 10},
            "keys": {"signing_key_file": str(self.folder / "signing.pem")},
            "api": {"host": "127.0.0.1", "port": 0},
            "commands": {"retry_s": RETRY_S, "dispatch_interval_s": 0.5},
            "scheduler": {"tick_s": TICK_S},
        }  # fmt: skip

    def start(self, name: str) -> None:
        folder = self.folder / name
        folder.mkdir(exist_ok=True)
        daemon = Daemon("headend", self.config(name), folder, "API on http://", self.env)
        self.daemons.setdefault(name, []).append(daemon)
        daemon.start()
        wait_for(lambda: any("Connected to the broker" in line for line in daemon.output), 30,
                 f"{name} connected to the broker")  # fmt: skip
        found = re.search(r"API on (http://127\.0\.0\.1:\d+)/", "".join(daemon.output))
        assert found, daemon.tail()
        self.apis[name] = Api(found.group(1), self.token or None)

    def kill(self, name: str) -> float:
        process = self.daemons[name][-1].process
        assert process is not None and process.poll() is None, f"{name} is not running"
        process.send_signal(signal.SIGKILL)
        killed = time.time()
        process.wait(timeout=10)
        del self.apis[name]
        return killed

    def running(self) -> list[str]:
        return [n for n in NODES if n in self.apis]

    def log(self, name: str) -> str:
        return "".join(line for daemon in self.daemons.get(name, []) for line in daemon.output)

    def became_scheduler(self) -> list[str]:
        """Every "is now the scheduler" line of every run of every node, by node."""
        return [m.group(1) for name in NODES for m in SCHEDULER_LINE.finditer(self.log(name))]

    def holder(self) -> tuple[str, float]:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(leases.c.holder, leases.c.expires_at)
                                     .where(leases.c.name == "scheduler")).one()  # fmt: skip
        return str(row[0]), float(row[1])

    def published(self, name: str) -> int:
        with urllib.request.urlopen(f"{self.apis[name].base}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        found = re.search(r"^amr_commands_published (\S+)$", text, re.M)
        assert found, text
        return int(float(found.group(1)))

    def progress(self) -> dict[str, Any]:
        assert self.loadgen is not None
        wait_for(lambda: bool(self.loadgen and self.loadgen.progress), 30, "loadgen progress")
        return self.loadgen.progress[-1]

    def scalar(self, query: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(query).scalar()

    def rows(self, query: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(query).all())

    def errors(self) -> list[str]:
        return [line for name in NODES for daemon in self.daemons.get(name, [])
                for line in daemon.output if "Traceback" in line]  # fmt: skip


@pytest.fixture(scope="module")
def cluster(postgres: Postgres,  # noqa: F811 - the session fixture imported above
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:  # fmt: skip
    folder = tmp_path_factory.mktemp("scale-out")
    db_url = postgres.create_database(f"scale_out_{os.getpid()}")
    env = {MASTER_KEY_ENV: MASTER_KEY, PASSWORD_ENV: PASSWORD}
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    engine = make_engine(db_url, pool_size=2)
    wire = Wire()
    sniffer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="scale-out-wire",
                          protocol=mqtt.MQTTv5)  # fmt: skip
    sniffer.on_message = wire.on_message
    sniffer.connect("127.0.0.1", broker.port)
    sniffer.subscribe([("amr/v1/gw/+/cmd", 1), ("amr/v1/gw/+/cmd/status", 1)])
    sniffer.loop_start()
    cluster = Cluster(folder, db_url, engine, broker, env, wire, LeaseWatch(engine))
    try:
        (folder / "admin.yaml").write_text(yaml.safe_dump(cluster.config("admin")))
        add_admin(folder / "admin.yaml", env)  # migrates the database too
        ensure_signing_key(folder / "signing.pem")  # the three share it
        cluster.lease.start()
        with ThreadPoolExecutor(len(NODES)) as pool:
            list(pool.map(cluster.start, NODES))
        admin = Api(cluster.apis[NODES[0]].base).login("admin", PASSWORD)
        cluster.token = admin.token or ""
        for name in NODES:
            cluster.apis[name] = Api(cluster.apis[name].base, cluster.token)
        cluster.loadgen = Loadgen(replace(LOAD, port=broker.port), folder)
        cluster.loadgen.start()
        cluster.loadgen.wait_until(lambda row: row["connected"] == LOAD.gateways, 60)
        wait_for(lambda: cluster.scalar(sa.select(sa.func.count()).select_from(meters))
                 == len(METERS), 30, "every meter registered")  # fmt: skip
        # the schedule: every minute, all meters, added through another head-end's API
        cluster.apis[NODES[1]].post("/api/v1/schedules", {"name": SCHEDULE, "zone": "UTC",
                                                          "kind": "interval",
                                                          "interval_minutes": 1})  # fmt: skip
        wait_for(lambda: _last_window(cluster) is not None, 10, "the schedule's first tick")
        cluster.schedule_started = _last_window(cluster) or 0.0
        admin.post("/api/v1/keys", VENDING_KEY)
        tariff = admin.post("/api/v1/tariffs", TARIFF)
        open_accounts(admin, int(tariff["id"]), METERS)
        yield cluster
    finally:
        if cluster.loadgen is not None:
            _stop(cluster.loadgen)
        for runs in cluster.daemons.values():
            for daemon in runs:
                daemon.stop()
        cluster.lease.stop()
        sniffer.loop_stop()
        sniffer.disconnect()
        engine.dispose()
        broker.stop()


def _stop(loadgen: Loadgen) -> None:
    """Stop the load generator and close its output once its reader has read to the end."""
    loadgen.stop()
    if loadgen._reader is not None:
        loadgen._reader.join(timeout=10)
    if loadgen.process is not None and loadgen.process.stdout is not None:
        loadgen.process.stdout.close()


# --- the schedule's reads ----------------------------------------------------------------------


def _last_window(cluster: Cluster) -> float | None:
    value = cluster.scalar(sa.select(read_schedules.c.last_window_at)
                           .where(read_schedules.c.name == SCHEDULE))  # fmt: skip
    return None if value is None else float(value)


def _reads_by_window(cluster: Cluster) -> dict[float, Counter[str]]:
    """Window (the minute of the read's created_at) -> reads queued per meter."""
    rows = cluster.rows(sa.select(commands.c.meter_id, commands.c.created_at)
                        .where(commands.c.created_by == f"schedule:{SCHEDULE}"))  # fmt: skip
    out: dict[float, Counter[str]] = {}
    for meter_id, created_at in rows:
        window = math.floor(created_at / WINDOW_S) * WINDOW_S
        out.setdefault(window, Counter())[str(meter_id)] += 1
    return out


def _window_counts(cluster: Cluster, windows: list[float]) -> tuple[int, int, int]:
    """(reads queued, meter-windows with no read, meter-windows with more than one)."""
    found = _reads_by_window(cluster)
    assert set(found) == set(windows), f"reads in windows {sorted(found)}, expected {windows}"
    missed = sum(1 for w in windows for m in METERS if found[w][m] == 0)
    doubled = sum(1 for w in windows for m in METERS if found[w][m] > 1)
    extra = sum(1 for w in windows for m in found[w] if m not in METERS)
    assert extra == 0
    return sum(sum(c.values()) for c in found.values()), missed, doubled


def _wait_until(at: float) -> None:
    delay = at - time.time()
    if delay > 0:
        time.sleep(delay)


@pytest.mark.reliability("scale-out", "three head-ends, one scheduler: each window's reads queued "
                         "once per meter")  # fmt: skip
def test_one_scheduler_queues_each_window_once_per_meter(
    cluster: Cluster, reliability: dict[str, object]
) -> None:
    began = cluster.schedule_started
    first = math.floor(began / WINDOW_S) * WINDOW_S + WINDOW_S
    windows = [first, first + WINDOW_S]
    _wait_until(windows[-1])
    wait_for(lambda: (_last_window(cluster) or 0) >= windows[-1], 15, "the second window run")
    ended = time.time()
    queued, missed, doubled = _window_counts(cluster, windows)
    assert (queued, missed, doubled) == (len(windows) * len(METERS), 0, 0)
    assert _last_window(cluster) == windows[-1]

    # one node took the lease and renewed it every tick; had a stalled holder lost it, the next
    # would have taken it only once it had run out, and logged so
    samples = cluster.lease.between(0.0, ended)  # from the first tick of the first head-end
    handovers = _handovers(samples)
    assert all(taken >= expired for _, _, expired, taken in handovers), handovers
    holders = [samples[0][1]] + [new for _, new, _, _ in handovers]
    assert Counter(cluster.became_scheduler()) == Counter(holders)
    lapsed = [at for at, _, expires in samples if expires <= at]
    assert len(lapsed) <= len(handovers)

    # each read went out once and the gateways answered it (the load generator rejects reads)
    read_ids = {str(r[0]) for r in cluster.rows(sa.select(commands.c.id).where(
        commands.c.created_by == f"schedule:{SCHEDULE}"))}  # fmt: skip
    wait_for(lambda: cluster.scalar(sa.select(sa.func.count()).select_from(commands).where(
        commands.c.id.in_(read_ids), commands.c.state.not_in(FINAL))) == 0, 30,
        "every read answered")  # fmt: skip
    sends = Counter({c: len(t) for c, t in cluster.wire.publications().items() if c in read_ids})
    assert set(sends) == read_ids and set(sends.values()) == {1}
    reliability.update({"head-ends": len(NODES), "windows": len(windows), "meters": len(METERS),
                        "reads queued": queued, "windows missed": missed,
                        "reads doubled": doubled, "lease samples": len(samples),
                        "lease holders": len(set(holders)),
                        "lease handovers": len(handovers)})  # fmt: skip


def _handovers(samples: list[tuple[float, str, float]]) -> list[tuple[str, str, float, float]]:
    """(old holder, new holder, when the old one's lease ran out, when the new one took it) at
    each change of holder; the new holder wrote its now + TTL when it took the lease."""
    return [(old[1], new[1], old[2], new[2] - LEASE_TTL_S)
            for old, new in itertools.pairwise(samples) if new[1] != old[1]]  # fmt: skip


# --- dispatch ----------------------------------------------------------------------------------


def _sell(cluster: Cluster, via: list[str], count: int) -> list[str]:
    """``count`` vends through the APIs of ``via`` at once, one thread each, every thread going
    round the meters in the same order (so one meter is sold to through several head-ends at the
    same moment); the ids of the commands delivering them."""

    def seller(index: int) -> list[str]:
        api = cluster.apis[via[index]]
        out = []
        for k in range(index, count, len(via)):
            meter_id = METERS[(k // len(via)) % len(METERS)]
            vend = api.post("/api/v1/vends", {"meter_id": meter_id, "amount_minor": VEND_MINOR})
            out.append(str(vend["delivery"]["command_id"]))
        return out

    with ThreadPoolExecutor(len(via)) as pool:
        return [c for part in pool.map(seller, range(len(via))) for c in part]


def _not_final(cluster: Cluster, ids: list[str]) -> int:
    return int(cluster.scalar(sa.select(sa.func.count()).select_from(commands).where(
        commands.c.id.in_(ids), commands.c.state.not_in(FINAL))))  # fmt: skip


def _wait_final(cluster: Cluster, ids: list[str], timeout_s: float) -> None:
    """Until every command of ``ids`` is final; on a timeout, what became of those that are not."""
    deadline = time.monotonic() + timeout_s
    while _not_final(cluster, ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    stuck = [str(r[0]) for r in cluster.rows(sa.select(commands.c.id).where(
        commands.c.id.in_(ids), commands.c.state.not_in(FINAL)))]  # fmt: skip
    if not stuck:
        return
    history = cluster.rows(sa.select(command_history).where(
        command_history.c.command_id.in_(stuck[:5])).order_by(command_history.c.id))  # fmt: skip
    wire = cluster.wire.publications()
    with cluster.wire.lock:
        statuses = sorted((s.gateway, s.seq, s.cmd_id, s.state.value)
                          for s in cluster.wire.statuses.values()
                          if command_id_of(s.cmd_id) in stuck[:5])  # fmt: skip
    lines = [f"{h.command_id} {h.state} {h.source} {h.detail} {h.at:.1f}" for h in history]
    lines += [f"on the wire {c}: {wire.get(c)}" for c in stuck[:5]]
    lines += [f"status {s}" for s in statuses]
    pytest.fail(f"{len(stuck)} commands not final after {timeout_s:.0f} s:\n" + "\n".join(lines))


@dataclass
class Delivery:
    """What became of a set of token commands, counted from the history, the wire and the meters."""

    states: Counter[str]
    final_transitions: Counter[str]  # command -> history rows entering a final state
    dispatches: Counter[str]  # command -> "published to" rows (a fresh claim, a new attempt)
    resends: dict[str, list[float]]  # command -> when it was resent unconfirmed (head-end clock)
    first_sent: dict[str, float]
    queued_at: dict[str, float]
    final_at: dict[str, float]
    on_wire: dict[str, list[float]]  # command -> when each publication was seen
    applied_at_meter: Counter[str]  # command -> distinct "applied" statuses from the gateway
    duplicate_tids: int


def _delivery(cluster: Cluster, ids: list[str]) -> Delivery:
    history = cluster.rows(sa.select(command_history.c.command_id, command_history.c.state,
                                     command_history.c.source, command_history.c.detail,
                                     command_history.c.at)
                           .where(command_history.c.command_id.in_(ids))
                           .order_by(command_history.c.id))  # fmt: skip
    final: Counter[str] = Counter()
    dispatches: Counter[str] = Counter()
    resends: dict[str, list[float]] = {}
    first_sent: dict[str, float] = {}
    queued_at: dict[str, float] = {}
    final_at: dict[str, float] = {}
    for command_id, state, source, detail, at in history:
        if state == "queued":
            queued_at.setdefault(command_id, float(at))
        if state in FINAL:
            final[command_id] += 1
            final_at.setdefault(command_id, float(at))
        if state == "sent" and source == "headend":
            if detail.startswith("resent"):
                resends.setdefault(command_id, []).append(float(at))
            else:
                dispatches[command_id] += 1
                first_sent.setdefault(command_id, float(at))
    states = Counter(str(r[0]) for r in cluster.rows(
        sa.select(commands.c.state).where(commands.c.id.in_(ids))))  # fmt: skip
    wanted = set(ids)
    on_wire = {c: t for c, t in cluster.wire.publications().items() if c in wanted}
    applied = Counter({c: n for c, n in cluster.wire.applications().items() if c in wanted})
    tids = Counter((str(r[0]), int(r[1])) for r in cluster.rows(
        sa.select(tokens.c.meter_id, tokens.c.tid).join(commands, commands.c.vend_id
                                                         == tokens.c.vend_id)
        .where(commands.c.id.in_(ids))))  # fmt: skip
    duplicate_tids = sum(n - 1 for n in tids.values())
    return Delivery(states, final, dispatches, resends, first_sent, queued_at, final_at, on_wire,
                    applied, duplicate_tids)  # fmt: skip


def _applied_by_loadgen(cluster: Cluster, at_least: int) -> dict[str, Any]:
    wait_for(lambda: cluster.progress()["tokens_applied"] >= at_least, 30,
             "the load generator's count of tokens applied")  # fmt: skip
    time.sleep(1.5)  # one more progress row: nothing applied after
    return cluster.progress()


def _delivered_once(cluster: Cluster, ids: list[str],
                    before_meter: dict[str, Any]) -> tuple[Delivery, set[str], dict[str, Any]]:  # fmt: skip
    """Every command of ``ids`` (final by now) applied, recorded final once, claimed once, on the
    wire once or again only as the documented resend (no receipt after retry_s), applied once at
    its meter; what was seen, the commands published twice, the load generator's last counts."""
    after_meter = _applied_by_loadgen(cluster, before_meter["tokens_applied"] + len(ids))
    seen = _delivery(cluster, ids)
    # nothing lost: every token applied, and recorded final once
    assert seen.states == Counter({"applied": len(ids)})
    assert seen.final_transitions == Counter(dict.fromkeys(ids, 1))
    # nothing claimed twice: each command dispatched (its one cmd_id) once, by one head-end
    assert seen.dispatches == Counter(dict.fromkeys(ids, 1))
    # on the wire: once, or again only when resent for want of a receipt retry_s after it was
    # sent (the same cmd_id: the gateway takes it for the same command)
    times = {c: sorted(seen.on_wire.get(c, [])) for c in ids}
    assert all(times[c] for c in ids), "a command never reached the broker"
    twice = {c for c in ids if len(times[c]) > 1}
    assert all(len(times[c]) <= 1 + len(seen.resends.get(c, [])) for c in ids)
    assert all(at >= seen.first_sent[c] + RETRY_S for c, ats in seen.resends.items() for at in ats)
    assert all(times[c][1] >= seen.first_sent[c] + RETRY_S - 0.5 for c in twice)
    # at the meters: every token applied once; a repeated cmd_id was recognised as such
    assert seen.applied_at_meter == Counter(dict.fromkeys(ids, 1))
    assert after_meter["tokens_applied"] - before_meter["tokens_applied"] == len(ids)
    assert after_meter["repeated_commands"] - before_meter["repeated_commands"] == len(twice)
    assert seen.duplicate_tids == 0
    assert cluster.errors() == []
    return seen, twice, after_meter


@pytest.mark.reliability("scale-out", "300 tokens queued at once through three head-ends: each "
                         "published once and applied once")  # fmt: skip
def test_commands_queued_at_once_are_each_sent_once_and_applied_once(
    cluster: Cluster, reliability: dict[str, object]
) -> None:
    before_meter = cluster.progress()
    published_before = {n: cluster.published(n) for n in NODES}
    wire_before = cluster.wire.count()
    began = time.time()
    ids = _sell(cluster, list(NODES), TOKENS)
    assert len(set(ids)) == TOKENS
    _wait_final(cluster, ids, 90)
    took = time.time() - began
    _, twice, _ = _delivered_once(cluster, ids, before_meter)

    # the three processes shared the dispatch; together they published what the wire carried
    # (the schedule's reads included)
    def shares() -> dict[str, int]:
        return {n: cluster.published(n) - published_before[n] for n in NODES}

    wait_for(lambda: sum(shares().values()) == cluster.wire.count() - wire_before, 10,
             "the head-ends' publication counts to match the wire")  # fmt: skip
    by_node = shares()
    assert all(count > 0 for count in by_node.values()), by_node
    assert cluster.errors() == []
    reliability.update({"tokens": TOKENS, "head-ends": len(NODES),
                        "published once": TOKENS - len(twice),
                        "published again after retry_s (no receipt)": len(twice),
                        "applied once at the meter": TOKENS, "applied twice": 0,
                        "final transitions per command": 1,
                        "published by each head-end (with reads)": sorted(by_node.values()),
                        "seconds to all applied": round(took, 1)})  # fmt: skip


@pytest.mark.reliability("scale-out", "a head-end SIGKILLed while dispatching 300 tokens: none "
                         "lost, none applied twice")  # fmt: skip
def test_a_headend_killed_mid_dispatch_loses_nothing_and_sends_nothing_twice(
    cluster: Cluster, reliability: dict[str, object]
) -> None:
    leader, _ = cluster.holder()
    victim = next(n for n in NODES if n != leader)
    survivors = [n for n in NODES if n != victim]
    became = Counter(cluster.became_scheduler())
    before_meter = cluster.progress()
    victim_before = cluster.published(victim)
    with ThreadPoolExecutor(1) as pool:
        selling = pool.submit(_sell, cluster, survivors, TOKENS)
        # the victim is dispatching these tokens (its own dispatcher claims them too)
        wait_for(lambda: cluster.published(victim) >= victim_before + 10, 60,
                 f"{victim} dispatching")  # fmt: skip
        killed_at = cluster.kill(victim)
        # back after RestartSec=5 (deploy/systemd/amr-headend.service); meanwhile Mosquitto
        # queues the dead process's share of the gateways' messages in its session
        time.sleep(RESTART_S)
        cluster.start(victim)
        ids = selling.result(timeout=120)
    assert len(set(ids)) == TOKENS
    _wait_final(cluster, ids, 2 * RETRY_S + 60)
    seen, twice, after_meter = _delivered_once(cluster, ids, before_meter)
    # it was killed mid-dispatch: tokens sold before the kill were still on their way
    before_kill = [c for c in ids if seen.queued_at[c] <= killed_at]
    unfinished = [c for c in before_kill if seen.final_at[c] > killed_at]
    assert unfinished

    # the victim came back and left the scheduler where it was
    assert cluster.holder()[0] == leader
    assert Counter(cluster.became_scheduler()) == became
    reliability.update({"tokens": TOKENS, "killed": f"1 of {len(NODES)} head-ends",
                        "restarted after s": RESTART_S,
                        "sold before the kill": len(before_kill),
                        "of those, on their way at the kill": len(unfinished), "lost": 0,
                        "resent after retry_s (no receipt)": len(seen.resends),
                        "published twice on the wire": len(twice),
                        "messages the gateways resent (no ack)": after_meter["resent"]
                        - before_meter["resent"],
                        "applied twice at the meter": 0,
                        "final transitions per command": 1})  # fmt: skip


# --- failover ----------------------------------------------------------------------------------


@pytest.mark.reliability("scale-out", "the scheduler SIGKILLed just before a window: another "
                         "takes the lease within its TTL, the window runs once")  # fmt: skip
def test_the_scheduler_killed_before_a_window_is_replaced_and_the_window_runs_once(
    cluster: Cluster, reliability: dict[str, object]
) -> None:
    first_window = min(_reads_by_window(cluster))
    leader, _ = cluster.holder()
    others = [n for n in cluster.running() if n != leader]
    became = Counter(cluster.became_scheduler())
    window = math.ceil(time.time() / WINDOW_S) * WINDOW_S
    if window - time.time() < TICK_S + 1:
        window += WINDOW_S
    _wait_until(window - TICK_S)  # the window is not yet due: the leader cannot have run it
    before = _last_window(cluster)
    killed_at = cluster.kill(leader)
    assert before is not None and before < window and killed_at < window
    wait_for(lambda: (_last_window(cluster) or 0) >= window, window - time.time() + 15,
             "the window run by another head-end")  # fmt: skip

    # the lease: held by the leader until it ran out, then by one of the others, at its next tick
    handovers = _handovers(cluster.lease.between(killed_at, time.time()))
    assert len(handovers) == 1, handovers
    old, successor, expired_at, taken_at = handovers[0]
    assert old == leader and successor in others
    assert taken_at >= expired_at  # never taken while it was still the leader's
    # at the next tick of one of the others (1 s of slack: the tick's own database round trip
    # on a busy machine)
    assert taken_at - expired_at <= TICK_S + 1.0
    assert taken_at - killed_at <= LEASE_TTL_S + TICK_S + 1.0
    assert Counter(cluster.became_scheduler()) - became == Counter({successor: 1})

    # the window: run once, by the successor, after it took the lease; no window before it
    # skipped or doubled
    windows = [first_window + WINDOW_S * k for k in range(int((window - first_window) / WINDOW_S)
                                                          + 1)]  # fmt: skip
    queued, missed, doubled = _window_counts(cluster, windows)
    assert (queued, missed, doubled) == (len(windows) * len(METERS), 0, 0)
    created = [float(r[0]) for r in cluster.rows(sa.select(commands.c.created_at).where(
        commands.c.created_by == f"schedule:{SCHEDULE}", commands.c.created_at >= window))]  # fmt: skip
    assert len(created) == len(METERS) and min(created) >= taken_at
    assert _last_window(cluster) == window
    reliability.update({"lease TTL s": LEASE_TTL_S, "tick s": TICK_S,
                        "taken over s after the kill": round(taken_at - killed_at, 2),
                        "taken over s after expiry": round(taken_at - expired_at, 2),
                        "windows checked": len(windows), "windows skipped": missed,
                        "windows doubled": doubled, "reads queued": queued})  # fmt: skip


# --- regressions found by the tests above, pinned at the store ---------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated SQLite store with one gateway and one meter behind it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'headend.db'}")
    upgrade(engine)
    with engine.begin() as connection:
        thd_touch_gateway(connection, "gw-1", 0.0)
        thd_ensure_meters(connection, "gw-1", {"m1"}, MeterDefaults(), 0.0)
    yield engine
    engine.dispose()


def _status(cmd_id: str, seq: int, state: CommandState, code: int | None = None) -> CommandStatus:
    return CommandStatus("gw-1", seq, 0.0, cmd_id, state, code, state.value, {})


def test_a_resent_command_keeps_its_cmd_id_and_its_statuses_count(store: sa.Engine) -> None:
    """A command resent for want of a receipt goes out under the same cmd_id every time, and the
    gateway's statuses for that cmd_id finish it once (they were taken for an earlier attempt's:
    an ``applied`` was recorded twice, a ``rejected`` ignored, leaving the command ``received``
    until it expired; the second resend went out under a new cmd_id, run again by the gateway)."""
    retry_s = 15.0
    with store.begin() as connection:
        first, _ = thd_enqueue(connection, NewCommand(CommandType.TOKEN, "m1",
                                                      {"tokens": ["1" * 20]}), 100.0)  # fmt: skip
        second, _ = thd_enqueue(connection, NewCommand(CommandType.TOKEN, "m1",
                                                       {"tokens": ["2" * 20]}), 100.0)  # fmt: skip
    wire: list[str] = []
    for at in (100.0, 100.0 + retry_s, 100.0 + 2 * retry_s):  # sent, then resent twice
        with store.begin() as connection:
            wire += [d.wire_id for d in thd_due(connection, at, retry_s, 5)]
    assert wire == [first, first, first]
    with store.begin() as connection:
        for seq, state in enumerate((CommandState.RECEIVED, CommandState.APPLIED), 1):
            thd_apply_status(connection, _status(first, seq, state, 1), 150.0, 5)
    with store.begin() as connection:  # the meter's next command, also resent once
        wire = [d.wire_id for d in thd_due(connection, 151.0, retry_s, 5)]
        wire += [d.wire_id for d in thd_due(connection, 151.0 + retry_s, retry_s, 5)]
        assert wire == [second, second]
        thd_apply_status(connection, _status(second, 3, CommandState.REJECTED, 13), 170.0, 5)
    with store.connect() as connection:
        states = dict(connection.execute(sa.select(commands.c.id, commands.c.state)).all())
        finals = Counter(str(r[0]) for r in connection.execute(
            sa.select(command_history.c.command_id).where(command_history.c.state.in_(FINAL))))  # fmt: skip
    assert states == {first: "applied", second: "rejected"}
    assert finals == Counter({first: 1, second: 1})


def test_a_command_never_confirmed_fails_after_max_attempts_sends(store: sa.Engine) -> None:
    with store.begin() as connection:
        command_id, _ = thd_enqueue(connection, NewCommand(CommandType.TOKEN, "m1",
                                                           {"tokens": ["1" * 20]}), 0.0)  # fmt: skip
    wire: list[str] = []
    for k in range(4):
        with store.begin() as connection:
            wire += [d.wire_id for d in thd_due(connection, 10.0 * k, 10.0, 3)]
    assert wire == [command_id] * 3
    with store.connect() as connection:
        row = connection.execute(sa.select(commands).where(commands.c.id == command_id)).one()
    assert row.state == "failed" and "after 3 sends" in row.detail


def _blocked_or_done(engine: sa.Engine, worker: threading.Thread) -> bool:
    """True once ``worker`` has finished or some session of ``engine``'s database waits on a lock
    (the one the worker's transaction ran into)."""
    with engine.connect() as connection:
        waiting = connection.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one()  # fmt: skip
    return not worker.is_alive() or waiting > 0


def _race(engine: sa.Engine, first: Any, second: Any) -> list[BaseException]:
    """``first(connection)`` in a transaction left open while ``second(connection)`` runs in its
    own, in a thread, until it has to wait for ``first``'s locks (or is done); then ``first``
    commits and ``second`` finishes: two head-ends at the same rows at the same moment. What
    ``second`` raised (its transaction rolled back)."""
    failures: list[BaseException] = []

    def run_second() -> None:
        try:
            with engine.begin() as connection:
                second(connection)
        except BaseException as exc:
            failures.append(exc)

    with engine.connect() as connection:
        with connection.begin():
            first(connection)
            worker = threading.Thread(target=run_second, name="second-head-end")
            worker.start()
            wait_for(lambda: _blocked_or_done(engine, worker), 10, "the second transaction")
        worker.join(timeout=10)
    assert not worker.is_alive()
    return failures


@pytest.fixture(scope="module")
def pg_store(postgres: Postgres) -> Iterator[sa.Engine]:  # noqa: F811
    """A migrated PostgreSQL database the races below share (each its own meters)."""
    engine = make_engine(postgres.create_database(f"scale_out_races_{os.getpid()}"), pool_size=3)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_two_sales_to_one_meter_at_once_get_two_tids_and_both_count(pg_store: sa.Engine) -> None:
    """Two head-ends selling to one meter at the same moment: each token gets its own TID (the
    meter takes a TID once: the second of two tokens with one TID is rejected, Used) and the
    account's month totals count both sales (they counted one, so the next sale was priced as
    if the other had not been made)."""
    master = secrets.token_bytes(32)
    issuer = SealedKeyStore(master)
    meter_id = seed_drn(4711)
    with pg_store.begin() as connection:
        add_keys(connection, master)
        add_meters(connection, meter_id)
        open_account(connection, add_customer(connection, "Thandi"), meter_id,
                     add_tariff(connection))  # fmt: skip
    now = SEED_START + 60

    def sell(connection: sa.Connection) -> None:
        thd_vend(connection, issuer, Seller("cashier", "shop"), now, meter_id=meter_id,
                 amount_minor=1000, deliver=False)  # 5 kWh at the flat tariff  # fmt: skip

    assert _race(pg_store, sell, sell) == []
    with pg_store.connect() as connection:
        tids = connection.execute(sa.select(tokens.c.tid)).scalars().all()
        month_wh = connection.execute(sa.select(accounts.c.month_energy_wh)).scalar_one()
    assert len(tids) == 2 and len(set(tids)) == 2
    assert month_wh == 2 * 5000


def test_two_schedulers_at_the_same_moment_queue_a_window_once(pg_store: sa.Engine) -> None:
    """A head-end whose scheduler tick stalled past its lease (a busy database pool, a paused
    process) runs the schedules at the moment the lease's new holder does: the window is queued
    once (each queued it for every meter: both read the window as not yet run)."""
    spec = {"zone": "UTC", "kind": "interval", "interval_minutes": 1}
    group = ("race-1", "race-2", "race-3")
    with pg_store.begin() as connection:
        thd_touch_gateway(connection, "gw-race", 0.0)
        thd_ensure_meters(connection, "gw-race", set(group), MeterDefaults(group="race"), 0.0)
        connection.execute(sa.insert(read_schedules).values(name="race", group_name="race",
                                                            spec=json.dumps(spec)))  # fmt: skip
        thd_run_schedules(connection, 600.0, 4, 3600.0)  # starts now: nothing missed

    def tick(connection: sa.Connection) -> None:
        thd_run_schedules(connection, 661.0, 4, 3600.0)  # the 660 window is due

    assert _race(pg_store, tick, tick) == []
    with pg_store.connect() as connection:
        reads = Counter(str(r[0]) for r in connection.execute(
            sa.select(commands.c.meter_id).where(commands.c.created_by == "schedule:race")))  # fmt: skip
        last = connection.execute(sa.select(read_schedules.c.last_window_at)
                                  .where(read_schedules.c.name == "race")).scalar_one()  # fmt: skip
    assert reads == Counter(dict.fromkeys(group, 1))
    assert last == 660.0


def _command(engine: sa.Engine, command_id: str) -> tuple[str, Counter[str]]:
    """A command's state, and how many times its history entered each final state."""
    with engine.connect() as connection:
        state = connection.execute(sa.select(commands.c.state)
                                   .where(commands.c.id == command_id)).scalar_one()  # fmt: skip
        finals = Counter(str(r[0]) for r in connection.execute(
            sa.select(command_history.c.state).where(command_history.c.command_id == command_id,
                                                     command_history.c.state.in_(FINAL))))  # fmt: skip
    return str(state), finals


def test_a_cancel_as_another_head_end_dispatches_the_command_is_refused(
    pg_store: sa.Engine,
) -> None:
    """An operator cancels a disconnect through one head-end at the moment another publishes it:
    the cancel is refused, the command went out (it was recorded ``cancelled`` over ``sent``, and
    the gateway's ``applied`` was then ignored: the meter disconnected, the head-end said not)."""
    with pg_store.begin() as connection:
        thd_touch_gateway(connection, "gw-cancel", 0.0)
        thd_ensure_meters(connection, "gw-cancel", {"cancel-1"}, MeterDefaults(), 0.0)
        command_id, _ = thd_enqueue(connection, NewCommand(CommandType.RELAY, "cancel-1",
                                                           {"action": "disconnect"}), 100.0)  # fmt: skip

    def dispatch(connection: sa.Connection) -> None:
        assert [d.id for d in thd_due(connection, 101.0, 60.0, 5)
                if d.meter_id == "cancel-1"] == [command_id]  # fmt: skip

    refused = _race(pg_store, dispatch, lambda c: thd_cancel(c, command_id, 101.0, "kim"))
    assert [type(e) for e in refused] == [CommandError]
    assert _command(pg_store, command_id) == ("sent", Counter())


def test_a_status_as_another_head_end_expires_the_command_is_its_one_final_state(
    pg_store: sa.Engine,
) -> None:
    """The gateway's ``applied`` is committed by one head-end as another's dispatcher finds the
    command past its ``not_after``: it stays applied, one final state (it was then recorded
    ``expired`` too, over ``applied``, with the token offered for the keypad)."""
    with pg_store.begin() as connection:
        thd_touch_gateway(connection, "gw-expiry", 0.0)
        thd_ensure_meters(connection, "gw-expiry", {"expiry-1"}, MeterDefaults(), 0.0)
        command_id, _ = thd_enqueue(connection, NewCommand(CommandType.TOKEN, "expiry-1",
                                                           {"tokens": ["1" * 20]},
                                                           expiry_s=10.0), 100.0)  # fmt: skip
        thd_due(connection, 101.0, 60.0, 5)
    applied = CommandStatus("gw-expiry", 1, 0.0, command_id, CommandState.APPLIED, 1, "Accept", {})
    failures = _race(pg_store, lambda c: thd_apply_status(c, applied, 110.5, 5),
                     lambda c: thd_due(c, 111.0, 60.0, 5))  # fmt: skip
    assert failures == []
    assert _command(pg_store, command_id) == ("applied", Counter({"applied": 1}))
