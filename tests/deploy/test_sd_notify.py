"""The daemons speak systemd's notification protocol, so their ``Type=notify`` units with
``WatchdogSec=`` work: READY=1 once started, WATCHDOG=1 every WatchdogSec/2, STOPPING=1 at shutdown.

systemd's side is played by a real AF_UNIX datagram socket bound in the test's folder; the daemons
are the real ``amr concentrator`` and ``amr headend`` processes (no broker, no meters: they start
and retry in the background, which is what they do on a gateway whose GPRS is not up yet).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from twisted.internet import task

from headend.cli.sdnotify import SystemdNotifier, start_watchdog
from tests.support.mosquitto import free_port

AMR = Path(sys.executable).with_name("amr")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """systemd's end: a datagram socket bound to a path, as $NOTIFY_SOCKET names it."""
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 107 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.05)
    try:
        yield str(path), sock
    finally:
        sock.close()


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages


def _until(sock: socket.socket, wanted: list[str], timeout_s: float) -> list[str]:
    """Datagrams received until each of ``wanted`` has come, in that order."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got += _drain(sock)
        remaining = iter(got)
        if all(any(message == w for message in remaining) for w in wanted):
            return got
    raise AssertionError(f"wanted {wanted} in order within {timeout_s} s, got {got}")


# -- the client ---------------------------------------------------------------------------------


def test_notify_sends_one_datagram_to_the_socket(receiver: tuple[str, socket.socket]) -> None:
    address, sock = receiver
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.notify("READY=1", "STATUS=polling 3 buses")
    assert _drain(sock) == ["READY=1\nSTATUS=polling 3 buses"]
    notifier.close()


def test_an_abstract_socket_is_reached_through_its_at_sign() -> None:
    name = f"amr-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(1)
        notifier = SystemdNotifier(f"@{name}")
        assert notifier.notify("READY=1")
        assert sock.recv(100) == b"READY=1"
        notifier.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    quiet = SystemdNotifier.from_environment({"WATCHDOG_USEC": "30000000"})
    assert not quiet.enabled
    assert not quiet.notify("READY=1")
    assert quiet.watchdog_interval_s is None
    assert start_watchdog(quiet, task.Clock()) is None
    # a socket that is gone (systemd restarted): the daemon carries on
    gone = SystemdNotifier(str(tmp_path / "nobody-listens.sock"))
    assert not gone.notify("WATCHDOG=1")
    gone.close()


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    environ: dict[str, str], interval_s: float | None
) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@x", **environ}, pid=4242)
    assert notifier.watchdog_interval_s == interval_s


def test_the_watchdog_pings_on_the_reactor_clock(receiver: tuple[str, socket.socket]) -> None:
    address, sock = receiver
    clock = task.Clock()
    notifier = SystemdNotifier.from_environment(
        {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000"}
    )
    loop = start_watchdog(notifier, clock)
    assert _drain(sock) == ["WATCHDOG=1"]  # at once
    clock.advance(14.9)
    assert _drain(sock) == []
    clock.advance(0.1)
    assert _drain(sock) == ["WATCHDOG=1"]
    clock.pump([15.0] * 4)
    assert _drain(sock) == ["WATCHDOG=1"] * 4
    loop.stop()
    notifier.close()


# -- the daemons ----------------------------------------------------------------------------------


def _concentrator(folder: Path) -> list[str]:
    config = {
        "gateway_id": "gw-notify",
        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # no broker: it keeps retrying
        "journal": {"path": str(folder / "journal.db")},
        "buses": [
            {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": free_port(),
             "timeout_ms": 200, "meters": [{"address": 1}]},
        ],
    }  # fmt: skip
    (folder / "gw.yaml").write_text(yaml.safe_dump(config))
    return ["concentrator", "--config", str(folder / "gw.yaml")]


def _headend(folder: Path) -> list[str]:
    config = {
        "database": {"url": f"sqlite:///{folder / 'headend.db'}"},
        "mqtt": {"host": "127.0.0.1", "port": free_port()},
        "keys": {"signing_key_file": str(folder / "signing.pem")},
        "api": {"host": "127.0.0.1", "port": 0},
    }
    (folder / "headend.yaml").write_text(yaml.safe_dump(config))
    return ["headend", "--config", str(folder / "headend.yaml")]


@pytest.mark.integration
@pytest.mark.parametrize("daemon", [_concentrator, _headend], ids=["concentrator", "headend"])
def test_a_daemon_tells_systemd_ready_keeps_the_watchdog_fed_and_says_stopping(
    tmp_path: Path, receiver: tuple[str, socket.socket], daemon: object
) -> None:
    address, sock = receiver
    assert callable(daemon)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "600000",  # WatchdogSec=0.6: a ping every 0.3 s
        "AMR_MASTER_KEY": secrets.token_hex(32),
    }
    env.pop("WATCHDOG_PID", None)
    process = subprocess.Popen(
        [str(AMR), *daemon(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        got = _until(sock, ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"], 30)
        assert got[0] == "READY=1", got  # nothing before start-up is done
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "STOPPING=1" in _drain(sock)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        errors = process.stderr.read().decode(errors="replace")
        process.stderr.close()
    assert "Traceback" not in errors, errors
