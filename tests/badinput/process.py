"""A real ``amr headend`` process for the bad-input suite: SQLite, a real Mosquitto, an admin
user made with ``amr user add`` and logged in through the API (as tests/headend/test_end_to_end.py
starts one)."""

from __future__ import annotations

import contextlib
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.api import Api
from tests.support.gateway import add_admin, start_headend, stop
from tests.support.mosquitto import Mosquitto

__all__ = ["Headend", "running_headend"]

PASSWORD = "correct horse battery staple"
MASTER_KEY = "5a" * 32


@dataclass
class Headend:
    process: subprocess.Popen[str]
    broker: Mosquitto
    db_path: Path
    api: Api  # logged in as an admin
    log: list[str]

    @property
    def base(self) -> str:
        return self.api.base

    def metrics(self) -> dict[str, float]:
        """The head-end's /metrics, name -> value (samples without labels)."""
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        found = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if line and not line.startswith("#") and "{" not in name:
                found[name] = float(value)
        return found


@contextlib.contextmanager
def running_headend(folder: Path) -> Iterator[Headend]:
    folder.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    processes: list[subprocess.Popen[str]] = []
    lines: list[str] = []
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AMR_MASTER_KEY", MASTER_KEY)
            env.setenv("AMR_TEST_PASSWORD", PASSWORD)
            db_path = folder / "headend.db"
            config = {
                "database": {"url": f"sqlite:///{db_path}"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10},
                "keys": {"signing_key_file": str(folder / "signing.pem")},
                "api": {"host": "127.0.0.1", "port": 0},
                "commands": {"dispatch_interval_s": 0.5},
            }
            path = folder / "headend.yaml"
            path.write_text(yaml.safe_dump(config))
            add_admin(path)
            process, base = start_headend(path, lines)
            processes.append(process)
        api = Api(base).login("admin", PASSWORD)
        yield Headend(process, broker, db_path, api, lines)
    finally:
        for process in processes:
            stop(process)
        broker.stop()
