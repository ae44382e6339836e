"""Vending through the head-end's REST API, and how long a token takes from the sale to the meter.

Run from the repository root::

    python -m benchmarks.headend_vending            # 1,500 API vends, 100 tokens pushed (~75 s)
    python -m benchmarks.headend_vending --quick    # 200 API vends, 20 tokens pushed (~30 s)
    python -m benchmarks.headend_vending --json     # the same figures as JSON
    python -m benchmarks.headend_vending --check    # exit 1 if the run is invalid

Processes: a Mosquitto broker on a free loopback port, ``amr headend`` (SQLite file, WAL,
``synchronous=FULL``; ``commands.dispatch_interval_s: 0.2``), later ``amr sim`` (two Modbus TCP
buses of 5 ``amr-prepaid-v1`` meters each, the simulator's default test vending key
ABABABABABABABAB, SGC 123456) and ``amr concentrator`` polling them. Set-up goes through the API as
an integrator would: an admin operator (``amr user add``), the vending key (POST /api/v1/keys), a
one-block step tariff (R1.50/kWh + 15 % VAT), a customer and an account per meter.

(a) Vends per second through the API. 30 meters (``--quick`` 20), announced by a gateway state
message as a gateway would announce them, written into the database before the head-end starts.
8 HTTP/1.1 clients (threads of this process, one keep-alive connection each, a bearer token from
POST /api/v1/login) sell R50 each round robin over the meters with POST /api/v1/vends
``{"deliver": false}``: priced, token made, vend, receipt, month and audit committed, nothing
queued for a gateway. The clock runs from the first request to the last reply. Baseline: the same
vends, in the same order, by :func:`headend.vending.thd_vend` called directly in one thread of this
process, one transaction each (``engine.begin()``, as ``Database.run`` does) on a copy of the
head-end's database taken just before (SQLite's backup API), with a :class:`SealedKeyStore` opened
with the same master key. Both warm up first with one untimed vend per meter (the key store derives
and caches each meter's decoder key). Reported: vends/s for both and their ratio (API / direct), the
API's request latency (p50, p99) and the CPU time per vend of the head-end process and of the
direct loop.

(b) Token push latency. Once the concentrator has announced its 10 meters, 100 tokens (``--quick``
20) are sold through the API, one every 0.3 s round robin over the meters, with delivery on. Each
vend's command is read back with GET /api/v1/commands/{id}; its history has the head-end's
timestamps (all from the head-end's clock): ``queued`` (the sale), ``sent`` (the dispatcher
published it), ``received`` (the gateway's first status, as ingested) and ``applied`` (the meter
accepted it, the gateway said so, ingest committed it). Reported as p50 and p99 in ms: the whole
(queued -> applied) and its parts: head-end (queued -> sent), link (sent -> received: broker,
gateway, broker, ingest) and concentrator and meter (received -> applied: the gateway's queue, the
Modbus write and read-back, the status back through the broker and ingest).

No speed target is set for these figures; ``--check`` fails only an invalid run: every API vend
answered 201 with a 20-digit token, every direct vend made one, and every pushed token applied with
the meter's Accept (code 1) after queued, sent and received.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import platform
import queue
import re
import sqlite3
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
from benchmarks.concentrator_line import AmrProcess, control_url, get_json, running_broker
from benchmarks.sim_fleet_cpu import process_cpu_s
from benchmarks.sim_rtu_timing import AMR, REPO_ROOT, START_TIMEOUT_S, SimError
from headend.config import HeadendConfig
from headend.keystore import SealedKeyStore, load_master_key
from headend.records import thd_gateway_state
from headend.store import make_engine, upgrade
from headend.vending import Seller, thd_vend
from protocols.link import GatewayState
from protocols.sts.keys import luhn_check_digit
from tests.support.api import Api, ApiFailure

__all__ = ["ApiRun", "DirectRun", "LatencyRun", "Report", "main", "run_benchmark"]

MASTER_KEY = "5a" * 32  # test master key, given to the head-end through $AMR_MASTER_KEY
MASTER_KEY_ENV = "AMR_MASTER_KEY"
PASSWORD = "benchmark password"  # the admin operator's, given to amr user add through $AMR_BENCH_PW
PASSWORD_ENV = "AMR_BENCH_PW"
VENDING_KEY = {"id": "sgc123456-krn1", "key_hex": "ABABABABABABABAB", "sgc": 123456,
               "key_revision": 1, "key_type": 2, "algorithm": "sta", "dkga": 2}  # fmt: skip
TARIFF = {"name": "bench-step", "kind": "step",
          "body": {"currency": "ZAR", "blocks": [{"upper_kwh": None, "price_minor_per_kwh": "150"}],
                   "tax_rate": "0.15"}}  # fmt: skip
AMOUNT_MINOR = 5000  # R50: 28.9 kWh
DISPATCH_INTERVAL_S = 0.2
CLIENTS = 8
FULL_VENDS, QUICK_VENDS = 1500, 200
FULL_VEND_METERS, QUICK_VEND_METERS = 30, 20
FULL_TOKENS, QUICK_TOKENS = 100, 20
SIM_BUSES = 2
SIM_METERS_PER_BUS = 5
PACE_S = 0.3  # one sale every PACE_S during the latency run
FINAL_TIMEOUT_S = 90.0
REGISTER_TIMEOUT_S = 60.0
VEND_GATEWAY = "gw-bench-vend"
GATEWAY = "gw-bench-push"
# the history entries timed, and who writes each
SOURCE = {"queued": "headend", "sent": "headend", "received": "gateway", "applied": "gateway"}
FINAL = {"applied", "rejected", "failed", "expired", "cancelled", "superseded"}


# --- processes ---------------------------------------------------------------------------------------


class Daemon(AmrProcess):
    """``amr SUBCOMMAND --config FILE``, started when it prints ``ready`` (the head-end does not
    print the "Ctrl-C" line :class:`AmrProcess` waits for)."""

    def __init__(self, subcommand: str, config: dict[str, Any], folder: Path, ready: str,
                 env: dict[str, str]) -> None:  # fmt: skip
        super().__init__(subcommand, config, folder)
        self.ready = ready
        self.env = env

    def start(self) -> None:
        path = self.folder / f"{self.subcommand}.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        amr = [str(AMR)] if AMR.exists() else [sys.executable, "-m", "headend.cli.main"]
        began = time.perf_counter()
        self.process = subprocess_popen([*amr, self.subcommand, "--config", str(path)], self.env)
        self._drainer = threading.Thread(target=self._drain, name=f"amr-{self.subcommand}-output",
                                         daemon=True)  # fmt: skip
        self._drainer.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any(self.ready in line for line in self.output):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SimError(f"amr {self.subcommand} did not start:\n" + "".join(self.output))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise SimError(
                    f"amr {self.subcommand} exited with status {self.process.wait()}:\n"
                    + "".join(self.output)
                )
        self.started_in_s = time.perf_counter() - began

    def __enter__(self) -> Daemon:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self


def subprocess_popen(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env})  # fmt: skip


def add_admin(config_path: Path, env: dict[str, str]) -> None:
    """``amr user add --role admin`` (it also brings the database to the newest schema)."""
    amr = [str(AMR)] if AMR.exists() else [sys.executable, "-m", "headend.cli.main"]
    done = subprocess.run(
        [*amr, "user", "add", "--config", str(config_path), "--username", "admin", "--role",
         "admin", "--password-env", PASSWORD_ENV],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SimError(f"amr user add failed ({done.returncode}): {done.stdout}{done.stderr}")


def drn(serial: int) -> str:
    """An 11-digit DRN: 10 digits and the Luhn check digit."""
    body = f"{serial:010d}"
    return body + str(luhn_check_digit(body))


def seed_meters(url: str, meter_ids: Sequence[str]) -> None:
    """Register meters as a gateway's state message announces them (what ingest does)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        now = time.time()
        state = GatewayState(VEND_GATEWAY, now, online=False, meters=tuple(meter_ids))
        with engine.begin() as connection:
            thd_gateway_state(connection, state, HeadendConfig().meter_defaults, now)
    finally:
        engine.dispose()


def open_accounts(api: Api, tariff_id: int, meter_ids: Sequence[str]) -> None:
    for meter_id in meter_ids:
        customer = api.post("/api/v1/customers", {"name": f"Customer {meter_id}",
                                                  "phone": f"+27820{meter_id[-6:]}"})  # fmt: skip
        api.post("/api/v1/accounts", {"customer_id": customer["id"], "meter_id": meter_id,
                                      "tariff_id": tariff_id})  # fmt: skip


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API reads through its WAL)."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``; 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {"p50": percentile(ms, 50), "p99": percentile(ms, 99),
            "mean": sum(ms) / len(ms) if ms else 0.0, "max": max(ms, default=0.0),
            "min": min(ms, default=0.0)}  # fmt: skip


# --- (a) vends per second ----------------------------------------------------------------------------


@dataclass
class ApiRun:
    vends: int
    clients: int
    seconds: float
    latencies_s: list[float]
    headend_cpu_s: float
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.vends / self.seconds if self.seconds > 0 else 0.0


@dataclass
class DirectRun:
    vends: int
    seconds: float
    cpu_s: float  # this thread's CPU time
    tokens: int

    @property
    def rate(self) -> float:
        return self.vends / self.seconds if self.seconds > 0 else 0.0


def _vend_body(meter_id: str, deliver: bool) -> bytes:
    return json.dumps({"meter_id": meter_id, "amount_minor": AMOUNT_MINOR,
                       "deliver": deliver}).encode()  # fmt: skip


def _token_ok(reply: dict[str, Any]) -> bool:
    tokens = reply.get("tokens") or [""]
    digits = str(tokens[0]).replace(" ", "")
    return len(digits) == 20 and digits.isdigit()


def api_vends(base: str, token: str, meter_ids: Sequence[str], count: int, clients: int,
              pid: int) -> ApiRun:  # fmt: skip
    """``count`` vends by ``clients`` threads, each on its own keep-alive connection."""
    host, port = base.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lock = threading.Lock()
    issued = iter(range(count))
    latencies: list[float] = []
    failures: list[str] = []
    start_line = threading.Barrier(clients + 1)

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            start_line.wait()
            while True:
                with lock:
                    index = next(issued, None)
                if index is None:
                    return
                body = _vend_body(meter_ids[index % len(meter_ids)], False)
                began = time.perf_counter()
                connection.request("POST", "/api/v1/vends", body, headers)
                reply = connection.getresponse()
                payload = reply.read()
                took = time.perf_counter() - began
                ok = reply.status == 201 and _token_ok(json.loads(payload))
                with lock:
                    latencies.append(took)
                    if not ok:
                        failures.append(f"HTTP {reply.status}: {payload[:200]!r}")
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                failures.append(f"client: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client, name=f"vend-client-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    cpu0 = process_cpu_s(pid)
    start_line.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    cpu = process_cpu_s(pid) - cpu0
    return ApiRun(len(latencies), clients, seconds, latencies, cpu, failures)


def direct_vends(url: str, meter_ids: Sequence[str], count: int, warm_up: bool) -> DirectRun:
    """The same vends by thd_vend in this thread, one transaction each."""
    engine = make_engine(url)
    issuer = SealedKeyStore(load_master_key(None, MASTER_KEY_ENV))
    seller = Seller("admin")
    try:
        if warm_up:
            for meter_id in meter_ids:
                with engine.begin() as connection:
                    thd_vend(connection, issuer, seller, time.time(), meter_id=meter_id,
                             amount_minor=AMOUNT_MINOR, deliver=False)  # fmt: skip
        made = 0
        cpu0, began = time.thread_time(), time.perf_counter()
        for index in range(count):
            with engine.begin() as connection:
                view = thd_vend(connection, issuer, seller, time.time(),
                                meter_id=meter_ids[index % len(meter_ids)],
                                amount_minor=AMOUNT_MINOR, deliver=False)  # fmt: skip
            made += _token_ok(view)
        seconds, cpu = time.perf_counter() - began, time.thread_time() - cpu0
    finally:
        engine.dispose()
    return DirectRun(count, seconds, cpu, made)


# --- (b) token push latency --------------------------------------------------------------------------


@dataclass
class Push:
    vend_id: int
    meter_id: str
    command_id: str
    request_s: float
    state: str = ""
    code: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def at(self, state: str) -> float | None:
        """When the command first entered ``state``, by the head-end's clock."""
        for entry in self.history:
            if entry["state"] == state and entry["source"] == SOURCE[state]:
                return float(entry["at"])
        return None

    @property
    def complete(self) -> bool:
        return (self.state == "applied" and self.code == 1
                and all(self.at(state) is not None for state in SOURCE))  # fmt: skip

    def span(self, first: str, last: str) -> float:
        start, end = self.at(first), self.at(last)
        assert start is not None and end is not None
        return end - start


@dataclass
class LatencyRun:
    tokens: int
    meters: int
    pushes: list[Push]
    wall_s: float
    timed_out: int
    failures: list[str] = field(default_factory=list)

    @property
    def complete(self) -> list[Push]:
        return [p for p in self.pushes if p.complete]

    def spans(self, first: str, last: str) -> list[float]:
        return [p.span(first, last) for p in self.complete]


def push_tokens(api: Api, meter_ids: Sequence[str], count: int) -> LatencyRun:
    pushes: list[Push] = []
    failures: list[str] = []
    began = time.perf_counter()
    for index in range(count):
        due = began + index * PACE_S
        time.sleep(max(0.0, due - time.perf_counter()))
        meter_id = meter_ids[index % len(meter_ids)]
        sent = time.perf_counter()
        try:
            vend = api.post("/api/v1/vends", {"meter_id": meter_id, "amount_minor": AMOUNT_MINOR})
        except ApiFailure as exc:
            failures.append(f"vend for {meter_id}: {exc}")
            continue
        delivery = vend.get("delivery") or {}
        if not delivery.get("command_id"):
            failures.append(f"vend {vend.get('id')} for {meter_id} queued no command")
            continue
        pushes.append(Push(int(vend["id"]), meter_id, str(delivery["command_id"]),
                           time.perf_counter() - sent))  # fmt: skip
    deadline = time.monotonic() + FINAL_TIMEOUT_S
    waiting = list(pushes)
    while waiting and time.monotonic() < deadline:
        still = []
        for push in waiting:
            command = api.get(f"/api/v1/commands/{push.command_id}")
            push.state, push.code = str(command["state"]), command.get("code")
            push.history = list(command["history"])
            if push.state not in FINAL:
                still.append(push)
        waiting = still
        if waiting:
            time.sleep(0.25)
    wall = time.perf_counter() - began
    for push in pushes:
        if push.state in FINAL and not push.complete:
            failures.append(f"command {push.command_id} ({push.meter_id}): {push.state} code "
                            f"{push.code}: {[h['state'] for h in push.history]}")  # fmt: skip
    return LatencyRun(count, len(meter_ids), pushes, wall, len(waiting), failures)


# --- the run -----------------------------------------------------------------------------------------


@dataclass
class Report:
    vend_meters: int
    api: ApiRun
    direct: DirectRun
    latency: LatencyRun
    start_s: dict[str, float]
    errors: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.api.rate / self.direct.rate if self.direct.rate else 0.0

    @property
    def checks(self) -> dict[str, bool]:
        latency = self.latency
        return {
            "every_api_vend_made_a_token": self.api.vends > 0 and not self.api.failures,
            "every_direct_vend_made_a_token": self.direct.tokens == self.direct.vends > 0,
            "every_token_queued": len(latency.pushes) == latency.tokens,
            "every_token_final": latency.timed_out == 0,
            "every_token_applied_with_accept": len(latency.complete) == latency.tokens,
        }

    @property
    def valid(self) -> bool:
        return all(self.checks.values()) and not self.errors


def headend_config(folder: Path, db_url: str, broker_port: int) -> dict[str, Any]:
    return {
        "database": {"url": db_url},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "keepalive_s": 10,
                 "client_id": "bench-headend"},
        "keys": {"signing_key_file": str(folder / "signing.pem")},
        "api": {"host": "127.0.0.1", "port": 0},
        "commands": {"dispatch_interval_s": DISPATCH_INTERVAL_S},
    }  # fmt: skip


def sim_config(folder: Path) -> dict[str, Any]:
    return {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(folder / "sim"),
        "buses": [
            {"name": f"tcp{n + 1}", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
             "meters": {"count": SIM_METERS_PER_BUS, "first_serial": 7001 + 100 * n,
                        "initial_credit_kwh": 100}}
            for n in range(SIM_BUSES)
        ],
    }  # fmt: skip


def gateway_config(folder: Path, broker_port: int, ports: Sequence[int]) -> dict[str, Any]:
    return {
        "gateway_id": GATEWAY,
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "keepalive_s": 10},
        "journal": {"path": str(folder / "journal.db")},
        "headend_public_key_file": str(folder / "signing.pub"),
        "poll_groups": {"status": {"interval_s": 10, "alarm": True}, "energy": {"interval_s": 60}},
        "batch": {"max_readings": 50, "max_delay_s": 5},
        "buses": [
            {"name": f"tcp{n + 1}", "type": "modbus-tcp", "host": "127.0.0.1", "port": port,
             "timeout_ms": 500,
             "meters": [{"address": unit} for unit in range(1, SIM_METERS_PER_BUS + 1)]}
            for n, port in enumerate(ports)
        ],
    }  # fmt: skip


def _wait(condition: Callable[[], bool], timeout_s: float, what: str,
          processes: Sequence[AmrProcess]) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process in processes:
            if not process.running:
                raise SimError(f"amr {process.subcommand} exited while waiting for {what}:\n"
                               + process.tail(40))  # fmt: skip
        if time.monotonic() > deadline:
            raise SimError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _meter_ids(api: Api) -> set[str]:
    return {m["id"] for m in api.get("/api/v1/meters?limit=500")["items"]}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_benchmark(quick: bool = False) -> Report:
    vends = QUICK_VENDS if quick else FULL_VENDS
    vend_meter_count = QUICK_VEND_METERS if quick else FULL_VEND_METERS
    tokens = QUICK_TOKENS if quick else FULL_TOKENS
    env = {MASTER_KEY_ENV: MASTER_KEY, PASSWORD_ENV: PASSWORD}
    with (
        _environment(env),
        tempfile.TemporaryDirectory(prefix="headend-vending-") as tmp,
        running_broker(Path(tmp) / "mosquitto") as broker,
    ):
        folder = Path(tmp)
        db_path = folder / "headend.db"
        db_url = f"sqlite:///{db_path}"
        vend_meters = [drn(4_700_000 + n) for n in range(vend_meter_count)]
        seed_meters(db_url, vend_meters)
        config = headend_config(folder, db_url, broker.port)
        config_path = folder / "headend.yaml"
        config_path.write_text(yaml.safe_dump(config))
        add_admin(config_path, env)
        with Daemon("headend", config, folder, "API on http://", env) as headend:
            found = re.search(r"API on (http://127\.0\.0\.1:\d+)/", "".join(headend.output))
            if not found:
                raise SimError("amr headend printed no API address:\n" + headend.tail())
            base = found.group(1)
            api = Api(base).login("admin", PASSWORD)
            assert api.token is not None
            api.post("/api/v1/keys", VENDING_KEY)
            tariff = api.post("/api/v1/tariffs", TARIFF)
            open_accounts(api, int(tariff["id"]), vend_meters)

            # (a) the direct baseline on a copy, then the same through the API
            copy_sqlite(db_path, folder / "direct.db")
            direct = direct_vends(f"sqlite:///{folder / 'direct.db'}", vend_meters, vends, True)
            api_vends(base, api.token, vend_meters, len(vend_meters), 1, headend.pid)  # warm-up
            api_run = api_vends(base, api.token, vend_meters, vends, CLIENTS, headend.pid)

            # (b) the whole chain: simulator, concentrator, broker, head-end
            sim_folder = folder / "sim"
            sim_folder.mkdir()
            with AmrProcess("sim", sim_config(folder), sim_folder) as sim:
                text = "".join(sim.output)
                ports = [int(p) for p in re.findall(r"modbus-tcp 127\.0\.0\.1:(\d+)", text)]
                control = control_url(sim.output)
                sim_meters = sorted(str(m["drn"]) for m in get_json(f"{control}/meters"))
                gw_config = gateway_config(folder, broker.port, ports)
                with AmrProcess("concentrator", gw_config, folder) as gateway:
                    _wait(lambda: set(sim_meters) <= _meter_ids(api), REGISTER_TIMEOUT_S,
                          "the concentrator's meters registered", [gateway, headend])  # fmt: skip
                    open_accounts(api, int(tariff["id"]), sim_meters)
                    latency = push_tokens(api, sim_meters, tokens)
                    start_s = {"headend": headend.started_in_s, "simulator": sim.started_in_s,
                               "concentrator": gateway.started_in_s}  # fmt: skip
                    errors = [line.rstrip() for p in (headend, gateway) for line in p.output
                              if "Traceback" in line][:5]  # fmt: skip
    return Report(vend_meter_count, api_run, direct, latency, start_s, errors)


# --- reporting -------------------------------------------------------------------------------------


def as_json(report: Report, quick: bool) -> dict[str, Any]:
    api, direct, latency = report.api, report.direct, report.latency
    return {
        "benchmark": "headend_vending",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": quick,
        "database": "SQLite file, WAL, synchronous=FULL",
        "dispatch_interval_s": DISPATCH_INTERVAL_S,
        "amount_minor": AMOUNT_MINOR,
        "start_s": report.start_s,
        "api": {
            "vends": api.vends,
            "clients": api.clients,
            "meters": report.vend_meters,
            "seconds": api.seconds,
            "vends_per_s": api.rate,
            "latency_ms": summary_ms(api.latencies_s),
            "headend_cpu_s": api.headend_cpu_s,
            "headend_cpu_ms_per_vend": api.headend_cpu_s / api.vends * 1000 if api.vends else 0.0,
            "failures": api.failures[:10],
        },
        "direct": {
            "vends": direct.vends,
            "seconds": direct.seconds,
            "vends_per_s": direct.rate,
            "ms_per_vend": direct.seconds / direct.vends * 1000 if direct.vends else 0.0,
            "cpu_ms_per_vend": direct.cpu_s / direct.vends * 1000 if direct.vends else 0.0,
            "tokens": direct.tokens,
        },
        "ratio_api_to_direct": report.ratio,
        "latency": {
            "tokens": latency.tokens,
            "meters": latency.meters,
            "pace_s": PACE_S,
            "applied": len(latency.complete),
            "timed_out": latency.timed_out,
            "wall_s": latency.wall_s,
            "total_ms": summary_ms(latency.spans("queued", "applied")),
            "headend_ms": summary_ms(latency.spans("queued", "sent")),
            "link_ms": summary_ms(latency.spans("sent", "received")),
            "gateway_ms": summary_ms(latency.spans("received", "applied")),
            "vend_request_ms": summary_ms([p.request_s for p in latency.pushes]),
            "failures": latency.failures[:10],
        },
        "checks": report.checks,
        "valid": report.valid,
        "passed": report.valid,
        "errors": report.errors,
    }


def as_table(report: Report, quick: bool) -> str:
    api, direct, latency = report.api, report.direct, report.latency
    api_ms = summary_ms(api.latencies_s)
    failed = [name for name, ok in report.checks.items() if not ok]
    lines = [
        f"head-end vending{' (--quick)' if quick else ''}: amr headend on SQLite (WAL, "
        f"synchronous=FULL); {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
        f"(a) vends/s, R{AMOUNT_MINOR / 100:.0f} each over {report.vend_meters} meters, "
        "deliver=false",
        f"{'path':<46}{'vends':>7}{'seconds':>9}{'vends/s':>9}{'ms/vend':>9}{'x direct':>10}",
        f"{'thd_vend direct, 1 thread [baseline]':<46}{direct.vends:>7}{direct.seconds:>9.2f}"
        f"{direct.rate:>9.1f}{1000 / direct.rate if direct.rate else 0:>9.2f}{1:>9.2f}x",
        f"{f'POST /api/v1/vends, {api.clients} HTTP clients':<46}{api.vends:>7}"
        f"{api.seconds:>9.2f}{api.rate:>9.1f}{1000 / api.rate if api.rate else 0:>9.2f}"
        f"{report.ratio:>9.2f}x",
        f"API request latency p50 {api_ms['p50']:.1f} ms, p99 {api_ms['p99']:.1f} ms; CPU per "
        f"vend: head-end process {api.headend_cpu_s / max(api.vends, 1) * 1000:.2f} ms (all its "
        f"threads), direct {direct.cpu_s / max(direct.vends, 1) * 1000:.2f} ms (this thread)",
        "",
        f"(b) token push latency: {latency.tokens} tokens, one every {PACE_S:g} s over "
        f"{latency.meters} simulated meters (Modbus TCP); dispatch_interval_s "
        f"{DISPATCH_INTERVAL_S:g}; {len(latency.complete)} applied",
        f"{'segment (head-end clock)':<52}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}",
    ]
    for label, first, last in (
        ("vend -> applied (queued -> applied)", "queued", "applied"),
        ("  head-end: queued -> sent (dispatch, publish)", "queued", "sent"),
        ("  link: sent -> received (broker, gateway, ingest)", "sent", "received"),
        ("  concentrator + meter: received -> applied", "received", "applied"),
    ):
        s = summary_ms(latency.spans(first, last))
        lines.append(f"{label:<52}{s['p50']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}")
    request = summary_ms([p.request_s for p in latency.pushes])
    lines.append(f"{'POST /api/v1/vends (client side)':<52}{request['p50']:>9.1f}"
                 f"{request['p99']:>9.1f}{request['max']:>9.1f}")  # fmt: skip
    lines.append("")
    lines.append("checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed)))
    lines += [f"api: {f}" for f in api.failures[:3]]
    lines += [f"push: {f}" for f in latency.failures[:3]]
    lines += [f"log: {e}" for e in report.errors]
    lines.append(f"result: {'valid' if report.valid else 'INVALID'} (no speed target is set)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        argv, name="headend_vending",
        description="Vends/s through the head-end API vs thd_vend, and token push latency.",
        quick_help="fewer vends and tokens (~30 s)", check_help="exit 1 if the run is invalid",
        run=lambda args: run_benchmark(quick=args.quick), as_json=as_json, as_table=as_table,
        passed=lambda report: report.valid,
        errors=(SimError, OSError, RuntimeError, ApiFailure, sa.exc.SQLAlchemyError,
                pytest.fail.Exception),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
