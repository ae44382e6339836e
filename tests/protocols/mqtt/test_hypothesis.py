"""Hypothesis properties of the MQTT codec.

* Arbitrary bytes, before or after a valid CONNECT, and valid packets with bytes flipped, raise
  nothing but :class:`MqttError` (a ``RemoteProtocolError``), and draining always ends.
* ``decode(encode(packet)) == packet`` for every packet type, at both protocol levels, with every
  property the packet may carry; and that holds however the bytes are chunked.
* Topic matching agrees with a regular-expression model of §4.7.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import RemoteProtocolError
from protocols.mqtt import (
    MQTT_3_1_1,
    MQTT_5,
    NEED_DATA,
    PROPERTY_SPECS,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MqttError,
    Packet,
    PacketReader,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ServerConnection,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    decode,
    encode,
    topic_filter_problem,
    topic_matches,
)
from protocols.mqtt.properties import WILL, Context, DataType

# -- strategies ---------------------------------------------------------------------------------

texts = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=12,
)
level_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00/+#"),
    max_size=5,
)
topic_names = st.lists(level_text, min_size=1, max_size=4).map("/".join).filter(bool)
topic_filters = (
    st.lists(st.one_of(level_text, st.just("+")), min_size=1, max_size=4)
    .flatmap(lambda levels: st.sampled_from(["/".join(levels), "/".join([*levels, "#"]), "#"]))
    .filter(bool)
)
binaries = st.binary(max_size=16)
packet_ids = st.integers(1, 0xFFFF)
qos = st.integers(0, 2)


def _value(data_type: DataType, minimum: int, maximum: int | None, name: str) -> Any:
    if name == "response_topic":
        return topic_names
    if data_type is DataType.UTF8_STRING:
        return texts
    if data_type is DataType.BINARY_DATA:
        return binaries
    if data_type is DataType.UTF8_STRING_PAIR:
        return st.tuples(texts, texts)
    top = {
        DataType.BYTE: 0xFF,
        DataType.TWO_BYTE_INTEGER: 0xFFFF,
        DataType.FOUR_BYTE_INTEGER: 0xFFFF_FFFF,
        DataType.VARIABLE_BYTE_INTEGER: 268_435_455,
    }[data_type]
    return st.integers(minimum, maximum if maximum is not None else top)


@st.composite
def properties(draw: st.DrawFn, context: Context) -> Properties:
    values: dict[str, Any] = {}
    for spec in PROPERTY_SPECS.values():
        if context not in spec.contexts or not draw(st.booleans()):
            continue
        value = _value(spec.data_type, spec.minimum, spec.maximum, spec.name)
        if spec.name in ("user_properties", "subscription_identifiers"):
            most = 3 if context in spec.repeatable else 1
            values[spec.name] = tuple(draw(st.lists(value, min_size=1, max_size=most)))
        else:
            values[spec.name] = draw(value)
    if "authentication_data" in values and "authentication_method" not in values:
        del values["authentication_data"]
    return Properties(**values)


def _props(level: int, context: Context) -> Any:
    return properties(context) if level == MQTT_5 else st.just(Properties())


def _reason(level: int) -> Any:
    return st.integers(0, 0xFF) if level == MQTT_5 else st.just(0)


@st.composite
def wills(draw: st.DrawFn, level: int) -> Will:
    return Will(draw(topic_names), draw(binaries), draw(qos), draw(st.booleans()),
                draw(_props(level, WILL)))  # fmt: skip


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    username = draw(st.none() | texts)
    password = draw(st.none() | binaries)
    if level == MQTT_3_1_1 and username is None:
        password = None
    return Connect(
        client_id=draw(texts),
        protocol_level=level,
        clean_start=draw(st.booleans()),
        keep_alive_s=draw(st.integers(0, 0xFFFF)),
        username=username,
        password=password,
        will=draw(st.none() | wills(level)),
        properties=draw(_props(level, PacketType.CONNECT)),
    )


@st.composite
def publishes(draw: st.DrawFn, level: int) -> Publish:
    level_qos = draw(qos)
    return Publish(
        topic=draw(topic_names),
        payload=draw(st.binary(max_size=64)),
        qos=level_qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if level_qos else False,
        packet_id=draw(packet_ids) if level_qos else None,
        properties=draw(_props(level, PacketType.PUBLISH)),
    )


@st.composite
def subscriptions(draw: st.DrawFn, level: int) -> Subscription:
    if level == MQTT_3_1_1:
        return Subscription(draw(texts), draw(qos))
    return Subscription(draw(texts), draw(qos), draw(st.booleans()), draw(st.booleans()),
                        draw(st.integers(0, 2)))  # fmt: skip


def packets(level: int) -> Any:
    codes = st.integers(0, 0xFF) if level == MQTT_5 else st.sampled_from([0, 1, 2, 0x80])
    acks = [
        st.builds(kind, packet_ids, _reason(level), _props(level, kind.packet_type))
        for kind in (PubAck, PubRec, PubRel, PubComp)
    ]
    choices = [
        connects(level),
        st.builds(ConnAck, st.just(False), _reason(level) if level == MQTT_5 else
                  st.integers(0, 5), _props(level, PacketType.CONNACK)),
        st.builds(ConnAck, st.just(True), st.just(0), _props(level, PacketType.CONNACK)),
        publishes(level),
        *acks,
        st.builds(Subscribe, packet_ids, st.lists(subscriptions(level), min_size=1,
                  max_size=3).map(tuple), _props(level, PacketType.SUBSCRIBE)),
        st.builds(SubAck, packet_ids, st.lists(codes, min_size=1, max_size=3).map(tuple),
                  _props(level, PacketType.SUBACK)),
        st.builds(Unsubscribe, packet_ids, st.lists(texts, min_size=1, max_size=3).map(tuple),
                  _props(level, PacketType.UNSUBSCRIBE)),
        st.just(PingReq()),
        st.just(PingResp()),
        st.builds(Disconnect, _reason(level), _props(level, PacketType.DISCONNECT)),
    ]  # fmt: skip
    if level == MQTT_5:
        choices += [
            st.builds(UnsubAck, packet_ids, st.lists(codes, min_size=1, max_size=3).map(tuple),
                      properties(PacketType.UNSUBACK)),
            st.builds(Auth, _reason(level), properties(PacketType.AUTH)),
        ]  # fmt: skip
    else:
        choices.append(st.builds(UnsubAck, packet_ids))
    return st.one_of(choices)


levels = st.sampled_from([MQTT_3_1_1, MQTT_5])


# -- round trips --------------------------------------------------------------------------------


@settings(max_examples=300)
@given(data=st.data(), level=levels)
def test_decode_encode_round_trip(data: st.DataObject, level: int) -> None:
    packet: Packet = data.draw(packets(level))
    wire = encode(packet, level)
    reader = PacketReader(None if isinstance(packet, Connect) else level)
    reader.receive_data(wire)
    assert reader.next_packet() == packet
    assert reader.next_packet() is NEED_DATA
    assert reader.buffered == 0


@settings(max_examples=80)
@given(data=st.data(), level=levels)
def test_a_session_round_trips_however_it_is_chunked(data: st.DataObject, level: int) -> None:
    client_packets = data.draw(
        st.lists(packets(level).filter(lambda p: p.packet_type in _CLIENT_SESSION), max_size=6)
    )
    stream = encode(Connect("c", level), level) + b"".join(encode(p, level) for p in client_packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    connection = ServerConnection()
    received: list[Packet] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        connection.receive_data(stream[start:end])
        while (event := connection.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            received.append(event)
            if isinstance(event, Connect):
                connection.send(ConnAck())
    assert received == [Connect("c", level), *client_packets]


_CLIENT_SESSION = frozenset(
    {PacketType.PUBLISH, PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL,
     PacketType.PUBCOMP, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE, PacketType.PINGREQ}
)  # fmt: skip


# -- no crash, no hang on garbage ---------------------------------------------------------------


def _drain(connection: ServerConnection) -> None:
    """Read events until NEED_DATA or a typed error; anything else fails the test."""
    for _ in range(10_000):
        try:
            event = connection.next_event()
        except MqttError:
            return
        if event is NEED_DATA:
            return
        if isinstance(event, Connect):
            connection.send(ConnAck())
    raise AssertionError("the connection kept producing events")


@settings(max_examples=1000)
@given(prefix=st.sampled_from([b"", encode(Connect("c", 4), 4), encode(Connect("c"), 5)]),
       garbage=st.binary(max_size=200))  # fmt: skip
def test_arbitrary_bytes_raise_only_typed_errors(prefix: bytes, garbage: bytes) -> None:
    connection = ServerConnection(max_packet_size=256)
    connection.receive_data(prefix + garbage)
    _drain(connection)


@settings(max_examples=500)
@given(first=st.integers(0, 0xFF), body=st.binary(max_size=64), level=levels)
def test_arbitrary_bodies_raise_only_typed_errors(first: int, body: bytes, level: int) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(first, body, level)


@settings(max_examples=200)
@given(data=st.data(), level=levels)
def test_valid_packets_with_flipped_bytes_raise_only_typed_errors(
    data: st.DataObject, level: int
) -> None:
    packet = data.draw(packets(level).filter(lambda p: p.packet_type is not PacketType.CONNECT))
    wire = bytearray(encode(packet, level))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] = data.draw(st.integers(0, 0xFF))
    reader = PacketReader(level, max_packet_size=1024)
    reader.receive_data(bytes(wire))
    try:
        while reader.next_packet() is not NEED_DATA:
            pass
    except MqttError:
        pass


@settings(max_examples=100)
@given(connect=levels.flatmap(connects))
def test_connects_with_flipped_bytes_raise_only_typed_errors(connect: Connect) -> None:
    wire = encode(connect, connect.protocol_level)
    for index in range(len(wire)):
        mutated = bytearray(wire)
        mutated[index] ^= 0xA5
        connection = ServerConnection(max_packet_size=1024)
        connection.receive_data(bytes(mutated))
        _drain(connection)


# -- topic matching against a model -------------------------------------------------------------


def _model(topic_filter: str, topic: str) -> bool:
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    pattern = ""
    for index, level in enumerate(topic_filter.split("/")):
        separator = "/" if index else ""
        if level == "#":
            pattern += "(/.*)?" if index else ".*"
            break
        pattern += separator + ("[^/]*" if level == "+" else re.escape(level))
    return re.fullmatch(pattern, topic, flags=re.DOTALL) is not None


@settings(max_examples=1000)
@given(topic_filter=topic_filters, topic=topic_names | st.sampled_from(["$SYS/x", "a", "/a", "a/"]))
def test_matching_agrees_with_a_regex_model(topic_filter: str, topic: str) -> None:
    assert topic_filter_problem(topic_filter) is None
    assert topic_matches(topic_filter, topic) == _model(topic_filter, topic)
