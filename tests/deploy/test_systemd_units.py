"""The shipped systemd units (deploy/systemd/) are valid, start the right command, restart on
failure with the watchdog the daemons feed (test_sd_notify.py), and are locked down.

``systemd-analyze verify`` checks each unit when it is installed (with ``ExecStart``'s program
moved to this virtual environment's ``amr``, since verify insists that it exists); the key checks
below run in any case.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from headend.cli.main import build_parser

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_AMR = "/opt/amr-sts/.venv/bin/amr"
# keys of systemd >= 254 that older versions (Debian 12 has 252) warn about and ignore
NEWER_KEYS = {"RestartSteps", "RestartMaxDelaySec"}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
}
DAEMONS = {"amr-headend.service": "headend", "amr-concentrator.service": "concentrator"}

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> (key, value) in order; a key may repeat (DeviceAllow=)."""
    unit: Unit = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        key, equals, value = line.partition("=")
        assert section is not None and equals, f"not a unit file line: {line!r}"
        unit[section].append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [value for k, value in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= appears {len(found)} times"
    return found[0]


def unit_problems(name: str, unit: Unit) -> list[str]:
    """What a unit lacks of what the deployment guide promises."""
    problems = []
    want = {"Type": "notify", "WatchdogSec": "30", "Restart": "on-failure", **HARDENING}
    for key, value in want.items():
        if values(unit, "Service", key) != [value]:
            problems.append(f"{key}={value} missing (has {values(unit, 'Service', key)})")
    if not values(unit, "Service", "RestartSec"):
        problems.append("no RestartSec: restarts would hammer")
    if values(unit, "Service", "User") in ([], ["root"]):
        problems.append("runs as root")
    data = "/var/lib/amr"
    if values(unit, "Service", "ReadWritePaths") != [data]:
        problems.append(f"ReadWritePaths is not the data folder {data}")
    if values(unit, "Service", "WorkingDirectory") != [data]:
        problems.append(f"WorkingDirectory is not {data}")
    if name == "amr-concentrator.service":
        if "dialout" not in " ".join(values(unit, "Service", "SupplementaryGroups")).split():
            problems.append("no dialout group: the serial ports are closed to it")
        allowed = {v.split()[0] for v in values(unit, "Service", "DeviceAllow")}
        if not {"char-ttyS", "char-ttyUSB"} <= allowed:
            problems.append(f"DeviceAllow lacks the serial ports: {sorted(allowed)}")
    return problems


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_the_unit_restarts_watches_and_confines_its_daemon(name: str) -> None:
    unit = parse_unit((UNITS / name).read_text())
    assert unit_problems(name, unit) == []
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_exec_start_is_an_amr_command_that_exists(name: str) -> None:
    command = shlex.split(one(parse_unit((UNITS / name).read_text()), "Service", "ExecStart"))
    assert command[0] == INSTALLED_AMR
    assert command[1] == DAEMONS[name]
    build_parser().parse_args(command[1:])  # exits (fails the test) if the command is wrong


def test_the_key_checks_can_fail() -> None:
    text = (UNITS / "amr-concentrator.service").read_text()
    weakened = text.replace("ProtectSystem=strict", "ProtectSystem=full").replace(
        "SupplementaryGroups=dialout", ""
    )
    problems = unit_problems("amr-concentrator.service", parse_unit(weakened))
    assert len(problems) == 2, problems
    assert unit_problems("amr-headend.service", parse_unit(text.replace("User=", "#"))) != []


def _systemd_version() -> int:
    out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"systemd (\d+)", out.stdout)
    return int(match.group(1)) if match else 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    amr = str(Path(sys.executable).with_name("amr"))
    copies = []
    for name in sorted(DAEMONS):
        text = (UNITS / name).read_text()
        assert text.count(INSTALLED_AMR) == 1
        (tmp_path / name).write_text(text.replace(INSTALLED_AMR, amr))
        copies.append(str(tmp_path / name))
    run = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *copies],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    complaints = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    if _systemd_version() < 254:
        complaints = [c for c in complaints if not any(f"'{k}'" in c for k in NEWER_KEYS)]
    assert run.returncode == 0 and complaints == [], "\n".join(complaints)
