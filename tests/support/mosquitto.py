"""A real Mosquitto broker for integration tests, on a free loopback port.

Persistence is on and ``max_queued_messages`` is far above Mosquitto's default of 1000 (which
silently drops messages for a slow subscriber), as in the project's deployment config.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .debian import ensure_commands

__all__ = ["Mosquitto", "free_port", "spawn_mosquitto"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spawn_mosquitto(config: Path, port: int, stderr: Path,
                    log: Callable[[], str] = lambda: "") -> subprocess.Popen[bytes]:  # fmt: skip
    """``mosquitto -c config``, its stderr appended to ``stderr``, once it accepts connections on
    127.0.0.1:port; RuntimeError with what it said (and ``log()``) when it does not within 15 s."""
    with stderr.open("ab") as err:
        process = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=err)  # fmt: skip
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                said = stderr.read_text(errors="replace")
                raise RuntimeError(
                    f"mosquitto did not start on port {port}:\n{said}\n{log()}".rstrip()
                ) from None
            time.sleep(0.05)


@dataclass
class Mosquitto:
    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ensure_commands("mosquitto")
        if not self.port:
            self.port = free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.folder}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
        )
        self.process = spawn_mosquitto(config, self.port, self.folder / "mosquitto.log")

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=15)
        self.process = None
