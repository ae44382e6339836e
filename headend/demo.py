"""``amr demo``: the whole system on one machine, from one command, with nothing else installed.

What runs (all on 127.0.0.1):

* an MQTT broker: Mosquitto when it is installed (``--broker auto``), else the embedded one
  (:mod:`headend.broker`), in this process;
* ``amr sim``: meters on a Modbus RTU bus (a pty), on Modbus TCP and behind a PLC module;
* ``amr concentrator``: one gateway polling those three buses, relaying over MQTT;
* the head-end, in this process, on SQLite in the demo folder, with its REST API.

The demo folder (``var/demo`` by default) keeps the database, the generated keys and the logs, so
a second run continues where the first stopped. First run seeds an admin operator, the STS test
vending key the simulator's meters use, a step tariff, a TOU tariff, and a customer with an
account for every meter the gateway announces.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

__all__ = ["DEMO_PASSWORD", "DEMO_USER", "Demo"]

DEMO_USER = "admin"
DEMO_PASSWORD = "demo-admin-password"
TEST_VENDING_KEY = "ABABABABABABABAB"  # the STS test key (IEC 62055-41 compliance vectors)
STEP_TARIFF = {
    "currency": "ZAR",
    "blocks": [{"upper_kwh": 50, "price_minor_per_kwh": "145"},
               {"upper_kwh": 350, "price_minor_per_kwh": "185"},
               {"upper_kwh": None, "price_minor_per_kwh": "240"}],
    "fixed_charge_minor": 0, "tax_rate": "0.15", "fbe_kwh": 50,
}  # fmt: skip
TOU_TABLE = {"weekday": [[0, 3], [360, 2], [1020, 1], [1260, 2]], "weekend": [[0, 3], [480, 2]]}
AMR = Path(sys.executable).with_name("amr")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Demo:
    folder: Path
    api_port: int = 8080
    broker: str = "auto"  # auto | embedded | mosquitto
    meters: int = 10
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    broker_port: int = 0
    broker_kind: str = ""
    sim_text: str = ""

    # -- files ----------------------------------------------------------------------------------

    def prepare(self) -> Path:
        """Keys, configs and the seeded database; the head-end config's path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        master = self.folder / "master.key"
        if not master.exists():
            master.touch(mode=0o600)
            master.write_text(secrets.token_hex(32) + "\n")
        self.broker_port = _free_port()
        config = {
            "node_id": "demo-headend",
            "database": {"url": f"sqlite:///{(self.folder / 'headend.db').resolve()}"},
            "mqtt": {"host": "127.0.0.1", "port": self.broker_port, "client_id": "demo-headend",
                     "keepalive_s": 15},
            "keys": {"master_key_file": str(master.resolve()),
                     "signing_key_file": str((self.folder / "command-signing.pem").resolve())},
            "api": {"host": "127.0.0.1", "port": self.api_port},
            "commands": {"retry_s": 30, "dispatch_interval_s": 0.5},
        }  # fmt: skip
        path = self.folder / "headend.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def seed(self, config: Any) -> None:
        """The demo's operator, key and tariffs (once; a second run keeps what is there)."""
        from .auth import thd_create_operator
        from .keystore import load_master_key, thd_add_vending_key
        from .store import make_engine, upgrade
        from .store.schema import operators, tariffs
        from .vending import step_tariff_from

        engine = make_engine(config.database.url)
        upgrade(engine)
        now = time.time()
        master = load_master_key(config.keys.master_key_file)
        step_tariff_from(STEP_TARIFF)  # the demo's own tariff must be valid
        with engine.begin() as connection:
            if connection.execute(sa.select(operators.c.id)).first() is None:
                thd_create_operator(
                    connection, DEMO_USER, DEMO_PASSWORD, "admin", "head-office", now
                )
                thd_add_vending_key(connection, master, "demo-sgc123456-krn1", TEST_VENDING_KEY,
                                    123456, 1, 2, "sta", 2, now)  # fmt: skip
            if connection.execute(sa.select(tariffs.c.id)).first() is None:
                from .api.tariffs import thd_create_tariff

                thd_create_tariff(connection, "residential", "step", STEP_TARIFF, now, "demo", now)
                thd_create_tariff(connection, "tou-standard", "tou", TOU_TABLE, now, "demo", now)
        engine.dispose()

    # -- processes ------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        log.close()
        self.processes.append(process)
        return process

    def _wait_for(self, name: str, text: str, process: subprocess.Popen[bytes],
                  timeout_s: float = 30) -> str:  # fmt: skip
        path = self.folder / f"{name}.log"
        deadline = time.monotonic() + timeout_s
        start = path.stat().st_size if path.exists() else 0
        while True:
            content = path.read_bytes()[start:].decode(errors="replace") if path.exists() else ""
            if text in content:
                return content
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {path}:\n{content[-2000:]}")
            time.sleep(0.1)

    def start_mosquitto(self) -> bool:
        if self.broker == "embedded" or shutil.which("mosquitto") is None:
            if self.broker == "mosquitto":
                raise RuntimeError("--broker mosquitto, but mosquitto is not installed")
            return False
        store = self.folder / "mosquitto"
        store.mkdir(exist_ok=True)
        conf = store / "mosquitto.conf"
        conf.write_text(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\n"
                        f"persistence true\npersistence_location {store.resolve()}/\n"
                        "max_queued_messages 100000\n")  # fmt: skip
        self._spawn("mosquitto", ["mosquitto", "-c", str(conf)])
        self.broker_kind = f"Mosquitto on 127.0.0.1:{self.broker_port}"
        return True

    def start_simulator(self) -> dict[str, Any]:
        count = self.meters
        sim = {
            "clock": {"speed": 1.0},
            "control": {"host": "127.0.0.1", "port": 0},
            "run_dir": str((self.folder / "sim").resolve()),
            "buses": [
                {"name": "rtu1", "type": "modbus-rtu", "pty": True, "baud": 9600, "parity": "N",
                 "meters": {"count": count, "first_serial": 1001, "initial_credit_kwh": 40}},
                {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                 "meters": {"count": count, "first_serial": 2001, "initial_credit_kwh": 12}},
                {"name": "plc1", "type": "plc", "pty": True, "baud": 9600, "parity": "N",
                 "delay_s": 1.0, "delay_jitter_s": 0.5, "loss": 0.02,
                 "first_address": "000000000101",
                 "meters": {"count": max(count // 2, 1), "first_serial": 4001,
                            "initial_credit_kwh": 40}},
            ],
        }  # fmt: skip
        path = self.folder / "sim.yaml"
        path.write_text(yaml.safe_dump(sim, sort_keys=False))
        process = self._spawn("sim", [str(AMR), "sim", "--config", str(path)])
        text = self._wait_for("sim", "Ctrl-C", process)
        self.sim_text = text
        rtu = re.search(r"rtu1: \S+ \S+ \S+ on (\S+)", text)
        tcp = re.search(r"modbus-tcp 127\.0\.0\.1:(\d+)", text)
        plc = re.search(r"plc1: \S+ \S+ \S+ on (\S+)", text)
        control = re.search(r"control API: (http://\S+)/meters", text)
        if not (rtu and tcp and plc and control):
            raise RuntimeError(f"could not read the simulator's buses from:\n{text}")
        return {"rtu": rtu.group(1), "tcp": int(tcp.group(1)), "plc": plc.group(1),
                "control": control.group(1)}  # fmt: skip

    def start_concentrator(self, buses: dict[str, Any]) -> None:
        count = self.meters
        gateway = {
            "gateway_id": "gw-demo-1",
            "mqtt": {"host": "127.0.0.1", "port": self.broker_port, "keepalive_s": 15,
                     "ack_timeout_s": 60},
            "journal": {"path": str((self.folder / "journal.db").resolve())},
            "headend_public_key_file": str((self.folder / "command-signing.pub").resolve()),
            "poll_groups": {"status": {"interval_s": 30, "alarm": True},
                            "energy": {"interval_s": 60}, "identity": {"interval_s": 3600}},
            "batch": {"max_readings": 50, "max_delay_s": 5},
            "status_http": 0,
            "buses": [
                {"name": "rtu1", "type": "modbus-rtu", "device": buses["rtu"], "baud": 9600,
                 "parity": "N", "timeout_ms": 500,
                 "meters": [{"address": a} for a in range(1, count + 1)]},
                {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": buses["tcp"],
                 "timeout_ms": 500, "meters": [{"address": a} for a in range(1, count + 1)]},
                {"name": "plc1", "type": "plc", "device": buses["plc"], "baud": 9600,
                 "parity": "N", "timeout_ms": 8000,
                 "meters": [{"address": f"{101 + i:012d}"} for i in range(max(count // 2, 1))]},
            ],
        }  # fmt: skip
        path = self.folder / "gateway.yaml"
        path.write_text(yaml.safe_dump(gateway, sort_keys=False))
        self._spawn("concentrator", [str(AMR), "concentrator", "--config", str(path)])

    def stop_processes(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def thd_open_accounts(connection: sa.Connection, now: float) -> int:
    """A customer and an account (residential step tariff) for each meter without one."""
    from .store.schema import accounts, customers, meters, tariffs

    step = connection.execute(sa.select(tariffs.c.id).where(tariffs.c.kind == "step")).scalar()
    tou = connection.execute(sa.select(tariffs.c.id).where(tariffs.c.kind == "tou")).scalar()
    if step is None:
        return 0
    missing = connection.execute(
        sa.select(meters.c.id).where(meters.c.id.not_in(
            sa.select(accounts.c.meter_id).where(accounts.c.meter_id.is_not(None))))
        .order_by(meters.c.id)
    ).scalars().all()  # fmt: skip
    for number, meter_id in enumerate(missing, 1):
        customer_id = connection.execute(
            sa.insert(customers).values(
                name=f"Demo customer {meter_id[-4:]}", phone=f"+27820{meter_id[-6:]}",
                email=f"customer{meter_id[-4:]}@example.org", created_at=now,
            ).returning(customers.c.id)
        ).scalar_one()  # fmt: skip
        connection.execute(sa.insert(accounts).values(
            customer_id=customer_id, meter_id=meter_id, tariff_id=step, tou_tariff_id=tou,
            opened_at=now, debt_minor=2000 if number % 5 == 0 else 0,
            debt_recovery_share="0.25",
        ))  # fmt: skip
    return len(missing)


def describe(demo: Demo, api_base: str, meter_example: str) -> str:
    login = json.dumps({"username": DEMO_USER, "password": DEMO_PASSWORD})
    vend = json.dumps({"meter_id": meter_example, "amount_minor": 5000})
    plc = max(demo.meters // 2, 1)
    return f"""
amr demo is running (folder {demo.folder}):
  interface   {api_base}/ui/   (open it in a browser)
  login       {DEMO_USER} / {DEMO_PASSWORD}
  broker      {demo.broker_kind}
  simulator   {demo.meters} meters on Modbus RTU (pty), {demo.meters} on Modbus TCP,
              {plc} DL/T 645 meters behind a PLC module
  gateway     gw-demo-1 (amr concentrator), logs in {demo.folder}/concentrator.log
  head-end    {api_base}/api/v1/openapi.json   (SQLite: {demo.folder}/headend.db)

Try it in the interface: Vend, pick a meter, sell, and watch the token reach the meter.
Or with the REST API (a second terminal):
  TOKEN=$(curl -s -X POST {api_base}/api/v1/login -H 'Content-Type: application/json' \\
          -d '{login}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -X POST {api_base}/api/v1/vends -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{vend}'
  # the token, the receipt, and "delivery": watch it go queued -> sent -> received -> applied:
  curl -s {api_base}/api/v1/vends/1 -H "Authorization: Bearer $TOKEN"
  curl -s "{api_base}/api/v1/alarms?state=open" -H "Authorization: Bearer $TOKEN"

Ctrl-C stops everything.
"""
