"""The gateway on an RS485 line (the simulator's pty at 9600 baud): readings, a dead meter among
ten, and a serial port that disappears and comes back."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from protocols.link import Command, CommandType
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
from tests.support.gateway import GW, HeadEnd, start, stop, wait_for
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


@dataclass
class RtuSystem:
    headend: HeadEnd
    control: str
    drns: dict[int, str]
    link: Path
    sim_device: str
    bridge: subprocess.Popen[bytes] | None = None

    def start_bridge(self) -> None:
        """The 'USB adapter': a pty the gateway opens, wired to the simulator's line."""
        self.bridge = subprocess.Popen(
            ["socat", f"PTY,link={self.link},raw,echo=0", f"{self.sim_device},raw,echo=0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.link.exists, timeout_s=10, what="the socat pty")

    def unplug(self) -> None:
        assert self.bridge is not None
        self.bridge.terminate()
        self.bridge.wait(timeout=10)
        self.bridge = None
        wait_for(lambda: not self.link.exists(), timeout_s=10, what="the pty to vanish")

    def readings(self, meter: str, since: float) -> int:
        with self.headend.lock:
            return sum(1 for b in self.headend.readings for r in b.readings
                       if r.meter == meter and r.time >= since)  # fmt: skip

    def fault(self, drn: str, **faults: Any) -> None:
        request = urllib.request.Request(f"{self.control}/meters/{drn}/faults",
                                         data=json.dumps(faults).encode(), method="POST")  # fmt: skip
        with urllib.request.urlopen(request, timeout=5):
            pass


@pytest.fixture
def rtu(tmp_path: Path) -> Iterator[RtuSystem]:
    ensure_commands("socat")
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    sim_config = {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(tmp_path / "sim"),
        "buses": [{"name": "rtu1", "type": "modbus-rtu", "pty": True, "baud": 9600, "parity": "N",
                   "turnaround_ms": 10, "meters": {"count": 10, "first_serial": 8001}}],
    }  # fmt: skip
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(sim_config))
    sim_lines: list[str] = []
    sim = start(["sim", "--config", str(tmp_path / "sim.yaml")], "Ctrl-C", sim_lines)
    text = "".join(sim_lines)
    device = re.search(r"rtu1: modbus-rtu \S+ \S+ on (\S+)", text).group(1)  # type: ignore[union-attr]
    control = re.search(r"control API: (http://\S+)/meters", text).group(1)  # type: ignore[union-attr]
    with urllib.request.urlopen(f"{control}/meters", timeout=5) as reply:
        drns = {int(m["address"]): m["drn"] for m in json.load(reply)}
    system = RtuSystem(HeadEnd(mqtt.Client(CallbackAPIVersion.VERSION2, client_id="he-rtu",
                                           protocol=mqtt.MQTTv5)),
                       control, drns, tmp_path / "ttyGW", device)  # fmt: skip
    system.start_bridge()
    gateway_config = {
        "gateway_id": GW,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10},
        "journal": {"path": str(tmp_path / "journal.db")},
        "poll_groups": {"status": {"interval_s": 1, "alarm": True}},
        "batch": {"max_readings": 10, "max_delay_s": 0.5},
        "buses": [{"name": "rtu1", "type": "modbus-rtu", "device": str(system.link), "baud": 9600,
                   "parity": "N", "timeout_ms": 300,
                   "meters": [{"address": a, "meter_id": drns[a]} for a in range(1, 11)]}],
    }  # fmt: skip
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(gateway_config))
    client = system.headend.client
    client.on_message = system.headend.on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"amr/v1/gw/{GW}/#", qos=1)
    client.loop_start()
    lines: list[str] = []
    gateway = start(["concentrator", "--config", str(tmp_path / "gw.yaml")], "Ctrl-C", lines)
    try:
        yield system
    finally:
        client.loop_stop()
        client.disconnect()
        stop(gateway)
        if system.bridge is not None:
            system.bridge.terminate()
            system.bridge.wait()
        stop(sim)
        broker.stop()


def test_one_dead_meter_leaves_the_other_nine_their_throughput(rtu: RtuSystem) -> None:
    others = [rtu.drns[a] for a in range(1, 11) if a != 5]
    wait_for(lambda: all(rtu.readings(m, 0) >= 2 for m in others), what="readings from every meter")
    start_alive = time.time()
    time.sleep(12)
    alive = {m: rtu.readings(m, start_alive) - rtu.readings(m, start_alive + 12) for m in others}
    rtu.fault(rtu.drns[5], no_answer=True)
    time.sleep(4)  # three failed polls open the dead meter's circuit breaker
    start_dead = time.time()
    time.sleep(12)
    dead = {m: rtu.readings(m, start_dead) - rtu.readings(m, start_dead + 12) for m in others}
    assert sum(dead.values()) >= 0.9 * sum(alive.values()), (alive, dead)
    # per meter, a 12 s window holds ~12 polls give or take the one at each edge, and the
    # machine may be running other tests: the dead meter must not take a share of anyone's
    assert all(dead[m] >= 0.8 * alive[m] - 1 for m in others), (alive, dead)
    assert rtu.readings(rtu.drns[5], start_dead) == 0
    unreachable = [e for b in rtu.headend.events for e in b.events
                   if e.kind == "meter_unreachable" and e.meter == rtu.drns[5]]  # fmt: skip
    assert [e.state.value for e in unreachable] == ["raised"]


def test_polling_resumes_by_itself_after_the_serial_port_comes_back(rtu: RtuSystem) -> None:
    meter = rtu.drns[1]
    wait_for(lambda: rtu.readings(meter, 0) >= 2, what="first readings")
    rtu.unplug()
    time.sleep(3)
    unplugged_until = time.time()
    rtu.start_bridge()
    wait_for(lambda: rtu.readings(meter, unplugged_until + 0.5) >= 3, timeout_s=30,
             what="readings after the port came back")  # fmt: skip


def test_a_token_over_the_rs485_line_is_applied_then_used(rtu: RtuSystem) -> None:
    drn = rtu.drns[7]
    wait_for(lambda: rtu.readings(drn, 0) >= 1, what="the meter's first reading")
    inputs = DecoderKeyInputs(
        pan=MeterPan.from_drn(drn), supply_group_code="123456", base_date=BaseDate.Y2014
    )
    coder = TokenCoder.derive(VendingKey.from_hex("ABABABABABABABAB"), inputs)
    tid = tid_of(datetime.now(), 2014) + 3
    digits = coder.encode(TransferCredit(CreditType.ELECTRICITY, 150, tid, rnd=1)).digits
    now = time.time()
    for cmd_id in ("rtu-tok-1", "rtu-tok-2"):
        rtu.headend.command(
            Command(cmd_id, CommandType.TOKEN, drn, now + 120, 1, {"tokens": [digits]})
        )
        wait_for(partial(_finished, rtu.headend, cmd_id), what=f"the final status of {cmd_id}")
    assert rtu.headend.status_of("rtu-tok-1") == ["received", "queued", "sent", "applied"]
    assert rtu.headend.final("rtu-tok-2").code == 10  # Used


def _finished(headend: HeadEnd, cmd_id: str) -> bool:
    return headend.status_of(cmd_id)[-1:] in (["applied"], ["rejected"])
