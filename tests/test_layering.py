"""The house rule that ``protocols/`` is pure: importing all of it pulls in no I/O framework."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import protocols

FORBIDDEN = ("twisted", "sqlalchemy", "paho", "serial", "socket", "logging", "asyncio")


def test_protocols_import_no_io_frameworks() -> None:
    modules = [m.name for m in pkgutil.walk_packages(protocols.__path__, "protocols.")]
    assert "protocols.sts.codec" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"protocols/ imported {out.stdout.strip()}"
