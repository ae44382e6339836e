"""Does a simulated 9600-baud RTU bus serve reads at the rate the RS485 timing model predicts?

Run from the repository root::

    python -m benchmarks.sim_rtu_timing            # full run (about a minute)
    python -m benchmarks.sim_rtu_timing --quick    # a few transactions per case (about 10 s)
    python -m benchmarks.sim_rtu_timing --json     # the same figures as JSON
    python -m benchmarks.sim_rtu_timing --check    # exit 1 if a case misses the model by > 10 %

``amr sim`` runs as a subprocess with one RTU bus on a pty it creates (9600 8N1, a few meters); it
is restarted for each meter turnaround (0 ms, i.e. t3.5 applies, 10 ms and 50 ms). This process is
the master, as precise as user space allows: it opens the pty slave raw, sends a read input
registers request (function 04, N registers), waits with ``poll`` until the whole reply (5 + 2N
bytes) is in, checks it with the adapter's RTU :class:`~protocols.modbus.adapter.Receiver` (CRC,
unit id, function, register count, a plausible voltage in the first two registers), then keeps
t3.5 of silence before the next request, as an RTU master must. Each case runs a fixed number of
transactions (at least 2 s of modelled bus time in a full run) after one untimed warm-up
transaction; the clock runs from the first request to the end of the last gap.

The model (/work/shared/specs/dlt645.md, "RS485 timing" 2)::

    T_poll(N) = 8 Tc + max(T_turnaround, t3.5) + (5 + 2N) Tc + t3.5,  Tc = 11 / baud

A case passes if the measured transactions/s are within +-10 % of 1 / T_poll(N).

The bus uses the ``eastron-sdm120`` profile (input registers 0..345), not the reference map
``amr-prepaid-v1``: the reference map has 84 input registers, so a 125-register read of it is
refused with exception 02 (a 5-byte reply) and could not measure the 255-byte reply the model
describes. Only the frame lengths matter for the timing; the contents are still checked.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import queue
import re
import select
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from benchmarks.cli import benchmark_main
from protocols.modbus import Profile, parse_profile
from protocols.modbus.adapter import Framing, Receiver, Request, Response, encode_request
from protocols.modbus.timing import character_time_s, silent_interval_s

__all__ = [
    "CaseResult",
    "RtuMaster",
    "SimError",
    "SimProcess",
    "TransactionError",
    "main",
    "model_poll_s",
    "run_benchmarks",
    "silent_interval_s",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILE_DIR = REPO_ROOT / "config" / "profiles"
AMR = Path(sys.executable).with_name("amr")

BAUD = 9600
METERS = 4  # unit ids 1..4, polled round robin
PROFILE_NAME = "eastron-sdm120"  # 346 input registers: room for a 125-register read
REGISTER_COUNTS = (1, 2, 10, 40, 125)
TURNAROUNDS_MS = (0.0, 10.0, 50.0)  # 0: the meter answers after t3.5, the shortest legal turnaround
TOLERANCE = 0.10
FULL_CASE_S = 2.5  # modelled bus time per case: the transaction count is chosen from it
QUICK_CASE_S = 0.15
MIN_TRANSACTIONS = 3
WARM_UP = 1
START_TIMEOUT_S = 60.0
SPIN_S = 0.0005  # a precise master spins the last 0.5 ms of its t3.5 gap


def model_poll_s(registers: int, turnaround_s: float, baud: int = BAUD) -> float:
    """T_poll(N): request, turnaround (at least t3.5), reply, and the master's t3.5 gap."""
    tc = character_time_s(baud)
    t35 = silent_interval_s(baud)
    return 8 * tc + max(turnaround_s, t35) + (5 + 2 * registers) * tc + t35


def load_profile(name: str) -> Profile:
    path = PROFILE_DIR / f"{name}.yaml"
    return parse_profile(yaml.safe_load(path.read_text()), str(path))


# --- the simulator subprocess ----------------------------------------------------------------------


class SimError(Exception):
    """``amr sim`` did not start, or printed something this benchmark cannot use."""


class SimProcess:
    """``amr sim --config FILE`` as a subprocess: started, its bus devices parsed, stopped cleanly.

    Its stdout and stderr (merged) are drained by a thread, so a chatty simulator never blocks on a
    full pipe, and ``output`` keeps every line for error messages.
    """

    def __init__(self, config: dict[str, Any], folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.process: subprocess.Popen[str] | None = None
        self.devices: dict[str, str] = {}
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._drainer: threading.Thread | None = None
        self.started_in_s = 0.0

    @property
    def pid(self) -> int:
        if self.process is None:
            raise SimError("amr sim is not running")
        return self.process.pid

    def start(self) -> None:
        path = self.folder / "sim.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        amr = [str(AMR)] if AMR.exists() else [sys.executable, "-m", "headend.cli.main"]
        command = [*amr, "sim", "--config", str(path)]
        began = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._drainer = threading.Thread(target=self._drain, name="amr-sim-output", daemon=True)
        self._drainer.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any("Ctrl-C" in line for line in self.output):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SimError("amr sim did not start in time:\n" + "".join(self.output))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise SimError(
                    f"amr sim exited with status {self.process.wait()}:\n" + "".join(self.output)
                )
        self.started_in_s = time.perf_counter() - began
        for line in self.output:
            found = re.search(r"^\s+([a-z][a-z0-9_-]*): modbus-rtu \S+ \S+ on (/dev/\S+) ", line)
            if found:
                self.devices[found.group(1)] = found.group(2)
        wanted = [bus["name"] for bus in self.config["buses"]]
        if sorted(self.devices) != sorted(wanted):
            raise SimError(
                f"expected RTU buses {wanted} on ptys, amr sim printed:\n" + "".join(self.output)
            )

    def _drain(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def stop(self) -> int | None:
        """Terminate (SIGTERM: the reactor stops its services) and wait; kill if it hangs."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if self._drainer is not None:
            self._drainer.join(timeout=5)  # the pipe ends when the process has gone
        if process.stdout is not None and not (self._drainer and self._drainer.is_alive()):
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> SimProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def rtu_bus(name: str, meters: int, turnaround_ms: float, profile: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "modbus-rtu",
        "pty": True,
        "baud": BAUD,
        "parity": "N",  # a pty refuses parity settings
        "turnaround_ms": turnaround_ms,
        "profile": profile,
        "meters": {"count": meters, "first_address": 1, "first_serial": 1001},
    }


def sim_config(folder: Path, buses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"control": None, "run_dir": str(folder / "run"), "buses": buses}


# --- the master ------------------------------------------------------------------------------------


class TransactionError(Exception):
    """A reply that did not come, or came wrong."""


class RtuMaster:
    """A Modbus RTU master on a serial device: one transaction at a time, t3.5 between them."""

    def __init__(self, device: str, baud: int = BAUD, *, precise: bool = True) -> None:
        self.device = device
        self.baud = baud
        self.precise = precise
        self.last_byte_at = 0.0
        self.fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(self.fd, termios.TCSANOW)
            termios.tcflush(self.fd, termios.TCIOFLUSH)
        except BaseException:
            os.close(self.fd)
            raise
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self.receiver = Receiver(Framing.RTU, server=False)
        self.gap_s = silent_interval_s(baud)

    def transact(self, request: Request, timeout_s: float) -> Response:
        """Send ``request`` and return its reply once the whole frame has arrived.

        Raises TransactionError on silence, a bad CRC, an exception reply or a reply that does not
        match the request (unit id, function, register count).
        """
        frame = encode_request(request, Framing.RTU)
        self.receiver.expect(request)
        os.write(self.fd, frame)
        deadline = time.perf_counter() + timeout_s
        raw = b""
        while True:
            expected = 5 + 2 * request.count
            if len(raw) >= 2 and raw[1] & 0x80:
                expected = 5  # exception reply
            if len(raw) >= expected:
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TransactionError(
                    f"unit {request.unit_id}: {len(raw)} of {expected} reply bytes "
                    f"after {timeout_s * 1000:.0f} ms"
                )
            if self._poll.poll(max(1, math.ceil(remaining * 1000))):
                raw += os.read(self.fd, 512)
                self.last_byte_at = time.perf_counter()
        if len(raw) > expected:
            raise TransactionError(f"unit {request.unit_id}: {len(raw) - expected} extra bytes")
        self.receiver.receive_data(raw)
        reply = self.receiver.next_event()
        if not isinstance(reply, Response):
            raise TransactionError(f"unit {request.unit_id}: reply {raw.hex()} fails the CRC check")
        if reply.is_exception:
            raise TransactionError(
                f"unit {request.unit_id}: exception {reply.exception_code} to {request}"
            )
        if (
            reply.unit_id != request.unit_id
            or reply.function != request.function
            or len(reply.values) != request.count
        ):
            raise TransactionError(f"reply {reply} does not answer {request}")
        return reply

    def gap(self) -> None:
        """Keep the line silent for t3.5 after the last byte of the reply (or after now).

        ``time.sleep`` wakes 0.1-0.2 ms late; a precise master sleeps to SPIN_S before the end of
        the gap and spins the rest. (Several masters in threads of one process should not spin:
        a spinning thread holds the GIL that the others need to see their replies.)
        """
        end = max(self.last_byte_at, time.perf_counter() - self.gap_s) + self.gap_s
        if not self.precise:
            time.sleep(max(0.0, end - time.perf_counter()))
            return
        remaining = end - time.perf_counter() - SPIN_S
        if remaining > 0:
            time.sleep(remaining)
        while time.perf_counter() < end:
            pass

    def flush_input(self) -> None:
        """Drop whatever has arrived and not been read (a late or stray reply)."""
        termios.tcflush(self.fd, termios.TCIFLUSH)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def __enter__(self) -> RtuMaster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- the cases -------------------------------------------------------------------------------------


@dataclass(slots=True)
class CaseResult:
    registers: int
    turnaround_ms: float
    transactions: int
    valid: int = 0
    invalid: int = 0
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def model_s(self) -> float:
        return model_poll_s(self.registers, self.turnaround_ms / 1000)

    @property
    def model_rate(self) -> float:
        return 1.0 / self.model_s

    @property
    def rate(self) -> float:
        return self.transactions / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ratio(self) -> float:
        return self.rate / self.model_rate

    @property
    def passed(self) -> bool:
        return self.invalid == 0 and abs(self.ratio - 1.0) <= TOLERANCE

    @property
    def turnaround_label(self) -> str:
        return "t3.5" if self.turnaround_ms == 0 else f"{self.turnaround_ms:g} ms"


def _check_contents(profile: Profile, reply: Response) -> None:
    """The first two input registers of the SDM120 map are the voltage (f32)."""
    if len(reply.values) < 2:
        return
    voltage = float(profile.point("voltage").decode(list(reply.values[:2])))
    if not 150.0 < voltage < 300.0:
        raise TransactionError(f"unit {reply.unit_id}: implausible voltage {voltage!r} V")


def _one(master: RtuMaster, profile: Profile, request: Request, timeout_s: float) -> str | None:
    """One transaction and its t3.5 gap; the error, or None if the reply was valid."""
    error: str | None = None
    try:
        _check_contents(profile, master.transact(request, timeout_s))
    except TransactionError as exc:
        error = str(exc)
        time.sleep(0.05)  # let a late reply arrive, then drop it
        master.flush_input()
        master.last_byte_at = time.perf_counter()
    master.gap()
    return error


def run_case(
    master: RtuMaster, profile: Profile, registers: int, turnaround_ms: float, case_s: float
) -> CaseResult:
    model = model_poll_s(registers, turnaround_ms / 1000)
    count = max(MIN_TRANSACTIONS, math.ceil(case_s / model))
    result = CaseResult(registers, turnaround_ms, count)
    timeout_s = 3 * model + 0.5

    def requests(total: int) -> Iterator[Request]:
        for i in range(total):
            yield Request(unit_id=1 + i % METERS, function=4, address=0, count=registers)

    master.flush_input()
    for request in requests(WARM_UP):
        _one(master, profile, request, timeout_s)
    batch = list(requests(count))
    start = time.perf_counter()
    for request in batch:
        error = _one(master, profile, request, timeout_s)
        if error is None:
            result.valid += 1
        else:
            result.invalid += 1
            result.errors.append(error)
    result.elapsed_s = time.perf_counter() - start
    return result


def run_benchmarks(quick: bool = False) -> list[CaseResult]:
    """Every (turnaround, N) case; the simulator is restarted for each turnaround."""
    case_s = QUICK_CASE_S if quick else FULL_CASE_S
    profile = load_profile(PROFILE_NAME)
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="sim-rtu-timing-") as tmp:
        for turnaround_ms in TURNAROUNDS_MS:
            folder = Path(tmp) / f"turnaround-{turnaround_ms:g}ms"
            folder.mkdir()
            config = sim_config(folder, [rtu_bus("rtu1", METERS, turnaround_ms, PROFILE_NAME)])
            with SimProcess(config, folder) as sim, RtuMaster(sim.devices["rtu1"]) as master:
                for registers in REGISTER_COUNTS:
                    results.append(run_case(master, profile, registers, turnaround_ms, case_s))
    return results


# --- reporting -------------------------------------------------------------------------------------


def as_json(results: Sequence[CaseResult], quick: bool) -> dict[str, Any]:
    return {
        "benchmark": "sim_rtu_timing",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "quick": quick,
        "baud": BAUD,
        "profile": PROFILE_NAME,
        "tolerance": TOLERANCE,
        "cases": [
            {
                "registers": r.registers,
                "turnaround_ms": r.turnaround_ms,
                "turnaround": r.turnaround_label,
                "transactions": r.transactions,
                "valid_replies": r.valid,
                "invalid_replies": r.invalid,
                "elapsed_s": r.elapsed_s,
                "transactions_per_s": r.rate,
                "model_poll_ms": r.model_s * 1000,
                "model_transactions_per_s": r.model_rate,
                "measured_poll_ms": r.elapsed_s / r.transactions * 1000,
                "ratio": r.ratio,
                "passed": r.passed,
                "errors": r.errors[:5],
            }
            for r in results
        ],
        "all_passed": all(r.passed for r in results),
    }


def as_table(results: Sequence[CaseResult], quick: bool) -> str:
    lines = [
        f"Simulated RTU bus timing, {BAUD} 8N1 on a pty, {METERS} meters ({PROFILE_NAME}), "
        f"read input registers{' (--quick)' if quick else ''}",
        f"model: T = 8Tc + max(turnaround, t3.5) + (5+2N)Tc + t3.5, Tc = {1e3 * 11 / BAUD:.3f} ms, "
        f"t3.5 = {silent_interval_s(BAUD) * 1e3:.2f} ms; pass: within +-{TOLERANCE:.0%}",
        "",
        f"{'N':>4}{'turnaround':>12}{'txns':>6}{'valid':>7}{'measured/s':>12}{'model/s':>9}"
        f"{'ms/txn':>9}{'model ms':>10}{'ratio':>7}  result",
    ]
    for r in results:
        lines.append(
            f"{r.registers:>4}{r.turnaround_label:>12}{r.transactions:>6}{r.valid:>7}"
            f"{r.rate:>12.2f}{r.model_rate:>9.2f}{r.elapsed_s / r.transactions * 1000:>9.2f}"
            f"{r.model_s * 1000:>10.2f}{r.ratio:>7.3f}  {'PASS' if r.passed else 'FAIL'}"
        )
    errors = [(r, e) for r in results for e in r.errors[:3]]
    if errors:
        lines.append("")
        lines += [f"N={r.registers} {r.turnaround_label}: {e}" for r, e in errors]
    missed = sum(not r.passed for r in results)
    lines.append("")
    lines.append(
        f"target: {f'{missed} case(s) missed' if missed else 'all cases within the model'}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(
        argv, name="sim_rtu_timing",
        description="Transactions/s of a simulated 9600-baud RTU bus against the timing model.",
        quick_help="a few transactions per case", check_help="exit 1 if a case misses the model",
        run=lambda args: run_benchmarks(quick=args.quick), as_json=as_json, as_table=as_table,
        passed=lambda results: all(r.passed for r in results), errors=(SimError, OSError),
        stopped="the simulator was stopped",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
