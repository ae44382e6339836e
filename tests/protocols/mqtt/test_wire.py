"""MQTT data representation (5.0 §1.5, §2.1.4): Variable Byte Integers, strings, binary data."""

from __future__ import annotations

import pytest

from protocols.mqtt import MalformedPacket, MqttUsageError
from protocols.mqtt.wire import (
    BodyReader,
    encode_binary,
    encode_utf8,
    encode_varint,
    parse_fixed_header,
)

# 5.0 §1.5.5 Table 1-1 "Size of Variable Byte Integer": the bounds of each length
VARINTS = [
    (0, "00"),
    (127, "7F"),
    (128, "80 01"),
    (16_383, "FF 7F"),
    (16_384, "80 80 01"),
    (2_097_151, "FF FF 7F"),
    (2_097_152, "80 80 80 01"),
    (268_435_455, "FF FF FF 7F"),
    (321, "C1 02"),  # the spec's worked example: 321 = 65 + 2*128
]


@pytest.mark.parametrize(("value", "wire"), VARINTS)
def test_variable_byte_integer_golden(value: int, wire: str) -> None:
    assert encode_varint(value) == bytes.fromhex(wire)
    assert BodyReader(bytes.fromhex(wire)).varint("x") == value
    # as a Remaining Length after a first byte
    assert parse_fixed_header(b"\x30" + bytes.fromhex(wire)) == (
        1 + len(bytes.fromhex(wire)),
        value,
    )


@pytest.mark.parametrize("value", [-1, 268_435_456])
def test_variable_byte_integer_out_of_range_is_our_mistake(value: int) -> None:
    with pytest.raises(MqttUsageError):
        encode_varint(value)


@pytest.mark.parametrize(
    "wire",
    [
        "FF FF FF FF 7F",  # five bytes
        "80 00",  # 0 in two bytes [MQTT-1.5.5-1]
        "FF 80 00",  # 127 in three bytes
        "80 80 80 00",
    ],
)
def test_variable_byte_integer_too_long_or_not_minimal_is_malformed(wire: str) -> None:
    with pytest.raises(MalformedPacket):
        BodyReader(bytes.fromhex(wire)).varint("x")
    with pytest.raises(MalformedPacket):
        parse_fixed_header(b"\x30" + bytes.fromhex(wire))


def test_remaining_length_not_complete_yet_is_not_an_error() -> None:
    assert parse_fixed_header(b"\x30") is None
    assert parse_fixed_header(b"\x30\x80") is None
    assert parse_fixed_header(b"\x30\xff\xff\xff") is None


def test_utf8_string_golden() -> None:
    # 5.0 §1.5.4 Figure 1-1: "A𪛔" is 00 05 41 F0 AA 9B 94
    assert encode_utf8("A\U0002a6d4") == bytes.fromhex("00 05 41 F0 AA 9B 94")
    assert BodyReader(bytes.fromhex("00 05 41 F0 AA 9B 94")).utf8("x") == "A\U0002a6d4"
    assert encode_utf8("") == b"\x00\x00"


@pytest.mark.parametrize(
    "wire",
    [
        "00 01 FF",  # not UTF-8
        "00 03 ED A0 80",  # U+D800, a surrogate [MQTT-1.5.4-1]
        "00 02 C0 80",  # overlong NUL
        "00 01 00",  # U+0000 [MQTT-1.5.4-2]
        "00 05 41 42",  # shorter than its length
        "00",  # length cut
    ],
)
def test_bad_utf8_strings_are_malformed(wire: str) -> None:
    with pytest.raises(MalformedPacket):
        BodyReader(bytes.fromhex(wire)).utf8("x")


@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "x" * 65_536])
def test_strings_mqtt_cannot_carry_are_our_mistake(text: str) -> None:
    with pytest.raises(MqttUsageError):
        encode_utf8(text)


def test_binary_data() -> None:
    assert encode_binary(b"\x00\xff") == bytes.fromhex("00 02 00 FF")
    assert BodyReader(bytes.fromhex("00 02 00 FF")).binary("x") == b"\x00\xff"
    with pytest.raises(MqttUsageError):
        encode_binary(b"x" * 65_536)
    with pytest.raises(MalformedPacket):
        BodyReader(bytes.fromhex("00 03 00 FF")).binary("x")


def test_integers_past_the_end_are_malformed() -> None:
    reader = BodyReader(b"\x01\x02\x03")
    with pytest.raises(MalformedPacket):
        reader.uint32("x")
    assert BodyReader(b"\x01\x02").uint16("x") == 0x0102
    with pytest.raises(MalformedPacket):
        BodyReader(b"").byte("x")
