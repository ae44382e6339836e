"""The gateway reading DL/T 645 meters straight on RS485 and through a 1376.2 PLC module."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from protocols.link import Command, CommandType, sign_command
from tests.support.gateway import GW, HeadEnd, start, stop, wait_for
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


@dataclass
class Plant:
    headend: HeadEnd
    control: str
    key: Ed25519PrivateKey
    gateway_log: list[str]

    def meters(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.control}/meters", timeout=5) as reply:
            data: list[dict[str, Any]] = json.load(reply)
        return data

    def readings(self, meter: str) -> list[dict[str, Any]]:
        with self.headend.lock:
            return [
                dict(r.values)
                for b in self.headend.readings
                for r in b.readings
                if r.meter == meter
            ]


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    folder = tmp_path_factory.mktemp("dlt")
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    sim_config = {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(folder / "sim"),
        "buses": [
            {"name": "dlt1", "type": "dlt645", "pty": True, "baud": 9600, "parity": "N",
             "turnaround_ms": 20, "first_address": "000000000001", "meters": {"count": 2}},
            {"name": "plc1", "type": "plc", "pty": True, "baud": 9600, "parity": "N", "delay_s": 0.2,
             "delay_jitter_s": 0.1, "first_address": "000000000101", "meters": {"count": 2}},
        ],
    }  # fmt: skip
    (folder / "sim.yaml").write_text(yaml.safe_dump(sim_config))
    sim_lines: list[str] = []
    sim = start(["sim", "--config", str(folder / "sim.yaml")], "Ctrl-C", sim_lines)
    text = "".join(sim_lines)
    dlt_device = re.search(r"dlt1: \S+ \S+ \S+ on (\S+)", text).group(1)  # type: ignore[union-attr]
    plc_device = re.search(r"plc1: \S+ \S+ \S+ on (\S+)", text).group(1)  # type: ignore[union-attr]
    control = re.search(r"control API: (http://\S+)/meters", text).group(1)  # type: ignore[union-attr]
    key = Ed25519PrivateKey.generate()
    (folder / "headend.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    gateway_config = {
        "gateway_id": GW,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10},
        "journal": {"path": str(folder / "journal.db")},
        "headend_public_key_file": str(folder / "headend.pub"),
        "poll_groups": {"status": {"interval_s": 2, "alarm": True}, "energy": {"interval_s": 4}},
        "batch": {"max_readings": 2, "max_delay_s": 0.5},
        "buses": [
            {"name": "dlt1", "type": "dlt645", "device": dlt_device, "baud": 9600, "parity": "N",
             "meters": [{"address": "000000000001"}, {"address": "000000000002"}]},
            {"name": "plc1", "type": "plc", "device": plc_device, "baud": 9600, "parity": "N",
             "timeout_ms": 5000, "meters": [{"address": "000000000101"}]},
        ],
    }  # fmt: skip
    (folder / "gw.yaml").write_text(yaml.safe_dump(gateway_config))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="he-dlt", protocol=mqtt.MQTTv5)
    headend = HeadEnd(client)
    client.on_message = headend.on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"amr/v1/gw/{GW}/#", qos=1)
    client.loop_start()
    lines: list[str] = []
    gateway = start(["concentrator", "--config", str(folder / "gw.yaml")], "Ctrl-C", lines)
    try:
        yield Plant(headend, control, key, lines)
    finally:
        client.loop_stop()
        client.disconnect()
        stop(gateway)
        stop(sim)
        broker.stop()


def test_dlt645_and_plc_meters_report_energy_credit_and_relay(plant: Plant) -> None:
    def reported(meter: str) -> bool:
        readings = plant.readings(meter)
        return any("credit_remaining" in v for v in readings) and any(
            "energy_import_total" in v for v in readings
        )

    for meter in ("000000000001", "000000000101"):
        wait_for(partial(reported, meter), what=f"status and energy readings of {meter}")
    listed = {m.get("dlt645_address") or m["address"]: m for m in plant.meters()}
    for meter in ("000000000001", "000000000101"):
        reading = next(v for v in reversed(plant.readings(meter)) if "credit_remaining" in v)
        assert reading["relay_state"] == 0
        assert abs(float(reading["credit_remaining"]) - float(listed[meter]["credit_kwh"])) < 0.5


def test_relay_over_dlt645_and_tokens_refused_with_a_reason(plant: Plant) -> None:
    now = time.time()
    relay = sign_command(Command("dlt-off", CommandType.RELAY, "000000000002", now + 60, 2,
                                 {"action": "disconnect"}), plant.key)  # fmt: skip
    plant.headend.command(relay)
    wait_for(lambda: plant.headend.status_of("dlt-off")[-1:] == ["applied"],
             what=f"relay trip over DL/T 645: {plant.headend.status_of('dlt-off')} "
                  f"{''.join(plant.gateway_log[-30:])}")  # fmt: skip
    meter = next(
        m for m in plant.meters() if (m.get("dlt645_address") or m["address"]) == "000000000002"
    )
    assert meter["relay"] == "open"
    token = Command(
        "dlt-tok", CommandType.TOKEN, "000000000001", now + 60, 1, {"tokens": ["1" * 20]}
    )
    plant.headend.command(token)
    wait_for(lambda: plant.headend.status_of("dlt-tok")[-1:] == ["rejected"], what="token refusal")
    assert "DL/T 645" in plant.headend.final("dlt-tok").detail
