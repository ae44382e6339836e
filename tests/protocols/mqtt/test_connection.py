"""ServerConnection: the state table walked for every (state, direction, packet type)."""

from __future__ import annotations

import pytest

from protocols.mqtt import (
    CLIENT_PACKETS,
    MQTT_3_1_1,
    MQTT_5,
    NEED_DATA,
    TRANSITIONS,
    Auth,
    ConnAck,
    Connect,
    Direction,
    Disconnect,
    MalformedPacket,
    MqttError,
    MqttUsageError,
    Packet,
    PacketTooLarge,
    PacketType,
    PingReq,
    PingResp,
    ProtocolViolation,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ServerConnection,
    State,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    encode,
)

SAMPLES: dict[PacketType, Packet] = {
    PacketType.CONNECT: Connect("c"),
    PacketType.CONNACK: ConnAck(),
    PacketType.PUBLISH: Publish("t", b"x"),
    PacketType.PUBACK: PubAck(1),
    PacketType.PUBREC: PubRec(1),
    PacketType.PUBREL: PubRel(1),
    PacketType.PUBCOMP: PubComp(1),
    PacketType.SUBSCRIBE: Subscribe(1, (Subscription("t"),)),
    PacketType.SUBACK: SubAck(1, (0,)),
    PacketType.UNSUBSCRIBE: Unsubscribe(1, ("t",)),
    PacketType.UNSUBACK: UnsubAck(1, (0,)),
    PacketType.PINGREQ: PingReq(),
    PacketType.PINGRESP: PingResp(),
    PacketType.DISCONNECT: Disconnect(),
    PacketType.AUTH: Auth(),
}
CONNECT = encode(Connect("c"), MQTT_5)


def _in_state(state: State) -> ServerConnection:
    connection = ServerConnection()
    if state is State.AWAIT_CONNECT:
        return connection
    connection.receive_data(CONNECT)
    assert connection.next_event() == Connect("c")
    if state is State.AWAIT_CONNACK:
        return connection
    if state is State.ERROR:
        connection.receive_data(b"\x00\x00")
        with pytest.raises(MalformedPacket):
            connection.next_event()
        return connection
    connection.send(ConnAck())
    if state is State.CONNECTED:
        return connection
    connection.receive_data(encode(Disconnect(), MQTT_5))
    assert connection.next_event() == Disconnect()
    assert connection.state is State.CLOSED
    return connection


STATES = [State.AWAIT_CONNECT, State.AWAIT_CONNACK, State.CONNECTED, State.CLOSED]


@pytest.mark.parametrize("state", STATES, ids=[s.name for s in STATES])
@pytest.mark.parametrize("packet_type", list(PacketType), ids=[t.name for t in PacketType])
def test_receiving_every_packet_type_in_every_state(state: State, packet_type: PacketType) -> None:
    connection = _in_state(state)
    assert connection.state is state
    connection.receive_data(encode(SAMPLES[packet_type], MQTT_5))
    following = TRANSITIONS.get((state, Direction.RECEIVED, packet_type))
    if following is None:
        with pytest.raises(ProtocolViolation):
            connection.next_event()
        assert connection.state is State.ERROR
    else:
        assert packet_type in CLIENT_PACKETS
        assert connection.next_event() == SAMPLES[packet_type]
        assert connection.state is following
        assert connection.next_event() is NEED_DATA


@pytest.mark.parametrize("state", STATES, ids=[s.name for s in STATES])
@pytest.mark.parametrize("packet_type", list(PacketType), ids=[t.name for t in PacketType])
def test_sending_every_packet_type_in_every_state(state: State, packet_type: PacketType) -> None:
    connection = _in_state(state)
    following = TRANSITIONS.get((state, Direction.SENT, packet_type))
    if following is None:
        with pytest.raises(MqttUsageError):
            connection.send(SAMPLES[packet_type])
        assert connection.state is state
    else:
        assert connection.send(SAMPLES[packet_type]) == encode(SAMPLES[packet_type], MQTT_5)
        assert connection.state is following


def test_a_refused_connack_closes() -> None:
    connection = _in_state(State.AWAIT_CONNACK)
    assert connection.send(ConnAck(False, 0x87)) == bytes.fromhex("20 03 00 87 00")
    assert connection.state is State.CLOSED


def test_a_refused_311_connack_closes() -> None:
    connection = ServerConnection()
    connection.receive_data(encode(Connect("c", MQTT_3_1_1), MQTT_3_1_1))
    assert connection.next_event() == Connect("c", MQTT_3_1_1)
    assert connection.protocol_level == MQTT_3_1_1
    assert connection.send(ConnAck(False, 5)) == bytes.fromhex("20 02 00 05")
    assert connection.state is State.CLOSED


def test_after_an_error_only_a_refusal_goes_out() -> None:
    connection = _in_state(State.CONNECTED)
    connection.receive_data(bytes.fromhex("36 00"))  # PUBLISH QoS 3
    with pytest.raises(MalformedPacket) as first:
        connection.next_event()
    with pytest.raises(MalformedPacket) as again:  # the same error, every time
        connection.next_event()
    assert again.value is first.value
    assert connection.send(Disconnect(0x81)) == bytes.fromhex("E0 01 81")
    with pytest.raises(MqttUsageError):
        connection.send(PingResp())


def test_an_error_before_connack_may_be_refused_with_a_connack() -> None:
    connection = ServerConnection()
    connection.receive_data(CONNECT + bytes.fromhex("C1 00"))  # then PINGREQ with bad flags
    assert isinstance(connection.next_event(), Connect)
    with pytest.raises(MalformedPacket):
        connection.next_event()
    with pytest.raises(MqttUsageError):
        connection.send(Disconnect(0x81))  # no DISCONNECT before an accepting CONNACK
    assert connection.send(ConnAck(False, 0x81)) == bytes.fromhex("20 03 00 81 00")


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("TLS client hello", bytes.fromhex("16 03 01 02 00 01 00 01 FC 03 03")),
        ("PUBLISH first", bytes.fromhex("30 03 00 01 74")),
    ],
)
def test_a_peer_not_speaking_mqtt_is_refused_on_its_first_byte(name: str, wire: bytes) -> None:
    connection = ServerConnection()
    connection.receive_data(wire[:1])
    with pytest.raises(MqttError):
        connection.next_event()


def test_a_packet_too_large_is_refused_from_its_header() -> None:
    connection = ServerConnection(max_packet_size=100)
    connection.receive_data(CONNECT)
    connection.next_event()
    connection.send(ConnAck())
    connection.receive_data(bytes.fromhex("30 CA 01"))  # 202 bytes announced, none sent
    with pytest.raises(PacketTooLarge) as caught:
        connection.next_event()
    assert (caught.value.size, caught.value.maximum) == (205, 100)
    assert caught.value.reason_code == 0x95


def test_a_packet_of_exactly_the_maximum_size_passes() -> None:
    packet = Publish("t", b"x" * 90)
    wire = encode(packet, MQTT_5)
    connection = ServerConnection(max_packet_size=len(wire))
    connection.receive_data(CONNECT)
    connection.next_event()
    connection.send(ConnAck())
    connection.receive_data(wire)
    assert connection.next_event() == packet


def test_a_session_fed_one_byte_at_a_time() -> None:
    packets: list[Packet] = [
        Connect("c", MQTT_3_1_1, clean_start=False, keep_alive_s=5),
        Subscribe(1, (Subscription("a/#", 1),)),
        Publish("a/b", b"hello", qos=1, packet_id=2),
        PubAck(1),
        PingReq(),
        Unsubscribe(3, ("a/#",)),
        Disconnect(),
    ]
    stream = b"".join(encode(p, MQTT_3_1_1) for p in packets)
    connection = ServerConnection()
    received: list[Packet] = []
    longest = max(len(encode(p, MQTT_3_1_1)) for p in packets)
    for byte in stream:
        connection.receive_data(bytes((byte,)))
        while (event := connection.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            received.append(event)
            if isinstance(event, Connect):
                connection.send(ConnAck())
        assert connection.buffered < longest  # one packet at most, never the stream
    assert received == packets
    assert connection.state is State.CLOSED


@pytest.mark.parametrize("size", [0, 4, True, "1"])
def test_silly_maximum_sizes_are_our_mistake(size: object) -> None:
    with pytest.raises(MqttUsageError):
        ServerConnection(max_packet_size=size)  # type: ignore[arg-type]


def test_nothing_can_be_sent_before_connect() -> None:
    with pytest.raises(MqttUsageError):
        ServerConnection().send(ConnAck())
