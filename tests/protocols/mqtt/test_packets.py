"""Golden bytes for every packet type, built by hand from the MQTT 3.1.1 and 5.0 layouts.

Each vector is (protocol level, packet, wire bytes); the comments spell the bytes out field by
field, so a vector can be checked against the spec without running the codec. Every vector is
checked both ways: ``encode(packet) == wire`` and ``decode(wire) == packet``.
"""

from __future__ import annotations

import pytest

from protocols.mqtt import (
    MQTT_3_1_1,
    MQTT_5,
    NEED_DATA,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    MqttUsageError,
    Packet,
    PacketReader,
    PingReq,
    PingResp,
    Properties,
    ProtocolViolation,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocolVersion,
    Will,
    decode,
    encode,
)

V3 = MQTT_3_1_1
V5 = MQTT_5

GOLDEN: list[tuple[str, int, Packet, str]] = [
    (
        "CONNECT 3.1.1, will, user name, password (3.1.1 §3.1.2 Figure 3.6 flags)",
        V3,
        Connect("c1", V3, clean_start=True, keep_alive_s=10, username="u", password=b"p",
                will=Will("w", b"x", qos=1)),
        "10 1A"  # CONNECT, remaining length 26
        " 00 04 4D 51 54 54"  # protocol name "MQTT"
        " 04"  # protocol level 4
        " CE"  # user name 1, password 1, will retain 0, will QoS 01, will 1, clean 1, reserved 0
        " 00 0A"  # keep alive 10 s
        " 00 02 63 31"  # client id "c1"
        " 00 01 77 00 01 78"  # will topic "w", will payload "x"
        " 00 01 75 00 01 70",  # user name "u", password "p"
    ),
    (
        "CONNECT 5.0, session expiry and receive maximum, Clean Start 0",
        V5,
        Connect("gw-7", V5, clean_start=False, keep_alive_s=30,
                properties=Properties(session_expiry_interval=3600, receive_maximum=20)),
        "10 19 00 04 4D 51 54 54 05"
        " 00"  # no flags: Clean Start 0
        " 00 1E"  # keep alive 30 s
        " 08 11 00 00 0E 10 21 00 14"  # properties: session expiry 3600, receive maximum 20
        " 00 04 67 77 2D 37",  # "gw-7"
    ),
    (
        "CONNECT 5.0 with will properties",
        V5,
        Connect("", V5, keep_alive_s=0,
                will=Will("s", b"", retain=True, properties=Properties(will_delay_interval=5))),
        "10 18 00 04 4D 51 54 54 05"
        " 26"  # will retain 1, will QoS 0, will 1, clean start 1
        " 00 00 00"  # keep alive 0, no properties
        " 00 00"  # empty client id
        " 05 18 00 00 00 05"  # will properties: will delay 5 s
        " 00 01 73 00 00",  # will topic "s", empty will payload
    ),
    ("CONNACK 3.1.1 accepted", V3, ConnAck(), "20 02 00 00"),
    ("CONNACK 3.1.1 session present", V3, ConnAck(True), "20 02 01 00"),
    ("CONNACK 3.1.1 refused, bad protocol level", V3, ConnAck(False, 1), "20 02 00 01"),
    (
        "CONNACK 5.0 with properties",
        V5,
        ConnAck(False, 0, Properties(shared_subscription_available=1, maximum_packet_size=1024)),
        "20 0A 00 00 07 27 00 00 04 00 2A 01",  # max packet size 1024, shared subs available
    ),
    ("CONNACK 5.0 refused 0x84", V5, ConnAck(False, 0x84), "20 03 00 84 00"),
    (
        "PUBLISH 3.1.1 QoS 1 (3.1.1 §3.3.2 Figure 3.11: topic a/b, packet id 10)",
        V3,
        Publish("a/b", b"hi", qos=1, packet_id=10),
        "32 09 00 03 61 2F 62 00 0A 68 69",
    ),
    ("PUBLISH 3.1.1 QoS 0 retained", V3, Publish("a", b"", retain=True), "31 03 00 01 61"),
    (
        "PUBLISH 5.0 QoS 0 retained, content type and a user property",
        V5,
        Publish("a/b", b"x", retain=True,
                properties=Properties(content_type="t", user_properties=(("k", "v"),))),
        "31 12 00 03 61 2F 62"
        " 0B 03 00 01 74 26 00 01 6B 00 01 76"  # content type "t", user property k=v
        " 78",  # payload "x"
    ),
    (
        "PUBLISH 5.0 QoS 2 DUP",
        V5,
        Publish("t", b"", qos=2, dup=True, packet_id=1),
        "3C 06 00 01 74 00 01 00",  # DUP 1, QoS 2, RETAIN 0; no properties, empty payload
    ),
    (
        "PUBLISH 5.0 with a topic alias and no topic",
        V5,
        Publish("", b"z", properties=Properties(topic_alias=1)),
        "30 07 00 00 03 23 00 01 7A",
    ),
    ("PUBACK 3.1.1", V3, PubAck(10), "40 02 00 0A"),
    ("PUBACK 5.0 success: reason code omitted", V5, PubAck(10), "40 02 00 0A"),
    ("PUBACK 5.0 no matching subscribers", V5, PubAck(10, 0x10), "40 03 00 0A 10"),
    (
        "PUBACK 5.0 failure with a reason string",
        V5,
        PubAck(10, 0x80, Properties(reason_string="no")),
        "40 09 00 0A 80 05 1F 00 02 6E 6F",
    ),
    ("PUBREC", V3, PubRec(10), "50 02 00 0A"),
    ("PUBREL: flags 0010", V3, PubRel(10), "62 02 00 0A"),
    ("PUBCOMP", V5, PubComp(10), "70 02 00 0A"),
    ("PUBCOMP 5.0 packet id not found", V5, PubComp(10, 0x92), "70 03 00 0A 92"),
    (
        "SUBSCRIBE 3.1.1, two filters (3.1.1 §3.8.3 Figure 3.22)",
        V3,
        Subscribe(10, (Subscription("a/b", 1), Subscription("c/d", 2))),
        "82 0E 00 0A 00 03 61 2F 62 01 00 03 63 2F 64 02",
    ),
    (
        "SUBSCRIBE 5.0 shared, retain as published, retain handling 2",
        V5,
        Subscribe(1, (Subscription("$share/g/t", 1, retain_as_published=True, retain_handling=2),)),
        "82 10 00 01 00"
        " 00 0A 24 73 68 61 72 65 2F 67 2F 74"  # "$share/g/t"
        " 29",  # options: retain handling 10, RAP 1, no local 0, QoS 01
    ),
    (
        "SUBSCRIBE 5.0 no local",
        V5,
        Subscribe(2, (Subscription("#", 0, no_local=True),)),
        "82 07 00 02 00 00 01 23 04",
    ),
    ("SUBACK 3.1.1", V3, SubAck(10, (1, 0x80)), "90 04 00 0A 01 80"),
    ("SUBACK 5.0", V5, SubAck(10, (0, 0x8F)), "90 05 00 0A 00 00 8F"),
    ("UNSUBSCRIBE 3.1.1", V3, Unsubscribe(11, ("a/b",)), "A2 07 00 0B 00 03 61 2F 62"),
    ("UNSUBSCRIBE 5.0", V5, Unsubscribe(11, ("a/b",)), "A2 08 00 0B 00 00 03 61 2F 62"),
    ("UNSUBACK 3.1.1", V3, UnsubAck(11), "B0 02 00 0B"),
    ("UNSUBACK 5.0", V5, UnsubAck(11, (0, 0x11)), "B0 05 00 0B 00 00 11"),
    ("PINGREQ", V3, PingReq(), "C0 00"),
    ("PINGRESP", V5, PingResp(), "D0 00"),
    ("DISCONNECT 3.1.1", V3, Disconnect(), "E0 00"),
    ("DISCONNECT 5.0 normal: all omitted", V5, Disconnect(), "E0 00"),
    ("DISCONNECT 5.0 session taken over", V5, Disconnect(0x8E), "E0 01 8E"),
    (
        "DISCONNECT 5.0 with a session expiry",
        V5,
        Disconnect(0, Properties(session_expiry_interval=0)),
        "E0 07 00 05 11 00 00 00 00",
    ),
    ("AUTH 5.0 success: all omitted", V5, Auth(), "F0 00"),
    (
        "AUTH 5.0 continue, method m",
        V5,
        Auth(0x18, Properties(authentication_method="m")),
        "F0 06 18 04 15 00 01 6D",
    ),
]  # fmt: skip


def _read(level: int | None, wire: bytes) -> list[Packet]:
    reader = PacketReader(level)
    reader.receive_data(wire)
    packets: list[Packet] = []
    while True:
        event = reader.next_packet()
        if event is NEED_DATA:
            return packets
        assert not isinstance(event, type(NEED_DATA))
        packets.append(event)


@pytest.mark.parametrize(("name", "level", "packet", "wire"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden(name: str, level: int, packet: Packet, wire: str) -> None:
    raw = bytes.fromhex(wire)
    assert encode(packet, level).hex(" ") == raw.hex(" ")
    assert decode(raw[0], raw[2:] if raw[1] < 0x80 else raw[3:], level) == packet
    assert _read(None if isinstance(packet, Connect) else level, raw) == [packet]


@pytest.mark.parametrize(("name", "level", "packet", "wire"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_byte_at_a_time(name: str, level: int, packet: Packet, wire: str) -> None:
    raw = bytes.fromhex(wire)
    reader = PacketReader(None if isinstance(packet, Connect) else level)
    for byte in raw[:-1]:
        reader.receive_data(bytes((byte,)))
        assert reader.next_packet() is NEED_DATA
    reader.receive_data(raw[-1:])
    assert reader.next_packet() == packet
    assert reader.next_packet() is NEED_DATA


def test_a_long_packet_uses_a_two_byte_remaining_length() -> None:
    packet = Publish("t", b"x" * 200)
    wire = encode(packet, V5)
    assert wire[:3] == bytes.fromhex("30 CC 01")  # 204 = 0x4C + 1 * 128
    assert _read(V5, wire) == [packet]


def test_trailing_garbage_after_a_packet() -> None:
    reader = PacketReader(V3)
    reader.receive_data(bytes.fromhex("C0 00") + b"\x00\x00")  # PINGREQ, then type 0
    assert reader.next_packet() == PingReq()
    with pytest.raises(MalformedPacket, match="reserved control packet type 0"):
        reader.next_packet()


def test_a_partial_packet_after_a_whole_one_waits() -> None:
    reader = PacketReader(V3)
    reader.receive_data(bytes.fromhex("C0 00 32 09 00 03 61"))
    assert reader.next_packet() == PingReq()
    assert reader.next_packet() is NEED_DATA
    assert reader.buffered == 5


NEGATIVE: list[tuple[str, int, str, type[Exception]]] = [
    ("reserved packet type 0", V5, "00 00", MalformedPacket),
    ("AUTH in 3.1.1 is reserved", V3, "F0 00", MalformedPacket),
    ("PUBLISH QoS 3 [MQTT-3.3.1-4]", V5, "36 04 00 01 74 00", MalformedPacket),
    ("PUBLISH QoS 0 with DUP [MQTT-3.3.1-2]", V5, "38 04 00 01 74 00", MalformedPacket),
    ("SUBSCRIBE with flags 0000 [MQTT-3.8.1-1]", V3, "80 06 00 01 00 01 74 00", MalformedPacket),
    ("PUBACK with flags 0010", V3, "42 02 00 01", MalformedPacket),
    ("PINGREQ with a body", V3, "C0 01 00", MalformedPacket),
    ("3.1.1 PUBACK with a reason code", V3, "40 03 00 01 00", MalformedPacket),
    ("3.1.1 DISCONNECT with a body", V3, "E0 01 00", MalformedPacket),
    ("PUBLISH packet id 0", V5, "32 06 00 01 74 00 00 00", ProtocolViolation),
    ("PUBLISH topic with a wildcard", V3, "30 03 00 01 23", ProtocolViolation),
    ("PUBLISH empty topic, no alias", V5, "30 03 00 00 00", ProtocolViolation),
    ("PUBLISH 3.1.1 empty topic", V3, "30 02 00 00", ProtocolViolation),
    ("PUBLISH topic not UTF-8", V3, "30 04 00 02 C3 28", MalformedPacket),
    ("PUBLISH topic with U+0000", V3, "30 04 00 02 61 00", MalformedPacket),
    ("PUBLISH topic longer than the packet", V3, "30 03 00 05 61", MalformedPacket),
    ("PUBLISH property length past the end", V5, "30 05 00 01 74 09 01", MalformedPacket),
    ("PUBLISH unknown property 0x05", V5, "30 06 00 01 74 02 05 00", MalformedPacket),
    ("PUBLISH property of CONNECT (0x11)", V5, "30 09 00 01 74 05 11 00 00 00 01", MalformedPacket),
    ("PUBLISH payload format 2", V5, "30 06 00 01 74 02 01 02", ProtocolViolation),
    ("PUBLISH topic alias 0", V5, "30 07 00 01 74 03 23 00 00", ProtocolViolation),
    (
        "PUBLISH content type twice",
        V5,
        "30 0E 00 01 74 0A 03 00 01 61 03 00 01 62 00 00",  # last 2 bytes: payload
        ProtocolViolation,
    ),
    ("PUBLISH response topic with a wildcard", V5, "30 08 00 01 74 04 08 00 01 2B", ProtocolViolation),
    ("SUBSCRIBE without filters [MQTT-3.8.3-2]", V3, "82 02 00 01", ProtocolViolation),
    ("SUBSCRIBE 3.1.1 options reserved bits", V3, "82 06 00 01 00 01 74 04", MalformedPacket),
    ("SUBSCRIBE 5.0 options bit 6 [MQTT-3.8.3-5]", V5, "82 07 00 01 00 00 01 74 40", MalformedPacket),
    ("SUBSCRIBE QoS 3", V5, "82 07 00 01 00 00 01 74 03", MalformedPacket),
    ("SUBSCRIBE retain handling 3", V5, "82 07 00 01 00 00 01 74 30", ProtocolViolation),
    ("SUBSCRIBE two subscription ids", V5, "82 0B 00 01 04 0B 01 0B 02 00 01 74 00", ProtocolViolation),
    ("UNSUBSCRIBE without filters", V5, "A2 03 00 01 00", ProtocolViolation),
    ("SUBACK without codes", V3, "90 02 00 01", ProtocolViolation),
    ("UNSUBACK 5.0 without codes", V5, "B0 03 00 01 00", ProtocolViolation),
    ("CONNACK reserved flags", V3, "20 02 02 00", MalformedPacket),
    ("CONNACK refused with session present", V3, "20 02 01 05", ProtocolViolation),
    ("PUBACK packet id 0", V3, "40 02 00 00", ProtocolViolation),
    ("DISCONNECT 5.0 properties past the end", V5, "E0 02 00 05", MalformedPacket),
]  # fmt: skip


@pytest.mark.parametrize(("name", "level", "wire", "error"), NEGATIVE, ids=[n[0] for n in NEGATIVE])
def test_broken_packets_raise_typed_errors(
    name: str, level: int, wire: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        _read(level, bytes.fromhex(wire))


def _connect_body(
    protocol_name: bytes, level: int, flags: int, rest: str = "00 3C 00 01 63"
) -> str:
    name = len(protocol_name).to_bytes(2, "big") + protocol_name
    body = name + bytes((level, flags)) + bytes.fromhex(rest)
    return (bytes((0x10, len(body))) + body).hex(" ")


CONNECT_NEGATIVE: list[tuple[str, str, type[Exception]]] = [
    ("reserved flag [MQTT-3.1.2-3]", _connect_body(b"MQTT", 4, 0x03), MalformedPacket),
    ("will QoS 3", _connect_body(b"MQTT", 4, 0x1C), MalformedPacket),
    ("will QoS without will flag", _connect_body(b"MQTT", 4, 0x08), MalformedPacket),
    ("will retain without will flag", _connect_body(b"MQTT", 4, 0x20), MalformedPacket),
    ("3.1.1 password without user name", _connect_body(b"MQTT", 4, 0x42), MalformedPacket),
    ("MQTT 3.1 (MQIsdp, level 3)", _connect_body(b"MQIsdp", 3, 0x02), UnsupportedProtocolVersion),
    ("level 6", _connect_body(b"MQTT", 6, 0x02), UnsupportedProtocolVersion),
    ("another protocol name", _connect_body(b"MQTX", 4, 0x02), UnsupportedProtocolVersion),
    ("client id cut short", _connect_body(b"MQTT", 4, 0x02, "00 3C 00 05 63"), MalformedPacket),
    ("trailing bytes", _connect_body(b"MQTT", 4, 0x02, "00 3C 00 01 63 FF"), MalformedPacket),
    (
        "5.0 authentication data without method",
        _connect_body(b"MQTT", 5, 0x02, "00 3C 04 16 00 01 41 00 00"),
        ProtocolViolation,
    ),
    (
        "5.0 receive maximum 0",
        _connect_body(b"MQTT", 5, 0x02, "00 3C 03 21 00 00 00 00"),
        ProtocolViolation,
    ),
    (
        "5.0 topic alias in CONNECT",
        _connect_body(b"MQTT", 5, 0x02, "00 3C 03 23 00 01 00 00"),
        MalformedPacket,
    ),
    (
        "will topic with a wildcard",
        _connect_body(b"MQTT", 4, 0x06, "00 3C 00 01 63 00 01 23 00 00"),
        ProtocolViolation,
    ),
]


@pytest.mark.parametrize(
    ("name", "wire", "error"), CONNECT_NEGATIVE, ids=[n[0] for n in CONNECT_NEGATIVE]
)
def test_broken_connects(name: str, wire: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        _read(None, bytes.fromhex(wire))


def test_unsupported_protocol_says_which() -> None:
    with pytest.raises(UnsupportedProtocolVersion) as caught:
        _read(None, bytes.fromhex(_connect_body(b"MQIsdp", 3, 0x02)))
    assert (caught.value.protocol_name, caught.value.protocol_level) == ("MQIsdp", 3)
    assert caught.value.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION


def test_errors_carry_the_reason_code_a_server_sends() -> None:
    with pytest.raises(ProtocolViolation) as caught:
        _read(V5, bytes.fromhex("30 04 00 01 23 00"))
    assert caught.value.reason_code == ReasonCode.TOPIC_NAME_INVALID
    with pytest.raises(MalformedPacket) as malformed:
        _read(V5, bytes.fromhex("00 00"))
    assert malformed.value.reason_code == ReasonCode.MALFORMED_PACKET


USAGE: list[tuple[str, object]] = [
    ("3.1.1 with properties", lambda: encode(Publish("t", properties=Properties(content_type="x")), V3)),
    ("3.1.1 PUBACK with a reason code", lambda: encode(PubAck(1, 0x80), V3)),
    ("3.1.1 AUTH", lambda: encode(Auth(), V3)),
    ("3.1.1 SUBACK code 0x8F", lambda: encode(SubAck(1, (0x8F,)), V3)),
    ("3.1.1 no local", lambda: encode(Subscribe(1, (Subscription("t", no_local=True),)), V3)),
    ("3.1.1 UNSUBACK with codes", lambda: encode(UnsubAck(1, (0,)), V3)),
    ("5.0 UNSUBACK without codes", lambda: encode(UnsubAck(1), V5)),
    ("CONNECT of the other level", lambda: encode(Connect("c", V5), V3)),
    ("level 3", lambda: encode(PingReq(), 3)),
    ("QoS 0 with a packet id", lambda: Publish("t", qos=0, packet_id=1)),
    ("QoS 1 without a packet id", lambda: Publish("t", qos=1)),
    ("QoS 0 with DUP", lambda: Publish("t", dup=True)),
    ("wildcard topic", lambda: Publish("a/+")),
    ("packet id 0", lambda: PubAck(0)),
    ("packet id 65536", lambda: PubAck(65_536)),
    ("empty SUBSCRIBE", lambda: Subscribe(1, ())),
    ("refused CONNACK with session present", lambda: ConnAck(True, 0x80)),
    ("property in the wrong packet", lambda: PubAck(1, properties=Properties(topic_alias=1))),
    ("receive maximum 0", lambda: Properties(receive_maximum=0)),
    ("flag property 2", lambda: Properties(retain_available=2)),
    ("user property not a pair", lambda: Properties(user_properties=(("a",),))),  # type: ignore[arg-type]
    ("3.1.1 password without user", lambda: Connect("c", V3, password=b"p")),
    ("auth data without method", lambda: Connect("c", properties=Properties(authentication_data=b"x"))),
    ("two subscription ids in SUBSCRIBE", lambda: encode(
        Subscribe(1, (Subscription("t"),), Properties(subscription_identifiers=(1, 2))), V5)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make"), USAGE, ids=[u[0] for u in USAGE])
def test_packets_mqtt_cannot_carry_are_our_mistake(name: str, make: object) -> None:
    assert callable(make)
    with pytest.raises(MqttUsageError):
        make()


def test_every_property_in_packet_order_of_identifiers() -> None:
    """Properties are encoded in identifier order whatever order they were given in."""
    properties = Properties(
        user_properties=(("b", "2"), ("a", "1")),  # 0x26, kept in the order given
        payload_format_indicator=1,  # 0x01
        message_expiry_interval=60,  # 0x02
    )
    wire = encode(Publish("t", b"", properties=properties), V5)
    assert wire == bytes.fromhex(
        "30 19 00 01 74 15 01 01 02 00 00 00 3C 26 00 01 62 00 01 32 26 00 01 61 00 01 31"
    )
    assert _read(V5, wire) == [Publish("t", b"", properties=properties)]
