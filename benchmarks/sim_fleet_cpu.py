"""How much CPU does ``amr sim`` need to serve 500 meters on 4 busy RTU buses?

Run from the repository root::

    python -m benchmarks.sim_fleet_cpu            # 30 s of polling (about 45 s in all)
    python -m benchmarks.sim_fleet_cpu --quick    # 5 s of polling
    python -m benchmarks.sim_fleet_cpu --json     # the same figures as JSON
    python -m benchmarks.sim_fleet_cpu --check    # exit 1 if the simulator needs >= 1 core

``amr sim`` runs as a subprocess with 4 RTU buses on ptys (9600 8N1, 10 ms meter turnaround), 125
meters each (profile ``amr-prepaid-v1``). After an idle window (the simulator's only work is its
clock advancing all 500 meters once a second), this process polls all four buses at once: one
thread per bus is an RTU master (see :class:`benchmarks.sim_rtu_timing.RtuMaster`) reading the
reference profile's status block, input registers 30..45 (credit, instantaneous values, relay,
status flags, clock, tariff band), round robin over the bus's 125 unit ids, with t3.5 of silence
after each reply. Every reply is checked (CRC, unit id, function, count, a plausible voltage and
meter clock).

The simulator's CPU time (utime + stime from /proc/PID/stat) is measured over the polling window,
which includes its once-a-second clock ticks, as it should. Reported: polls/s per bus and in total,
polls/s as a fraction of the line's limit by the timing model (/work/shared/specs/dlt645.md,
"RS485 timing" 2), simulator CPU seconds per wall second (the fraction of one core it uses) and CPU
microseconds per poll. Target: the simulator serves 500 meters on 4 buses using less than one core.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cli import benchmark_main
from benchmarks.sim_rtu_timing import (
    BAUD,
    RtuMaster,
    SimError,
    SimProcess,
    TransactionError,
    load_profile,
    model_poll_s,
    rtu_bus,
    sim_config,
)
from protocols.modbus import Profile
from protocols.modbus.adapter import Request, Response

__all__ = ["BusResult", "FleetResult", "main", "process_cpu_s", "run_benchmark"]

BUSES = 4
METERS_PER_BUS = 125
TURNAROUND_MS = 10.0
PROFILE_NAME = "amr-prepaid-v1"
STATUS_ADDRESS = 30  # input registers 30..45: credit, instantaneous values, relay, flags, clock
STATUS_COUNT = 16
FULL_POLL_S = 30.0
QUICK_POLL_S = 5.0
FULL_IDLE_S = 5.0
QUICK_IDLE_S = 1.0
CPU_TARGET = 1.0  # cores
TIMEOUT_S = 1.0


def process_cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class BusResult:
    name: str
    device: str
    polls: int = 0
    valid: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FleetResult:
    buses: list[BusResult]
    wall_s: float
    cpu_s: float
    idle_wall_s: float
    idle_cpu_s: float
    sim_start_s: float

    @property
    def model_rate(self) -> float:
        """Polls/s one bus allows by the timing model."""
        return 1.0 / model_poll_s(STATUS_COUNT, TURNAROUND_MS / 1000, BAUD)

    @property
    def polls(self) -> int:
        return sum(b.polls for b in self.buses)

    @property
    def invalid(self) -> int:
        return sum(b.invalid for b in self.buses)

    def rate(self, bus: BusResult) -> float:
        return bus.polls / self.wall_s

    @property
    def total_rate(self) -> float:
        return self.polls / self.wall_s

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s

    @property
    def idle_cores(self) -> float:
        return self.idle_cpu_s / self.idle_wall_s

    @property
    def cpu_us_per_poll(self) -> float:
        return self.cpu_s / self.polls * 1e6 if self.polls else 0.0

    @property
    def passed(self) -> bool:
        return self.cores < CPU_TARGET and self.invalid == 0


def _check_contents(profile: Profile, reply: Response) -> None:
    def value(name: str) -> float:
        point = profile.point(name)
        offset = point.address - STATUS_ADDRESS
        return float(point.decode(list(reply.values[offset : offset + point.count])))

    voltage = value("voltage")
    if not 150.0 < voltage < 300.0:
        raise TransactionError(f"unit {reply.unit_id}: implausible voltage {voltage} V")
    clock = value("meter_clock")
    if abs(clock - time.time()) > 86_400:
        raise TransactionError(f"unit {reply.unit_id}: meter clock {clock:.0f} is not today")


class _Poller(threading.Thread):
    """One bus's master: status reads round robin over the bus's unit ids until ``deadline``."""

    def __init__(self, bus: BusResult, profile: Profile, start: threading.Barrier) -> None:
        super().__init__(name=f"master-{bus.name}", daemon=True)
        self.bus = bus
        self.profile = profile
        self.start_barrier = start
        self.deadline = 0.0  # set by the barrier's action, before any poller passes it
        self.failure: BaseException | None = None

    def _poll(self, master: RtuMaster, unit: int) -> str | None:
        request = Request(unit, 4, STATUS_ADDRESS, STATUS_COUNT)
        try:
            _check_contents(self.profile, master.transact(request, TIMEOUT_S))
            error = None
        except TransactionError as exc:
            error = str(exc)
            time.sleep(0.05)  # let a late reply arrive, then drop it
            master.flush_input()
            master.last_byte_at = time.perf_counter()
        master.gap()
        return error

    def run(self) -> None:
        try:
            with RtuMaster(self.bus.device, precise=False) as master:
                self._poll(master, 1)  # warm-up, not counted
                self.start_barrier.wait()
                unit = 0
                while time.perf_counter() < self.deadline:
                    error = self._poll(master, 1 + unit % METERS_PER_BUS)
                    unit += 1
                    self.bus.polls += 1
                    if error is None:
                        self.bus.valid += 1
                    else:
                        self.bus.invalid += 1
                        if len(self.bus.errors) < 5:
                            self.bus.errors.append(error)
        except BaseException as exc:
            self.failure = exc
            self.start_barrier.abort()


def run_benchmark(quick: bool = False) -> FleetResult:
    poll_s = QUICK_POLL_S if quick else FULL_POLL_S
    idle_s = QUICK_IDLE_S if quick else FULL_IDLE_S
    profile = load_profile(PROFILE_NAME)
    with tempfile.TemporaryDirectory(prefix="sim-fleet-cpu-") as tmp:
        folder = Path(tmp)
        buses = []
        for index in range(BUSES):
            bus = rtu_bus(f"rtu{index + 1}", METERS_PER_BUS, TURNAROUND_MS, PROFILE_NAME)
            bus["meters"]["first_serial"] = 1 + index * 1000
            buses.append(bus)
        with SimProcess(sim_config(folder, buses), folder) as sim:
            pid = sim.pid
            idle_cpu0, idle_t0 = process_cpu_s(pid), time.perf_counter()
            time.sleep(idle_s)
            idle_cpu1, idle_t1 = process_cpu_s(pid), time.perf_counter()

            results = [BusResult(name, sim.devices[name]) for name in sorted(sim.devices)]
            window: dict[str, float] = {}
            pollers: list[_Poller] = []

            def begin() -> None:  # the barrier's action: runs once all masters are warm
                window["t0"] = time.perf_counter()
                window["cpu0"] = process_cpu_s(pid)
                for poller in pollers:
                    poller.deadline = window["t0"] + poll_s

            barrier = threading.Barrier(len(results), action=begin)
            pollers += [_Poller(bus, profile, barrier) for bus in results]
            for poller in pollers:
                poller.start()
            for poller in pollers:
                poller.join(timeout=poll_s + 120)
            t1, cpu1 = time.perf_counter(), process_cpu_s(pid)
            for poller in pollers:
                if poller.failure is not None and not isinstance(
                    poller.failure, threading.BrokenBarrierError
                ):
                    raise SimError(f"{poller.name} failed: {poller.failure!r}")
            if "t0" not in window or any(poller.is_alive() for poller in pollers):
                raise SimError("the masters did not start or did not finish")
    return FleetResult(
        buses=results,
        wall_s=t1 - window["t0"],
        cpu_s=cpu1 - window["cpu0"],
        idle_wall_s=idle_t1 - idle_t0,
        idle_cpu_s=idle_cpu1 - idle_cpu0,
        sim_start_s=sim.started_in_s,
    )


# --- reporting -------------------------------------------------------------------------------------


def as_json(result: FleetResult, quick: bool) -> dict[str, Any]:
    return {
        "benchmark": "sim_fleet_cpu",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": quick,
        "baud": BAUD,
        "turnaround_ms": TURNAROUND_MS,
        "profile": PROFILE_NAME,
        "read": {"function": 4, "address": STATUS_ADDRESS, "count": STATUS_COUNT},
        "meters": BUSES * METERS_PER_BUS,
        "simulator_start_s": result.sim_start_s,
        "idle": {
            "wall_s": result.idle_wall_s,
            "cpu_s": result.idle_cpu_s,
            "cpu_cores": result.idle_cores,
        },
        "model_polls_per_s_per_bus": result.model_rate,
        "buses": [
            {
                "name": bus.name,
                "device": bus.device,
                "polls": bus.polls,
                "valid_replies": bus.valid,
                "invalid_replies": bus.invalid,
                "polls_per_s": result.rate(bus),
                "fraction_of_line_limit": result.rate(bus) / result.model_rate,
                "errors": bus.errors,
            }
            for bus in result.buses
        ],
        "wall_s": result.wall_s,
        "polls": result.polls,
        "valid_replies": result.polls - result.invalid,
        "invalid_replies": result.invalid,
        "polls_per_s": result.total_rate,
        "fraction_of_line_limit": result.total_rate / (result.model_rate * len(result.buses)),
        "simulator_cpu_s": result.cpu_s,
        "simulator_cpu_cores": result.cores,
        "cpu_us_per_poll": result.cpu_us_per_poll,
        "cpu_target_cores": CPU_TARGET,
        "passed": result.passed,
    }


def as_table(result: FleetResult, quick: bool) -> str:
    model = result.model_rate
    lines = [
        f"amr sim, {BUSES * METERS_PER_BUS} meters on {BUSES} RTU pty buses ({METERS_PER_BUS} each, "
        f"{BAUD} 8N1, turnaround {TURNAROUND_MS:g} ms, {PROFILE_NAME})"
        f"{' (--quick)' if quick else ''}; {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"poll: read input registers {STATUS_ADDRESS}..{STATUS_ADDRESS + STATUS_COUNT - 1} "
        f"round robin, t3.5 gap; model {1000 / model:.2f} ms/poll = {model:.2f} polls/s per bus",
        f"simulator started in {result.sim_start_s:.1f} s; idle (clock ticks only): "
        f"{result.idle_cores:.3f} cores over {result.idle_wall_s:.1f} s",
        "",
        f"{'bus':<6}{'polls':>7}{'valid':>7}{'polls/s':>9}{'model/s':>9}{'of limit':>10}",
    ]
    for bus in result.buses:
        rate = result.rate(bus)
        lines.append(
            f"{bus.name:<6}{bus.polls:>7}{bus.valid:>7}{rate:>9.2f}{model:>9.2f}{rate / model:>10.1%}"
        )
    total_model = model * len(result.buses)
    lines.append(
        f"{'total':<6}{result.polls:>7}{result.polls - result.invalid:>7}{result.total_rate:>9.2f}"
        f"{total_model:>9.2f}{result.total_rate / total_model:>10.1%}"
    )
    lines += [
        "",
        f"window {result.wall_s:.2f} s: simulator CPU {result.cpu_s:.2f} s = "
        f"{result.cores:.3f} cores (target < {CPU_TARGET:g}), "
        f"{result.cpu_us_per_poll:.0f} µs CPU per poll (clock ticks included)",
    ]
    for bus in result.buses:
        lines += [f"{bus.name}: {error}" for error in bus.errors]
    lines.append(f"result: {'PASS' if result.passed else 'FAIL'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        argv, name="sim_fleet_cpu",
        description="Simulator CPU while four 9600-baud RTU buses of 125 meters are polled.",
        quick_help=f"poll for {QUICK_POLL_S:g} s", check_help="exit 1 if the simulator uses >= 1 core",
        run=lambda args: run_benchmark(quick=args.quick), as_json=as_json, as_table=as_table,
        passed=lambda result: result.passed, errors=(SimError, OSError),
        stopped="the simulator was stopped",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
