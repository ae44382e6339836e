"""Only the head-end's own, fresh, untampered commands reach a meter.

A real ``amr concentrator`` polls ``amr sim``'s Modbus TCP meters and talks to a real Mosquitto;
the test plays the head-end with a plain paho client holding the Ed25519 key whose public half the
gateway trusts. For a relay disconnect and a TOU table each, it sends a command that is unsigned,
signed by another key, altered after signing, replayed under the cmd_id of one that already ran,
or past its ``not_after``, and checks what a utility would notice: the gateway's status for it
(and never "queued", "sent" or "applied"), the meter as the simulator shows it (relay still
closed, TOU table unchanged), and the gateway's health counters. A correctly signed command is
applied, so the refusals are not the gateway refusing everything.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from protocols.link import Command, CommandType, sign_command
from tests.support.gateway import GW, HeadEnd, start, start_sim, stop, wait_for
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

TABLE = {"activation": 0, "weekday": [[0, 1], [360, 2], [1080, 3]], "weekend": [[0, 1]]}
SIGNATURE_REFUSED = ("commands.signature_refused", "commands.rejected")


@dataclass
class Gateway:
    """The running gateway side and the stand-in head-end that commands it."""

    headend: HeadEnd
    key: Ed25519PrivateKey  # the key the gateway trusts
    control: str  # the simulator's control API
    status: str  # the gateway's status page
    target: str  # the meter the refused commands aim at
    other: str  # another meter on the gateway
    spare: str  # the meter for commands that are meant to run
    lines: list[str]

    def meter(self, drn: str) -> dict[str, Any]:
        return _get_json(f"{self.control}/meters/{drn}")  # type: ignore[no-any-return]

    def counters(self) -> dict[str, int]:
        metrics = _get_json(f"{self.status}/health.json")["metrics"]
        return {k: int(v) for k, v in metrics.items() if k.startswith("commands.")}

    def signed(self, cmd_id: str, kind: CommandType, meter: str, args: dict[str, object],
               not_after: float | None = None) -> Command:  # fmt: skip
        deadline = time.time() + 60 if not_after is None else not_after
        return sign_command(Command(cmd_id, kind, meter, deadline, 2, args), self.key)

    def finish(self, *cmd_ids: str) -> None:
        def final() -> bool:
            return all(
                self.headend.status_of(c)[-1:] in (["applied"], ["rejected"], ["expired"],
                                                   ["failed"])
                for c in cmd_ids
            )  # fmt: skip

        wait_for(final, 30, f"final statuses of {cmd_ids}: "
                 f"{[self.headend.status_of(c) for c in cmd_ids]}")  # fmt: skip


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("authenticity")
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    sim_config = {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(folder / "sim"),
        "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                   "meters": {"count": 3, "first_serial": 6101, "initial_credit_kwh": 30}}],
    }  # fmt: skip
    sim = start_sim(sim_config, folder, [])
    processes = [sim.process]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="headend-auth",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    try:
        drns = {str(m["address"]): m["drn"] for m in sim.meters}
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
        (folder / "headend.pub").write_bytes(public)
        gw_config = {
            "gateway_id": GW,
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10},
            "journal": {"path": str(folder / "journal.db")},
            "headend_public_key_file": str(folder / "headend.pub"),
            "poll_groups": {"status": {"interval_s": 2, "alarm": True}},
            "batch": {"max_readings": 10, "max_delay_s": 1},
            "status_http": 0,
            "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1",
                       "port": sim.tcp_ports[0], "timeout_ms": 500,
                       "meters": [{"address": 1}, {"address": 2}, {"address": 3}]}],
        }  # fmt: skip
        (folder / "gw.yaml").write_text(yaml.safe_dump(gw_config))
        headend = HeadEnd(client)
        client.on_message = headend.on_message
        client.connect("127.0.0.1", broker.port)
        client.subscribe(f"amr/v1/gw/{GW}/#", qos=1)
        client.loop_start()
        gw_lines: list[str] = []
        processes.append(start(["concentrator", "--config", str(folder / "gw.yaml")], "Ctrl-C",
                               gw_lines))  # fmt: skip
        status = re.search(r"status page: (http://\S+)/ ", "".join(gw_lines))
        assert status, "".join(gw_lines)
        gateway = Gateway(headend, key, sim.control, status.group(1), drns["1"], drns["2"],
                          drns["3"], gw_lines)  # fmt: skip
        # the gateway knows its meters (it confirmed each one's identity) before commands come
        wait_for(lambda: {r.meter for b in headend.readings for r in b.readings} >= set(
            drns.values()), 30, "readings from every meter")  # fmt: skip
        yield gateway
    finally:
        client.loop_stop()
        client.disconnect()
        for process in reversed(processes):
            stop(process)
        broker.stop()


def _refused(gateway: Gateway, commands: list[Command], state: str, detail: str,
             counters: tuple[str, ...], reliability: dict[str, object]) -> None:  # fmt: skip
    """Send ``commands`` (aimed at the target meter) and check that each one is refused with
    ``state`` and ``detail``, leaves the meter as it was and is counted in ``counters``."""
    before_meter = gateway.meter(gateway.target)
    before = gateway.counters()
    assert before_meter["relay"] == "closed"
    for command in commands:
        gateway.headend.command(command)
    ids = [c.cmd_id for c in commands]
    gateway.finish(*ids)
    for cmd_id in ids:
        assert gateway.headend.status_of(cmd_id) == ["received", state], cmd_id
        assert detail in gateway.headend.final(cmd_id).detail, gateway.headend.final(cmd_id)
    if state == "rejected":  # the gateway's log names each refused command and why
        wanted = [f"Command {cmd_id} refused: " for cmd_id in ids]
        wait_for(lambda: all(w in "".join(gateway.lines) for w in wanted), 5,
                 f"the gateway's log lines {wanted}")  # fmt: skip
    wait_for(lambda: all(gateway.counters()[c] >= before[c] + len(commands) for c in counters),
             15, f"the refusals counted in {counters}")  # fmt: skip
    after = gateway.counters()
    for name in counters:
        assert after[name] - before[name] == len(commands), (name, before, after)
    after_meter = gateway.meter(gateway.target)
    assert after_meter["relay"] == "closed"  # the disconnect never reached the meter
    assert after_meter["tou_version"] == before_meter["tou_version"]  # nor the TOU table
    reliability["refused"] = len(commands)
    reliability["reached_the_meter"] = 0
    reliability["counted"] = after[counters[0]] - before[counters[0]]


def _next_version(gateway: Gateway) -> int:
    return int(gateway.meter(gateway.target)["tou_version"]) + 10


@pytest.mark.reliability("security", "a correctly signed relay and TOU command are applied "
                         "(the positive control of the refusals below)")  # fmt: skip
def test_a_correctly_signed_command_is_applied(gateway: Gateway,
                                               reliability: dict[str, object]) -> None:  # fmt: skip
    version = int(gateway.meter(gateway.spare)["tou_version"]) + 1
    gateway.headend.command(gateway.signed("ok-off", CommandType.RELAY, gateway.spare,
                                           {"action": "disconnect"}))  # fmt: skip
    gateway.headend.command(gateway.signed("ok-tou", CommandType.TOU, gateway.spare,
                                           {**TABLE, "version": version}))  # fmt: skip
    gateway.finish("ok-off", "ok-tou")
    assert gateway.headend.status_of("ok-off") == ["received", "queued", "sent", "applied"]
    assert gateway.headend.status_of("ok-tou") == ["received", "queued", "sent", "applied"]
    meter = gateway.meter(gateway.spare)
    assert meter["relay"] == "open" and meter["tou_version"] == version
    gateway.headend.command(gateway.signed("ok-on", CommandType.RELAY, gateway.spare,
                                           {"action": "connect"}))  # fmt: skip
    gateway.finish("ok-on")
    assert gateway.meter(gateway.spare)["relay"] == "closed"
    reliability["applied"] = 3


@pytest.mark.reliability("security", "an unsigned relay or TOU command is refused, never "
                         "reaches the meter, and is counted")  # fmt: skip
def test_an_unsigned_command_is_refused(gateway: Gateway,
                                        reliability: dict[str, object]) -> None:  # fmt: skip
    now = time.time()
    commands = [
        Command("unsigned-off", CommandType.RELAY, gateway.target, now + 60, 2,
                {"action": "disconnect"}),
        Command("unsigned-tou", CommandType.TOU, gateway.target, now + 60, 2,
                {**TABLE, "version": _next_version(gateway)}),
    ]  # fmt: skip
    _refused(gateway, commands, "rejected", "is not signed", SIGNATURE_REFUSED, reliability)


@pytest.mark.reliability("security", "a relay or TOU command signed with another Ed25519 key "
                         "is refused, never reaches the meter, and is counted")  # fmt: skip
def test_a_command_signed_by_another_key_is_refused(gateway: Gateway,
                                                    reliability: dict[str, object]) -> None:  # fmt: skip
    intruder = Ed25519PrivateKey.generate()
    now = time.time()
    commands = [
        sign_command(Command("forged-off", CommandType.RELAY, gateway.target, now + 60, 2,
                             {"action": "disconnect"}), intruder),
        sign_command(Command("forged-tou", CommandType.TOU, gateway.target, now + 60, 2,
                             {**TABLE, "version": _next_version(gateway)}), intruder),
    ]  # fmt: skip
    _refused(gateway, commands, "rejected", "does not verify with the head-end's key",
             SIGNATURE_REFUSED, reliability)  # fmt: skip


@pytest.mark.reliability("security", "a validly signed command altered after signing (relay "
                         "action flipped, TOU meter id changed) is refused and counted")  # fmt: skip
def test_a_command_altered_after_signing_is_refused(gateway: Gateway,
                                                    reliability: dict[str, object]) -> None:  # fmt: skip
    # the head-end signed "connect" for the target: the action is flipped to "disconnect"
    connect = gateway.signed("flipped-off", CommandType.RELAY, gateway.target,
                             {"action": "connect"})  # fmt: skip
    flipped = replace(connect, args={"action": "disconnect"})
    # the head-end signed a TOU table for another meter: it is readdressed to the target
    elsewhere = gateway.signed("moved-tou", CommandType.TOU, gateway.other,
                               {**TABLE, "version": _next_version(gateway)})  # fmt: skip
    moved = replace(elsewhere, meter=gateway.target)
    assert flipped.signature == connect.signature and moved.signature == elsewhere.signature
    _refused(gateway, [flipped, moved], "rejected", "does not verify with the head-end's key",
             SIGNATURE_REFUSED, reliability)  # fmt: skip
    assert gateway.meter(gateway.other)["tou_version"] != elsewhere.args["version"]


@pytest.mark.reliability("security", "a signed command past its not_after is refused as "
                         "expired, never reaches the meter, and is counted")  # fmt: skip
def test_an_expired_command_is_refused(gateway: Gateway,
                                       reliability: dict[str, object]) -> None:  # fmt: skip
    past = time.time() - 5
    commands = [
        gateway.signed("stale-off", CommandType.RELAY, gateway.target, {"action": "disconnect"},
                       not_after=past),
        gateway.signed("stale-tou", CommandType.TOU, gateway.target,
                       {**TABLE, "version": _next_version(gateway)}, not_after=past),
    ]  # fmt: skip
    _refused(gateway, commands, "expired", "not_after has passed", ("commands.expired",),
             reliability)  # fmt: skip


@pytest.mark.reliability("security", "a validly signed command replayed with the cmd_id of one "
                         "that already ran is ignored (the meter keeps its later state) and "
                         "counted")  # fmt: skip
def test_a_replayed_command_is_ignored(gateway: Gateway,
                                       reliability: dict[str, object]) -> None:  # fmt: skip
    meter = gateway.spare
    version = int(gateway.meter(meter)["tou_version"]) + 1
    disconnect = gateway.signed("once-off", CommandType.RELAY, meter, {"action": "disconnect"})
    table = gateway.signed("once-tou", CommandType.TOU, meter, {**TABLE, "version": version})
    gateway.headend.command(disconnect)
    gateway.headend.command(table)
    gateway.finish("once-off", "once-tou")
    assert gateway.meter(meter)["relay"] == "open"
    # the operator reconnects and loads a newer table: the state the replay would undo
    gateway.headend.command(gateway.signed("then-on", CommandType.RELAY, meter,
                                           {"action": "connect"}))  # fmt: skip
    gateway.headend.command(gateway.signed("then-tou", CommandType.TOU, meter,
                                           {**TABLE, "version": version + 1}))  # fmt: skip
    gateway.finish("then-on", "then-tou")
    assert gateway.meter(meter)["relay"] == "closed"
    before = gateway.counters()
    gateway.headend.command(disconnect)  # the very same bytes, as captured off the wire
    gateway.headend.command(table)
    wait_for(lambda: gateway.counters()["commands.repeated"] >= before["commands.repeated"] + 2,
             15, "the replays counted")  # fmt: skip
    after = gateway.counters()
    assert after["commands.repeated"] - before["commands.repeated"] == 2
    # no second run: each command's statuses are those of its one run
    assert gateway.headend.status_of("once-off") == ["received", "queued", "sent", "applied"]
    assert gateway.headend.status_of("once-tou") == ["received", "queued", "sent", "applied"]
    state = gateway.meter(meter)
    assert state["relay"] == "closed" and state["tou_version"] == version + 1
    reliability["replayed"] = 2
    reliability["reached_the_meter"] = 0
    reliability["counted"] = after["commands.repeated"] - before["commands.repeated"]
