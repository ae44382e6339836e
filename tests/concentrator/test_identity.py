"""Swapped meter addresses must never send a customer's relay command or token to a neighbour."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from protocols.link import Command, CommandType
from tests.support.gateway import GW, HeadEnd, start, stop, wait_for
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


@pytest.fixture
def swapped(tmp_path: Path) -> Iterator[tuple[HeadEnd, dict[int, str]]]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    sim_config = {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(tmp_path / "sim"),
        "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                   "meters": {"count": 3, "first_serial": 9101}}],
    }  # fmt: skip
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(sim_config))
    sim_lines: list[str] = []
    sim = start(["sim", "--config", str(tmp_path / "sim.yaml")], "Ctrl-C", sim_lines)
    text = "".join(sim_lines)
    port = int(re.search(r"modbus-tcp 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
    control = re.search(r"control API: (http://\S+)/meters", text).group(1)  # type: ignore[union-attr]
    with urllib.request.urlopen(f"{control}/meters", timeout=5) as reply:
        drns = {int(m["address"]): m["drn"] for m in json.load(reply)}
    gateway_config = {
        "gateway_id": GW,
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "journal": {"path": str(tmp_path / "journal.db")},
        "poll_groups": {"status": {"interval_s": 1, "alarm": True}},
        "batch": {"max_readings": 1, "max_delay_s": 0.5},
        "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": port,
                   "meters": [{"address": 1, "meter_id": drns[2]},   # swapped by the installer
                              {"address": 2, "meter_id": drns[1]},
                              {"address": 3, "meter_id": drns[3]}]}],
    }  # fmt: skip
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(gateway_config))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="he-identity", protocol=mqtt.MQTTv5)
    headend = HeadEnd(client)
    client.on_message = headend.on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"amr/v1/gw/{GW}/#", qos=1)
    client.loop_start()
    lines: list[str] = []
    gateway = start(["concentrator", "--config", str(tmp_path / "gw.yaml")], "Ctrl-C", lines)
    try:
        yield headend, drns
    finally:
        client.loop_stop()
        client.disconnect()
        stop(gateway)
        stop(sim)
        broker.stop()


def test_swapped_meters_are_reported_and_never_commanded(
    swapped: tuple[HeadEnd, dict[int, str]],
) -> None:
    headend, drns = swapped

    def mismatches() -> set[str]:
        with headend.lock:
            return {
                e.meter for b in headend.events for e in b.events if e.kind == "identity_mismatch"
            }

    wait_for(lambda: mismatches() == {drns[1], drns[2]}, what="identity mismatch events")
    wait_for(lambda: any(r.meter == drns[3] for b in headend.readings for r in b.readings),
             what="readings from the correctly configured meter")  # fmt: skip
    with headend.lock:
        wrong = [r for b in headend.readings for r in b.readings if r.meter in (drns[1], drns[2])]
    assert wrong == []  # nothing is ever recorded under the wrong customer's meter id
    time.sleep(2)
    with headend.lock:
        raised = [e for b in headend.events for e in b.events if e.kind == "identity_mismatch"]
        unreachable = [e for b in headend.events for e in b.events if e.kind == "meter_unreachable"]
    assert len(raised) == 2 and unreachable == []  # raised once per meter, not every poll
    headend.command(
        Command("tok-x", CommandType.TOKEN, drns[2], time.time() + 60, 1, {"tokens": ["0" * 20]})
    )
    wait_for(lambda: headend.status_of("tok-x")[-1:] == ["failed"], what="the command to fail")
    assert "configuration says" in headend.final("tok-x").detail
