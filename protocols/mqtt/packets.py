"""MQTT 3.1.1 and 5.0 control packets: frozen dataclasses, ``encode`` and ``decode``. Pure, no I/O.

Theory of operation. A packet is one frozen dataclass per control packet type (5.0 §2.1.2) that
checks itself in ``__post_init__``, so a packet that exists can be encoded. :func:`encode` writes
the fixed header (type, flags, Remaining Length; see :mod:`.wire`) before the body;
:func:`decode` reads one body whose first byte and length the caller (:mod:`.connection`) has
already framed. Both take the protocol level (4 = MQTT 3.1.1, 5 = MQTT 5.0) because the same
packet type has two layouts: MQTT 5.0 adds reason codes and properties (:mod:`.properties`). A
3.1.1 packet is the same dataclass with no properties and reason code 0.

Fixed header flags, 5.0 §2.1.3 (3.1.1 §2.2.2): "Where a flag bit is marked as 'Reserved', it is
reserved for future use and MUST be set to the value listed [MQTT-2.1.3-1]. If invalid flags are
received it is a Malformed Packet." PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, PUBLISH its
DUP/QoS/RETAIN bits, every other packet 0.

Bodies, 5.0 section by section (3.1.1 has the same fields minus properties and reason codes)::

    CONNECT     §3.1  "MQTT" | level | flags | keep alive | props || client id | [will props |
                      will topic | will payload] | [user name] | [password]
    CONNACK     §3.2  ack flags (bit 0 = session present) | reason code | props
    PUBLISH     §3.3  topic | [packet id if QoS > 0] | props || payload (the rest of the packet)
    PUBACK…     §3.4-3.7  packet id | [reason code | [props]]   (reason and props may be omitted)
    SUBSCRIBE   §3.8  packet id | props || (topic filter | subscription options)+
    SUBACK      §3.9  packet id | props || reason code+
    UNSUBSCRIBE §3.10 packet id | props || topic filter+
    UNSUBACK    §3.11 packet id | props || reason code+        (3.1.1: packet id only)
    PINGREQ/RESP §3.12/3.13 nothing
    DISCONNECT  §3.14 [reason code | [props]]                    (3.1.1: nothing)
    AUTH        §3.15 [reason code | [props]]                    (5.0 only)

Rules quoted next to the code that applies them: §3.1.2.3 "The Server MUST validate that the
reserved flag in the CONNECT packet is set to 0 [MQTT-3.1.2-3]"; §3.3.1.1 "The DUP flag MUST be
set to 0 for all QoS 0 messages [MQTT-3.3.1-2]"; §3.3.1.2 "A PUBLISH Packet MUST NOT have both QoS
bits set to 1 [MQTT-3.3.1-4]"; §2.2.1 a Packet Identifier is non-zero; §3.8.3 "The Payload MUST
contain at least one Topic Filter and Subscription Options pair [MQTT-3.8.3-2]"; §3.8.3.1
"Bits 6 and 7 of the Subscription Options byte are reserved ... The Server MUST treat a SUBSCRIBE
packet as malformed if any of Reserved bits in the Payload are non-zero [MQTT-3.8.3-5]" and "It is
a Protocol Error to send a Retain Handling value of 3".

Topic *filters* are only checked for being UTF-8 here: whether a filter is well-formed is the
server's answer to give (a SUBACK reason code, 5.0 §3.9.3), not a reason to drop the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from .codes import MQTT_3_1_1, MQTT_5, SUPPORTED_LEVELS, PacketType, ReasonCode
from .errors import (
    MalformedPacket,
    MqttUsageError,
    ProtocolViolation,
    UnsupportedProtocolVersion,
)
from .properties import NO_PROPERTIES, WILL, Properties, decode_properties, encode_properties
from .topics import topic_name_problem
from .wire import (
    MAX_UINT16,
    BodyReader,
    encode_binary,
    encode_uint16,
    encode_utf8,
    encode_varint,
    utf8_problem,
)

__all__ = [
    "PROTOCOL_NAME",
    "Auth",
    "ConnAck",
    "Connect",
    "Disconnect",
    "Packet",
    "PingReq",
    "PingResp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "check_fixed_header",
    "decode",
    "encode",
]

PROTOCOL_NAME: Final = "MQTT"
V311_SUBACK_CODES: Final = frozenset({0x00, 0x01, 0x02, 0x80})  # 3.1.1 §3.9.3

# first-byte low nibble that §2.1.3 fixes for each type (PUBLISH has its own rules)
_FIXED_FLAGS: Final = {
    PacketType.PUBREL: 0b0010,
    PacketType.SUBSCRIBE: 0b0010,
    PacketType.UNSUBSCRIBE: 0b0010,
}


# -- checks shared by the dataclasses -----------------------------------------------------------


def _check_string(value: str | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise MqttUsageError(f"{what} must be a str")
    problem = utf8_problem(value)
    if problem is not None:
        raise MqttUsageError(f"{what} {problem}")


def _check_binary(value: bytes | None, what: str, limit: int | None = MAX_UINT16) -> None:
    if value is None:
        return
    if not isinstance(value, bytes):
        raise MqttUsageError(f"{what} must be bytes")
    if limit is not None and len(value) > limit:
        raise MqttUsageError(f"{what} is {len(value)} bytes, more than {limit}")


def _check_int(value: int, what: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MqttUsageError(f"{what} must be an int in {low}..{high}, not {value!r}")


def _check_properties(properties: Properties, context: PacketType | str) -> None:
    if not isinstance(properties, Properties):
        raise MqttUsageError("properties must be a Properties")
    properties.check_context(context)


def _check_reason_codes(codes: tuple[int, ...], what: str) -> None:
    if not isinstance(codes, tuple):
        raise MqttUsageError(f"{what} must be a tuple")
    for code in codes:
        _check_int(code, what, 0, 0xFF)


# -- packets ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Will:
    """The Will Message of a CONNECT (5.0 §3.1.2.5, §3.1.3.2-3.1.3.4)."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_string(self.topic, "will topic")
        problem = topic_name_problem(self.topic)
        if problem is not None:
            raise MqttUsageError(f"will {problem}")
        _check_binary(self.payload, "will payload")
        _check_int(self.qos, "will QoS", 0, 2)
        _check_properties(self.properties, WILL)


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT, 5.0 §3.1. ``protocol_level`` 4 is MQTT 3.1.1, 5 is MQTT 5.0.

    ``clean_start`` is 3.1.1's CleanSession flag and 5.0's Clean Start (the same bit).
    """

    packet_type: ClassVar[PacketType] = PacketType.CONNECT

    client_id: str = ""
    protocol_level: int = MQTT_5
    clean_start: bool = True
    keep_alive_s: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        if self.protocol_level not in SUPPORTED_LEVELS:
            raise MqttUsageError(f"protocol level must be 4 or 5, not {self.protocol_level!r}")
        _check_string(self.client_id, "client identifier")
        _check_int(self.keep_alive_s, "keep alive", 0, MAX_UINT16)
        _check_string(self.username, "user name")
        _check_binary(self.password, "password")
        if self.will is not None and not isinstance(self.will, Will):
            raise MqttUsageError("will must be a Will")
        _check_properties(self.properties, PacketType.CONNECT)
        if self.protocol_level == MQTT_3_1_1:
            if self.properties or (self.will is not None and self.will.properties):
                raise MqttUsageError("MQTT 3.1.1 has no properties")
            if self.password is not None and self.username is None:
                # 3.1.1 §3.1.2.9 "If the User Name Flag is set to 0, the Password Flag MUST be
                # set to 0 [MQTT-3.1.2-22]" (5.0 dropped this rule)
                raise MqttUsageError("MQTT 3.1.1 sends a password only with a user name")
        if (
            self.properties.authentication_data is not None
            and self.properties.authentication_method is None
        ):
            # 5.0 §3.1.2.11.10
            raise MqttUsageError("authentication data without an authentication method")


@dataclass(frozen=True, slots=True)
class ConnAck:
    """CONNACK, 5.0 §3.2 (``reason_code`` is 3.1.1's Connect Return code at level 4)."""

    packet_type: ClassVar[PacketType] = PacketType.CONNACK

    session_present: bool = False
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_int(self.reason_code, "CONNACK reason code", 0, 0xFF)
        _check_properties(self.properties, PacketType.CONNACK)
        if self.session_present and self.reason_code != 0:
            # 5.0 §3.2.2.1.1 "If a Server sends a CONNACK packet containing a non-zero Reason
            # Code it MUST set Session Present to 0 [MQTT-3.2.2-6]" (3.1.1: [MQTT-3.2.2-4])
            raise MqttUsageError("a refused CONNACK cannot have session present")


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH, 5.0 §3.3. ``packet_id`` is None exactly when ``qos`` is 0.

    The topic may be empty only in MQTT 5.0 with a Topic Alias (§3.3.2.3.4).
    """

    packet_type: ClassVar[PacketType] = PacketType.PUBLISH

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_string(self.topic, "topic name")
        if self.topic or self.properties.topic_alias is None:
            problem = topic_name_problem(self.topic)
            if problem is not None:
                raise MqttUsageError(problem)
        _check_binary(self.payload, "payload", limit=None)
        _check_int(self.qos, "QoS", 0, 2)
        if self.qos == 0:
            if self.packet_id is not None:
                raise MqttUsageError("a QoS 0 PUBLISH has no packet identifier")
            if self.dup:
                raise MqttUsageError("the DUP flag MUST be 0 for QoS 0 [MQTT-3.3.1-2]")
        elif self.packet_id is None:
            raise MqttUsageError("a QoS 1 or 2 PUBLISH needs a packet identifier")
        else:
            _check_int(self.packet_id, "packet identifier", 1, MAX_UINT16)
        _check_properties(self.properties, PacketType.PUBLISH)


@dataclass(frozen=True, slots=True)
class _Acknowledgement:
    packet_id: int
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES

    packet_type: ClassVar[PacketType]

    def __post_init__(self) -> None:
        _check_int(self.packet_id, "packet identifier", 1, MAX_UINT16)
        _check_int(self.reason_code, "reason code", 0, 0xFF)
        _check_properties(self.properties, self.packet_type)


@dataclass(frozen=True, slots=True)
class PubAck(_Acknowledgement):
    """PUBACK, 5.0 §3.4: the answer to a QoS 1 PUBLISH."""

    packet_type: ClassVar[PacketType] = PacketType.PUBACK


@dataclass(frozen=True, slots=True)
class PubRec(_Acknowledgement):
    """PUBREC, 5.0 §3.5: QoS 2 delivery, part 1."""

    packet_type: ClassVar[PacketType] = PacketType.PUBREC


@dataclass(frozen=True, slots=True)
class PubRel(_Acknowledgement):
    """PUBREL, 5.0 §3.6: QoS 2 delivery, part 2."""

    packet_type: ClassVar[PacketType] = PacketType.PUBREL


@dataclass(frozen=True, slots=True)
class PubComp(_Acknowledgement):
    """PUBCOMP, 5.0 §3.7: QoS 2 delivery, part 3."""

    packet_type: ClassVar[PacketType] = PacketType.PUBCOMP


@dataclass(frozen=True, slots=True)
class Subscription:
    """One Topic Filter and its Subscription Options (5.0 §3.8.3.1; 3.1.1 has the QoS only)."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0

    def __post_init__(self) -> None:
        _check_string(self.topic_filter, "topic filter")
        _check_int(self.qos, "subscription QoS", 0, 2)
        _check_int(self.retain_handling, "retain handling", 0, 2)

    @property
    def is_v311(self) -> bool:
        """Whether MQTT 3.1.1 can carry it (only the QoS bits)."""
        return not (self.no_local or self.retain_as_published or self.retain_handling)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE, 5.0 §3.8."""

    packet_type: ClassVar[PacketType] = PacketType.SUBSCRIBE

    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_int(self.packet_id, "packet identifier", 1, MAX_UINT16)
        if not isinstance(self.subscriptions, tuple) or not self.subscriptions:
            raise MqttUsageError("SUBSCRIBE needs a non-empty tuple of Subscription")
        if not all(isinstance(item, Subscription) for item in self.subscriptions):
            raise MqttUsageError("SUBSCRIBE needs a non-empty tuple of Subscription")
        _check_properties(self.properties, PacketType.SUBSCRIBE)


@dataclass(frozen=True, slots=True)
class SubAck:
    """SUBACK, 5.0 §3.9: one reason code (or 3.1.1 return code) per filter, in order."""

    packet_type: ClassVar[PacketType] = PacketType.SUBACK

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_int(self.packet_id, "packet identifier", 1, MAX_UINT16)
        _check_reason_codes(self.reason_codes, "SUBACK reason code")
        if not self.reason_codes:
            raise MqttUsageError("SUBACK needs one reason code per topic filter")
        _check_properties(self.properties, PacketType.SUBACK)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE, 5.0 §3.10."""

    packet_type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE

    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_int(self.packet_id, "packet identifier", 1, MAX_UINT16)
        if not isinstance(self.topic_filters, tuple) or not self.topic_filters:
            raise MqttUsageError("UNSUBSCRIBE needs a non-empty tuple of topic filters")
        for topic_filter in self.topic_filters:
            _check_string(topic_filter, "topic filter")
        _check_properties(self.properties, PacketType.UNSUBSCRIBE)


@dataclass(frozen=True, slots=True)
class UnsubAck:
    """UNSUBACK, 5.0 §3.11: one reason code per filter in 5.0, none in 3.1.1."""

    packet_type: ClassVar[PacketType] = PacketType.UNSUBACK

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_int(self.packet_id, "packet identifier", 1, MAX_UINT16)
        _check_reason_codes(self.reason_codes, "UNSUBACK reason code")
        _check_properties(self.properties, PacketType.UNSUBACK)


@dataclass(frozen=True, slots=True)
class PingReq:
    """PINGREQ, 5.0 §3.12."""

    packet_type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(frozen=True, slots=True)
class PingResp:
    """PINGRESP, 5.0 §3.13."""

    packet_type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT, 5.0 §3.14 (3.1.1: no reason code, no properties)."""

    packet_type: ClassVar[PacketType] = PacketType.DISCONNECT

    reason_code: int = ReasonCode.NORMAL_DISCONNECTION
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_int(self.reason_code, "DISCONNECT reason code", 0, 0xFF)
        _check_properties(self.properties, PacketType.DISCONNECT)


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH, 5.0 §3.15 (enhanced authentication; MQTT 5.0 only)."""

    packet_type: ClassVar[PacketType] = PacketType.AUTH

    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = NO_PROPERTIES

    def __post_init__(self) -> None:
        _check_int(self.reason_code, "AUTH reason code", 0, 0xFF)
        _check_properties(self.properties, PacketType.AUTH)


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)

_Decoder = Callable[[BodyReader, int, bool], Packet]  # (body, fixed header flags, is 5.0)


# -- encoding -----------------------------------------------------------------------------------


def encode(packet: Packet, protocol_level: int) -> bytes:
    """The bytes of ``packet`` for a connection at ``protocol_level`` (4 or 5).

    MqttUsageError if the packet cannot be said at that level (properties or reason codes in
    3.1.1, AUTH in 3.1.1, a CONNECT of another level).
    """
    if protocol_level not in SUPPORTED_LEVELS:
        raise MqttUsageError(f"protocol level must be 4 or 5, not {protocol_level!r}")
    v5 = protocol_level == MQTT_5
    flags = 0
    body: bytes
    if isinstance(packet, Connect):
        if packet.protocol_level != protocol_level:
            raise MqttUsageError("CONNECT of another protocol level")
        body = _encode_connect(packet)
    elif isinstance(packet, ConnAck):
        _only_v5(v5, packet.properties, "CONNACK properties")
        body = bytes((int(packet.session_present), packet.reason_code))
        if v5:
            body += encode_properties(packet.properties, PacketType.CONNACK)
    elif isinstance(packet, Publish):
        flags = packet.dup << 3 | packet.qos << 1 | packet.retain
        body = _encode_publish(packet, v5)
    elif isinstance(packet, _Acknowledgement):
        flags = _FIXED_FLAGS.get(packet.packet_type, 0)
        body = encode_uint16(packet.packet_id) + _reason_and_properties(
            packet.reason_code, packet.properties, packet.packet_type, v5
        )
    elif isinstance(packet, Subscribe):
        flags = 0b0010
        body = _encode_subscribe(packet, v5)
    elif isinstance(packet, SubAck):
        if not v5:
            _only_v5(v5, packet.properties, "SUBACK properties")
            if not set(packet.reason_codes) <= V311_SUBACK_CODES:
                raise MqttUsageError("MQTT 3.1.1 SUBACK return codes are 0, 1, 2 and 0x80")
        body = encode_uint16(packet.packet_id)
        if v5:
            body += encode_properties(packet.properties, PacketType.SUBACK)
        body += bytes(packet.reason_codes)
    elif isinstance(packet, Unsubscribe):
        flags = 0b0010
        _only_v5(v5, packet.properties, "UNSUBSCRIBE properties")
        body = encode_uint16(packet.packet_id)
        if v5:
            body += encode_properties(packet.properties, PacketType.UNSUBSCRIBE)
        body += b"".join(encode_utf8(topic_filter) for topic_filter in packet.topic_filters)
    elif isinstance(packet, UnsubAck):
        body = encode_uint16(packet.packet_id)
        if v5:
            if not packet.reason_codes:
                raise MqttUsageError("an MQTT 5.0 UNSUBACK has one reason code per filter")
            body += encode_properties(packet.properties, PacketType.UNSUBACK)
            body += bytes(packet.reason_codes)
        elif packet.reason_codes or packet.properties:
            raise MqttUsageError("an MQTT 3.1.1 UNSUBACK has no reason codes nor properties")
    elif isinstance(packet, PingReq | PingResp):
        body = b""
    elif isinstance(packet, Disconnect):
        body = _reason_and_properties(
            packet.reason_code, packet.properties, PacketType.DISCONNECT, v5
        )
    elif isinstance(packet, Auth):
        if not v5:
            raise MqttUsageError("AUTH exists in MQTT 5.0 only")
        body = _reason_and_properties(packet.reason_code, packet.properties, PacketType.AUTH, v5)
    else:  # pragma: no cover - the union is exhausted above
        raise MqttUsageError(f"not an MQTT packet: {packet!r}")
    first = packet.packet_type << 4 | flags
    return bytes((first,)) + encode_varint(len(body)) + body


def _only_v5(v5: bool, properties: Properties, what: str) -> None:
    if not v5 and properties:
        raise MqttUsageError(f"{what}: MQTT 3.1.1 has no properties")


def _reason_and_properties(
    reason_code: int, properties: Properties, packet_type: PacketType, v5: bool
) -> bytes:
    """5.0 §3.4.2.1 (and §3.14.2.1, §3.15.2.1): "The Reason Code and Property Length can be
    omitted if the Reason Code is 0x00 (Success) and there are no Properties"."""
    if not v5:
        if reason_code != 0 or properties:
            raise MqttUsageError(f"MQTT 3.1.1 {packet_type.name} has no reason code nor properties")
        return b""
    if not properties:
        return b"" if reason_code == 0 else bytes((reason_code,))
    return bytes((reason_code,)) + encode_properties(properties, packet_type)


def _encode_connect(packet: Connect) -> bytes:
    v5 = packet.protocol_level == MQTT_5
    will = packet.will
    flags = (
        (packet.username is not None) << 7
        | (packet.password is not None) << 6
        | (will is not None and will.retain) << 5
        | (will.qos if will is not None else 0) << 3
        | (will is not None) << 2
        | packet.clean_start << 1
    )
    out = bytearray(encode_utf8(PROTOCOL_NAME))
    out += bytes((packet.protocol_level, flags))
    out += encode_uint16(packet.keep_alive_s)
    if v5:
        out += encode_properties(packet.properties, PacketType.CONNECT)
    out += encode_utf8(packet.client_id)
    if will is not None:
        if v5:
            out += encode_properties(will.properties, WILL)
        out += encode_utf8(will.topic) + encode_binary(will.payload)
    if packet.username is not None:
        out += encode_utf8(packet.username)
    if packet.password is not None:
        out += encode_binary(packet.password)
    return bytes(out)


def _encode_publish(packet: Publish, v5: bool) -> bytes:
    if not v5:
        _only_v5(v5, packet.properties, "PUBLISH properties")
    out = bytearray(encode_utf8(packet.topic))
    if packet.packet_id is not None:
        out += encode_uint16(packet.packet_id)
    if v5:
        out += encode_properties(packet.properties, PacketType.PUBLISH)
    out += packet.payload
    return bytes(out)


def _encode_subscribe(packet: Subscribe, v5: bool) -> bytes:
    _only_v5(v5, packet.properties, "SUBSCRIBE properties")
    out = bytearray(encode_uint16(packet.packet_id))
    if v5:
        out += encode_properties(packet.properties, PacketType.SUBSCRIBE)
    for item in packet.subscriptions:
        if not v5 and not item.is_v311:
            raise MqttUsageError("MQTT 3.1.1 subscription options are the QoS only")
        options = (
            item.qos
            | item.no_local << 2
            | item.retain_as_published << 3
            | item.retain_handling << 4
        )
        out += encode_utf8(item.topic_filter) + bytes((options,))
    return bytes(out)


# -- decoding -----------------------------------------------------------------------------------


def _judge_first_byte(first_byte: int, protocol_level: int | None) -> PacketType | str:
    value = first_byte >> 4
    flags = first_byte & 0x0F
    if value == 0 or (value == PacketType.AUTH and protocol_level == MQTT_3_1_1):
        return f"reserved control packet type {value} (5.0 §2.1.2)"
    packet_type = PacketType(value)
    if packet_type is PacketType.PUBLISH:
        if flags & 0b0110 == 0b0110:
            return "PUBLISH with both QoS bits set [MQTT-3.3.1-4]"
        if flags & 0b1000 and not flags & 0b0110:
            return "PUBLISH QoS 0 with the DUP flag set [MQTT-3.3.1-2]"
    elif flags != _FIXED_FLAGS.get(packet_type, 0):
        return f"{packet_type.name} with reserved flags 0b{flags:04b} [MQTT-2.1.3-1]"
    return packet_type


# every first byte judged once per level: this runs for every packet received
_FIRST_BYTES: Final = {
    level: tuple(_judge_first_byte(byte, level) for byte in range(256))
    for level in (None, MQTT_3_1_1, MQTT_5)
}


def check_fixed_header(first_byte: int, protocol_level: int | None) -> PacketType:
    """The packet type of a first byte; MalformedPacket for a reserved type or wrong flags.

    ``protocol_level`` None means "before CONNECT" (AUTH is then judged as 5.0 would).
    """
    verdict = _FIRST_BYTES[protocol_level][first_byte]
    if isinstance(verdict, str):
        raise MalformedPacket(verdict)
    return verdict


def decode(first_byte: int, body: bytes, protocol_level: int) -> Packet:
    """The packet whose fixed header starts with ``first_byte`` and whose body is ``body``.

    ``protocol_level`` is the connection's (a CONNECT states its own). Raises only
    :class:`~protocols.mqtt.errors.MqttError` subclasses for bad input.
    """
    if protocol_level not in SUPPORTED_LEVELS:
        raise MqttUsageError(f"protocol level must be 4 or 5, not {protocol_level!r}")
    packet_type = check_fixed_header(first_byte, protocol_level)
    reader = BodyReader(body)
    v5 = protocol_level == MQTT_5
    try:
        packet = _DECODERS[packet_type](reader, first_byte & 0x0F, v5)
    except MqttUsageError as exc:  # a field the dataclass refuses: the peer broke a rule
        raise ProtocolViolation(f"{packet_type.name}: {exc}") from exc
    if not reader.at_end():
        raise MalformedPacket(
            f"{packet_type.name}: {reader.remaining} unexpected bytes at the end of the packet"
        )
    return packet


def _decode_connect(reader: BodyReader, flags: int, v5_connection: bool) -> Connect:
    name = reader.utf8("protocol name")
    level = reader.byte("protocol level")
    if name != PROTOCOL_NAME or level not in SUPPORTED_LEVELS:
        raise UnsupportedProtocolVersion(name, level)
    v5 = level == MQTT_5
    connect_flags = reader.byte("connect flags")
    if connect_flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is not 0 [MQTT-3.1.2-3]")
    has_username = bool(connect_flags & 0x80)
    has_password = bool(connect_flags & 0x40)
    will_retain = bool(connect_flags & 0x20)
    will_qos = (connect_flags >> 3) & 0x03
    has_will = bool(connect_flags & 0x04)
    if will_qos == 3:
        raise MalformedPacket("CONNECT Will QoS is 3 [MQTT-3.1.2-12]")
    if not has_will and (will_qos or will_retain):
        raise MalformedPacket("CONNECT Will QoS or Will Retain set without a Will Flag")
    if not v5 and has_password and not has_username:
        raise MalformedPacket("CONNECT password flag without user name flag [MQTT-3.1.2-22]")
    keep_alive = reader.uint16("keep alive")
    properties = decode_properties(reader, PacketType.CONNECT) if v5 else NO_PROPERTIES
    if properties.authentication_data is not None and properties.authentication_method is None:
        raise ProtocolViolation("CONNECT authentication data without a method (5.0 §3.1.2.11.10)")
    client_id = reader.utf8("client identifier")
    will = None
    if has_will:
        will_properties = decode_properties(reader, WILL) if v5 else NO_PROPERTIES
        topic = reader.utf8("will topic")
        problem = topic_name_problem(topic)
        if problem is not None:
            raise ProtocolViolation(f"CONNECT will {problem}", ReasonCode.TOPIC_NAME_INVALID)
        payload = reader.binary("will payload")
        will = Will(topic, payload, will_qos, will_retain, will_properties)
    username = reader.utf8("user name") if has_username else None
    password = reader.binary("password") if has_password else None
    return Connect(
        client_id=client_id,
        protocol_level=level,
        clean_start=bool(connect_flags & 0x02),
        keep_alive_s=keep_alive,
        username=username,
        password=password,
        will=will,
        properties=properties,
    )


def _decode_connack(reader: BodyReader, flags: int, v5: bool) -> ConnAck:
    ack_flags = reader.byte("CONNACK acknowledge flags")
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK reserved acknowledge flags are not 0 [MQTT-3.2.2-1]")
    reason_code = reader.byte("CONNACK reason code")
    properties = decode_properties(reader, PacketType.CONNACK) if v5 else NO_PROPERTIES
    return ConnAck(bool(ack_flags & 0x01), reason_code, properties)


def _decode_publish(reader: BodyReader, flags: int, v5: bool) -> Publish:
    qos = (flags >> 1) & 0x03
    topic = reader.utf8("topic name")
    packet_id = reader.uint16("packet identifier") if qos else None
    if packet_id == 0:
        raise ProtocolViolation("PUBLISH packet identifier is 0 (5.0 §2.2.1)")
    properties = decode_properties(reader, PacketType.PUBLISH) if v5 else NO_PROPERTIES
    if topic or properties.topic_alias is None:
        problem = topic_name_problem(topic)
        if problem is not None:
            raise ProtocolViolation(f"PUBLISH {problem}", ReasonCode.TOPIC_NAME_INVALID)
    return Publish(
        topic=topic,
        payload=reader.rest(),
        qos=qos,
        retain=bool(flags & 0x01),
        dup=bool(flags & 0x08),
        packet_id=packet_id,
        properties=properties,
    )


def _decode_reason_and_properties(
    reader: BodyReader, packet_type: PacketType, v5: bool
) -> tuple[int, Properties]:
    if not v5 or reader.at_end():
        return ReasonCode.SUCCESS, NO_PROPERTIES
    reason_code = reader.byte(f"{packet_type.name} reason code")
    if reader.at_end():
        return reason_code, NO_PROPERTIES
    return reason_code, decode_properties(reader, packet_type)


def _acknowledgement_decoder(
    cls: type[PubAck] | type[PubRec] | type[PubRel] | type[PubComp],
) -> _Decoder:
    def decode_acknowledgement(reader: BodyReader, flags: int, v5: bool) -> Packet:
        packet_id = reader.uint16(f"{cls.packet_type.name} packet identifier")
        reason_code, properties = _decode_reason_and_properties(reader, cls.packet_type, v5)
        return cls(packet_id, reason_code, properties)

    return decode_acknowledgement


def _decode_subscribe(reader: BodyReader, flags: int, v5: bool) -> Subscribe:
    packet_id = reader.uint16("SUBSCRIBE packet identifier")
    properties = decode_properties(reader, PacketType.SUBSCRIBE) if v5 else NO_PROPERTIES
    subscriptions = []
    while not reader.at_end():
        topic_filter = reader.utf8("SUBSCRIBE topic filter")
        options = reader.byte("subscription options")
        if options & (0xC0 if v5 else 0xFC) or options & 0x03 == 3:
            raise MalformedPacket(
                f"subscription options 0x{options:02X}: reserved bits or QoS 3 [MQTT-3.8.3-5]"
            )
        retain_handling = (options >> 4) & 0x03
        if retain_handling == 3:
            raise ProtocolViolation("SUBSCRIBE Retain Handling is 3 (5.0 §3.8.3.1)")
        subscriptions.append(
            Subscription(
                topic_filter,
                qos=options & 0x03,
                no_local=bool(options & 0x04),
                retain_as_published=bool(options & 0x08),
                retain_handling=retain_handling,
            )
        )
    if not subscriptions:
        raise ProtocolViolation("SUBSCRIBE without any topic filter [MQTT-3.8.3-2]")
    return Subscribe(packet_id, tuple(subscriptions), properties)


def _decode_suback(reader: BodyReader, flags: int, v5: bool) -> SubAck:
    packet_id = reader.uint16("SUBACK packet identifier")
    properties = decode_properties(reader, PacketType.SUBACK) if v5 else NO_PROPERTIES
    codes = tuple(reader.rest())
    if not codes:
        raise ProtocolViolation("SUBACK without any reason code")
    return SubAck(packet_id, codes, properties)


def _decode_unsubscribe(reader: BodyReader, flags: int, v5: bool) -> Unsubscribe:
    packet_id = reader.uint16("UNSUBSCRIBE packet identifier")
    properties = decode_properties(reader, PacketType.UNSUBSCRIBE) if v5 else NO_PROPERTIES
    topic_filters = []
    while not reader.at_end():
        topic_filters.append(reader.utf8("UNSUBSCRIBE topic filter"))
    if not topic_filters:
        raise ProtocolViolation("UNSUBSCRIBE without any topic filter [MQTT-3.10.3-2]")
    return Unsubscribe(packet_id, tuple(topic_filters), properties)


def _decode_unsuback(reader: BodyReader, flags: int, v5: bool) -> UnsubAck:
    packet_id = reader.uint16("UNSUBACK packet identifier")
    if not v5:
        return UnsubAck(packet_id)
    properties = decode_properties(reader, PacketType.UNSUBACK)
    codes = tuple(reader.rest())
    if not codes:
        raise ProtocolViolation("UNSUBACK without any reason code")
    return UnsubAck(packet_id, codes, properties)


def _decode_empty(cls: type[PingReq] | type[PingResp]) -> _Decoder:
    def decode_empty(reader: BodyReader, flags: int, v5: bool) -> Packet:
        return cls()

    return decode_empty


def _decode_disconnect(reader: BodyReader, flags: int, v5: bool) -> Disconnect:
    reason_code, properties = _decode_reason_and_properties(reader, PacketType.DISCONNECT, v5)
    return Disconnect(reason_code, properties)


def _decode_auth(reader: BodyReader, flags: int, v5: bool) -> Auth:
    reason_code, properties = _decode_reason_and_properties(reader, PacketType.AUTH, v5)
    return Auth(reason_code, properties)


_DECODERS: Final[dict[PacketType, _Decoder]] = {
    PacketType.CONNECT: _decode_connect,
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBLISH: _decode_publish,
    PacketType.PUBACK: _acknowledgement_decoder(PubAck),
    PacketType.PUBREC: _acknowledgement_decoder(PubRec),
    PacketType.PUBREL: _acknowledgement_decoder(PubRel),
    PacketType.PUBCOMP: _acknowledgement_decoder(PubComp),
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _decode_unsuback,
    PacketType.PINGREQ: _decode_empty(PingReq),
    PacketType.PINGRESP: _decode_empty(PingResp),
    PacketType.DISCONNECT: _decode_disconnect,
    PacketType.AUTH: _decode_auth,
}
