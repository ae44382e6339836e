"""What ``amr frame decode --protocol qgdw13762`` shows a field technician."""

from __future__ import annotations

import json

import pytest

from protocols.qgdw13762 import (
    EndByteError,
    Qgdw13762UsageError,
    StartByteError,
    bytes_from_hex,
    decode_frame,
    describe,
    inspect_frame,
)

from .test_vectors import READ_ENERGY_645, assemble, vector

VECTOR_HEX = vector("con-3762-afn13f1-read-energy")["hex"]
REQUEST = bytes.fromhex(VECTOR_HEX)


def test_vector_description() -> None:
    description = describe(decode_frame(REQUEST))
    assert description["control"] == "0x41"
    assert description["direction"] == "down"
    assert description["prm"] == 1
    assert description["communication_mode"] == 1
    assert description["communication_mode_name"] == "narrow-band PLC, centralised routing"
    info = description["info"]
    assert isinstance(info, dict)
    assert info["raw"] == "04 00 14 00 00 01"
    assert info["module_flag"] == 1
    assert info["expected_reply_length"] == 0x14
    assert info["seq"] == 1
    assert description["source"] == "000000000099"
    assert description["destination"] == "000000000001"
    assert description["relays"] == []
    assert description["afn"] == "0x13"
    assert description["afn_name"] == "route data forwarding"
    assert description["fn"] == 1
    assert description["fn_name"] == "monitor slave node"
    assert description["protocol_type"] == 2
    assert description["embedded_frame"] == "68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16"
    assert description["checksum"] == "0x96"
    assert description["checksum_ok"] is True
    message = description["message"]
    assert isinstance(message, dict)
    assert message["protocol_name"] == "DL/T 645-2007"
    assert message["embedded_frame_length"] == len(READ_ENERGY_645)
    assert message["attached_nodes"] == []


def test_description_is_json() -> None:
    text = json.dumps(inspect_frame(REQUEST))
    assert json.loads(text)["embedded_frame"].startswith("68 01 00")


def test_inspect_reports_a_wrong_checksum_instead_of_raising() -> None:
    damaged = REQUEST[:-2] + b"\x95\x16"
    description = inspect_frame(damaged)
    assert description["checksum_ok"] is False
    assert description["checksum_expected"] == "0x96"
    assert description["checksum_found"] == "0x95"
    assert description["checksum"] == "0x95"
    assert description["embedded_frame"] == "68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16"


def test_inspect_still_raises_structural_errors() -> None:
    with pytest.raises(EndByteError):
        inspect_frame(REQUEST[:-1] + b"\x00")
    with pytest.raises(StartByteError):
        inspect_frame(b"\x00" + REQUEST[1:])


def test_upstream_description() -> None:
    # Module's deny (AFN 00H F2, reason 0 "communication timeout"), HPLC, phase 3, quality 5/7.
    raw = assemble(bytes.fromhex("83 00 00 03 75 00 2A 00 02 00 00"))
    description = inspect_frame(raw)
    assert description["direction"] == "up"
    assert description["prm"] == 0
    assert description["communication_mode_name"] == "broadband PLC (HPLC)"
    assert description["info"] == {
        "raw": "00 00 03 75 00 2A",
        "routing_flag": 0,
        "module_flag": 0,
        "relay_level": 0,
        "channel": 0,
        "phase": 3,
        "meter_channel": 0,
        "command_quality": 5,
        "reply_quality": 7,
        "event_flag": 0,
        "seq": 0x2A,
    }
    assert description["source"] is None
    assert description["fn_name"] == "deny"
    assert description["message"] == {
        "name": "deny",
        "reason": 0,
        "reason_name": "COMMUNICATION_TIMEOUT",
    }


def test_malformed_data_unit_is_reported_not_raised() -> None:
    raw = assemble(bytes.fromhex("41 00 00 00 00 00 01 13 01 00 02 00 00 10 68"))
    description = inspect_frame(raw)
    assert description["message"] is None
    assert "says 16 bytes but 1 follow" in str(description["message_error"])
    assert description["data"] == "02 00 00 10 68"


def test_unknown_afn_fn() -> None:
    description = inspect_frame(assemble(bytes.fromhex("41 00 00 00 00 00 01 12 02 00")))
    assert description["afn_name"] == "route control"
    assert description["fn_name"] == "F2"
    assert description["message"] is None


@pytest.mark.parametrize(
    "text",
    [VECTOR_HEX, VECTOR_HEX.replace(" ", ""), VECTOR_HEX.lower(), VECTOR_HEX.replace(" ", ":")],
)
def test_bytes_from_hex(text: str) -> None:
    assert bytes_from_hex(text) == REQUEST


def test_bytes_from_hex_rejects_non_hex() -> None:
    with pytest.raises(Qgdw13762UsageError):
        bytes_from_hex("68 2G")
