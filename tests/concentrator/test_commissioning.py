"""``amr gw scan`` and ``amr gw check``, as a field technician runs them.

Integration tests run the installed ``amr`` against ``amr sim`` (a Modbus TCP bus, an RTU bus on a
pty at 38400 8N1, DL/T 645 lines with one and with three meters) and a real Mosquitto, and assert
on what the technician sees: the exit status and the lines printed. Unit tests cover the parts
that need no line: unit id ranges, judging a read-address reply, writing a config, file checks.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from concentrator.commissioning import (
    MeterIdentity,
    ScanHit,
    SerialLine,
    Status,
    TcpLink,
    check_clock,
    check_journal,
    check_mqtt_files,
    check_public_key,
    interpret_read_address,
    parse_unit_ids,
    scanned_bus,
    write_bus_config,
)
from concentrator.config import ConfigError, JournalConfig, MqttConfig, TlsConfig, load_config
from protocols.dlt645 import ReadAddressReply, ReadAddressRequest, encode_frame
from tests.support.gateway import AMR, start, stop
from tests.support.mosquitto import Mosquitto, free_port

METER_ROW = re.compile(r"^\s*(\d+)\s{2}(\d{11,13})\s")


def amr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AMR), *args], check=False, capture_output=True, text=True, timeout=60
    )


def meter_rows(stdout: str) -> dict[int, str]:
    """The scan table's meters: unit id -> DRN."""
    return {int(m[1]): m[2] for line in stdout.splitlines() if (m := METER_ROW.match(line))}


def lines_of(stdout: str, status: str) -> dict[str, str]:
    """``STATUS  check: reason`` lines by check name."""
    found = {}
    for line in stdout.splitlines():
        if line.startswith(f"{status}  "):
            check, _, reason = line[len(status) + 2 :].partition(": ")
            found[check] = reason
    return found


# -- the lab: simulator and broker ----------------------------------------------------------------


@dataclass
class Lab:
    tcp_port: int
    rtu_device: str
    dlt_one: str
    dlt_three: str
    meters: list[dict[str, Any]]
    broker: Mosquitto
    folder: Path

    def drns(self, bus: str) -> dict[int, str]:
        return {m["address"]: m["drn"] for m in self.meters if m["bus"] == bus}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("gw")
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    sim_config = {
        "control": {"host": "127.0.0.1", "port": 0},
        "run_dir": str(folder / "sim"),
        "buses": [
            {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
             "meters": {"count": 3, "first_serial": 5001}},
            {"name": "rtu1", "type": "modbus-rtu", "pty": True, "baud": 38400, "parity": "N",
             "meters": {"count": 2, "first_address": 2, "first_serial": 6001}},
            {"name": "dlt1", "type": "dlt645", "pty": True, "parity": "N",
             "meters": {"count": 1, "first_serial": 7001}},
            {"name": "dlt3", "type": "dlt645", "pty": True, "parity": "N",
             "meters": {"count": 3, "first_serial": 7101}},
        ],
    }  # fmt: skip
    (folder / "sim.yaml").write_text(yaml.safe_dump(sim_config))
    output: list[str] = []
    sim = start(["sim", "--config", str(folder / "sim.yaml")], "Ctrl-C", output)
    try:
        text = "".join(output)

        def where(pattern: str) -> str:
            found = re.search(pattern, text)
            assert found, f"{pattern!r} not in simulator output:\n{text}"
            return found.group(1)

        control = where(r"control API: (http://\S+)/meters")
        import urllib.request

        with urllib.request.urlopen(f"{control}/meters", timeout=5) as reply:
            meters = json.load(reply)
        yield Lab(
            tcp_port=int(where(r"tcp1: modbus-tcp 127\.0\.0\.1:(\d+)")),
            rtu_device=where(r"rtu1: modbus-rtu 38400 8N1 on \S+ \(link (\S+)\)"),
            dlt_one=where(r"dlt1: dlt645 2400 8N1 on \S+ \(link (\S+)\)"),
            dlt_three=where(r"dlt3: dlt645 2400 8N1 on \S+ \(link (\S+)\)"),
            meters=meters,
            broker=broker,
            folder=folder,
        )
    finally:
        stop(sim)
        broker.stop()


def tcp_scan(lab: Lab, *extra: str) -> subprocess.CompletedProcess[str]:
    return amr("gw", "scan", "--bus-type", "modbus-tcp", "--host", "127.0.0.1",
               "--port", str(lab.tcp_port), "--units", "1-6", "--timeout-ms", "200", *extra)  # fmt: skip


def rtu_scan(lab: Lab, *extra: str) -> subprocess.CompletedProcess[str]:
    return amr("gw", "scan", "--bus-type", "modbus-rtu", "--device", lab.rtu_device,
               "--baud", "38400", "--parity", "N", "--units", "1-6", "--timeout-ms", "200",
               *extra)  # fmt: skip


# -- scan ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_scan_tcp_lists_the_meters_the_simulator_has(lab: Lab) -> None:
    result = tcp_scan(lab)
    assert result.returncode == 0, result.stderr
    assert meter_rows(result.stdout) == lab.drns("tcp1")
    assert sorted(lab.drns("tcp1")) == [1, 2, 3]
    assert re.search(r"Found 3 meter\(s\) at 6 unit id\(s\) in \d+\.\d\d s\.", result.stdout)
    # the identity columns: manufacturer code, SGC, KRN, TI, key type, base date, algorithm, firmware
    row = next(line for line in result.stdout.splitlines() if METER_ROW.match(line))
    assert row.split()[2:] == ["12", "123456", "1", "01", "dutk", "2014", "sta", "1.00"]


@pytest.mark.integration
def test_scan_json_gives_the_same_meters(lab: Lab) -> None:
    result = tcp_scan(lab, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {m["unit_id"]: m["drn"] for m in report["meters"]} == lab.drns("tcp1")
    assert report["meters"][0]["sts_supply_group_code"] == "123456"
    assert report["other_devices"] == []


@pytest.mark.integration
def test_scan_rtu_pty_writes_a_config_the_daemon_accepts(lab: Lab, tmp_path: Path) -> None:
    config_file = tmp_path / "gw.yaml"
    result = rtu_scan(lab, "--write-config", str(config_file), "--bus-name", "rtu1",
                      "--gateway-id", "gw-site-7")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert meter_rows(result.stdout) == lab.drns("rtu1") and set(lab.drns("rtu1")) == {2, 3}
    assert f"Created {config_file} with bus rtu1 (2 meter(s))." in result.stdout
    config = load_config(config_file)  # parse_config: what the daemon runs
    assert config.gateway_id == "gw-site-7"
    [bus] = config.buses
    assert (bus.name, bus.type, getattr(bus, "device", None)) == (
        "rtu1",
        "modbus-rtu",
        lab.rtu_device,
    )
    assert {m.address: m.meter_id for m in bus.meters} == lab.drns("rtu1")

    # a second bus is added; the file before is kept
    result = tcp_scan(lab, "--write-config", str(config_file), "--bus-name", "tcp1")
    assert result.returncode == 0, result.stderr
    assert f"Added bus tcp1 (3 meter(s)) in {config_file}" in result.stdout
    config = load_config(config_file)
    assert [b.name for b in config.buses] == ["rtu1", "tcp1"]
    assert {m.address: m.meter_id for m in config.buses[1].meters} == lab.drns("tcp1")
    assert (tmp_path / "gw.yaml.bak").is_file()


@pytest.mark.integration
def test_scan_reports_a_device_that_is_not_this_profile(lab: Lab, tmp_path: Path) -> None:
    profile = tmp_path / "other.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "other-v1", "manufacturer": "x", "model": "y",
        "points": [{"name": "drn", "table": "input", "address": 500, "type": "bcd", "length": 4,
                    "group": "identity"}],
    }))  # fmt: skip
    result = tcp_scan(lab, "--profile", str(profile))
    assert result.returncode == 1  # no meter of that profile
    for unit in (1, 2, 3):
        assert re.search(rf"^\s+{unit}  answers, not this profile \(exception 02, illegal data "
                         r"address\)$", result.stdout, re.M)  # fmt: skip
    assert "Found 0 meter(s) and 3 other device(s) at 6 unit id(s)" in result.stdout


@pytest.mark.integration
def test_scan_where_nobody_answers(lab: Lab) -> None:
    result = amr("gw", "scan", "--bus-type", "modbus-tcp", "--host", "127.0.0.1",
                 "--port", str(lab.tcp_port), "--units", "10-12", "--timeout-ms", "200")  # fmt: skip
    assert result.returncode == 1
    assert "Found 0 meter(s) at 3 unit id(s)" in result.stdout
    assert "Nobody answered" in result.stdout


@pytest.mark.integration
def test_scan_a_serial_device_that_is_not_there(tmp_path: Path) -> None:
    result = amr("gw", "scan", "--bus-type", "modbus-rtu", "--device", str(tmp_path / "ttyUSB7"))
    assert result.returncode == 1
    assert f"serial device {tmp_path / 'ttyUSB7'} does not exist" in result.stderr
    assert "fix: plug in the RS485 adapter" in result.stderr


@pytest.mark.integration
def test_scan_dlt645_reads_the_address_of_the_one_meter(lab: Lab) -> None:
    result = amr("gw", "scan", "--bus-type", "dlt645", "--device", lab.dlt_one, "--parity", "N")
    assert result.returncode == 0, result.stderr
    [address] = [m["dlt645_address"] for m in lab.meters if m["bus"] == "dlt1"]
    assert f"Found one meter: address {address}" in result.stdout


@pytest.mark.integration
def test_scan_dlt645_explains_a_line_with_several_meters(lab: Lab) -> None:
    result = amr("gw", "scan", "--bus-type", "dlt645", "--device", lab.dlt_three, "--parity", "N")
    assert result.returncode == 1
    assert "No address: no meter answered" in result.stdout
    assert "several meters on one line may also all stay silent" in result.stdout


# -- check -----------------------------------------------------------------------------------------


def daemon_config(lab: Lab, folder: Path, **changes: Any) -> Path:
    key = folder / "headend.pub"
    key.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    tcp = lab.drns("tcp1")
    rtu = lab.drns("rtu1")
    raw: dict[str, Any] = {
        "gateway_id": "gw-site-7",
        "mqtt": {"host": "127.0.0.1", "port": lab.broker.port},
        "journal": {"path": str(folder / "journal" / "journal.db"), "quota_mb": 16},
        "headend_public_key_file": str(key),
        "buses": [
            {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": lab.tcp_port,
             "timeout_ms": 500, "meters": [{"address": 1, "meter_id": tcp[1]}, {"address": 2},
                                           {"address": 3, "meter_id": tcp[3]}]},
            {"name": "rtu1", "type": "modbus-rtu", "device": lab.rtu_device, "baud": 38400,
             "parity": "N", "timeout_ms": 500,
             "meters": [{"address": a, "meter_id": d} for a, d in rtu.items()]},
        ],
    }  # fmt: skip
    raw.update(changes)
    path = folder / "concentrator.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.integration
def test_check_passes_on_a_working_gateway(lab: Lab, tmp_path: Path) -> None:
    result = amr("gw", "check", "--config", str(daemon_config(lab, tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    passed = lines_of(result.stdout, "PASS")
    assert not lines_of(result.stdout, "FAIL")
    expected = {"config", "journal", "head-end key", "mqtt broker", "clock", "bus tcp1",
                "meter tcp1/1", "meter tcp1/2", "meter tcp1/3", "bus rtu1", "meter rtu1/2",
                "meter rtu1/3"}  # fmt: skip
    assert set(passed) == expected
    assert "accepted an MQTT v5 connection" in passed["mqtt broker"]
    assert "cannot be verified against the head-end" in passed["clock"]
    assert "matches meter_id" in passed["meter rtu1/3"]
    assert f"DRN {lab.drns('tcp1')[2]} answers at unit id 2 (no meter_id" in passed["meter tcp1/2"]
    assert lines_of(result.stdout, "SKIP") == {
        "tls": "mqtt.tls is not configured: the uplink is not encrypted"
    }
    assert result.stdout.splitlines()[-1] == "All 12 checks passed (1 skipped)."


@pytest.mark.integration
def test_check_names_each_problem(lab: Lab, tmp_path: Path) -> None:
    tcp = lab.drns("tcp1")
    wrong_drn = "12000099999"
    missing = tmp_path / "ttyUSB9"
    config = daemon_config(lab, tmp_path,
        mqtt={"host": "127.0.0.1", "port": free_port()},
        buses=[
            {"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": lab.tcp_port,
             "meters": [{"address": 1, "meter_id": tcp[1]}, {"address": 2, "meter_id": wrong_drn}]},
            {"name": "rtu9", "type": "modbus-rtu", "device": str(missing), "meters": [{"address": 1}]},
        ],
    )  # fmt: skip
    result = amr("gw", "check", "--config", str(config))
    assert result.returncode == 1
    failed = lines_of(result.stdout, "FAIL")
    assert set(failed) == {"mqtt broker", "bus rtu9", "meter tcp1/2"}
    assert "refused the TCP connection" in failed["mqtt broker"]
    assert "-- fix: check mqtt.host and mqtt.port" in failed["mqtt broker"]
    assert f"serial device {missing} does not exist" in failed["bus rtu9"]
    assert f"unit id 2 is DRN {tcp[2]}, but meter_id is {wrong_drn}" in failed["meter tcp1/2"]
    assert "run amr gw scan" in failed["meter tcp1/2"]
    assert lines_of(result.stdout, "PASS")["meter tcp1/1"].endswith("matches meter_id")
    assert lines_of(result.stdout, "SKIP")["meter rtu9/1"] == "bus rtu9 did not open"
    assert result.stdout.splitlines()[-1].startswith("3 check(s) FAILED")


@pytest.mark.integration
def test_check_lists_every_config_error_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump({
        "gateway_id": "gw 7",
        "buses": [{"name": "rtu1", "type": "modbus-rtu", "device": "/dev/ttyUSB0", "baud": 9601,
                   "meters": [{"address": 1}]}],
    }))  # fmt: skip
    result = amr("gw", "check", "--config", str(config), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["passed"] is False
    reasons = [c["reason"] for c in report["checks"] if c["status"] == "FAIL"]
    assert any(r.startswith("gateway_id: ") for r in reasons)
    assert any(r.startswith("buses[0].baud: ") for r in reasons)


# -- unit: no line, no network ---------------------------------------------------------------------


def test_unit_ids_are_ranges_and_lists() -> None:
    assert parse_unit_ids("1-6") == (1, 2, 3, 4, 5, 6)
    assert parse_unit_ids("7, 1,3-4") == (1, 3, 4, 7)
    assert len(parse_unit_ids("1-247")) == 247
    for bad in ("0-5", "1-248", "5-3", "a", ""):
        with pytest.raises(ValueError):
            parse_unit_ids(bad)


def test_read_address_one_meter_several_or_collisions() -> None:
    echo = encode_frame(ReadAddressRequest().to_frame())
    one = encode_frame(ReadAddressReply("012000070016").to_frame())
    other = encode_frame(ReadAddressReply("012000071014").to_frame())
    assert interpret_read_address(echo + one).address == "012000070016"
    several = interpret_read_address(one + other)
    assert several.address is None and several.addresses == ("012000070016", "012000071014")
    assert "several meters answered" in several.message
    collided = interpret_read_address(bytes(a | b for a, b in zip(one, other, strict=True)))
    assert collided.address is None and "collided" in collided.message
    silent = interpret_read_address(echo)
    assert silent.address is None and silent.message.startswith("no meter answered")


def _hit(unit: int, drn: str) -> ScanHit:
    return ScanHit(unit, MeterIdentity(drn=drn))


def test_write_config_creates_replaces_and_refuses(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    bus = scanned_bus(
        "tcp1", TcpLink("192.0.2.10", 502), [_hit(1, "12000050018")], "amr-prepaid-v1"
    )
    with pytest.raises(ConfigError, match="give --gateway-id"):
        write_bus_config(path, bus)
    assert not path.exists()
    written = write_bus_config(path, bus, "gw-1")
    assert written.created and written.config.buses[0].meters[0].meter_id == "12000050018"

    raw = yaml.safe_load(path.read_text())
    raw["buses"][0]["timeout_ms"] = 750  # tuned by hand: a rescan keeps it
    path.write_text(yaml.safe_dump(raw))
    path.chmod(0o640)  # readable by the daemon's group: a rewrite must keep that
    rescan = scanned_bus("tcp1", TcpLink("192.0.2.10", 502),
                         [_hit(1, "12000050018"), _hit(4, "12000050042")], "amr-prepaid-v1")  # fmt: skip
    written = write_bus_config(path, rescan)
    assert written.replaced_bus and not written.created
    [tcp] = load_config(path).buses
    assert tcp.timeout_ms == 750 and [m.address for m in tcp.meters] == [1, 4]
    assert path.stat().st_mode & 0o777 == 0o640

    before = path.read_text()
    broken = scanned_bus("Bad Name", SerialLine("/dev/ttyUSB0", 9600, "E"), [_hit(1, "1")], "x")
    with pytest.raises(ConfigError, match=r"buses\[1\]\.name"):
        write_bus_config(path, broken)
    assert path.read_text() == before


def test_journal_under_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = check_journal(JournalConfig(path=tmp_path / "a-file" / "journal.db"))
    assert result.status is Status.FAIL and "is not a folder" in result.reason
    assert check_journal(JournalConfig(path=tmp_path / "j" / "journal.db")).status is Status.PASS


def test_public_key_must_be_ed25519_pem(tmp_path: Path) -> None:
    ed = tmp_path / "ed.pem"
    ed.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    ecdsa = tmp_path / "ec.pem"
    ecdsa.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    assert check_public_key(ed).status is Status.PASS
    assert "not Ed25519" in check_public_key(ecdsa).reason
    assert check_public_key(tmp_path / "none.pem").status is Status.FAIL
    assert check_public_key(None).status is Status.SKIP


def test_clock_before_2024_fails() -> None:
    assert check_clock(0.0, broker_reachable=True).status is Status.FAIL
    good = check_clock(dt.datetime(2025, 3, 1, tzinfo=dt.UTC).timestamp(), broker_reachable=True)
    assert good.status is Status.PASS and "cannot be verified against the head-end" in good.reason


def _certificates(folder: Path, *, encrypt_key: bool = False) -> tuple[Path, Path, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amr test ca")])
    start_at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(start_at)
          .not_valid_after(start_at + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-site-7")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(start_at).not_valid_after(start_at + dt.timedelta(days=365))
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    paths = folder / "ca.pem", folder / "gw.pem", folder / "gw.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(b"secret") if encrypt_key
        else serialization.NoEncryption()
    )  # fmt: skip
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8, encryption))  # fmt: skip
    return paths


def test_tls_files_load_and_are_in_date(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    mqtt = MqttConfig(tls=TlsConfig(ca_file=ca, cert_file=cert, key_file=key))
    in_2025 = dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()
    [ok] = check_mqtt_files(mqtt, in_2025)
    assert ok.status is Status.PASS and "valid until 2026-01-01" in ok.reason
    [expired] = check_mqtt_files(mqtt, in_2025 + 400 * 86_400)
    assert expired.status is Status.FAIL and "expired on 2026-01-01" in expired.reason
    [early] = check_mqtt_files(mqtt, dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp())
    assert early.status is Status.FAIL and "gateway clock" in early.fix

    bad_ca = tmp_path / "bad-ca.pem"
    bad_ca.write_text("not a certificate\n")
    [broken] = check_mqtt_files(MqttConfig(tls=TlsConfig(ca_file=bad_ca)), in_2025)
    assert broken.status is Status.FAIL and "does not load" in broken.reason


def test_tls_key_with_a_passphrase_fails(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path, encrypt_key=True)
    mqtt = MqttConfig(tls=TlsConfig(ca_file=ca, cert_file=cert, key_file=key))
    [result] = check_mqtt_files(mqtt, dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp())
    assert result.status is Status.FAIL and "encrypted" in result.reason
