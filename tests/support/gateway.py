"""Helpers to run the whole gateway side for tests: processes, and a stand-in head-end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from protocols.link import (
    Ack,
    Command,
    CommandStatus,
    EventBatch,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    to_ranges,
)

__all__ = [
    "AMR",
    "GW",
    "HeadEnd",
    "add_admin",
    "contiguous",
    "first_arrivals",
    "start",
    "start_headend",
    "stop",
    "wait_for",
]

AMR = Path(sys.executable).with_name("amr")
GW = "gw-test"


@dataclass
class HeadEnd:
    """A stand-in head-end: records what the gateway sends, acknowledges readings."""

    client: mqtt.Client
    readings: list[ReadingBatch] = field(default_factory=list)
    events: list[EventBatch] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)
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
            if isinstance(decoded, ReadingBatch | EventBatch):
                self.arrivals.append(decoded.seq)
            if isinstance(decoded, EventBatch):
                self.events.append(decoded)
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


def start(args: list[str], ready: str, lines: list[str],
          prefix: Sequence[str] = ()) -> subprocess.Popen[str]:  # fmt: skip
    """``amr *args``, once it has printed ``ready``; its output goes on into ``lines``.

    ``prefix`` runs it under a wrapper that execs it (``env``, ``ip netns exec``), so that the
    process is still the one a signal reaches."""
    process = subprocess.Popen(
        [*prefix, str(AMR), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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


@dataclass
class Sim:
    """A running ``amr sim``: its Modbus TCP ports (in bus order), control API and meters."""

    process: subprocess.Popen[str]
    tcp_ports: list[int]
    control: str  # http://127.0.0.1:port
    meters: list[dict[str, Any]]  # as GET /meters lists them (drn, bus, address, ...)


def start_sim(config: dict[str, Any], folder: Path, lines: list[str], *options: str) -> Sim:
    """Write ``config`` to ``folder/sim.yaml`` and start ``amr sim`` on it (control API on)."""
    (folder / "sim.yaml").write_text(yaml.safe_dump(config))
    process = start(["sim", "--config", str(folder / "sim.yaml"), *options], "Ctrl-C", lines)
    text = "".join(lines)
    ports = [int(p) for p in re.findall(r"modbus-tcp 127\.0\.0\.1:(\d+)", text)]
    control = re.search(r"control API: (http://\S+)/meters", text)
    assert control, text
    with urllib.request.urlopen(f"{control.group(1)}/meters", timeout=5) as reply:
        meters: list[dict[str, Any]] = json.load(reply)
    return Sim(process, ports, control.group(1), meters)


def add_admin(config: Path, lines: list[str] | None = None) -> None:
    """``amr user add`` of the administrator ``admin``, its password from $AMR_TEST_PASSWORD."""
    added = start(["user", "add", "--config", str(config), "--username", "admin", "--role",
                   "admin", "--password-env", "AMR_TEST_PASSWORD"], "created",
                  [] if lines is None else lines)  # fmt: skip
    assert added.wait(timeout=60) == 0
    stop(added)


def start_headend(config: Path, lines: list[str],
                  *options: str) -> tuple[subprocess.Popen[str], str]:  # fmt: skip
    """``amr headend``, started; and the base URL of its API, as it printed it."""
    process = start(["headend", "--config", str(config), *options], "amr headend:", lines)
    port = re.search(r"API on http://127\.0\.0\.1:(\d+)/", "".join(lines))
    assert port, "".join(lines)
    return process, f"http://127.0.0.1:{port.group(1)}"


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def contiguous(seqs: list[int]) -> bool:
    """True when the distinct seqs are exactly 1..max (nothing lost)."""
    unique = set(seqs)
    return bool(unique) and unique == set(range(1, max(unique) + 1))


def first_arrivals(seqs: list[int]) -> list[int]:
    """The seqs in the order they first arrived (resends dropped, as the head-end drops them)."""
    seen: set[int] = set()
    order = []
    for seq in seqs:
        if seq not in seen:
            seen.add(seq)
            order.append(seq)
    return order
