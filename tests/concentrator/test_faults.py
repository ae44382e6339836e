"""Faults the gateway must survive with exact counts: a broker outage and a SIGKILL mid-burst.

The stand-in head-end acknowledges what it receives, like the real one, and drops resends by seq.
"Nothing lost" means every seq from 1 to the last one arrived; "nothing counted twice" holds
because a resend carries its original seq.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.gateway import GW, HeadEnd, contiguous, start, stop, wait_for
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


@dataclass
class System:
    folder: Path
    broker: Mosquitto
    headend: HeadEnd
    sim: Any
    gateway: Any
    gateway_config: Path
    lines: list[str]

    def restart_gateway(self) -> None:
        stop(self.gateway)  # reaps the killed process and closes its pipe
        self.lines.clear()
        self.gateway = start(
            ["concentrator", "--config", str(self.gateway_config)], "Ctrl-C", self.lines
        )

    def readings_between(self, first: float, last: float) -> int:
        with self.headend.lock:
            return sum(
                1 for b in self.headend.readings for r in b.readings if first <= r.time <= last
            )


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    sim_config = {
        "control": None,
        "run_dir": str(tmp_path / "sim"),
        "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                   "meters": {"count": 2, "first_serial": 7001}}],
    }  # fmt: skip
    (tmp_path / "sim.yaml").write_text(yaml.safe_dump(sim_config))
    sim_lines: list[str] = []
    sim = start(["sim", "--config", str(tmp_path / "sim.yaml")], "Ctrl-C", sim_lines)
    port = int(re.search(r"modbus-tcp 127\.0\.0\.1:(\d+)", "".join(sim_lines)).group(1))  # type: ignore[union-attr]
    gateway_config = {
        "gateway_id": GW,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 5, "ack_timeout_s": 10},
        "journal": {"path": str(tmp_path / "journal.db")},
        "poll_groups": {"status": {"interval_s": 1, "alarm": True}},
        "batch": {"max_readings": 1, "max_delay_s": 0.5},
        "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": port,
                   "meters": [{"address": 1}, {"address": 2}]}],
    }  # fmt: skip
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(gateway_config))
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="headend-faults", protocol=mqtt.MQTTv5
    )
    headend = HeadEnd(client)
    client.on_message = headend.on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"amr/v1/gw/{GW}/#", qos=1)
    client.reconnect_delay_set(1, 2)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
    client.loop_start()
    lines: list[str] = []
    gateway = start(["concentrator", "--config", str(path)], "Ctrl-C", lines)
    system = System(tmp_path, broker, headend, sim, gateway, path, lines)
    try:
        yield system
    finally:
        client.loop_stop()
        client.disconnect()
        stop(system.gateway)
        stop(sim)
        broker.stop()


@pytest.mark.reliability("fault", "gateway alone: broker down 5 s, journal resent by seq")
def test_a_broker_outage_loses_nothing_and_counts_nothing_twice(
    system: System, reliability: dict[str, object]
) -> None:
    headend = system.headend
    wait_for(lambda: len(set(headend.arrivals)) >= 4, what="readings before the outage")
    outage_start = time.time()
    system.broker.stop()
    time.sleep(5)  # the gateway keeps polling into its journal meanwhile
    outage_end = time.time()
    system.broker.start()
    try:
        wait_for(lambda: contiguous(headend.arrivals) and max(headend.arrivals) >= 14, timeout_s=60)
    except AssertionError:
        missing = sorted(set(range(1, max(headend.arrivals) + 1)) - set(headend.arrivals))
        raise AssertionError(
            f"missing seqs {missing}; gateway log:\n{''.join(system.lines[-20:])}"
        ) from None
    assert system.readings_between(outage_start + 1, outage_end - 1) >= 4  # taken during the outage
    with headend.lock:
        unique_readings = {(r.meter, r.time) for b in headend.readings for r in b.readings}
        batches_by_seq = {b.seq: b for b in headend.readings}
    assert len(unique_readings) == sum(len(b.readings) for b in batches_by_seq.values())
    # In order: the gateway sends oldest first, and seq order is the order the readings were
    # taken, so a head-end orders by seq even when the broker lost some of the first resend
    # (then they arrive again after ack_timeout_s, behind newer ones).
    times = [batches_by_seq[seq].time for seq in sorted(batches_by_seq)]
    assert times == sorted(times)
    reliability.update(_figures(headend.arrivals))


def _figures(arrivals: list[int]) -> dict[str, int]:
    seqs = set(arrivals)
    return {"messages": len(seqs), "lost": len(set(range(1, max(seqs) + 1)) - seqs),
            "resent": len(arrivals) - len(seqs)}  # fmt: skip


@pytest.mark.reliability("fault", "gateway alone: SIGKILL with unacknowledged entries")
def test_sigkill_mid_burst_loses_nothing(system: System, reliability: dict[str, object]) -> None:
    headend = system.headend
    wait_for(lambda: len(set(headend.arrivals)) >= 3, what="first readings")
    headend.ack = False  # the head-end stops committing: entries pile up in the journal
    time.sleep(3)
    system.gateway.send_signal(signal.SIGKILL)
    system.gateway.wait()
    before = set(headend.arrivals)
    headend.ack = True
    system.restart_gateway()
    wait_for(lambda: contiguous(headend.arrivals) and max(headend.arrivals) >= max(before) + 3,
             timeout_s=60, what="the gateway to resume after the kill")  # fmt: skip
    assert contiguous(headend.arrivals)  # no seq reused, none skipped, across the kill
    with headend.lock:
        reliability.update(_figures(headend.arrivals))
