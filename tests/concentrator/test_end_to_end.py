"""The concentrator as deployed: a real Mosquitto, the simulator's meters, ``amr concentrator``.

The test plays the head-end with a plain paho client: it sees readings arrive on the right topics,
acknowledges them, pushes a token (applied, then Used on a replay), and sends malformed, unsigned
and expired commands, each of which gets a clear rejected/expired status while the daemon runs on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from protocols.link import (
    Ack,
    Command,
    CommandStatus,
    CommandType,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    to_ranges,
)
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
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

AMR = Path(sys.executable).with_name("amr")
GW = "gw-test"


@dataclass
class HeadEnd:
    """A stand-in head-end: records what the gateway sends, acknowledges readings."""

    client: mqtt.Client
    readings: list[ReadingBatch] = field(default_factory=list)
    statuses: list[CommandStatus] = field(default_factory=list)
    other: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ack: bool = True

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic.rsplit(f"{GW}/", 1)[1]
        kind = {t.value: t for t in Topic}[topic]
        if not kind.uplink:
            return  # our own downlink messages
        decoded = decode_message(kind, bytes(message.payload)) if kind is not Topic.STATE else None
        with self.lock:
            if isinstance(decoded, ReadingBatch):
                self.readings.append(decoded)
            elif isinstance(decoded, CommandStatus):
                self.statuses.append(decoded)
            else:
                self.other.append((topic, bytes(message.payload)))
        if (
            self.ack
            and decoded is not None
            and hasattr(decoded, "seq")
            and kind is not Topic.HEALTH
        ):
            _, payload = encode_message(Ack(to_ranges([decoded.seq])))
            client.publish(gateway_topic(GW, Topic.ACK), payload, qos=1)

    def command(self, command: Command) -> None:
        _, payload = encode_message(command)
        self.client.publish(gateway_topic(GW, Topic.COMMAND), payload, qos=1)

    def raw_command(self, payload: bytes) -> None:
        self.client.publish(gateway_topic(GW, Topic.COMMAND), payload, qos=1)

    def status_of(self, cmd_id: str) -> list[str]:
        with self.lock:
            return [s.state.value for s in self.statuses if s.cmd_id == cmd_id]

    def final(self, cmd_id: str) -> CommandStatus:
        with self.lock:
            return [s for s in self.statuses if s.cmd_id == cmd_id][-1]


def wait_for(
    condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(args: list[str], ready: str, lines: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [str(AMR), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while not any(ready in line for line in lines):
        assert time.monotonic() < deadline, "did not start:\n" + "".join(lines)
        line = process.stdout.readline()
        assert line, "exited:\n" + "".join(lines)
        lines.append(line)

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return process


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HeadEnd, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("e2e")
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    sim_config = {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(folder / "sim"),
        "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                   "meters": {"count": 3, "first_serial": 5001, "initial_credit_kwh": 30}}],
    }  # fmt: skip
    (folder / "sim.yaml").write_text(yaml.safe_dump(sim_config))
    sim_lines: list[str] = []
    sim = start(["sim", "--config", str(folder / "sim.yaml")], "Ctrl-C", sim_lines)
    port = int(re.search(r"modbus-tcp 127\.0\.0\.1:(\d+)", "".join(sim_lines)).group(1))  # type: ignore[union-attr]
    control = re.search(r"control API: (http://\S+)/meters", "".join(sim_lines)).group(1)  # type: ignore[union-attr]
    import urllib.request

    with urllib.request.urlopen(f"{control}/meters", timeout=5) as reply:
        drns = {str(m["address"]): m["drn"] for m in json.load(reply)}
    gw_config = {
        "gateway_id": GW,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10},
        "journal": {"path": str(folder / "journal.db")},
        "poll_groups": {"status": {"interval_s": 2, "alarm": True}, "energy": {"interval_s": 5}},
        "batch": {"max_readings": 3, "max_delay_s": 1},
        "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": port,
                   "timeout_ms": 500,
                   "meters": [{"address": 1}, {"address": 2}, {"address": 3}]}],
    }  # fmt: skip
    (folder / "gw.yaml").write_text(yaml.safe_dump(gw_config))
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="headend-test", protocol=mqtt.MQTTv5
    )
    headend = HeadEnd(client)
    client.on_message = headend.on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"amr/v1/gw/{GW}/#", qos=1)
    client.loop_start()
    gw_lines: list[str] = []
    gateway = start(["concentrator", "--config", str(folder / "gw.yaml")], "Ctrl-C", gw_lines)
    try:
        yield headend, drns
    finally:
        client.loop_stop()
        client.disconnect()
        stop(gateway)
        stop(sim)
        broker.stop()


def token_for(drn: str, tenths: int, minutes: int) -> str:
    inputs = DecoderKeyInputs(
        pan=MeterPan.from_drn(drn), supply_group_code="123456", base_date=BaseDate.Y2014
    )
    coder = TokenCoder.derive(VendingKey.from_hex("ABABABABABABABAB"), inputs)
    tid = tid_of(datetime.now(), 2014) + minutes
    return coder.encode(TransferCredit(CreditType.ELECTRICITY, tenths, tid, rnd=2)).digits


def test_readings_arrive_on_the_readings_topic(system: tuple[HeadEnd, dict[str, str]]) -> None:
    headend, drns = system
    wait_for(lambda: {r.meter for b in headend.readings for r in b.readings} >= set(drns.values()),
             what="readings from every meter")  # fmt: skip
    batch = headend.readings[0]
    assert batch.gateway == GW and batch.seq >= 1
    values = next(
        r for b in headend.readings for r in b.readings if "credit_remaining" in r.values
    ).values
    assert 20 < float(values["credit_remaining"]) <= 30  # type: ignore[arg-type]
    seqs = [b.seq for b in headend.readings]
    assert len(seqs) == len(set(seqs))


def test_a_token_reaches_the_meter_and_a_replay_is_used(
    system: tuple[HeadEnd, dict[str, str]],
) -> None:
    headend, drns = system
    digits = token_for(drns["2"], 200, minutes=1)
    now = time.time()
    headend.command(
        Command("tok-1", CommandType.TOKEN, drns["2"], now + 60, 1, {"tokens": [digits]})
    )
    wait_for(lambda: "applied" in headend.status_of("tok-1") or "rejected" in headend.status_of("tok-1"),
             what="the token's final status")  # fmt: skip
    assert headend.status_of("tok-1") == ["received", "queued", "sent", "applied"]
    assert headend.final("tok-1").code == 1
    headend.command(
        Command("tok-2", CommandType.TOKEN, drns["2"], now + 60, 1, {"tokens": [digits]})
    )
    wait_for(lambda: "rejected" in headend.status_of("tok-2"), what="the replay's status")
    final = headend.final("tok-2")
    assert final.code == 10 and final.detail == "UsedError"
    headend.command(
        Command("tok-1", CommandType.TOKEN, drns["2"], now + 60, 1, {"tokens": [digits]})
    )
    time.sleep(1.0)
    assert headend.status_of("tok-1") == [
        "received",
        "queued",
        "sent",
        "applied",
    ]  # same cmd_id: same command


def test_bad_commands_get_a_clear_status_and_the_daemon_runs_on(
    system: tuple[HeadEnd, dict[str, str]],
) -> None:
    headend, drns = system
    now = time.time()
    headend.raw_command(b'{"v":1,"id":"bad-1","type":"relay","na":"tomorrow"}')
    headend.command(
        Command("relay-1", CommandType.RELAY, drns["1"], now + 60, 2, {"action": "disconnect"})
    )
    headend.command(
        Command("late-1", CommandType.TOKEN, drns["1"], now - 5, 1, {"tokens": ["0" * 20]})
    )
    headend.command(
        Command("who-1", CommandType.TOKEN, "99999999999", now + 60, 1, {"tokens": ["0" * 20]})
    )
    ids = ("bad-1", "relay-1", "late-1", "who-1")
    wait_for(lambda: all(headend.status_of(c) for c in ids),
             what=f"statuses for the bad commands: {[headend.status_of(c) for c in ids]}")  # fmt: skip
    wait_for(
        lambda: (
            headend.status_of("who-1")[-1] == "rejected"
            and headend.status_of("relay-1")[-1] == "rejected"
        )
    )
    assert "malformed" in headend.final("bad-1").detail
    assert "public key" in headend.final("relay-1").detail  # unsigned relay commands are refused
    assert headend.status_of("late-1")[-1] == "expired"
    assert "no meter" in headend.final("who-1").detail
    before = len(headend.readings)
    wait_for(lambda: len(headend.readings) > before + 1, what="readings after the bad commands")
