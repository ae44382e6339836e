"""Every frame of tests/vectors/dlt645_vectors.json decodes to the meaning the file states.

The expected values (address, control bits, DI, data, values, checksums, preamble counts) are read
from the vector file, never from the code under test. Two public frames carry wrong checksums and
must be rejected: one is in the vector file, the other is quoted in the notes (dlt645.md §7) with
its address elided; the full frame is in its source, cited below.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from protocols.dlt645 import (
    DATA_IDENTIFIERS,
    BroadcastTimeSync,
    ChecksumError,
    Dlt645Error,
    ErrorReply,
    OtherReply,
    ReadReply,
    ReadRequest,
    bcd_to_int,
    decode_frame,
    encode_frame,
    parse_message,
)
from protocols.errors import RemoteProtocolError
from tests.conftest import load_vectors

VECTORS = load_vectors("dlt645_vectors.json")
GOOD = [v for v in VECTORS if v["decoded"]["checksum_ok"]]
BAD_CHECKSUM = [v for v in VECTORS if not v["decoded"]["checksum_ok"]]
V2007 = [v for v in GOOD if v["dlt645_version"] == "2007"]

# LoverITer/energy-management-sys_communication-sub-sys, src/main/java/cn/edu/xust/communication/
# util/DLT645FrameUtils.java @ bfe7677d241fcc97ad5fff0d39f7035559481746, comment in main():
# a phase-A voltage reply of meter 398192000337, "94 23 ==> 2394 ==> 239.4v". Its checksum B6 is
# wrong; the notes (§7) give the correct one as DA.
LOVERITER_VOLTAGE = "68 37 03 00 92 81 39 68 91 06 33 34 34 35 C7 56 B6 16"

UNITS = {"kWh", "kW", "V", "A"}


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


def _raw(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["hex"])


def _preamble(vector: dict[str, Any]) -> int:
    stated = vector["decoded"].get("fe_preamble_bytes")
    if stated is not None:
        return int(stated)
    raw = _raw(vector)
    return len(raw) - len(raw.lstrip(b"\xfe"))


def test_the_vector_file_is_the_one_described() -> None:
    assert len(VECTORS) == 26
    assert _ids(BAD_CHECKSUM) == ["pub-riusux-read-freq-BAD-CS"]


@pytest.mark.parametrize("vector", V2007, ids=_ids(V2007))
def test_frame_fields(vector: dict[str, Any]) -> None:
    decoded = vector["decoded"]
    frame = decode_frame(_raw(vector))
    bits = decoded["control_bits"]
    assert frame.address == decoded["address"]
    assert f"{frame.control:02X}" == decoded["control"]
    assert frame.is_reply is (bits["D7_direction"] == "slave->master")
    assert frame.is_abnormal is bits["D6_abnormal"]
    assert frame.has_follow_up is bits["D5_follow_up"]
    assert f"{frame.function:02X}" == bits["function"]
    assert len(frame.data) == decoded["L"]
    assert frame.data.hex().upper() == decoded["data_after_minus_0x33"]


@pytest.mark.parametrize("vector", GOOD, ids=_ids(GOOD))
def test_reencoding_gives_the_same_bytes(vector: dict[str, Any]) -> None:
    raw = _raw(vector)
    assert encode_frame(decode_frame(raw), preamble=_preamble(vector)) == raw


WITH_DI = [v for v in V2007 if "DI" in v["decoded"]]


@pytest.mark.parametrize("vector", WITH_DI, ids=_ids(WITH_DI))
def test_data_identifier(vector: dict[str, Any]) -> None:
    message = parse_message(decode_frame(_raw(vector)))
    assert isinstance(message, ReadRequest | ReadReply)
    assert message.di == vector["decoded"]["DI"]


WITH_VALUE = [v for v in V2007 if "value_bytes_low_first" in v["decoded"]]


@pytest.mark.parametrize("vector", WITH_VALUE, ids=_ids(WITH_VALUE))
def test_value_bytes(vector: dict[str, Any]) -> None:
    reply = parse_message(decode_frame(_raw(vector)))
    assert isinstance(reply, ReadReply)
    assert reply.payload.hex().upper() == vector["decoded"]["value_bytes_low_first"]


ENGINEERING = [v for v in V2007 if "engineering_value" in v]


@pytest.mark.parametrize("vector", ENGINEERING, ids=_ids(ENGINEERING))
def test_engineering_values(vector: dict[str, Any]) -> None:
    message = parse_message(decode_frame(_raw(vector)))
    for key, expected in vector["engineering_value"].items():
        if key == "time_set":
            assert isinstance(message, BroadcastTimeSync)
            assert message.when == datetime.fromisoformat(expected)
        elif key == "status_word_3":
            assert isinstance(message, ReadReply)
            assert int.from_bytes(message.payload, "little") == int(expected, 16)
        elif key == "relay":
            assert isinstance(message, ReadReply)
            flags = message.value()
            assert isinstance(flags, dict)
            assert flags["relay_open"] is (expected == "open")
        else:
            assert isinstance(message, ReadReply)
            assert message.value() == Decimal(str(expected))
            unit = key.rsplit("_", 1)[-1]
            if unit in UNITS:
                assert DATA_IDENTIFIERS[message.di].unit == unit


def test_abnormal_reply_vector_error_bits() -> None:
    # "error byte 02H = 'no requested data'" and "04H = password error / unauthorised"
    no_data = parse_message(decode_frame(bytes.fromhex("68 01 00 00 00 00 00 68 D1 01 35 D8 16")))
    refused = parse_message(decode_frame(bytes.fromhex("68 01 00 00 00 00 00 68 DC 01 37 E5 16")))
    assert isinstance(no_data, ErrorReply)
    assert no_data.reasons == ("no_requested_data",)
    assert isinstance(refused, ErrorReply)
    assert refused.reasons == ("unauthorised",)


def test_dlt645_1997_frame_has_the_same_layout() -> None:
    vector = next(v for v in VECTORS if v["dlt645_version"] == "1997")
    # "reply (C=81H) from meter 000000001111: 2-byte DI B613 (46 E9 -33H = 13 B6, low first) ...
    # value 53 35 -33H = 20 02 -> 0220 V"
    frame = decode_frame(_raw(vector))
    assert frame.address == "000000001111"
    assert frame.control == 0x81
    assert frame.data == bytes.fromhex("13 B6 20 02")
    assert bcd_to_int(frame.data[2:]) == vector["engineering_value"]["phase_C_voltage_V"]
    assert isinstance(parse_message(frame), OtherReply)  # 01H is no 2007 function


@pytest.mark.parametrize("vector", BAD_CHECKSUM, ids=_ids(BAD_CHECKSUM))
def test_wrong_checksum_in_the_vector_file_is_rejected(vector: dict[str, Any]) -> None:
    with pytest.raises(ChecksumError) as caught:
        decode_frame(_raw(vector))
    assert caught.value.expected == int(vector["decoded"]["checksum_computed"], 16)
    assert caught.value.found == int(vector["decoded"]["checksum_in_frame"], 16)
    assert f"{caught.value.expected:02X}H" in str(caught.value)


def test_wrong_checksum_quoted_in_the_notes_is_rejected() -> None:
    with pytest.raises(ChecksumError) as caught:
        decode_frame(bytes.fromhex(LOVERITER_VOLTAGE))
    assert (caught.value.expected, caught.value.found) == (0xDA, 0xB6)
    assert "DAH" in str(caught.value)
    assert isinstance(caught.value, Dlt645Error)
    assert isinstance(caught.value, RemoteProtocolError)


def test_corrected_checksums_are_accepted() -> None:
    # The vector's note: the correct frame is "...35 33 B3 35 80 16"; the notes: correct CS is DA.
    riusux = bytes.fromhex("68 16 00 00 00 15 20 68 11 04 35 33 B3 35 80 16")
    loveriter = bytes.fromhex(LOVERITER_VOLTAGE.replace("B6 16", "DA 16"))
    assert decode_frame(riusux).address == "201500000016"
    reply = parse_message(decode_frame(loveriter))
    assert isinstance(reply, ReadReply)
    assert reply.address == "398192000337"
    assert reply.value() == Decimal("239.4")
