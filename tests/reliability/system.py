"""The whole system as deployed, for fault tests that count exactly what was lost or doubled.

A real Mosquitto, a PostgreSQL server of the test's own (so it can be restarted), ``amr sim``
(Modbus TCP meters), ``amr concentrator`` and ``amr headend`` run as processes. A wire recorder,
an MQTT v5 client with a persistent session (so it misses nothing across a broker restart),
keeps every reading batch the gateway published, with its seq.

What the counts mean (``FaultSystem.counts``):

- ``readings``: distinct readings the gateway published in the window (on the wire);
- ``lost``: readings on the wire that are not in the head-end's store, plus uplink seqs
  missing from the head-end's record of what it committed (1..max, no holes);
- ``duplicated``: readings stored more than once (rows minus distinct meter and time);
- ``resent``: batches seen on the wire again with a seq already seen (the gateway resending
  what was not acknowledged; the head-end drops them by seq).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocols.link import ReadingBatch, Topic, decode_message
from tests.support.api import Api
from tests.support.gateway import add_admin, start, start_headend, start_sim, stop, wait_for
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import Postgres

__all__ = ["GW", "FaultSystem", "Wire", "build"]

GW = "gw-faults"
PASSWORD = "correct horse battery"
MASTER_KEY = "5a" * 32
KEY = {"id": "sgc123456-krn1", "key_hex": "ABABABABABABABAB", "sgc": 123456, "key_revision": 1,
       "key_type": 2, "algorithm": "sta", "dkga": 2}  # fmt: skip
TARIFF = {"currency": "ZAR", "blocks": [{"upper_kwh": None, "price_minor_per_kwh": "100"}],
          "fixed_charge_minor": 0, "tax_rate": "0", "fbe_kwh": 0}  # fmt: skip


@dataclass
class Wire:
    """Every reading batch the gateway published: seqs in arrival order, readings by (meter, time)."""

    seqs: list[int] = field(default_factory=list)
    readings: set[tuple[str, float]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        batch = decode_message(Topic.READINGS, bytes(message.payload))
        assert isinstance(batch, ReadingBatch)
        with self.lock:
            self.seqs.append(batch.seq)
            self.readings.update((r.meter, r.time) for r in batch.readings)

    def mark(self) -> tuple[int, int]:
        with self.lock:
            return len(self.seqs), len(self.readings)

    def snapshot(self) -> tuple[list[int], set[tuple[str, float]]]:
        with self.lock:
            return list(self.seqs), set(self.readings)


@dataclass
class FaultSystem:
    folder: Path
    broker: Mosquitto
    postgres: Postgres
    db_url: str
    sim_control: str
    meters: dict[str, str]  # role -> meter id ("still": a meter that uses no energy)
    gateway_config: Path
    headend_config: Path
    wire: Wire
    sniffer: mqtt.Client
    api: Api = field(default_factory=lambda: Api(""))
    headend: subprocess.Popen[str] | None = None
    gateway: subprocess.Popen[str] | None = None
    gateway_prefix: list[str] = field(default_factory=list)
    logs: dict[str, list[str]] = field(default_factory=dict)
    others: list[subprocess.Popen[str]] = field(default_factory=list)

    # -- processes --------------------------------------------------------------------------

    def start_headend(self) -> None:
        self.headend, base = start_headend(self.headend_config, self._log("headend"))
        self.api = Api(base, self.api.token)

    def kill_headend(self) -> None:
        assert self.headend is not None
        self.headend.send_signal(signal.SIGKILL)
        stop(self.headend)  # reaps it and closes its pipe
        self.headend = None

    def start_gateway(self, prefix: list[str] | None = None) -> None:
        """``prefix`` runs the gateway under a wrapper (``faketime``, ``ip netns exec``)."""
        if prefix is not None:
            self.gateway_prefix = prefix
        self.gateway = start(["concentrator", "--config", str(self.gateway_config)], "Ctrl-C",
                             self._log("gateway"), self.gateway_prefix)  # fmt: skip

    def kill_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.send_signal(signal.SIGKILL)
        stop(self.gateway)
        self.gateway = None

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            stop(self.gateway)
            self.gateway = None

    def _log(self, name: str) -> list[str]:
        lines: list[str] = []
        self.logs[f"{name}#{len(self.logs)}"] = lines
        return lines

    def log_text(self, name: str) -> str:
        return "".join(line for key, lines in self.logs.items() if key.startswith(name)
                       for line in lines)  # fmt: skip

    # -- what was stored --------------------------------------------------------------------

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(sa.text(sql), params).all()]
        finally:
            engine.dispose()

    def stored(self) -> list[tuple[str, float]]:
        return [(r[0], r[1]) for r in self.query("SELECT meter_id, ts FROM readings")]

    def committed_seqs(self) -> list[int]:
        return [r[0] for r in self.query("SELECT seq FROM uplink_seen WHERE gateway_id = :gw",
                                         gw=GW)]  # fmt: skip

    def wait_converged(self, timeout_s: float = 90) -> None:
        """Everything published up to now is stored, and the committed seqs have no hole."""
        time.sleep(1.0)
        _, target = self.wire.snapshot()
        assert target, "no readings on the wire"

        def done() -> bool:
            seqs = set(self.committed_seqs())
            return target <= set(self.stored()) and seqs == set(range(1, max(seqs) + 1))

        wait_for(done, timeout_s, "every published reading stored, no seq missing")

    def counts(self, since: tuple[int, int]) -> dict[str, int]:
        """Exact figures for what the gateway published after ``since`` (a ``wire.mark()``)."""
        seqs, readings = self.wire.snapshot()
        stored = self.stored()
        committed = set(self.committed_seqs())
        holes = set(range(1, max(committed) + 1)) - committed if committed else set()
        window = seqs[since[0] :]
        earlier = set(seqs[: since[0]])
        return {
            "readings": len(readings) - since[1],
            "lost": len(readings - set(stored)) + len(holes),
            "duplicated": len(stored) - len(set(stored)),
            "resent": sum(1 for i, s in enumerate(window) if s in earlier or s in window[:i]),
        }

    # -- money --------------------------------------------------------------------------------

    def credit_kwh(self, meter_id: str) -> float:
        with urllib.request.urlopen(f"{self.sim_control}/meters/{meter_id}", timeout=5) as reply:
            return float(json.load(reply)["credit_kwh"])

    def vend(self, amount_minor: int) -> dict[str, Any]:
        vend: dict[str, Any] = self.api.post(
            "/api/v1/vends", {"meter_id": self.meters["still"], "amount_minor": amount_minor}
        )
        return vend

    def delivery(self, vend_id: int, timeout_s: float = 90) -> dict[str, Any]:
        def final() -> bool:
            state = self.api.get(f"/api/v1/vends/{vend_id}")["delivery"]["state"]
            return state in ("applied", "rejected", "failed", "expired")

        wait_for(final, timeout_s, "the token's delivery")
        found: dict[str, Any] = self.api.get(f"/api/v1/vends/{vend_id}")["delivery"]
        return found

    def applied_transitions(self, command_id: int) -> int:
        history = self.api.get(f"/api/v1/commands/{command_id}")["history"]
        return sum(1 for h in history if h["state"] == "applied")

    def close(self) -> None:
        for name, lines in self.logs.items():
            if any("Traceback" in line for line in lines):
                print(f"--- {name} ---\n" + "".join(lines[-150:]))
        self.sniffer.loop_stop()
        self.sniffer.disconnect()
        self.stop_gateway()
        if self.headend is not None:
            stop(self.headend)
        for process in self.others:
            stop(process)
        self.broker.stop()
        self.postgres.stop()


def build(
    folder: Path,
    journal_dir: Path | None = None,
    gateway_prefix: list[str] | None = None,
    wrap_gateway: Callable[[list[int]], list[str]] | None = None,
) -> FaultSystem:
    """Start everything; the caller must ``close()`` it. The gateway is registered, the head-end
    has a vending key, a tariff and an account for the still meter.

    ``wrap_gateway`` is given the ports the gateway will use (the broker's, then the meters')
    before it starts, and returns the gateway's command prefix (e.g. ``ip netns exec``)."""
    os.environ["AMR_MASTER_KEY"] = MASTER_KEY
    os.environ["AMR_TEST_PASSWORD"] = PASSWORD
    postgres = Postgres(folder / "pg")
    postgres.start()
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    db_url = postgres.url
    wire = Wire()
    sniffer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wire-faults",
                          protocol=mqtt.MQTTv5)  # fmt: skip
    sniffer.on_message = wire.on_message
    sniffer.on_connect = lambda c, u, f, rc, p: c.subscribe(f"amr/v1/gw/{GW}/readings", qos=1)
    sniffer.reconnect_delay_set(1, 2)
    session = Properties(PacketTypes.CONNECT)
    session.SessionExpiryInterval = 3600
    sniffer.connect("127.0.0.1", broker.port, clean_start=False, properties=session)
    sniffer.loop_start()
    sim_config = {
        "clock": {"speed": 60.0},
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(folder / "sim"),
        "buses": [
            {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
             "meters": {"count": 2, "first_serial": 7001, "initial_credit_kwh": 500}},
            {"name": "still", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
             "meters": {"count": 1, "first_serial": 7101, "initial_credit_kwh": 10,
                        "base_load_w": 0, "peak_load_w": 0}},
        ],
    }  # fmt: skip
    sim_lines: list[str] = []
    sim = start_sim(sim_config, folder, sim_lines)
    ports = sim.tcp_ports
    assert len(ports) == 2, "".join(sim_lines)
    meters = {"still": next(m["drn"] for m in sim.meters if m["bus"] == "still")}
    headend_config = {
        "node_id": "headend-1",
        "database": {"url": db_url},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5,
                 "client_id": "headend-1"},
        "keys": {"signing_key_file": str(folder / "signing.pem")},
        "api": {"host": "127.0.0.1", "port": 0},
        "commands": {"retry_s": 15, "dispatch_interval_s": 0.5},
    }  # fmt: skip
    headend_path = folder / "headend.yaml"
    headend_path.write_text(yaml.safe_dump(headend_config))
    add_admin(headend_path)
    gateway_config = {
        "gateway_id": GW,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5,
                 "ack_timeout_s": 10},
        "journal": {"path": str((journal_dir or folder) / "journal.db")},
        "headend_public_key_file": str(folder / "signing.pub"),
        "poll_groups": {"status": {"interval_s": 1, "alarm": True}, "energy": {"interval_s": 2}},
        "batch": {"max_readings": 3, "max_delay_s": 0.5},
        "health_interval_s": 2,
        "buses": [
            {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": ports[0],
             "timeout_ms": 500, "meters": [{"address": 1}, {"address": 2}]},
            {"name": "still", "type": "modbus-tcp", "host": "127.0.0.1", "port": ports[1],
             "timeout_ms": 500, "meters": [{"address": 1}]},
        ],
    }  # fmt: skip
    gateway_path = folder / "gw.yaml"
    gateway_path.write_text(yaml.safe_dump(gateway_config))
    system = FaultSystem(folder, broker, postgres, db_url, sim.control, meters, gateway_path,
                         headend_path, wire, sniffer, others=[sim.process])  # fmt: skip
    system.logs["sim"] = sim_lines
    try:
        system.start_headend()
        system.api = system.api.login("admin", PASSWORD)
        if wrap_gateway is not None:
            gateway_prefix = [*(gateway_prefix or []), *wrap_gateway([broker.port, *ports])]
        system.start_gateway(gateway_prefix)
        api = system.api
        wait_for(lambda: meters["still"] in {m["id"] for m in api.get("/api/v1/meters")["items"]},
                 60, "the gateway's meters registered")  # fmt: skip
        api.post("/api/v1/keys", KEY)
        tariff = api.post("/api/v1/tariffs", {"name": "flat", "kind": "step", "body": TARIFF})
        customer = api.post("/api/v1/customers", {"name": "Still", "phone": "+27820000001"})
        api.post("/api/v1/accounts", {"customer_id": customer["id"], "meter_id": meters["still"],
                                      "tariff_id": tariff["id"]})  # fmt: skip
    except BaseException:
        system.close()
        raise
    return system
