"""docs/deploy.md works: its commands exist, its configurations are valid, its paths are the shipped
files' paths, and its two configurations run the real daemons through the shipped broker.

* **Commands.** Every ``amr`` command in the guide's ``sh`` blocks (non-comment lines) and
  ``console`` blocks (``$ `` lines), also behind ``runuser -u USER --``, parses with the real
  parser, and ``amr <its subcommands> --help`` runs (a real process) and exits 0.
* **Configurations.** The ``yaml`` block headed ``# /etc/amr/headend.yaml`` is a valid head-end
  configuration, the one headed ``# /etc/amr/concentrator.yaml`` a valid gateway configuration.
* **Paths.** The files the shipped Mosquitto config and systemd units name are the ones the guide
  installs.
* **End to end.** The two configurations, with their paths moved into a scratch folder, the
  broker's name to 127.0.0.1 and SQLite for PostgreSQL, run ``amr headend`` and
  ``amr concentrator`` through the shipped Mosquitto config with ``amr pki`` certificates, until
  the head-end has registered the gateway (its retained state, published by a client that the
  ACL confines by its certificate's name).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import concentrator.config
import headend.config
from headend.cli.main import build_parser
from headend.pki import CertificateAuthority, CertKind
from tests.support.mosquitto_tls import TlsMosquitto, install_broker_files
from tests.support.shell import simple_commands

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deploy.md"
AMR = Path(sys.executable).with_name("amr")
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
REDIRECTIONS = {"<", ">", ">>", "2>", "2>&1"}


def blocks(text: str) -> list[tuple[str, int, str]]:
    """(info word, first line number, content) of each fenced block."""
    return [
        (m.group(1), text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in BLOCK.finditer(text)
    ]


def command_lines(text: str) -> list[tuple[int, str]]:
    """(line, command) of every shell command shown: sh lines and console ``$ `` lines."""
    found = []
    for kind, first, body in blocks(text):
        if kind not in ("sh", "console"):
            continue
        for offset, line in enumerate(body.splitlines()):
            if kind == "console":
                if line.startswith("$ "):
                    found.append((first + offset, line[2:]))
            elif line.strip() and not line.lstrip().startswith("#"):
                found.append((first + offset, line))
    return found


def amr_commands(line: str) -> list[list[str]]:
    """The arguments after ``amr`` of every amr command on a line (also after runuser ... --)."""
    segments = simple_commands(line)
    commands = []
    for segment in segments:
        runuser = segment[:1] == ["runuser"] and "--" in segment
        words = segment[segment.index("--") + 1 :] if runuser else segment
        if words and (words[0] == "amr" or words[0].endswith("/amr")):
            args = []
            for token in words[1:]:
                if token in REDIRECTIONS:
                    break
                args.append(token)
            commands.append(args)
    return commands


def parse_problem(args: list[str]) -> str | None:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return errors.getvalue().strip() or f"exit status {exc.code}"
    return None


def subcommands(args: list[str]) -> tuple[str, ...]:
    """The subcommand words of ``amr ARGS`` (``db --config F upgrade`` -> ``db upgrade``)."""
    parser: argparse.ArgumentParser = build_parser()
    path: list[str] = []
    for token in args:
        choices: dict[str, Any] = {}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                choices = dict(action.choices)
        if token in choices:
            path.append(token)
            parser = choices[token]
    return tuple(path)


def yaml_block(text: str, heading: str) -> dict[str, Any]:
    found = [body for kind, _, body in blocks(text) if kind == "yaml" and body.startswith(heading)]
    assert len(found) == 1, f"{len(found)} yaml blocks start with {heading!r}"
    data = yaml.safe_load(found[0])
    assert isinstance(data, dict)
    return data


TEXT = GUIDE.read_text()
AMR_LINES = [(number, args) for number, line in command_lines(TEXT) for args in amr_commands(line)]
HELP_PATHS = sorted({subcommands(args) for _, args in AMR_LINES})


def test_the_guide_uses_the_commands_it_promises() -> None:
    used = {path[:2] for path in HELP_PATHS}
    assert {("pki", "init"), ("pki", "issue"), ("pki", "revoke"), ("pki", "crl"), ("pki", "list"),
            ("db", "upgrade"), ("user", "add")} <= used  # fmt: skip
    assert "systemctl enable --now amr-headend" in TEXT
    assert "systemctl enable --now amr-concentrator" in TEXT


@pytest.mark.parametrize(("number", "args"), AMR_LINES, ids=[f"line {n}" for n, _ in AMR_LINES])
def test_every_amr_command_parses(number: int, args: list[str]) -> None:
    assert parse_problem(args) is None, f"{GUIDE.name} line {number}: amr {shlex.join(args)}"


@pytest.mark.parametrize("path", HELP_PATHS, ids=[" ".join(p) for p in HELP_PATHS])
def test_amr_help_runs_for_every_command_of_the_guide(path: tuple[str, ...]) -> None:
    run = subprocess.run(
        [str(AMR), *path, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: amr {' '.join(path)}"), run.stdout[:200]


def test_a_wrong_command_is_found() -> None:
    commands = amr_commands("runuser -u amr -- amr db --config x.yaml upgrad && amr pki issu")
    assert commands == [["db", "--config", "x.yaml", "upgrad"], ["pki", "issu"]]
    assert all(parse_problem(args) is not None for args in commands)
    assert subcommands(["db", "--config", "x.yaml", "upgrade"]) == ("db", "upgrade")


def test_the_configurations_of_the_guide_are_valid() -> None:
    central = headend.config.parse_config(yaml_block(TEXT, "# /etc/amr/headend.yaml"))
    gateway = concentrator.config.parse_config(yaml_block(TEXT, "# /etc/amr/concentrator.yaml"))
    assert central.mqtt.tls is not None and gateway.mqtt.tls is not None
    assert central.mqtt.port == gateway.mqtt.port == 8883
    assert central.mqtt.host == gateway.mqtt.host == "mqtt.example.org"
    # the head-end's certificate name is one the shipped ACL grants the tree to
    acl = (ROOT / "deploy" / "mosquitto" / "acl").read_text()
    assert f"\nuser {central.node_id}\ntopic readwrite amr/v1/#\n" in acl
    assert f"/{central.node_id}.pem" in str(central.mqtt.tls.cert_file)
    assert f"/{gateway.gateway_id}.pem" in str(gateway.mqtt.tls.cert_file)


def test_the_guide_installs_the_files_the_shipped_configs_name() -> None:
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    named = set(re.findall(r"^\w+ (/etc/mosquitto/amr/\S+)$", conf, re.M))
    assert len(named) == 5, named
    for path in named:
        assert f" {path}\n" in TEXT, f"the guide never installs {path}"
    assert "listener 8883\n" in conf and "port: 8883" in TEXT
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        text = unit.read_text()
        config = re.search(r"^ExecStart=\S+ \w+ --config (\S+)$", text, re.M)
        assert config is not None
        assert f"# {config.group(1)}" in TEXT, f"{unit.name} runs {config.group(1)}"
        assert f"/opt/amr-sts/deploy/systemd/{unit.name} /etc/systemd/system/{unit.name}" in TEXT
        assert "\nUser=amr\n" in text and "--groups dialout amr" in TEXT


# -- end to end -----------------------------------------------------------------------------------


def _moved(data: Any, root: Path, port: int) -> Any:
    """The configuration with /etc/amr and /var/lib/amr under ``root`` and the broker local."""
    text = yaml.safe_dump(data)
    text = text.replace("/etc/amr/", f"{root}/etc/amr/").replace("/var/lib/amr/", f"{root}/var/")
    text = text.replace("mqtt.example.org", "127.0.0.1").replace("port: 8883", f"port: {port}")
    return yaml.safe_load(text)


def _wait(condition: Any, timeout_s: float, what: str, processes: list[Any]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process in processes:
            assert process.poll() is None, f"{process.args} exited: {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.integration
def test_the_guides_configurations_connect_through_the_shipped_broker(tmp_path: Path) -> None:
    central = yaml_block(TEXT, "# /etc/amr/headend.yaml")
    gateway = yaml_block(TEXT, "# /etc/amr/concentrator.yaml")
    ca = CertificateAuthority.init(tmp_path / "pki")
    ca.issue(CertKind.SERVER, "127.0.0.1")  # the broker's name, as the clients will reach it
    ca.issue(CertKind.HEADEND, central["node_id"])
    ca.issue(CertKind.GATEWAY, gateway["gateway_id"])
    install_broker_files(tmp_path / "pki", tmp_path / "broker", "127.0.0.1")
    broker = TlsMosquitto(tmp_path / "broker")
    broker.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        central = _moved(central, tmp_path, broker.port)
        gateway = _moved(gateway, tmp_path, broker.port)
        db = tmp_path / "headend.db"
        central["database"]["url"] = f"sqlite:///{db}"
        # the files, where sections 6 and 7 install them
        for config in (central, gateway):
            tls = config["mqtt"]["tls"]
            name = Path(tls["cert_file"]).stem
            Path(tls["ca_file"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ca.ca_cert_path, tls["ca_file"])
            shutil.copyfile(ca.cert_path(name), tls["cert_file"])
            shutil.copyfile(ca.key_path(name), tls["key_file"])
        Path(central["keys"]["master_key_file"]).write_text(secrets.token_hex(32) + "\n")
        (tmp_path / "var").mkdir()
        central["api"]["port"] = 0
        (tmp_path / "headend.yaml").write_text(yaml.safe_dump(central))
        # the gateway has no RS485 adapter here: it keeps retrying the port, as it would on site
        (tmp_path / "gw.yaml").write_text(yaml.safe_dump(gateway))

        def start(*args: str) -> None:
            with (tmp_path / f"{args[0]}.log").open("wb") as log:  # the child keeps its own copy
                processes.append(subprocess.Popen(
                    [str(AMR), *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log
                ))  # fmt: skip

        start("headend", "--config", str(tmp_path / "headend.yaml"))
        _wait(lambda: db.exists() and Path(central["keys"]["signing_key_file"]).exists(), 60,
              "the head-end's first start", processes)  # fmt: skip
        shutil.copyfile(
            Path(central["keys"]["signing_key_file"]).with_suffix(".pub"),
            gateway["headend_public_key_file"],
        )
        start("concentrator", "--config", str(tmp_path / "gw.yaml"))

        def registered() -> bool:
            with contextlib.closing(sqlite3.connect(db)) as connection:
                try:
                    rows = connection.execute("SELECT id, online FROM gateways").fetchall()
                except sqlite3.OperationalError:  # the schema is still being made
                    return False
            return rows == [(gateway["gateway_id"], 1)]

        _wait(registered, 60, "the head-end to register the gateway", processes)
        assert f"u'{gateway['gateway_id']}'" in broker.log
        assert f"u'{central['node_id']}'" in broker.log
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        broker.stop()
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("headend", "concentrator")}
    for name, log in logs.items():
        assert "Traceback" not in log, f"{name}:\n{log}"
