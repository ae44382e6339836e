"""``amr sim`` on real transports, driven by stock clients as a lab engineer would drive it.

The simulator runs as a subprocess (the installed ``amr`` command). A stock pymodbus client and
Debian's mbpoll read the reference profile over Modbus TCP and over a socat pty pair (Modbus RTU),
and a token written over Modbus moves the credit register, with Used on a replay.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from protocols.modbus import DataType, decode_block, encode_registers, parse_profile, plan_reads
from protocols.sts import (
    BaseDate,
    CreditType,
    DecoderKeyInputs,
    MeterPan,
    TokenCoder,
    TransferCredit,
    VendingKey,
    tid_of,
)
from tests.support.debian import ensure_commands

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AMR = Path(sys.executable).with_name("amr")
PROFILE = parse_profile(yaml.safe_load((ROOT / "config/profiles/amr-prepaid-v1.yaml").read_text()))


@dataclass
class Sim:
    process: subprocess.Popen[str]
    tcp_port: int
    control: str
    rtu_device: str
    lines: list[str]

    def meters(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.control}/meters", timeout=5) as reply:
            data: list[dict[str, Any]] = json.load(reply)
        return data

    def meter(self, bus: str, address: int) -> dict[str, Any]:
        return next(m for m in self.meters() if m["bus"] == bus and m["address"] == address)


@pytest.fixture(scope="module")
def socat_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    ensure_commands("socat", "mbpoll")
    folder = tmp_path_factory.mktemp("pty")
    a, b = folder / "ttyA", folder / "ttyB"
    process = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not (a.exists() and b.exists()):
        assert time.monotonic() < deadline, "socat did not create the pty pair"
        time.sleep(0.05)
    yield a, b
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, socat_pair: tuple[Path, Path]) -> Iterator[Sim]:
    folder = tmp_path_factory.mktemp("sim")
    config = {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(folder / "run"),
        "clock": {"speed": 1.0},
        "buses": [
            {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
             "meters": {"count": 5, "first_serial": 2001, "initial_credit_kwh": 40}},
            {"name": "rtu1", "type": "modbus-rtu", "device": str(socat_pair[1]), "baud": 38400,
             "parity": "N", "turnaround_ms": 5,
             "meters": {"count": 3, "first_serial": 1001, "initial_credit_kwh": 40}},
        ],
    }  # fmt: skip
    path = folder / "sim.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [str(AMR), "sim", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while not any("Ctrl-C" in line for line in lines):
        assert time.monotonic() < deadline, "amr sim did not start:\n" + "".join(lines)
        line = process.stdout.readline()
        assert line, "amr sim exited:\n" + "".join(lines)
        lines.append(line)
    text = "".join(lines)
    tcp = re.search(r"tcp1: modbus-tcp 127\.0\.0\.1:(\d+)", text)
    control = re.search(r"control API: (http://\S+)/meters", text)
    rtu = re.search(r"rtu1: modbus-rtu \S+ \S+ on (\S+),", text)
    assert tcp and control and rtu, text
    yield Sim(process, int(tcp.group(1)), control.group(1), rtu.group(1), lines)
    process.terminate()
    process.wait(timeout=15)
    process.stdout.close()


def read_profile(client: ModbusTcpClient | ModbusSerialClient, unit: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for block in plan_reads(PROFILE.points):
        reader = (
            client.read_input_registers
            if block.table.value == "input"
            else client.read_holding_registers
        )
        reply = reader(block.address, count=block.count, device_id=unit)
        assert not reply.isError(), reply
        values.update(decode_block(block, list(reply.registers)))
    return values


def token_registers(drn: str, tenths: int, minutes: int = 0) -> tuple[str, list[int]]:
    inputs = DecoderKeyInputs(pan=MeterPan.from_drn(drn), supply_group_code="123456",
                              base_date=BaseDate.Y2014)  # fmt: skip
    coder = TokenCoder.derive(VendingKey.from_hex("ABABABABABABABAB"), inputs)
    tid = tid_of(datetime.now(), 2014) + minutes
    digits = coder.encode(TransferCredit(CreditType.ELECTRICITY, tenths, tid, rnd=4)).digits
    return digits, encode_registers(int(digits), DataType.BCD, length=5)


def test_stock_pymodbus_reads_the_reference_profile_over_tcp(sim: Sim) -> None:
    client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port, timeout=3)
    assert client.connect()
    try:
        values = read_profile(client, 2)
    finally:
        client.close()
    listed = sim.meter("tcp1", 2)
    assert f"{values['drn']:011d}" == listed["drn"]
    assert values["sts_supply_group_code"] == 123456 and values["sts_base_date"] == 2014
    assert Decimal("39") < values["credit_remaining"] <= Decimal("40.00")
    assert values["relay_state"] == 0 and values["voltage"] > 200


def test_token_over_tcp_moves_credit_and_a_replay_is_used(sim: Sim) -> None:
    listed = sim.meter("tcp1", 3)
    _, registers = token_registers(listed["drn"], 250)
    client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port, timeout=3)
    assert client.connect()
    try:
        before = read_profile(client, 3)["credit_remaining"]
        assert not client.write_registers(0, registers, device_id=3).isError()
        after = read_profile(client, 3)
        assert after["token_result"] == 1  # Accept
        assert Decimal("24.9") < after["credit_remaining"] - before <= Decimal("25.00")
        assert not client.write_registers(0, registers, device_id=3).isError()
        replay = read_profile(client, 3)
        assert replay["token_result"] == 10  # Used
        assert replay["token_count"] == 1
        # an unknown unit behind the TCP port is a gateway exception, not silence
        assert client.read_input_registers(0, count=2, device_id=99).isError()
    finally:
        client.close()


def test_stock_pymodbus_over_a_socat_pty_pair(sim: Sim, socat_pair: tuple[Path, Path]) -> None:
    client = ModbusSerialClient(str(socat_pair[0]), baudrate=38400, parity="N", timeout=2)
    assert client.connect()
    try:
        values = read_profile(client, 1)
        assert f"{values['drn']:011d}" == sim.meter("rtu1", 1)["drn"]
        drn = sim.meter("rtu1", 2)["drn"]
        _, registers = token_registers(drn, 100, minutes=1)
        assert not client.write_registers(0, registers, device_id=2).isError()
        assert read_profile(client, 2)["token_result"] == 1
        client.retries = 0
        with pytest.raises(ModbusIOException):  # silence on a multi-drop line: a timeout
            client.read_input_registers(0, count=2, device_id=77)
    finally:
        client.close()


def _mbpoll(*args: str) -> list[int]:
    run = subprocess.run(["mbpoll", *args], capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return [int(v) for v in re.findall(r"^\[\d+\]:\s+(-?\d+)", run.stdout, re.MULTILINE)]


def test_mbpoll_reads_the_meters_over_tcp_and_rtu(sim: Sim, socat_pair: tuple[Path, Path]) -> None:
    # input registers 6..7 (0-based) hold the supply group code 123456 = 0x0001E240
    tcp = _mbpoll("-m", "tcp", "-p", str(sim.tcp_port), "-a", "1", "-t", "3", "-0", "-r", "6",
                  "-c", "2", "-1", "127.0.0.1")  # fmt: skip
    assert tcp == [1, 0xE240]
    rtu = _mbpoll("-m", "rtu", "-b", "38400", "-P", "none", "-a", "3", "-t", "3", "-0", "-r", "11",
                  "-c", "1", "-1", str(socat_pair[0]))  # fmt: skip
    assert rtu == [2014]


def test_keypad_and_faults_through_the_control_api(sim: Sim) -> None:
    listed = sim.meter("tcp1", 4)
    digits, _ = token_registers(listed["drn"], 50, minutes=2)

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{sim.control}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            data: dict[str, Any] = json.load(reply)
        return data

    typed = post(
        f"/meters/{listed['drn']}/keypad",
        {"token": " ".join(digits[i : i + 4] for i in range(0, 20, 4))},
    )
    assert typed["result"] == "Accept" and typed["accepted"] is True
    assert post(f"/meters/{listed['drn']}/keypad", {"token": digits})["result"] == "UsedError"
    post(f"/meters/{listed['drn']}/faults", {"no_answer": True})
    client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port, timeout=1, retries=0)
    assert client.connect()
    try:
        with pytest.raises(ModbusIOException):
            client.read_input_registers(0, count=2, device_id=4)
    finally:
        client.close()
    post(f"/meters/{listed['drn']}/faults", {"no_answer": False})
    client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port, timeout=2)
    assert client.connect()
    try:
        assert not client.read_input_registers(0, count=2, device_id=4).isError()
    finally:
        client.close()
    with pytest.raises(urllib.error.HTTPError) as bad:
        post(f"/meters/{listed['drn']}/faults", {"explode": True})
    assert bad.value.code == 400
    assert "unknown fault" in json.load(bad.value)["error"]
    bad.value.close()
