"""``amr sim`` with a DL/T 645 bus and a PLC module on ptys, read as a head-end would read them.

The simulator runs as a subprocess (the installed ``amr`` command) and prints the pty devices it
made; this test opens them as a serial client would (raw mode, no parity on a pty), reads energy
and remaining energy over DL/T 645 directly and through the Q/GDW 1376.2 module (AFN 13H F1), and
checks the values against the control API.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
import tty
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import yaml

from protocols import dlt645, qgdw13762

pytestmark = pytest.mark.integration

AMR = os.path.join(os.path.dirname(sys.executable), "amr")
MASTER = "000000000099"
TOLERANCE = Decimal("0.01")  # registers cut to 0.01 kWh, the API rounds


@dataclass
class Sim:
    process: subprocess.Popen[str]
    control: str
    dlt_device: str
    plc_device: str

    def meters(self) -> dict[str, dict[str, Any]]:
        """The control API's meters that have a DL/T 645 address, by that address."""
        with urllib.request.urlopen(f"{self.control}/meters", timeout=5) as reply:
            listed: list[dict[str, Any]] = json.load(reply)
        return {m["dlt645_address"]: m for m in listed if "dlt645_address" in m}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    folder = tmp_path_factory.mktemp("sim645")
    meters = {"count": 2, "initial_credit_kwh": 40, "base_load_w": 3000, "peak_load_w": 0}
    config = {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(folder / "run"),
        "clock": {"speed": 60},  # a minute a second: the registers move while we watch
        "buses": [
            {"name": "dlt1", "type": "dlt645", "pty": True, "parity": "N", "turnaround_ms": 20,
             "first_address": "000000000001", "meters": {**meters, "first_serial": 5001}},
            {"name": "plc1", "type": "plc", "pty": True, "parity": "N", "delay_s": 0.2,
             "delay_jitter_s": 0.0, "first_address": "000000000101",
             "meters": {**meters, "first_serial": 6001}},
        ],
    }  # fmt: skip
    path = folder / "sim.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen([AMR, "sim", "--config", str(path)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while not any("Ctrl-C" in line for line in lines):
        assert time.monotonic() < deadline, "amr sim did not start:\n" + "".join(lines)
        line = process.stdout.readline()
        assert line, "amr sim exited:\n" + "".join(lines)
        lines.append(line)
    text = "".join(lines)
    dlt = re.search(r"dlt1: dlt645 2400 8N1 on (/dev/\S+) ", text)
    plc = re.search(r"plc1: qgdw1376\.2 9600 8N1 on (/dev/\S+) .*master 000000000099", text)
    control = re.search(r"control API: (http://\S+)/meters", text)
    assert dlt and plc and control, text
    yield Sim(process, control.group(1), dlt.group(1), plc.group(1))
    process.terminate()
    process.wait(timeout=15)
    process.stdout.close()


class SerialClient:
    """A pty opened as a serial port: raw bytes, no parity."""

    def __init__(self, device: str) -> None:
        self.fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def _read_until(self, take: Any, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while (event := take()) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no reply in time"
            if select.select([self.fd], [], [], remaining)[0]:
                self.feed(os.read(self.fd, 512))
        return event

    def feed(self, data: bytes) -> None:
        raise NotImplementedError


class Dlt645Client(SerialClient):
    def __init__(self, device: str) -> None:
        super().__init__(device)
        self.receiver = dlt645.FrameReceiver()

    def feed(self, data: bytes) -> None:
        self.receiver.receive_data(data)

    def _frame(self) -> dlt645.Frame | None:
        event = self.receiver.next_event()
        assert not isinstance(event, dlt645.BadFrame), event
        return event if isinstance(event, dlt645.Frame) else None

    def read(self, address: str, di: str) -> dlt645.Value:
        os.write(self.fd, dlt645.encode_frame(dlt645.ReadRequest(address, di).to_frame()))
        reply = dlt645.parse_reply(self._read_until(self._frame, 3.0))
        assert isinstance(reply, dlt645.ReadReply) and reply.address == address, reply
        return reply.value()


class PlcClient(SerialClient):
    def __init__(self, device: str) -> None:
        super().__init__(device)
        self.receiver = qgdw13762.FrameReceiver()

    def feed(self, data: bytes) -> None:
        self.receiver.receive_data(data)

    def _frame(self) -> qgdw13762.Frame | None:
        event = self.receiver.next_event()
        assert not isinstance(event, qgdw13762.BadFrame), event
        return event if isinstance(event, qgdw13762.Frame) else None

    def ask(self, frame: qgdw13762.Frame) -> qgdw13762.Frame:
        os.write(self.fd, qgdw13762.encode_frame(frame))
        answer: qgdw13762.Frame = self._read_until(self._frame, 5.0)
        assert answer.seq == frame.seq  # SEQ echoed
        return answer

    def read(self, seq: int, address: str, di: str) -> dlt645.Value:
        meter_frame = dlt645.encode_frame(dlt645.ReadRequest(address, di).to_frame())
        answer = self.ask(qgdw13762.monitor_slave_node(
            seq=seq, master_address=MASTER, meter_address=address, meter_frame=meter_frame
        ))  # fmt: skip
        assert (answer.source, answer.destination) == (address, MASTER)
        message = qgdw13762.parse_message(answer)
        assert isinstance(message, qgdw13762.MonitorSlaveNodeReply), message
        reply = dlt645.parse_reply(dlt645.decode_frame(message.frame))
        assert isinstance(reply, dlt645.ReadReply) and reply.address == address, reply
        return reply.value()


def check_against_the_api(sim: Sim, address: str, read: Any) -> None:
    """Energy and remaining energy read over the wire lie between two API snapshots."""
    before = sim.meters()[address]
    energy = read(address, "00010000")
    remaining = read(address, "00900100")
    after = sim.meters()[address]
    assert isinstance(energy, Decimal) and isinstance(remaining, Decimal)
    low, high = Decimal(str(before["energy_kwh"])), Decimal(str(after["energy_kwh"]))
    assert low - TOLERANCE <= energy <= high + TOLERANCE, (low, energy, high)
    assert energy > 0  # the meters have been drawing 3 kW at sixty times real time
    most, least = Decimal(before["credit_kwh"]), Decimal(after["credit_kwh"])
    assert least - TOLERANCE <= remaining <= most + TOLERANCE, (least, remaining, most)
    assert remaining < Decimal(40)


def test_dlt645_reads_agree_with_the_control_api(sim: Sim) -> None:
    time.sleep(1.0)  # let some energy be counted
    client = Dlt645Client(sim.dlt_device)
    try:
        for address in ("000000000001", "000000000002"):
            check_against_the_api(sim, address, client.read)
        assert client.read("000000000002", "04000401") == "000000000002"
    finally:
        client.close()
    assert sim.meters()["000000000001"]["bus"] == "dlt1"


def test_reads_through_the_plc_module_agree_with_the_control_api(sim: Sim) -> None:
    client = PlcClient(sim.plc_device)
    sequence = iter(range(1, 256))
    try:
        query = qgdw13762.request(qgdw13762.QueryMasterAddress(), seq=next(sequence))
        master = qgdw13762.parse_message(client.ask(query))
        assert master == qgdw13762.MasterAddress(address=MASTER)
        for address in ("000000000101", "000000000102"):
            check_against_the_api(sim, address, lambda a, di: client.read(next(sequence), a, di))
        unknown = client.ask(qgdw13762.monitor_slave_node(
            seq=next(sequence), master_address=MASTER, meter_address="000000000001",
            meter_frame=dlt645.encode_frame(dlt645.ReadRequest("000000000001", "00010000")
                                            .to_frame()),
        ))  # fmt: skip
        assert qgdw13762.parse_message(unknown) == qgdw13762.Deny(
            reason=qgdw13762.DenyReason.NO_SUCH_METER
        )
    finally:
        client.close()
    assert sim.meters()["000000000101"]["bus"] == "plc1"
