"""``amr frame decode``, run as a field technician runs it, on the published frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VECTORS

AMR = Path(sys.executable).with_name("amr")
DATA = json.loads((VECTORS / "dlt645_vectors.json").read_text())
DLT645 = DATA["vectors"]


def frame(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AMR), "frame", "decode", *args], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


@pytest.mark.parametrize("vector", DLT645, ids=[v["id"] for v in DLT645])
def test_dlt645_vectors(vector: dict[str, Any]) -> None:
    run = frame("--protocol", "dlt645", "--json", *vector["hex"].split())
    decoded = vector["decoded"]
    if not decoded["checksum_ok"]:
        assert run.returncode == 3
        assert "checksum" in run.stderr and decoded["checksum_computed"] in run.stderr
    else:
        assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["checksum_ok"] is decoded["checksum_ok"]
    if "address" in decoded:  # the DL/T 645-1997 vector states only its checksum
        assert info["address"] == decoded["address"]
        assert info["control"].upper().removeprefix("0X") == decoded["control"]
    if "DI" in decoded:
        assert info["data_identifier"] == decoded["DI"]


def test_a_frame_with_a_wrong_end_byte_or_length_says_so() -> None:
    good = [
        "68",
        "01",
        "00",
        "00",
        "00",
        "00",
        "00",
        "68",
        "11",
        "04",
        "33",
        "33",
        "34",
        "33",
        "B3",
        "16",
    ]
    wrong_end = frame("--protocol", "dlt645", *good[:-1], "17")
    assert wrong_end.returncode == 3 and "end" in wrong_end.stderr.lower()
    short = frame("--protocol", "dlt645", *good[:-3])
    assert short.returncode == 3 and "Traceback" not in short.stderr
    not_hex = frame("--protocol", "modbus-rtu", "01", "0G")
    assert not_hex.returncode == 3 and "hexadecimal" in not_hex.stderr


def test_modbus_frames() -> None:
    ok = frame("--protocol", "modbus-rtu", "--json", "01:03:00:00:00:02:C4:0B")
    assert ok.returncode == 0
    info = json.loads(ok.stdout)
    assert (info["address"], info["function"], info["quantity"], info["checksum_ok"]) == (
        1,
        3,
        2,
        True,
    )
    bad = frame("--protocol", "modbus-rtu", "010300000002C40C")
    assert bad.returncode == 3 and "0BC4" in bad.stderr
    tcp = frame("--protocol", "modbus-tcp", "--json", "0001 0000 0006 11 04 0008 0001")
    assert json.loads(tcp.stdout)["transaction_id"] == 1 and tcp.returncode == 0


def test_plc_module_frame_shows_the_meter_frame_inside() -> None:
    vector = DATA["qgdw_1376_2"]["vectors"][0]
    run = frame("--protocol", "qgdw13762", "--json", vector["hex"])
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["afn"] in ("0x13", 0x13, "13") and info["checksum_ok"] is True
    assert info["destination"] == "000000000001"
    inner = frame("--protocol", "dlt645", "--json", info["embedded_frame"])
    assert json.loads(inner.stdout)["data_identifier"] == "00010000"
