"""``amr demo`` as a person runs it: one command, then a vend that reaches a simulated meter, then
Ctrl-C stops everything it started."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.api import Api
from tests.support.gateway import start, wait_for

pytestmark = pytest.mark.integration


def _running(folder: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", str(folder)], capture_output=True, text=True,
                           check=False)  # fmt: skip
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_the_demo_vends_to_a_simulated_meter_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    lines: list[str] = []
    demo = start(["demo", "--dir", str(folder), "--api-port", "0", "--meters", "3",
                  "--broker", "embedded"], "Ctrl-C stops everything", lines)  # fmt: skip
    try:
        text = "".join(lines)
        base = re.search(r"head-end\s+(http://127\.0\.0\.1:\d+)/api/v1/openapi\.json", text)
        login = re.search(r"login\s+(\S+) / (\S+)", text)
        meter = re.search(r'"meter_id": "(\d+)"', text)
        assert base and login and meter, text
        interface = re.search(r"interface\s+(http://127\.0\.0\.1:\d+/ui/)", text)
        assert interface and interface.group(1) == f"{base.group(1)}/ui/", text
        with urllib.request.urlopen(interface.group(1), timeout=10) as page:
            assert b'<nav aria-label="Main"' in page.read()
        api = Api(base.group(1)).login(login.group(1), login.group(2))
        wait_for(lambda: any(m["id"] == meter.group(1)
                             for m in api.get("/api/v1/meters?limit=100")["items"]), 60,
                 "the demo's meters registered")  # fmt: skip
        wait_for(lambda: _account(api, meter.group(1)) > 0, 30, "the demo's accounts")
        vend = api.post("/api/v1/vends", {"meter_id": meter.group(1), "amount_minor": 5000})
        assert len(vend["tokens"][0].replace(" ", "")) == 20

        def applied() -> bool:
            return bool(api.get(f"/api/v1/vends/{vend['id']}")["delivery"]["state"] == "applied")

        wait_for(applied, 60, "the token applied by the simulated meter")
        assert _running(folder), "the demo's processes"
    finally:
        demo.send_signal(signal.SIGINT)
        status = demo.wait(timeout=60)
        time.sleep(0.5)  # the reader thread takes the last lines
        if demo.stdout is not None:
            demo.stdout.close()
    assert status == 0, "".join(lines[-30:])
    deadline = time.monotonic() + 20
    while _running(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(folder), _running(folder)


def _account(api: Api, meter_id: str) -> int:
    meter = api.get(f"/api/v1/meters/{meter_id}")
    return int(meter["account"]["id"]) if meter["account"] else 0


def test_the_demo_stops_with_a_clear_message_when_its_port_is_taken(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "headend.cli.main", "demo", "--dir", str(folder),
                               "--api-port", str(port), "--meters", "1", "--broker", "embedded"],
                              capture_output=True, text=True, timeout=90, check=False)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"Couldn't listen on 127.0.0.1:{port}" in done.stderr
    deadline = time.monotonic() + 20
    while _running(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(folder), _running(folder)
