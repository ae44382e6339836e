"""How much of a 9600-baud RS485 line does ``amr concentrator`` use when it has more to poll than fits?

Run from the repository root::

    python -m benchmarks.concentrator_line            # 30 s window (about 55 s in all)
    python -m benchmarks.concentrator_line --quick    # 8 s window (about 20 s)
    python -m benchmarks.concentrator_line --json     # the same figures as JSON
    python -m benchmarks.concentrator_line --check    # exit 1 if the line is used < 90 %

Three subprocesses: a Mosquitto broker on a free loopback port (:class:`tests.support.mosquitto.
Mosquitto`), ``amr sim`` with one RTU bus on a pty (9600 8N1, meter turnaround 10 ms, 20 meters of
``amr-prepaid-v1``, control API on a free port) and ``amr concentrator`` opening that pty as its
serial device. The concentrator's only poll group is ``status`` every 1 s at alarm priority: 20
reads of input registers 30..45 (16 registers) a second, more than the line carries, so its bus
queue never runs dry and the line should never rest longer than the t3.5 gap. This process is the
head-end: it subscribes to the gateway's topics and acknowledges every message.

After every meter has answered once and a warm-up, a fixed window (30 s; ``--quick`` 8 s) is
measured. Completed polls are the simulator's reply count over the window (``GET /buses``,
``stats.replies``); the readings the head-end receives with a gateway time inside the window are
counted as a cross-check. The line's limit is the RS485 timing model
(/work/shared/specs/dlt645.md, "RS485 timing" 2)::

    T_poll(N) = 8 Tc + max(T_turnaround, t3.5) + (5 + 2N) Tc + t3.5,  Tc = 11 / baud

so 1 / T_poll(16) polls/s. Reported: polls/s, their fraction of that limit (target >= 0.9) and the
concentrator's CPU time per poll (utime + stime of the process, all its threads, from
/proc/PID/stat over the window).

Where the time per poll goes: the simulator's own line model (``stats.busy_s``: request,
turnaround, reply), the t3.5 gap, and the line's idle time beyond that. To tell the simulator's
and the pty's share of that idle time from the concentrator's, the same line is also polled with
the same reads by a precise master (:class:`benchmarks.sim_rtu_timing.RtuMaster`, t3.5 kept by
spinning) for 5 s (``--quick`` 1.5 s) before the concentrator starts and again after it stops: its
excess over the model is what any master gets from this simulator; the concentrator's time per
poll beyond the reference's is the concentrator's own latency between a reply and its next request.

The run is valid only if every reply was a normal reply (no exception, no silence), the head-end's
reading count agrees with the simulator's reply count, every meter was read in the window, the
concentrator was still running at the end, and the reference master's replies were all valid.

The helpers here (:class:`AmrProcess`, :class:`HeadEndStub`, :func:`running_broker`, ...) are
shared with :mod:`benchmarks.concentrator_memory`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.cli import benchmark_main
from benchmarks.sim_fleet_cpu import process_cpu_s
from benchmarks.sim_rtu_timing import (
    AMR,
    BAUD,
    REPO_ROOT,
    START_TIMEOUT_S,
    RtuMaster,
    SimError,
    SimProcess,
    TransactionError,
    model_poll_s,
    rtu_bus,
    silent_interval_s,
    sim_config,
)
from protocols.link import (
    Ack,
    GatewayState,
    LinkError,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    to_ranges,
)
from protocols.modbus.adapter import Request
from tests.support.mosquitto import Mosquitto

__all__ = [
    "AmrProcess",
    "HeadEndStub",
    "LineResult",
    "Reference",
    "bus_stats",
    "control_url",
    "get_json",
    "main",
    "memory_kb",
    "meter_ids",
    "run_benchmark",
    "running_broker",
]

GATEWAY = "gw-bench-line"
METERS = 20
TURNAROUND_MS = 10.0
PROFILE_NAME = "amr-prepaid-v1"
STATUS_ADDRESS = 30  # the status group of amr-prepaid-v1: input registers 30..45, one read
STATUS_COUNT = 16
POLL_INTERVAL_S = 1.0
TIMEOUT_MS = 500
BATCH_READINGS = 50
BATCH_DELAY_S = 1.0
FULL_WINDOW_S = 30.0
QUICK_WINDOW_S = 8.0
FULL_WARM_UP_S = 5.0
QUICK_WARM_UP_S = 2.0
FULL_REFERENCE_S = 10.0  # a precise master on the same line: half before, half after the daemon
QUICK_REFERENCE_S = 3.0
TARGET_FRACTION = 0.9
FIRST_READINGS_TIMEOUT_S = 60.0


# --- shared helpers: processes, control API, broker, head-end ---------------------------------------


class AmrProcess(SimProcess):
    """``amr SUBCOMMAND --config FILE`` as a subprocess: the concentrator, or a simulator whose
    buses are not all RTU ptys (which :class:`SimProcess` insists on).

    Started when it prints its "Ctrl-C stops ..." line; output drained by a thread; stopped with
    SIGTERM (the daemon's services stop in order), killed if it hangs (see :class:`SimProcess`).
    """

    def __init__(self, subcommand: str, config: dict[str, Any], folder: Path, *args: str) -> None:
        super().__init__(config, folder)
        self.subcommand = subcommand
        self.args = args

    def start(self) -> None:
        path = self.folder / f"{self.subcommand}.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        amr = [str(AMR)] if AMR.exists() else [sys.executable, "-m", "headend.cli.main"]
        began = time.perf_counter()
        self.process = subprocess.Popen(
            [*amr, self.subcommand, "--config", str(path), *self.args],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._drainer = threading.Thread(target=self._drain, name=f"amr-{self.subcommand}-output",
                                         daemon=True)  # fmt: skip
        self._drainer.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any("Ctrl-C" in line for line in self.output):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SimError(
                    f"amr {self.subcommand} did not start in time:\n" + "".join(self.output)
                )
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

    def __enter__(self) -> AmrProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 20) -> str:
        return "".join(self.output[-lines:])


def control_url(output: Sequence[str]) -> str:
    """The simulator's control API base URL, from what ``amr sim`` printed."""
    for line in output:
        found = re.search(r"control API: (http://\S+)/meters", line)
        if found:
            return found.group(1)
    raise SimError("amr sim printed no control API address:\n" + "".join(output))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def meter_ids(control: str) -> dict[tuple[str, int], str]:
    """(bus, unit id) -> DRN of every simulated meter, as a gateway config names them."""
    return {(m["bus"], int(m["address"])): str(m["drn"]) for m in get_json(f"{control}/meters")}


def bus_stats(control: str) -> dict[str, dict[str, float]]:
    """Each simulated bus's counters (requests, replies, exceptions, unanswered, busy_s)."""
    return {bus["name"]: dict(bus["stats"]) for bus in get_json(f"{control}/buses")}


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and the other Vm* lines of /proc/PID/status, in kB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.startswith(("Vm", "Rss")) and rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0])
    return values


@contextlib.contextmanager
def running_broker(folder: Path) -> Iterator[Mosquitto]:
    """A Mosquitto broker on a free loopback port (installed with apt-get when missing)."""
    broker = Mosquitto(folder)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@dataclass
class HeadEndStub:
    """What the head-end sees of one gateway: every uplink message, acknowledged or not.

    ``ack``: acknowledge each reading/event batch by its seq, as a head-end does once committed;
    without it the gateway's backlog stays in its journal.
    """

    port: int
    gateway: str
    ack: bool = True
    client_id: str = "bench-headend"
    messages: Counter[str] = field(default_factory=Counter)
    reading_seqs: list[int] = field(default_factory=list)
    readings: list[tuple[str, float]] = field(default_factory=list)  # (meter, gateway time)
    online: bool = False
    malformed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: mqtt.Client | None = None

    def __enter__(self) -> HeadEndStub:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5)  # fmt: skip
        client.on_message = self._on_message
        client.connect("127.0.0.1", self.port, keepalive=30)
        client.subscribe(f"{gateway_topic(self.gateway, Topic.STATE).rsplit('/', 1)[0]}/#", qos=1)
        client.loop_start()
        self.client = client
        return self

    def __exit__(self, *exc: object) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        name = message.topic.split(f"/{self.gateway}/", 1)[-1]
        topic = {t.value: t for t in Topic}.get(name)
        if topic is None or not topic.uplink:
            return  # our own acks
        payload = bytes(message.payload)
        seq: int | None = None
        with self.lock:
            self.messages[name] += 1
            try:
                decoded = decode_message(topic, payload)
            except LinkError:
                self.malformed += 1
                return
            if isinstance(decoded, GatewayState):
                self.online = decoded.online
            elif topic is not Topic.HEALTH:  # health is never journaled, never acknowledged
                seq = getattr(decoded, "seq", None)
                if isinstance(decoded, ReadingBatch):
                    self.reading_seqs.append(decoded.seq)
                    self.readings += [(r.meter, r.time) for r in decoded.readings]
        if self.ack and seq is not None:
            _, ack = encode_message(Ack(to_ranges([seq])))
            client.publish(gateway_topic(self.gateway, Topic.ACK), ack, qos=1)

    def readings_between(self, start: float, end: float) -> Counter[str]:
        """Readings per meter whose gateway time is in [start, end)."""
        with self.lock:
            return Counter(meter for meter, at in self.readings if start <= at < end)


# --- the benchmark ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Reference:
    """A precise master (:class:`benchmarks.sim_rtu_timing.RtuMaster`) on the same line: what the
    simulator and the pty allow, the concentrator's scheduling left out."""

    transactions: int
    invalid: int
    elapsed_s: float
    errors: list[str] = field(default_factory=list)
    parts_ms: list[float] = field(default_factory=list)  # ms/poll of each run: before, after

    def __add__(self, other: Reference) -> Reference:
        return Reference(
            self.transactions + other.transactions,
            self.invalid + other.invalid,
            self.elapsed_s + other.elapsed_s,
            self.errors + other.errors,
            self.parts_ms + other.parts_ms,
        )

    @property
    def poll_ms(self) -> float:
        return self.elapsed_s / self.transactions * 1000 if self.transactions else 0.0

    @property
    def rate(self) -> float:
        return self.transactions / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(slots=True)
class LineResult:
    window_s: float
    polls: int
    requests: int
    exceptions: int
    unanswered: int
    line_busy_s: float  # the simulator's modelled line time (request, turnaround, reply)
    readings_in_window: int
    per_meter: dict[str, int]
    cpu_s: float
    sim_cpu_s: float
    warm_up_s: float
    gateway_alive: bool
    reference: Reference
    start_s: dict[str, float]
    errors: list[str] = field(default_factory=list)

    @property
    def model_s(self) -> float:
        return model_poll_s(STATUS_COUNT, TURNAROUND_MS / 1000, BAUD)

    @property
    def model_rate(self) -> float:
        return 1.0 / self.model_s

    @property
    def offered_rate(self) -> float:
        return METERS / POLL_INTERVAL_S

    @property
    def rate(self) -> float:
        return self.polls / self.window_s if self.window_s > 0 else 0.0

    @property
    def fraction(self) -> float:
        return self.rate / self.model_rate

    @property
    def poll_ms(self) -> float:
        return self.window_s / self.polls * 1000 if self.polls else 0.0

    @property
    def busy_ms_per_poll(self) -> float:
        return self.line_busy_s / self.polls * 1000 if self.polls else 0.0

    @property
    def gap_ms(self) -> float:
        return silent_interval_s(BAUD) * 1000

    @property
    def idle_ms_per_poll(self) -> float:
        """Line silence per poll beyond the t3.5 gap (the simulator's line model is exact)."""
        return self.poll_ms - self.busy_ms_per_poll - self.gap_ms if self.polls else 0.0

    @property
    def sim_latency_ms(self) -> float:
        """What the simulator and the pty add per poll, for any master: the reference's excess."""
        return self.reference.poll_ms - self.model_s * 1000

    @property
    def gateway_latency_ms(self) -> float:
        """What the concentrator adds per poll beyond a precise master."""
        return self.poll_ms - self.reference.poll_ms

    @property
    def cpu_ms_per_poll(self) -> float:
        return self.cpu_s / self.polls * 1000 if self.polls else 0.0

    @property
    def checks(self) -> dict[str, bool]:
        tolerance = max(3, round(0.02 * self.polls))
        return {
            "reference_replies_valid": self.reference.transactions > 0
            and self.reference.invalid == 0,
            "polls_counted": self.polls > 0,
            "every_request_answered": self.requests == self.polls and self.unanswered == 0,
            "no_exception_replies": self.exceptions == 0,
            "readings_match_replies": abs(self.readings_in_window - self.polls) <= tolerance,
            "every_meter_read": len(self.per_meter) == METERS and min(self.per_meter.values()) > 0,
            "gateway_running": self.gateway_alive,
        }

    @property
    def valid(self) -> bool:
        return all(self.checks.values())

    @property
    def passed(self) -> bool:
        return self.valid and self.fraction >= TARGET_FRACTION


def reference_run(device: str, seconds: float) -> Reference:
    """Status reads round robin with :class:`RtuMaster` (t3.5 kept by spinning), one warm-up."""
    model = model_poll_s(STATUS_COUNT, TURNAROUND_MS / 1000, BAUD)
    count = max(10, math.ceil(seconds / model))
    result = Reference(count, 0, 0.0)
    began = 0.0
    with RtuMaster(device, BAUD, precise=True) as master:
        time.sleep(0.3)  # a reply still on its way to the previous master
        master.flush_input()
        for index in range(-1, count):  # index -1: the warm-up, not timed
            if index == 0:
                began = time.perf_counter()
            request = Request(1 + index % METERS, 4, STATUS_ADDRESS, STATUS_COUNT)
            try:
                master.transact(request, 3 * model + 0.5)
            except TransactionError as exc:
                result.invalid += 1
                result.errors.append(str(exc))
                time.sleep(0.05)  # let a late reply arrive, then drop it
                master.flush_input()
                master.last_byte_at = time.perf_counter()
            master.gap()
        result.elapsed_s = time.perf_counter() - began
    result.parts_ms.append(result.poll_ms)
    return result


def _wait(condition: Callable[[], bool], timeout_s: float, what: str, gateway: AmrProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if not gateway.running:
            raise SimError(f"amr concentrator exited while waiting for {what}:\n" + gateway.tail())
        if time.monotonic() > deadline:
            raise SimError(f"timed out waiting for {what}; concentrator said:\n" + gateway.tail())
        time.sleep(0.05)


def gateway_config(folder: Path, port: int, device: str, drns: dict[int, str]) -> dict[str, Any]:
    return {
        "gateway_id": GATEWAY,
        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 30},
        "journal": {"path": str(folder / "journal.db")},
        "poll_groups": {"status": {"interval_s": POLL_INTERVAL_S, "alarm": True}},
        "batch": {"max_readings": BATCH_READINGS, "max_delay_s": BATCH_DELAY_S},
        "buses": [
            {
                "name": "rtu1",
                "type": "modbus-rtu",
                "device": device,
                "baud": BAUD,
                "parity": "N",  # a pty refuses parity settings
                "timeout_ms": TIMEOUT_MS,
                "meters": [
                    {"address": unit, "profile": PROFILE_NAME, "meter_id": drn}
                    for unit, drn in sorted(drns.items())
                ],
            }
        ],
    }


def run_benchmark(quick: bool = False) -> LineResult:
    window_s = QUICK_WINDOW_S if quick else FULL_WINDOW_S
    warm_up_s = QUICK_WARM_UP_S if quick else FULL_WARM_UP_S
    reference_s = QUICK_REFERENCE_S if quick else FULL_REFERENCE_S
    with (
        tempfile.TemporaryDirectory(prefix="concentrator-line-") as tmp,
        running_broker(Path(tmp) / "mosquitto") as broker,
    ):
        folder = Path(tmp)
        sim_folder = folder / "sim"
        sim_folder.mkdir()
        bus = rtu_bus("rtu1", METERS, TURNAROUND_MS, PROFILE_NAME)
        config = {**sim_config(sim_folder, [bus]), "control": {"host": "127.0.0.1", "port": 0}}
        with SimProcess(config, sim_folder) as sim:
            control = control_url(sim.output)
            drns = {unit: drn for (name, unit), drn in meter_ids(control).items() if name == "rtu1"}
            reference = reference_run(sim.devices["rtu1"], reference_s / 2)
            gw_folder = folder / "gateway"
            gw_folder.mkdir()
            gw_config = gateway_config(gw_folder, broker.port, sim.devices["rtu1"], drns)
            with (
                HeadEndStub(broker.port, GATEWAY) as headend,
                AmrProcess("concentrator", gw_config, gw_folder) as gateway,
            ):
                everyone = set(drns.values())
                _wait(lambda: everyone <= set(headend.readings_between(0, 1e12)),
                      FIRST_READINGS_TIMEOUT_S, "a reading from every meter", gateway)  # fmt: skip
                time.sleep(warm_up_s)
                stats0 = bus_stats(control)["rtu1"]
                t0, wall0 = time.time(), time.perf_counter()
                cpu0, sim_cpu0 = process_cpu_s(gateway.pid), process_cpu_s(sim.pid)
                time.sleep(window_s)
                cpu1, sim_cpu1 = process_cpu_s(gateway.pid), process_cpu_s(sim.pid)
                t1, wall1 = time.time(), time.perf_counter()
                stats1 = bus_stats(control)["rtu1"]
                alive = gateway.running
                time.sleep(BATCH_DELAY_S + 1.5)  # the last batch of the window reaches us
                per_meter = headend.readings_between(t0, t1)
                errors = [line.rstrip() for line in gateway.output if "Traceback" in line][:5]
                start_s = {"simulator": sim.started_in_s, "concentrator": gateway.started_in_s}
            reference += reference_run(sim.devices["rtu1"], reference_s / 2)
    return LineResult(
        window_s=wall1 - wall0,
        polls=int(stats1["replies"] - stats0["replies"]),
        requests=int(stats1["requests"] - stats0["requests"]),
        exceptions=int(stats1["exceptions"] - stats0["exceptions"]),
        unanswered=int(stats1["unanswered"] - stats0["unanswered"]),
        line_busy_s=stats1["busy_s"] - stats0["busy_s"],
        readings_in_window=sum(per_meter.values()),
        per_meter=dict(per_meter),
        cpu_s=cpu1 - cpu0,
        sim_cpu_s=sim_cpu1 - sim_cpu0,
        warm_up_s=warm_up_s,
        gateway_alive=alive,
        reference=reference,
        start_s=start_s,
        errors=errors,
    )


# --- reporting -------------------------------------------------------------------------------------


def as_json(result: LineResult, quick: bool) -> dict[str, Any]:
    per_meter = list(result.per_meter.values()) or [0]
    reference = result.reference
    return {
        "benchmark": "concentrator_line",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": quick,
        "baud": BAUD,
        "parity": "N",
        "turnaround_ms": TURNAROUND_MS,
        "profile": PROFILE_NAME,
        "meters": METERS,
        "poll_group": {"name": "status", "interval_s": POLL_INTERVAL_S, "alarm": True},
        "read": {"function": 4, "address": STATUS_ADDRESS, "count": STATUS_COUNT},
        "start_s": result.start_s,
        "model_poll_ms": result.model_s * 1000,
        "model_polls_per_s": result.model_rate,
        "reference": {
            "transactions": reference.transactions,
            "invalid_replies": reference.invalid,
            "elapsed_s": reference.elapsed_s,
            "polls_per_s": reference.rate,
            "fraction_of_line_limit": reference.rate / result.model_rate,
            "poll_ms": reference.poll_ms,
            "poll_ms_before_after": reference.parts_ms,
            "errors": reference.errors[:5],
        },
        "warm_up_s": result.warm_up_s,
        "window_s": result.window_s,
        "offered_polls_per_s": result.offered_rate,
        "polls": result.polls,
        "requests": result.requests,
        "exception_replies": result.exceptions,
        "unanswered": result.unanswered,
        "readings_in_window": result.readings_in_window,
        "readings_per_meter_min": min(per_meter),
        "readings_per_meter_max": max(per_meter),
        "polls_per_s": result.rate,
        "fraction_of_line_limit": result.fraction,
        "fraction_of_reference": result.rate / reference.rate if reference.rate else 0.0,
        "measured_poll_ms": result.poll_ms,
        "line_busy_ms_per_poll": result.busy_ms_per_poll,
        "gap_ms": result.gap_ms,
        "idle_beyond_gap_ms_per_poll": result.idle_ms_per_poll,
        "simulator_latency_ms_per_poll": result.sim_latency_ms,
        "concentrator_latency_ms_per_poll": result.gateway_latency_ms,
        "concentrator_cpu_s": result.cpu_s,
        "concentrator_cpu_cores": result.cpu_s / result.window_s,
        "cpu_ms_per_poll": result.cpu_ms_per_poll,
        "simulator_cpu_s": result.sim_cpu_s,
        "checks": result.checks,
        "valid": result.valid,
        "target_fraction": TARGET_FRACTION,
        "passed": result.passed,
        "errors": result.errors,
    }


def as_table(result: LineResult, quick: bool) -> str:
    per_meter = list(result.per_meter.values()) or [0]
    reference = result.reference
    failed = [name for name, ok in result.checks.items() if not ok]
    model_ms = result.model_s * 1000
    lines = [
        f"amr concentrator on one RTU line: {BAUD} 8N1 pty, turnaround {TURNAROUND_MS:g} ms, "
        f"{METERS} meters ({PROFILE_NAME}){' (--quick)' if quick else ''}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"poll group status every {POLL_INTERVAL_S:g} s (alarm): read input registers "
        f"{STATUS_ADDRESS}..{STATUS_ADDRESS + STATUS_COUNT - 1} of each meter; offered "
        f"{result.offered_rate:.1f} polls/s = {result.offered_rate / result.model_rate:.0%} of the "
        "line",
        f"model: T(16) = 8Tc + max(10 ms, t3.5) + 37Tc + t3.5 = {model_ms:.2f} ms "
        f"-> {result.model_rate:.2f} polls/s",
        f"started: simulator {result.start_s['simulator']:.1f} s, concentrator "
        f"{result.start_s['concentrator']:.1f} s; warm-up {result.warm_up_s:g} s",
        "",
        f"{'master':<22}{'window':>8}{'polls':>7}{'polls/s':>9}{'model/s':>9}{'of limit':>10}"
        f"{'ms/poll':>9}{'CPU ms/poll':>13}",
        f"{'precise (reference)':<22}{reference.elapsed_s:>7.1f}s{reference.transactions:>7}"
        f"{reference.rate:>9.2f}{result.model_rate:>9.2f}"
        f"{reference.rate / result.model_rate:>10.1%}{reference.poll_ms:>9.2f}{'-':>13}",
        f"{'amr concentrator':<22}{result.window_s:>7.1f}s{result.polls:>7}{result.rate:>9.2f}"
        f"{result.model_rate:>9.2f}{result.fraction:>10.1%}{result.poll_ms:>9.2f}"
        f"{result.cpu_ms_per_poll:>13.2f}",
        "",
        f"per poll: line busy {result.busy_ms_per_poll:.2f} ms (simulator's model: request, "
        f"turnaround, reply) + t3.5 gap {result.gap_ms:.2f} ms + idle "
        f"{result.idle_ms_per_poll:.2f} ms = {result.poll_ms:.2f} ms",
        f"  idle beyond the model: simulator and pty {result.sim_latency_ms:.2f} ms (the precise "
        f"master's excess), concentrator {result.gateway_latency_ms:.2f} ms",
        f"concentrator: {result.readings_in_window} readings in the window ({min(per_meter)}.."
        f"{max(per_meter)} per meter), CPU {result.cpu_s:.2f} s = "
        f"{result.cpu_s / result.window_s:.3f} cores; simulator CPU {result.sim_cpu_s:.2f} s; "
        f"exceptions {result.exceptions}, unanswered {result.unanswered}",
        "checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed)),
    ]
    lines += [f"reference: {error}" for error in reference.errors[:3]]
    lines += [f"concentrator: {error}" for error in result.errors]
    verdict = "PASS" if result.passed else "FAIL"
    lines.append(
        f"result: {verdict} (target: >= {TARGET_FRACTION:.0%} of the line limit, valid run)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        argv, name="concentrator_line",
        description="Polls/s of amr concentrator on a saturated 9600-baud RTU line vs its limit.",
        quick_help=f"{QUICK_WINDOW_S:g} s window",
        check_help="exit 1 if the target is missed or the run is invalid",
        run=lambda args: run_benchmark(quick=args.quick), as_json=as_json, as_table=as_table,
        passed=lambda result: result.passed,
        errors=(SimError, OSError, RuntimeError, pytest.fail.Exception),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
