"""The whole system as deployed, driven through the head-end's REST API.

A real Mosquitto, ``amr sim`` (Modbus TCP meters), ``amr concentrator`` and ``amr headend`` run as
processes; the head-end stores in SQLite and, in the second round, in a real PostgreSQL. A plain
MQTT subscriber records every reading the gateway publishes, so that what the head-end stored can
be compared with what was on the wire.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from protocols.link import ReadingBatch, Topic, decode_message
from tests.support.api import Api, ApiFailure
from tests.support.gateway import add_admin, start, start_headend, start_sim, stop, wait_for
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

GW = "gw-e2e"
PASSWORD = "correct horse battery"
MASTER_KEY = "5a" * 32
STEP_TARIFF = {"currency": "ZAR", "blocks": [{"upper_kwh": 50, "price_minor_per_kwh": "150"},
                                             {"upper_kwh": None, "price_minor_per_kwh": "250"}],
               "fixed_charge_minor": 0, "tax_rate": "0.15", "fbe_kwh": 0}  # fmt: skip


class SmsGateway(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        SmsGateway.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": "m1"}')

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@dataclass
class Wire:
    """Every reading the gateway published, as (meter, time)."""

    seen: set[tuple[str, float]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        batch = decode_message(Topic.READINGS, bytes(message.payload))
        assert isinstance(batch, ReadingBatch)
        with self.lock:
            self.seen.update((r.meter, r.time) for r in batch.readings)

    def snapshot(self) -> set[tuple[str, float]]:
        with self.lock:
            return set(self.seen)


@dataclass
class System:
    folder: Path
    broker: Mosquitto
    db_url: str
    api: Api
    sim_control: str
    meters: dict[str, str]  # role -> meter id
    headend: Any
    headend_config: Path
    wire: Wire
    processes: list[Any] = field(default_factory=list)
    logs: dict[str, list[str]] = field(default_factory=dict)

    def start_headend(self, name: str = "headend-1") -> tuple[Any, Api]:
        config = yaml.safe_load(self.headend_config.read_text())
        config["node_id"] = name
        config["mqtt"]["client_id"] = name
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        lines: list[str] = []
        self.logs[f"{name}#{len(self.logs)}"] = lines
        process, base = start_headend(path, lines)
        return process, Api(base, self.api.token)

    def stored(self) -> list[tuple[str, float]]:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(sa.text("SELECT meter_id, ts FROM readings")).all()
        finally:
            engine.dispose()
        return [(row[0], row[1]) for row in rows]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def system(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:  # fmt: skip
    folder = tmp_path_factory.mktemp(f"system-{request.param}")
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        db_url = postgres.create_database(f"e2e_{int(time.time())}")
    else:
        db_url = f"sqlite:///{folder}/headend.db"
    os.environ["AMR_MASTER_KEY"] = MASTER_KEY
    os.environ["AMR_TEST_PASSWORD"] = PASSWORD
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    SmsGateway.received.clear()  # each round (SQLite, PostgreSQL) has the same meters
    sms = ThreadingHTTPServer(("127.0.0.1", 0), SmsGateway)
    threading.Thread(target=sms.serve_forever, daemon=True).start()
    processes: list[Any] = []
    wire = Wire()
    sniffer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wire", protocol=mqtt.MQTTv5)
    sniffer.on_message = wire.on_message
    sniffer.connect("127.0.0.1", broker.port)
    sniffer.subscribe(f"amr/v1/gw/{GW}/readings", qos=1)
    sniffer.loop_start()
    try:
        sim_config = {
            "clock": {"speed": 100.0},
            "control": {"host": "127.0.0.1", "port": 0},
            "run_dir": str(folder / "sim"),
            "buses": [
                {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                 "meters": {"count": 3, "first_serial": 7001, "initial_credit_kwh": 40}},
                {"name": "tcp2", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                 "meters": {"count": 1, "first_serial": 7101, "initial_credit_kwh": 25,
                            "base_load_w": 20000, "peak_load_w": 50000}},
            ],
        }  # fmt: skip
        sim_lines: list[str] = []
        sim = start_sim(sim_config, folder, sim_lines)
        processes.append(sim.process)
        ports, listed = sim.tcp_ports, sim.meters
        assert len(ports) == 2, "".join(sim_lines)
        meters = {"low": next(m["drn"] for m in listed if m["bus"] == "tcp2")}
        meters.update({f"m{i}": m["drn"] for i, m in enumerate(
            sorted((m for m in listed if m["bus"] == "tcp1"), key=lambda m: m["drn"]))})  # fmt: skip
        headend_config = {
            "database": {"url": db_url},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10},
            "keys": {"signing_key_file": str(folder / "signing.pem")},
            "api": {"host": "127.0.0.1", "port": 0},
            "commands": {"retry_s": 20, "dispatch_interval_s": 0.5},
            "notify": {"sms": {"url": f"http://127.0.0.1:{sms.server_address[1]}/send"},
                       "min_interval_s": 0},
        }  # fmt: skip
        path = folder / "headend.yaml"
        path.write_text(yaml.safe_dump(headend_config))
        add_admin(path)
        system = System(folder, broker, db_url, Api(""), sim.control, meters, None, path,
                        wire, processes)  # fmt: skip
        headend, api = system.start_headend()
        processes.append(headend)
        system.headend = headend
        system.api = api.login("admin", PASSWORD)
        gw_config = {
            "gateway_id": GW,
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10,
                     "ack_timeout_s": 15},
            "journal": {"path": str(folder / "journal.db")},
            "headend_public_key_file": str(folder / "signing.pub"),
            "poll_groups": {"status": {"interval_s": 2, "alarm": True},
                            "energy": {"interval_s": 3}},
            "batch": {"max_readings": 4, "max_delay_s": 1},
            "status_http": 0,
            "buses": [
                {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": ports[0],
                 "timeout_ms": 500, "meters": [{"address": 1}, {"address": 2}, {"address": 3}]},
                {"name": "tcp2", "type": "modbus-tcp", "host": "127.0.0.1", "port": ports[1],
                 "timeout_ms": 500, "meters": [{"address": 1}]},
            ],
        }  # fmt: skip
        (folder / "gw.yaml").write_text(yaml.safe_dump(gw_config))
        processes.append(start(["concentrator", "--config", str(folder / "gw.yaml")], "Ctrl-C", []))
        yield system
    finally:
        for name, lines in system.logs.items() if "system" in locals() else ():
            failures = [line for line in lines if "Traceback" in line or "rror" in line]
            if failures:
                print(f"--- {name} ---\n" + "".join(lines[-200:]))
        sniffer.loop_stop()
        sniffer.disconnect()
        for process in reversed(processes):
            stop(process)
        sms.shutdown()
        sms.server_close()
        broker.stop()


def _meter_ids(api: Api) -> set[str]:
    return {m["id"] for m in api.get("/api/v1/meters?limit=100")["items"]}


def test_the_gateway_and_its_meters_are_registered(system: System) -> None:
    api = system.api
    wait_for(lambda: _meter_ids(api) >= set(system.meters.values()), 60, "meters registered")
    gateway = api.get(f"/api/v1/gateways/{GW}")
    assert gateway["online"] is True and gateway["meters"] == 4
    api.post("/api/v1/keys", {"id": "sgc123456-krn1", "key_hex": "ABABABABABABABAB",
                              "sgc": 123456, "key_revision": 1, "key_type": 2,
                              "algorithm": "sta", "dkga": 2})  # fmt: skip
    assert "key_hex" not in json.dumps(api.get("/api/v1/keys"))
    tariff = api.post("/api/v1/tariffs", {"name": "residential", "kind": "step",
                                          "body": STEP_TARIFF})  # fmt: skip
    api.post("/api/v1/notification-rules", {"kind": "*", "channel": "sms",
                                            "recipient": "customer"})  # fmt: skip
    for role, meter_id in system.meters.items():
        customer = api.post("/api/v1/customers", {"name": f"Customer {role}",
                                                  "phone": f"+2782000{meter_id[-4:]}"})  # fmt: skip
        api.post("/api/v1/accounts", {"customer_id": customer["id"], "meter_id": meter_id,
                                      "tariff_id": tariff["id"]})  # fmt: skip


def _credit_kwh(system: System, meter_id: str) -> float:
    with urllib.request.urlopen(f"{system.sim_control}/meters/{meter_id}", timeout=5) as reply:
        return float(json.load(reply)["credit_kwh"])


def _delivered(api: Api, vend_id: int) -> dict[str, Any]:
    def final() -> bool:
        state = api.get(f"/api/v1/vends/{vend_id}")["delivery"]["state"]
        return state in ("applied", "rejected", "failed", "expired")

    wait_for(final, 60, "the token's delivery")
    delivery: dict[str, Any] = api.get(f"/api/v1/vends/{vend_id}")["delivery"]
    return delivery


def test_a_vend_reaches_the_meter_and_raises_its_credit(system: System) -> None:
    api, meter_id = system.api, system.meters["m0"]
    before = _credit_kwh(system, meter_id)
    vend = api.post("/api/v1/vends", {"meter_id": meter_id, "amount_minor": 10000})
    # block 1: 50 kWh at R1.50 + 15 % VAT = R86.25; the other R13.75 buys 4.78 kWh of block 2 at
    # R2.875; the token carries 0.1 kWh units: 54.7 kWh
    assert vend["energy_wh"] == 54700 and len(vend["tokens"][0].replace(" ", "")) == 20
    assert vend["receipt"]["total_minor"] + vend["receipt"]["change_minor"] == 10000
    delivery = _delivered(api, vend["id"])
    assert delivery["state"] == "applied" and delivery["code"] == 1
    assert _credit_kwh(system, meter_id) >= before + 54.7 - 1.0  # less what was used meanwhile
    history = api.get(f"/api/v1/commands/{delivery['command_id']}")["history"]
    states = [h["state"] for h in history]
    assert states[:2] == ["queued", "sent"] and states[-1] == "applied"
    assert "received" in states
    assert {h["source"] for h in history} == {"headend", "gateway"}


def test_a_replayed_token_is_reported_used(system: System) -> None:
    api = system.api
    vend = api.get(f"/api/v1/vends?meter_id={system.meters['m0']}")["items"][0]
    api.post(f"/api/v1/vends/{vend['id']}/resend")
    delivery = _delivered(api, vend["id"])
    assert delivery["state"] == "rejected" and delivery["code"] == 10


def test_credit_running_out_raises_alarms_and_a_notification(system: System) -> None:
    api, meter_id = system.api, system.meters["low"]

    def kinds() -> set[str]:
        return {a["kind"] for a in api.get(f"/api/v1/alarms?meter_id={meter_id}")["items"]}

    wait_for(lambda: {"low_credit", "credit_exhausted"} <= kinds(), 90, "both credit alarms")
    alarms = api.get(f"/api/v1/alarms?meter_id={meter_id}&kind=low_credit")["items"]
    exhausted = api.get(f"/api/v1/alarms?meter_id={meter_id}&kind=credit_exhausted")["items"]
    assert alarms[0]["raised_at"] <= exhausted[0]["raised_at"]
    wait_for(lambda: len([s for s in SmsGateway.received if meter_id in s["text"]]) >= 2, 30,
             "two SMS to the customer")  # fmt: skip
    texts = [s["text"] for s in SmsGateway.received if meter_id in s["text"]]
    assert any("credit is low" in t for t in texts) and any("used up" in t for t in texts)
    assert all(s["to"] == f"+2782000{meter_id[-4:]}" for s in SmsGateway.received
               if meter_id in s["text"])  # fmt: skip
    wait_for(lambda: len(api.get("/api/v1/notifications?outcome=sent")["items"]) >= 2, 30,
             "both notifications recorded as sent")  # fmt: skip
    ack = api.post(f"/api/v1/alarms/{exhausted[0]['id']}/ack", {"comment": "customer called"})
    assert ack["acked_by"] == "admin"


def test_a_tou_update_reaches_every_meter_and_is_confirmed(system: System) -> None:
    api = system.api
    table = {"weekday": [[0, 3], [360, 2], [1020, 1], [1260, 2]], "weekend": [[0, 3], [480, 2]]}
    tariff = api.post("/api/v1/tariffs", {"name": "tou-2027", "kind": "tou", "body": table})
    ids = sorted(system.meters.values())
    api.post(f"/api/v1/tariffs/{tariff['id']}/push",
             {"meter_ids": ids, "activation_at": time.time() - 60})  # fmt: skip

    def confirmed() -> bool:
        states = api.get(f"/api/v1/tariffs/{tariff['id']}/rollout")["states"]
        return bool(states.get("confirmed") == len(ids))

    wait_for(confirmed, 90, "every meter confirming the TOU table")
    assert {m["tou_version"] for m in api.get("/api/v1/meters?limit=100")["items"]} == {1}


def _converged(system: System, since: float) -> None:
    """Everything seen on the wire up to now is stored, once."""
    time.sleep(2)
    target = system.wire.snapshot()
    assert target, "no readings on the wire"

    def done() -> bool:
        return target <= set(system.stored())

    wait_for(done, 90, "every reading on the wire stored")
    stored = system.stored()
    assert len(stored) == len(set(stored)), "a reading stored twice"
    gaps = system.api.get(f"/api/v1/gateways/{GW}/gaps?since={since}")["missing"]
    assert gaps == []


@pytest.mark.reliability("fault", "head-end SIGKILL during ingest (SQLite and PostgreSQL)")
def test_sigkill_during_ingest_loses_and_doubles_nothing(system: System) -> None:
    since = time.time() - 3600
    wait_for(lambda: len(system.wire.snapshot()) > 20, 60, "readings flowing")
    system.headend.send_signal(signal.SIGKILL)
    system.headend.wait(timeout=10)
    time.sleep(4)  # the gateway goes on reading and publishing; nobody acknowledges
    headend, api = system.start_headend()
    system.processes.append(headend)
    system.headend = headend
    system.api = Api(api.base, system.api.token)
    _converged(system, since)


def _ingested(api: Api) -> float:
    with urllib.request.urlopen(f"{api.base}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = re.search(r"^amr_ingest_messages (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


@pytest.mark.reliability("scale-out", "two head-ends share one gateway's ingest, nothing doubled")
def test_two_headends_share_the_ingest(system: System) -> None:
    since = time.time() - 3600
    second, api2 = system.start_headend("headend-2")
    system.processes.append(second)
    try:
        before = len(system.stored())
        wait_for(lambda: len(system.stored()) > before + 30, 90, "more readings")
        _converged(system, since)
        # both processes took a share of the gateway's messages
        assert _ingested(api2) > 0 and _ingested(system.api) > 0
        with pytest.raises(ApiFailure) as refused:
            Api(api2.base).get("/api/v1/meters")
        assert refused.value.status == 401
        assert api2.get(f"/api/v1/gateways/{GW}")["online"] is True
    finally:
        stop(second)
