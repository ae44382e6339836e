"""Debian packages the integration tests need, installed on first use when missing.

CI and the developers' machines run as root on Debian, so a missing tool is installed with
apt-get rather than skipped: a skipped integration test would hide a broken feature.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess

import pytest

__all__ = ["ensure_commands", "install_packages"]

_state = {"updated": False}


def ensure_commands(*commands: str, packages: dict[str, str] | None = None) -> None:
    """Make sure every command is on PATH, installing its Debian package if needed."""
    missing = [c for c in commands if shutil.which(c) is None]
    if not missing:
        return
    names = [(packages or {}).get(c, c) for c in missing]
    install_packages(*names)
    still = [c for c in commands if shutil.which(c) is None]
    if still:
        pytest.fail(f"{', '.join(still)} still missing after installing {', '.join(names)}")


def install_packages(*names: str) -> None:
    """apt-get install the packages, non-interactively (for programs not on PATH, too).

    Test processes running side by side (pytest-xdist workers) take turns: apt-get holds dpkg's
    lock and refuses a second install at the same time."""
    with open("/tmp/amr-tests-apt.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _install(names)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install(names: tuple[str, ...]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if not _state["updated"]:
            subprocess.run(
                ["apt-get", "update", "-qq"], check=True, capture_output=True, env=env, timeout=600
            )
            _state["updated"] = True
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *names],
            check=True,
            capture_output=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=900,
        )
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", None) or b""
        pytest.fail(
            f"cannot install {', '.join(names)} with apt-get (needed by this test): {exc}\n"
            + output.decode(errors="replace")[-2000:]
        )
