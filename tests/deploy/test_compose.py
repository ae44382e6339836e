"""deploy/compose/ agrees with the product it runs.

Docker cannot run here, so the compose file is read as data and held to the product: each
service's command parses with ``amr``'s own argument parser (and ``amr <command> --help`` runs),
each config file it mounts passes the product's config loader, the hostnames, ports and paths
named in one file are the ones the others provide, the two head-ends differ where they must and
share what they must, no secret is written in the files, the trial broker config runs in a real
Mosquitto with the shipped queue and persistence settings, and ``make-secrets.sh`` and the
image's entry point make and pass on what the configs expect. Where ``docker compose`` is
installed, it validates the file too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from concentrator.commissioning import Status, check_public_key
from concentrator.config import ConcentratorConfig
from concentrator.config import TcpBusConfig as GatewayTcpBus
from concentrator.config import load_config as load_concentrator
from headend.cli.main import build_parser
from headend.config import HeadendConfig
from headend.config import load_config as load_headend
from headend.keystore import load_master_key
from headend.service import ensure_signing_key
from protocols.link import Command, CommandType, sign_command, verify_command
from simulator.config import SimConfig
from simulator.config import TcpBusConfig as SimTcpBus
from simulator.config import load_config as load_sim
from tests.support.debian import ensure_commands
from tests.support.mosquitto import free_port, spawn_mosquitto

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
AMR = Path(sys.executable).with_name("amr")
LOADERS: dict[str, Callable[[Path], Any]] = {
    "headend": load_headend, "concentrator": load_concentrator, "sim": load_sim,
}  # fmt: skip
SHIPPED_BROKER = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
TRIAL_BROKER = COMPOSE_DIR / "config" / "mosquitto.conf"


def _target(service: dict[str, Any]) -> str | None:
    build = service.get("build")
    return build.get("target") if isinstance(build, dict) else None


AMR_SERVICES = sorted(name for name, s in SERVICES.items() if _target(s) == "amr")


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the file in deploy/compose/ it comes from (configs and secrets)."""
    found: dict[str, Path] = {}
    for kind in ("configs", "secrets"):
        for entry in service.get(kind, []):
            source = entry if isinstance(entry, str) else entry["source"]
            default = f"/run/secrets/{source}" if kind == "secrets" else f"/{source}"
            target = default if isinstance(entry, str) else entry.get("target", default)
            found[target] = COMPOSE_DIR / COMPOSE[kind][source]["file"]
    return found


def _volume_targets(service: dict[str, Any]) -> list[str]:
    return [entry.split(":")[1] for entry in service.get("volumes", [])]


def _config_path(service: dict[str, Any]) -> str:
    command = service["command"]
    return str(command[command.index("--config") + 1])


def _config(name: str) -> Any:
    service = SERVICES[name]
    return LOADERS[service["command"][0]](_mounts(service)[_config_path(service)])


def _healthcheck_port(service: dict[str, Any]) -> int:
    text = " ".join(service["healthcheck"]["test"])
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", text) or re.search(r"-p (\d+)", text)
    assert found, text
    return int(found.group(1))


def _published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port."""
    ports = {}
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        ports[int(container)] = int(host.rpartition(":")[2])
    return ports


def _broker_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings.setdefault(key, []).append(value.strip())
    return settings


def test_the_services_and_their_health_checks() -> None:
    assert set(SERVICES) == {"mosquitto", "db", "headend-1", "headend-2", "concentrator", "sim"}
    assert AMR_SERVICES == ["concentrator", "headend-1", "headend-2", "sim"]
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["restart"] == "unless-stopped", name
    healthy = {"condition": "service_healthy"}
    assert SERVICES["headend-1"]["depends_on"] == {"db": healthy, "mosquitto": healthy}
    # the second head-end starts once the first has upgraded the schema and serves
    assert SERVICES["headend-2"]["depends_on"] == {"db": healthy, "mosquitto": healthy,
                                                   "headend-1": healthy}  # fmt: skip
    assert SERVICES["concentrator"]["depends_on"] == {"mosquitto": healthy, "sim": healthy}


@pytest.mark.parametrize("name", AMR_SERVICES)
def test_each_command_is_a_real_amr_subcommand(name: str) -> None:
    command = SERVICES[name]["command"]
    args = build_parser().parse_args(command)  # exits (SystemExit 2) on an unknown option
    assert args.command == command[0] and args.config == _config_path(SERVICES[name])
    shown = subprocess.run([str(AMR), command[0], "--help"], capture_output=True, text=True,
                           timeout=60, check=False)  # fmt: skip
    assert shown.returncode == 0 and "--config" in shown.stdout, shown.stderr


@pytest.mark.parametrize("name", AMR_SERVICES)
def test_each_mounted_config_passes_the_product_loader(name: str) -> None:
    service = SERVICES[name]
    assert _config_path(service) in _mounts(service), "the --config file is not mounted"
    config = _config(name)
    assert isinstance(config, HeadendConfig | ConcentratorConfig | SimConfig)


def test_the_files_the_configs_name_are_mounted() -> None:
    for name in ("headend-1", "headend-2"):
        config: HeadendConfig = _config(name)
        mounts = _mounts(SERVICES[name])
        assert str(config.keys.master_key_file) in mounts
        assert mounts[str(config.keys.master_key_file)].name == "master_key"
        assert str(config.keys.signing_key_file) in mounts
        assert mounts[str(config.keys.signing_key_file)].name == "command-signing.pem"
        assert mounts[SERVICES[name]["environment"]["PGPASSWORD_FILE"]].name == "db_password"
    gateway: ConcentratorConfig = _config("concentrator")
    mounts = _mounts(SERVICES["concentrator"])
    assert mounts[str(gateway.headend_public_key_file)].name == "command-signing.pub"
    # the journal is on a volume: it survives a new container
    assert any(str(gateway.journal.path).startswith(target + "/")
               for target in _volume_targets(SERVICES["concentrator"]))  # fmt: skip
    sim: SimConfig = _config("sim")
    assert _mounts(SERVICES["sim"])[str(sim.sts.vending_key_file)].name == "vending_key"
    db = SERVICES["db"]
    assert _mounts(db)[db["environment"]["POSTGRES_PASSWORD_FILE"]].name == "db_password"
    broker = SERVICES["mosquitto"]
    assert _mounts(broker)["/etc/mosquitto/amr/mosquitto.conf"] == TRIAL_BROKER
    location = _broker_settings(TRIAL_BROKER)["persistence_location"][0].rstrip("/")
    assert location in _volume_targets(broker)


def test_hostnames_and_ports_agree_across_the_files() -> None:
    listener = _broker_settings(TRIAL_BROKER)["listener"]
    assert len(listener) == 1
    broker_port = int(listener[0].split()[0])
    assert _healthcheck_port(SERVICES["mosquitto"]) == broker_port
    sim: SimConfig = _config("sim")
    (sim_bus,) = sim.buses
    gateway: ConcentratorConfig = _config("concentrator")
    (gateway_bus,) = gateway.buses
    assert isinstance(sim_bus, SimTcpBus) and isinstance(gateway_bus, GatewayTcpBus)
    assert (gateway.mqtt.host, gateway.mqtt.port) == ("mosquitto", broker_port)
    assert (gateway_bus.host, gateway_bus.port) == ("sim", sim_bus.port)
    assert sim_bus.host == "0.0.0.0"  # reachable from the concentrator's container
    # the gateway polls exactly the meters the simulator has
    first = sim_bus.meters.first_address
    assert [m.address for m in gateway_bus.meters] == list(
        range(first, first + sim_bus.meters.count))  # fmt: skip
    db_env = SERVICES["db"]["environment"]
    for name in ("headend-1", "headend-2"):
        config: HeadendConfig = _config(name)
        assert (config.mqtt.host, config.mqtt.port) == ("mosquitto", broker_port)
        url = sa.make_url(config.database.url)
        assert (url.host, url.port, url.username, url.database) == (
            "db", 5432, db_env["POSTGRES_USER"], db_env["POSTGRES_DB"])  # fmt: skip
        assert url.password is None  # the password comes from the secret, not the URL
        assert _healthcheck_port(SERVICES[name]) == config.api.port
        assert config.api.port in _published(SERVICES[name])
        assert config.api.host == "0.0.0.0"  # reachable through the published port
    db_check = SERVICES["db"]["healthcheck"]["test"]
    assert db_check[db_check.index("-U") + 1] == db_env["POSTGRES_USER"]
    assert db_check[db_check.index("-d") + 1] == db_env["POSTGRES_DB"]
    assert _healthcheck_port(SERVICES["concentrator"]) == gateway.status_http
    assert gateway.status_http in _published(SERVICES["concentrator"])
    assert sim.control is not None
    assert _healthcheck_port(SERVICES["sim"]) == sim.control.port
    assert sim.control.port in _published(SERVICES["sim"])
    hosts = [port for s in SERVICES.values() for port in _published(s).values()]
    assert len(hosts) == len(set(hosts)), hosts
    assert all(str(p).startswith("127.0.0.1:") for s in SERVICES.values()
               for p in s.get("ports", []))  # fmt: skip
    assert "ports" not in SERVICES["mosquitto"] and "ports" not in SERVICES["db"]


def test_the_two_headends_differ_where_they_must_and_share_the_rest() -> None:
    one: HeadendConfig = _config("headend-1")
    two: HeadendConfig = _config("headend-2")
    assert one.node_id != two.node_id and one.mqtt.client_id != two.mqtt.client_id
    assert (one.node_id, two.node_id) == ("headend-1", "headend-2")
    assert one.database.url == two.database.url
    assert one.mqtt.share_group == two.mqtt.share_group and one.mqtt.protocol == 5
    # one signing key (gateways trust one public key) and one master key for both
    assert one.keys == two.keys
    one_mounts, two_mounts = _mounts(SERVICES["headend-1"]), _mounts(SERVICES["headend-2"])
    for path in (one.keys.master_key_file, one.keys.signing_key_file):
        assert one_mounts[str(path)] == two_mounts[str(path)]
    # and nothing else differs
    strip: dict[str, Any] = {"node_id": True, "mqtt": {"client_id": True}}
    assert one.model_dump(exclude=strip) == two.model_dump(exclude=strip)


def test_no_secret_is_written_in_the_files() -> None:
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY", key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)
    for name, entry in COMPOSE["secrets"].items():
        assert entry["file"].startswith("./secrets/"), name
    assert "secrets/" in (COMPOSE_DIR / ".gitignore").read_text().split()
    for path in [COMPOSE_DIR / "compose.yaml", *sorted((COMPOSE_DIR / "config").iterdir())]:
        text = path.read_text()
        assert not re.search(r"\b[0-9a-fA-F]{16,}\b", text), f"{path.name}: a key in the file?"
        assert not re.search(r"password[ \t]*[:=][ \t]*\S", text, re.I), f"{path.name}: a password?"
        assert "BEGIN" not in text, path.name


def test_the_image_is_built_as_the_services_expect() -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    stages = {stage: image for image, stage in re.findall(r"^FROM (\S+) AS (\S+)$", dockerfile,
                                                          re.M)}  # fmt: skip
    assert stages == {"wheel": "python:3.11-slim", "amr": "python:3.11-slim",
                      "mosquitto": "debian:bookworm-slim"}  # fmt: skip
    assert {_target(s) for s in SERVICES.values()} == {"amr", "mosquitto", None}
    for service in SERVICES.values():
        if _target(service):
            build = service["build"]
            assert (COMPOSE_DIR / build["context"]).resolve() == ROOT
            assert (ROOT / build["dockerfile"]).resolve() == COMPOSE_DIR / "Dockerfile"
    assert "pip wheel" in dockerfile and 'ENTRYPOINT ["amr-entrypoint"]' in dockerfile
    assert "apt-get install -y --no-install-recommends mosquitto mosquitto-clients" in dockerfile
    # what the stages copy exists, and the ignore file lets it into the build context
    kept = [line[1:] for line in (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().split()
            if line.startswith("!")]  # fmt: skip
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for part in source.split():
            assert (ROOT / part).exists(), part
            assert part in kept, f"{part} is not in the build context"
    # the wheel's metadata names these files
    for part in ("pyproject.toml", "README.md", "protocols", "headend", "concentrator",
                 "simulator"):  # fmt: skip
        assert part in kept


def test_the_entry_point_passes_the_password_file_to_amr(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "amr").write_text('#!/bin/sh\nprintf "%s|%s\\n" "${PGPASSWORD:-}" "$*"\n')
    (fake / "amr").chmod(0o755)
    (tmp_path / "db_password").write_text("s3cret-from-file\n")
    env = {"PATH": f"{fake}:/usr/bin:/bin", "PGPASSWORD_FILE": str(tmp_path / "db_password")}
    command = SERVICES["headend-1"]["command"]
    ran = subprocess.run(["sh", str(COMPOSE_DIR / "entrypoint.sh"), *command], env=env,
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert ran.stdout == f"s3cret-from-file|{' '.join(command)}\n"
    env.pop("PGPASSWORD_FILE")
    ran = subprocess.run(["sh", str(COMPOSE_DIR / "entrypoint.sh"), "sim", "--help"], env=env,
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert ran.stdout == "|sim --help\n"
    assert os.access(COMPOSE_DIR / "entrypoint.sh", os.X_OK)


def test_make_secrets_makes_what_the_configs_read(tmp_path: Path) -> None:
    ensure_commands("openssl")  # make-secrets.sh makes the keys with it
    shutil.copy(COMPOSE_DIR / "make-secrets.sh", tmp_path / "make-secrets.sh")
    made = subprocess.run(["sh", str(tmp_path / "make-secrets.sh")], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    folder = tmp_path / "secrets"
    wanted = {Path(e["file"]).name for e in COMPOSE["secrets"].values()}
    wanted |= {Path(COMPOSE["configs"]["command_signing_pub"]["file"]).name}
    assert {p.name for p in folder.iterdir()} == wanted
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in folder.iterdir())
    assert len(load_master_key(folder / "master_key")) == 32  # what the head-end reads
    signing = ensure_signing_key(folder / "command-signing.pem")
    checked = check_public_key(folder / "command-signing.pub")  # what the gateway reads
    assert checked.status is Status.PASS, checked.reason
    command = sign_command(Command("c1", CommandType.RELAY, "00000000000", 1e10, 2,
                                   {"action": "disconnect"}), signing)  # fmt: skip
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    public = load_pem_public_key((folder / "command-signing.pub").read_bytes())
    verify_command(command, public)  # type: ignore[arg-type]
    sim = SimConfig.model_validate({"sts": {"vending_key_file": str(folder / "vending_key")},
                                    "buses": [{"name": "t", "type": "modbus-tcp",
                                               "meters": {"count": 1}}]})  # fmt: skip
    assert sim.sts.vending_key().bits == 64
    password = (folder / "db_password").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{48}", password)
    assert "made" in made.stdout
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = subprocess.run(["sh", str(tmp_path / "make-secrets.sh")], capture_output=True,
                           text=True, timeout=60, check=True)  # fmt: skip
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # kept, not remade
    assert "made" not in again.stdout


@pytest.mark.integration
def test_the_trial_broker_config_runs_and_keeps_the_shipped_settings(tmp_path: Path) -> None:
    shipped, trial = _broker_settings(SHIPPED_BROKER), _broker_settings(TRIAL_BROKER)
    for key in ("persistence", "persistence_location", "autosave_interval",
                "persistent_client_expiration", "max_queued_messages", "max_queued_bytes",
                "max_inflight_messages", "max_packet_size", "per_listener_settings",
                "protocol"):  # fmt: skip
        assert trial[key] == shipped[key], key
    assert trial["allow_anonymous"] == ["true"] and "cafile" not in trial
    ensure_commands("mosquitto")
    port = free_port()
    text = TRIAL_BROKER.read_text().replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    text = text.replace("persistence_location /var/lib/mosquitto/",
                        f"persistence_location {tmp_path}/")  # fmt: skip
    assert f"listener {port}" in text and str(tmp_path) in text
    (tmp_path / "mosquitto.conf").write_text(text)
    broker = spawn_mosquitto(tmp_path / "mosquitto.conf", port, tmp_path / "mosquitto.log")
    try:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="headend-1",
                             protocol=mqtt.MQTTv5)  # fmt: skip
        client.connect("127.0.0.1", port)
        client.loop_start()
        try:
            done = client.subscribe("$share/headend/amr/v1/gw/+/readings", qos=1)
            assert done[0] == mqtt.MQTT_ERR_SUCCESS
            published = client.publish("amr/v1/gw/gw-0001/state", b"{}", qos=1)
            published.wait_for_publish(timeout=5)
            assert published.is_published()
        finally:
            client.loop_stop()
            client.disconnect()
    finally:
        broker.terminate()
        broker.wait(timeout=15)


def test_the_readme_commands_fit_the_compose_file() -> None:
    readme = (COMPOSE_DIR / "README.md").read_text()
    assert "## Compose (trial)" in readme
    lines = [line.strip() for line in readme.splitlines() if line.strip().startswith("docker ")]
    assert lines
    ran = 0
    for line in lines:
        words = shlex.split(line)
        assert words[:2] == ["docker", "compose"], line
        if words[2] == "run":
            service, command = words[4], words[5:]
            assert words[3] == "--rm" and service in AMR_SERVICES, line
            parsed = build_parser().parse_args(command)
            assert parsed.command == command[0]
            if "--config" in command:
                assert parsed.config == _config_path(SERVICES[service])
            ran += 1
    assert ran >= 1
    for name, (port, path) in {"headend-1": (8080, "/ui/"), "concentrator": (8090, "/"),
                               "sim": (8082, "/meters")}.items():  # fmt: skip
        url = f"http://127.0.0.1:{port}{path}"
        assert url in readme, url
        assert port in _published(SERVICES[name]).values()
        assert urlsplit(url).port == port


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """Only where ``docker compose`` is installed (it is not on the development machines)."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=30, check=False).returncode != 0:  # fmt: skip
        pytest.skip("docker compose is not installed")
    copy = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, copy, ignore=shutil.ignore_patterns("secrets"))
    subprocess.run(["sh", str(copy / "make-secrets.sh")], check=True, capture_output=True,
                   timeout=60)  # fmt: skip
    checked = subprocess.run([docker, "compose", "-f", str(copy / "compose.yaml"), "config",
                              "--quiet"], capture_output=True, text=True, timeout=60,
                             check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
