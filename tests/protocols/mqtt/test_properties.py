"""MQTT 5.0 properties: every identifier of Table 2-4, in and out of the packets that carry it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from protocols.mqtt import (
    NO_PROPERTIES,
    PROPERTY_SPECS,
    MalformedPacket,
    PacketType,
    Properties,
    PropertyId,
    ProtocolViolation,
)
from protocols.mqtt.properties import (
    WILL,
    DataType,
    PropertySpec,
    decode_properties,
    encode_properties,
)
from protocols.mqtt.wire import BodyReader, encode_varint

CONTEXTS: list[PacketType | str] = [*PacketType, WILL]
NO_PROPERTY_PACKETS = {PacketType.PINGREQ, PacketType.PINGRESP}

# one wire value per data type: (value as held, value bytes)
SAMPLE_VALUES: dict[DataType, tuple[Any, str]] = {
    DataType.BYTE: (1, "01"),
    DataType.TWO_BYTE_INTEGER: (258, "01 02"),
    DataType.FOUR_BYTE_INTEGER: (16_909_060, "01 02 03 04"),
    DataType.VARIABLE_BYTE_INTEGER: (321, "C1 02"),
    DataType.UTF8_STRING: ("a/b", "00 03 61 2F 62"),
    DataType.BINARY_DATA: (b"\x00\x01", "00 02 00 01"),
    DataType.UTF8_STRING_PAIR: (("k", "v"), "00 01 6B 00 01 76"),
}


def _block(*items: tuple[int, str]) -> bytes:
    body = b"".join(encode_varint(i) + bytes.fromhex(v) for i, v in items)
    return encode_varint(len(body)) + body


def _held(spec: PropertySpec, value: Any) -> Any:
    return (value,) if spec.name in ("user_properties", "subscription_identifiers") else value


def test_table_2_4_has_every_identifier_and_fields_follow_identifier_order() -> None:
    assert set(PROPERTY_SPECS) == {p.value for p in PropertyId}
    assert len(PROPERTY_SPECS) == 27
    # encode walks the dataclass fields: their order must be identifier order
    names = [f.name for f in fields(Properties) if f.init]
    assert names == [s.name for s in PROPERTY_SPECS.values()]
    assert list(PROPERTY_SPECS) == sorted(PROPERTY_SPECS)


CASES = [
    (spec, context) for spec in PROPERTY_SPECS.values() for context in CONTEXTS
    if context not in NO_PROPERTY_PACKETS
]  # fmt: skip


def _id(case: tuple[PropertySpec, PacketType | str]) -> str:
    spec, context = case
    return f"{spec.name}-{context.name if isinstance(context, PacketType) else context}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_every_property_in_every_packet(case: tuple[PropertySpec, PacketType | str]) -> None:
    spec, context = case
    value, wire = SAMPLE_VALUES[spec.data_type]
    if spec.maximum == 1:  # the 0-or-1 flags
        value, wire = 1, "01"
    block = _block((spec.identifier, wire))
    if context in spec.contexts:
        properties = decode_properties(BodyReader(block), context)
        assert getattr(properties, spec.name) == _held(spec, value)
        assert encode_properties(properties, context) == block
    else:
        with pytest.raises(MalformedPacket, match="not valid in this packet"):
            decode_properties(BodyReader(block), context)


def test_only_user_property_and_publish_subscription_ids_repeat() -> None:
    pair = SAMPLE_VALUES[DataType.UTF8_STRING_PAIR][1]
    twice = _block((0x26, pair), (0x26, "00 01 61 00 00"))
    properties = decode_properties(BodyReader(twice), PacketType.CONNECT)
    assert properties.user_properties == (("k", "v"), ("a", ""))
    ids = _block((0x0B, "01"), (0x0B, "7F"))
    assert decode_properties(BodyReader(ids), PacketType.PUBLISH).subscription_identifiers == (
        1,
        127,
    )
    with pytest.raises(ProtocolViolation, match="more than once"):
        decode_properties(BodyReader(ids), PacketType.SUBSCRIBE)
    with pytest.raises(ProtocolViolation, match="more than once"):
        decode_properties(BodyReader(_block((0x11, "00 00 00 01"), (0x11, "00 00 00 02"))),
                          PacketType.CONNECT)  # fmt: skip


@pytest.mark.parametrize(
    ("context", "identifier", "wire"),
    [
        (PacketType.CONNECT, 0x21, "00 00"),  # receive maximum 0
        (PacketType.CONNECT, 0x27, "00 00 00 00"),  # maximum packet size 0
        (PacketType.CONNECT, 0x17, "02"),  # request problem information 2
        (PacketType.CONNECT, 0x19, "02"),  # request response information 2
        (PacketType.PUBLISH, 0x23, "00 00"),  # topic alias 0
        (PacketType.PUBLISH, 0x0B, "00"),  # subscription identifier 0
        (PacketType.PUBLISH, 0x01, "02"),  # payload format indicator 2
        (PacketType.PUBLISH, 0x08, "00 03 61 2F 23"),  # response topic "a/#"
        (PacketType.CONNACK, 0x24, "02"),  # maximum QoS 2
        (PacketType.CONNACK, 0x2A, "02"),
    ],
)
def test_values_the_spec_forbids_are_protocol_errors(
    context: PacketType, identifier: int, wire: str
) -> None:
    with pytest.raises(ProtocolViolation):
        decode_properties(BodyReader(_block((identifier, wire))), context)


@pytest.mark.parametrize(
    "block",
    [
        "05 02 00 00 00",  # message expiry cut short
        "03 26 00 01",  # user property without its value
        "02 05 00",  # unknown identifier 0x05
        "01 80",  # identifier's variable byte integer cut short
        "80 00",  # property length not minimal
    ],
)
def test_broken_property_blocks_are_malformed(block: str) -> None:
    with pytest.raises(MalformedPacket):
        decode_properties(BodyReader(bytes.fromhex(block)), PacketType.PUBLISH)


def test_empty_properties() -> None:
    assert decode_properties(BodyReader(b"\x00"), PacketType.PUBLISH) is NO_PROPERTIES
    assert encode_properties(NO_PROPERTIES, PacketType.PUBLISH) == b"\x00"
    assert not NO_PROPERTIES
    assert Properties(user_properties=(("a", "b"),))
