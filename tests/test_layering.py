"""House rules on layering (STYLE.md rule 1 and 5).

* ``protocols/`` is pure: importing all of it pulls in no I/O framework, and its own source imports
  no I/O or clock module. (pymodbus itself imports asyncio, logging and socket; that is why it may
  be imported by one adapter module only, and why the framework check looks at frameworks.)
* pymodbus sits behind exactly one adapter module.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import protocols

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("twisted", "sqlalchemy", "paho", "serial")
IO_MODULES = {
    "socket",
    "asyncio",
    "logging",
    "time",
    "select",
    "selectors",
    "subprocess",
    "threading",
}
PYMODBUS_ADAPTER = ROOT / "protocols" / "modbus" / "adapter.py"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_protocols_import_no_io_frameworks() -> None:
    modules = [m.name for m in pkgutil.walk_packages(protocols.__path__, "protocols.")]
    assert "protocols.sts.codec" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"protocols/ imported {out.stdout.strip()}"


def test_protocols_source_imports_no_io_or_clock() -> None:
    offenders = {}
    for path in sorted((ROOT / "protocols").rglob("*.py")):
        bad = _imports(path) & IO_MODULES
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_pymodbus_only_behind_its_adapter() -> None:
    users = [
        str(path.relative_to(ROOT))
        for package in ("protocols", "headend", "concentrator", "simulator")
        for path in sorted((ROOT / package).rglob("*.py"))
        if "pymodbus" in _imports(path) and path != PYMODBUS_ADAPTER
    ]
    assert users == []
