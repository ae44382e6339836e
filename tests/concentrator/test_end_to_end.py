"""The concentrator as deployed: a real Mosquitto, the simulator's meters, ``amr concentrator``.

The test plays the head-end with a plain paho client: it sees readings arrive on the right topics,
acknowledges them, pushes a token (applied, then Used on a replay), and sends malformed, unsigned
and expired commands, each of which gets a clear rejected/expired status while the daemon runs on.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime

import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from protocols.link import (
    Command,
    CommandType,
    sign_command,
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
from tests.support.gateway import GW, HeadEnd, start, stop, wait_for
from tests.support.mosquitto import Mosquitto

SIGNING_KEY: list[Ed25519PrivateKey] = []

pytestmark = pytest.mark.integration


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
    with urllib.request.urlopen(f"{control}/meters", timeout=5) as reply:
        drns = {str(m["address"]): m["drn"] for m in json.load(reply)}
    gw_config = {
        "gateway_id": GW,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10},
        "journal": {"path": str(folder / "journal.db")},
        "poll_groups": {"status": {"interval_s": 2, "alarm": True}, "energy": {"interval_s": 5}},
        "batch": {"max_readings": 3, "max_delay_s": 1},
        "status_http": 0,
        "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": port,
                   "timeout_ms": 500,
                   "meters": [{"address": 1}, {"address": 2}, {"address": 3}]}],
    }  # fmt: skip
    key = Ed25519PrivateKey.generate()
    (folder / "headend.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    gw_config["headend_public_key_file"] = str(folder / "headend.pub")
    SIGNING_KEY.append(key)
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
    status = re.search(r"status page: (http://\S+)/ ", "".join(gw_lines))
    assert status, "".join(gw_lines)
    drns["status"] = status.group(1)
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
    meters = {drn for address, drn in drns.items() if address.isdigit()}
    wait_for(lambda: {r.meter for b in headend.readings for r in b.readings} >= meters,
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
    assert "not signed" in headend.final("relay-1").detail  # unsigned relay commands are refused
    assert headend.status_of("late-1")[-1] == "expired"
    assert "no meter" in headend.final("who-1").detail
    before = len(headend.readings)
    wait_for(lambda: len(headend.readings) > before + 1, what="readings after the bad commands")


def test_status_page_and_metrics(system: tuple[HeadEnd, dict[str, str]]) -> None:
    _, drns = system
    base = drns["status"]
    wait_for(
        lambda: drns["3"].encode() in _get(f"{base}/"), what="the status page to list the meters"
    )
    page = _get(f"{base}/").decode()
    assert "Gateway gw-test" in page and drns["1"] in page
    metrics = _get(f"{base}/metrics").decode()
    assert 'amr_gateway_bus_requests{bus="tcp1",gateway="gw-test"}' in metrics
    assert "amr_gateway_mqtt_connected" in metrics
    health = json.loads(_get(f"{base}/health.json"))
    assert health["metrics"]["mqtt.connected"] is True
    assert {m["meter"] for m in health["meters"]} == {drns["1"], drns["2"], drns["3"]}


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        body: bytes = reply.read()
    return body


def test_signed_relay_and_tou_commands_are_applied_and_verified(
    system: tuple[HeadEnd, dict[str, str]],
) -> None:
    headend, drns = system
    key = SIGNING_KEY[0]
    now = time.time()

    def send(cmd_id: str, kind: CommandType, args: dict[str, object]) -> None:
        headend.command(sign_command(Command(cmd_id, kind, drns["3"], now + 60, 2, args), key))

    send("off-1", CommandType.RELAY, {"action": "disconnect"})
    wait_for(lambda: headend.status_of("off-1")[-1:] == ["applied"], what="relay disconnect")
    assert headend.final("off-1").result == {"relay_state": 1}
    send("on-1", CommandType.RELAY, {"action": "connect"})
    wait_for(lambda: headend.status_of("on-1")[-1:] == ["applied"], what="relay connect")
    assert headend.final("on-1").result == {"relay_state": 0}
    table = {
        "version": 3,
        "activation": 0,
        "weekday": [[0, 1], [360, 2], [1080, 3]],
        "weekend": [[0, 1]],
    }
    send("tou-1", CommandType.TOU, table)
    wait_for(lambda: headend.status_of("tou-1")[-1:] == ["applied"], what="the TOU table")
    assert headend.final("tou-1").result == {"version": 3, "active_version": 3}
    send("tou-2", CommandType.TOU, {**table, "version": 4, "weekday": [[600, 1], [0, 2]]})
    wait_for(
        lambda: headend.status_of("tou-2")[-1:] in (["failed"], ["rejected"]),
        what="a bad TOU table",
    )
    assert "switch" in headend.final("tou-2").detail or "exception" in headend.final("tou-2").detail
