"""``describe`` / ``inspect_frame``: what ``amr frame decode`` shows a field technician.

Every field is compared with the vector file's ``decoded`` section (which uses the same names for
the checksum: ``checksum_in_frame`` = found, ``checksum_computed`` = expected).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocols.dlt645 import (
    EndByteError,
    Frame,
    StartByteError,
    decode_frame,
    describe,
    function_name,
    inspect_frame,
)
from tests.conftest import load_vectors

VECTORS = load_vectors("dlt645_vectors.json")
V2007 = [v for v in VECTORS if v["dlt645_version"] == "2007"]
BY_ID = {v["id"]: v for v in VECTORS}


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


@pytest.mark.parametrize("vector", V2007, ids=_ids(V2007))
def test_inspect_matches_the_vector(vector: dict[str, Any]) -> None:
    decoded = vector["decoded"]
    bits = decoded["control_bits"]
    info = inspect_frame(bytes.fromhex(vector["hex"]))
    assert info["address"] == decoded["address"]
    assert info["control"] == decoded["control"]
    assert info["direction"] == bits["D7_direction"]
    assert info["abnormal"] is bits["D6_abnormal"]
    assert info["follow_up"] is bits["D5_follow_up"]
    assert info["function"] == bits["function"]
    assert info["function_name"] == decoded["function_name"]
    assert info["length"] == decoded["L"]
    assert info["data"] == decoded["data_after_minus_0x33"]
    assert info["checksum_found"] == decoded["checksum_in_frame"]
    assert info["checksum_expected"] == decoded["checksum_computed"]
    assert info["checksum_ok"] is decoded["checksum_ok"]
    assert info["preamble_bytes"] == decoded["fe_preamble_bytes"]
    if "DI" in decoded:
        assert info["data_identifier"] == decoded["DI"]
    if "value_bytes_low_first" in decoded:
        assert info["value_bytes"] == decoded["value_bytes_low_first"]
    json.dumps(info)  # JSON-ready: raises TypeError on a Decimal, datetime or bytes


def test_bad_checksum_is_reported_not_raised() -> None:
    vector = BY_ID["pub-riusux-read-freq-BAD-CS"]
    info = inspect_frame(bytes.fromhex(vector["hex"]))
    assert info["checksum_ok"] is False
    assert (info["checksum_expected"], info["checksum_found"]) == ("80", "85")
    assert info["data_identifier"] == "02800002"
    assert info["data_identifier_name"] == "grid frequency"


def test_notes_bad_checksum_voltage_reply_still_shows_its_value() -> None:
    # LoverITer DLT645FrameUtils.java @ bfe7677: "94 23 ==> 2394 ==> 239.4v"; CS B6, correct DA
    info = inspect_frame(bytes.fromhex("68 37 03 00 92 81 39 68 91 06 33 34 34 35 C7 56 B6 16"))
    assert info["checksum_ok"] is False
    assert (info["checksum_expected"], info["checksum_found"]) == ("DA", "B6")
    assert info["address"] == "398192000337"
    assert (info["value"], info["unit"]) == ("239.4", "V")


def test_structural_errors_still_raise() -> None:
    with pytest.raises(StartByteError):
        inspect_frame(bytes.fromhex("00 01 02"))
    raw = bytes.fromhex(BY_ID["pub-read-energy-req"]["hex"])
    with pytest.raises(EndByteError):
        inspect_frame(raw[:-1] + b"\x00")


@pytest.mark.parametrize(
    ("vector_id", "value", "unit"),
    [
        ("pub-read-energy-resp", "112280.26", "kWh"),  # engineering_value 112280.26 kWh
        ("con-read-balance-resp", "123.45", "yuan"),
        ("con-read-voltage-resp", "235.2", "V"),
        ("con-read-current-resp", "1.250", "A"),
        ("con-read-power-resp", "0.2940", "kW"),
    ],
)
def test_values_with_units(vector_id: str, value: str, unit: str) -> None:
    info = describe(decode_frame(bytes.fromhex(BY_ID[vector_id]["hex"])))
    assert info["checksum_ok"] is True
    assert info["message"] == "read reply"
    assert (info["value"], info["unit"]) == (value, unit)


def test_status_word_3_flags() -> None:
    info = describe(decode_frame(bytes.fromhex(BY_ID["con-read-status3-resp-relay-open"]["hex"])))
    value = info["value"]
    assert isinstance(value, dict)
    assert value["relay_open"] is True  # engineering_value: relay open
    assert info["value_bytes"] == "1000"


def test_broadcast_time() -> None:
    info = describe(decode_frame(bytes.fromhex(BY_ID["pub-nuc-broadcast-time"]["hex"])))
    assert info["time"] == "2017-06-05T10:22:51"  # engineering_value time_set
    assert "no reply" in str(info["message"])


def test_relay_command_masks_the_password() -> None:
    info = describe(decode_frame(bytes.fromhex(BY_ID["con-relay-trip-1C-plaintext"]["hex"])))
    assert info["relay_command"] == "trip"
    assert info["relay_command_code"] == "1A"
    assert info["valid_until"] == "2024-05-17T15:00:00"
    assert info["password_level"] == "03"
    assert info["operator_code"] == "12345678"
    assert info["password"] == "******"
    # the password 123456 shows in the raw data field (as 56 34 12), but nowhere else
    text = json.dumps({k: v for k, v in info.items() if k != "data"})
    assert "563412" not in text and '"123456"' not in text


def test_error_reply() -> None:
    info = describe(decode_frame(bytes.fromhex(BY_ID["con-relay-ack-unauthorised"]["hex"])))
    assert info["message"] == "refused (abnormal reply)"
    assert (info["error_byte"], info["errors"]) == ("04", ["unauthorised"])


def test_undecodable_value_is_reported() -> None:
    frame = Frame("000000000001", 0x91, bytes.fromhex("01 01 00 1D FF FF FF FF FF FF"))
    info = describe(frame)
    assert "value" not in info
    assert "not BCD" in str(info["value_error"])


def test_malformed_message_is_reported() -> None:
    info = describe(Frame("000000000001", 0xD1, b""))
    assert info["message"] == "malformed"
    assert "1 data bytes" in str(info["error"])


def test_dlt645_1997_function_is_named_as_such() -> None:
    info = inspect_frame(bytes.fromhex(BY_ID["pub-dlt645-1997-read-resp"]["hex"]))
    assert info["function"] == "01"
    assert "DL/T 645-1997: read data" in str(info["function_name"])
    assert function_name(0x11) == "read data"
