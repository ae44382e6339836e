"""The production Mosquitto configuration (deploy/mosquitto/), run for real on a loopback port.

The shipped ``mosquitto.conf`` is the one tested: ``render_config`` moves its absolute paths into a
scratch folder and its listener onto ``127.0.0.1:PORT``, and refuses to render a file in which one
of the expected lines or paths is missing or a path it does not know remains, so the shipped file
cannot drift away from what the tests run. The files it names are laid out as docs/deploy.md
installs them (``/etc/mosquitto/amr/{ca.pem,server.pem,server.key,crl.pem,acl}``).
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .debian import ensure_commands
from .mosquitto import free_port, spawn_mosquitto

__all__ = ["DEPLOY", "TlsMosquitto", "install_broker_files", "render_config"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
# production path prefix -> folder under the scratch root
_PATHS = {
    "/etc/mosquitto/amr/": "etc",
    "/var/lib/mosquitto/": "data",
    "/var/log/mosquitto/": "log",
    "/run/mosquitto/": "run",
}
_ABSOLUTE = re.compile(r"(?<![\w.])/(?:etc|var|run|usr|home|tmp|srv|opt)/\S*")


def render_config(text: str, root: Path, port: int) -> str:
    """The production config with its paths under ``root`` and its listener on 127.0.0.1:port."""
    listener = "\nlistener 8883\n"
    user = "\nuser mosquitto\n"
    for needed in (listener, user, *_PATHS):
        if needed not in text:
            raise ValueError(f"the shipped mosquitto.conf no longer has {needed.strip()!r}")
    text = text.replace(listener, f"\nlistener {port} 127.0.0.1\n")
    # the tests' files belong to whoever runs them (root on CI), not to a mosquitto user
    text = text.replace(user, f"\nuser {getpass.getuser()}\n")
    for prefix, folder in _PATHS.items():
        text = text.replace(prefix, f"{root / folder}/")
    settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    left = [path for path in _ABSOLUTE.findall(settings) if not path.startswith(str(root))]
    if left:
        raise ValueError(f"the shipped mosquitto.conf names paths the test cannot move: {left}")
    return text


def install_broker_files(pki: Path, root: Path, server: str) -> Path:
    """Copy the CA, the server's certificate and key, the CRL and the shipped ACL where the
    config expects them (what docs/deploy.md does with ``install``); returns that folder."""
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pki / "ca.pem", etc / "ca.pem")
    shutil.copyfile(pki / "certs" / f"{server}.pem", etc / "server.pem")
    shutil.copyfile(pki / "private" / f"{server}.key", etc / "server.key")
    os.chmod(etc / "server.key", 0o600)
    shutil.copyfile(pki / "crl.pem", etc / "crl.pem")
    shutil.copyfile(DEPLOY / "acl", etc / "acl")
    return etc


@dataclass
class TlsMosquitto:
    """Mosquitto run with the rendered production config."""

    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.root / "log" / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        ensure_commands("mosquitto")
        if not self.port:
            self.port = free_port()
        for folder in _PATHS.values():
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        config = self.root / "mosquitto.conf"
        config.write_text(
            render_config((DEPLOY / "mosquitto.conf").read_text(), self.root, self.port)
        )
        self.process = spawn_mosquitto(
            config, self.port, self.root / "stderr.log", lambda: self.log
        )

    def wait_for_log(self, text: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto never logged {text!r}:\n{self.log}")
            time.sleep(0.02)

    def reload(self) -> None:
        """SIGHUP, as ``systemctl reload mosquitto``; returns once the broker says it reloaded."""
        assert self.process is not None
        before = self.log.count("Reloading config")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log.count("Reloading config") == before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not reload:\n{self.log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(timeout=15)
        self.process = None
