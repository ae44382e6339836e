"""MQTT 5.0 properties: every property identifier of the spec, decoded, checked and encoded.

Theory of operation. 5.0 §2.2.2: "The last field in the Variable Header of the CONNECT, CONNACK,
PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT,
and AUTH packet is a set of Properties. In the CONNECT packet there is also an optional set of
Properties in the Will Properties field with the Payload."::

    +-------------------------------+----------------+-------+----------------+-------+---
    | Property Length (Var. Byte I.)| identifier     | value | identifier     | value | ...
    +-------------------------------+----------------+-------+----------------+-------+---

§2.2.2.2: "A Property consists of an Identifier which defines its usage and data type, followed by
a value." The identifier is a Variable Byte Integer (all of today's fit in one byte). "A Control
Packet which contains an Identifier which is not valid for its packet type, or contains a value not
of the specified data type, is a Malformed Packet"; each property's own section adds "It is a
Protocol Error to include the ... more than once" (only User Property may repeat, and Subscription
Identifier in a PUBLISH a server sends) and the allowed values (0 or 1 for the flags; "It is a
Protocol Error to include ... a value of 0" for Receive Maximum, Maximum Packet Size, Topic Alias
and Subscription Identifier). §3.1.2.11.10: "It is a Protocol Error to include Authentication Data
if there is no Authentication Method."

:data:`PROPERTY_SPECS` is Table 2-4 of the spec: identifier, name, data type and the packets that
may carry it. :class:`Properties` holds any set of them; the codec keeps them all (a broker passes
the ones it does not use through, or drops them), in a value that compares equal after a round
trip (User Properties keep their order, as §3.3.2.3.7 requires for forwarding).

MQTT 3.1.1 has no properties: its packets carry :data:`NO_PROPERTIES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum, IntEnum
from typing import Any, Final

from .codes import PacketType
from .errors import MalformedPacket, MqttUsageError, ProtocolViolation
from .topics import topic_name_problem
from .wire import (
    MAX_UINT16,
    MAX_UINT32,
    MAX_VARINT,
    BodyReader,
    encode_binary,
    encode_uint16,
    encode_uint32,
    encode_utf8,
    encode_varint,
    utf8_problem,
)

__all__ = [
    "NO_PROPERTIES",
    "PROPERTY_SPECS",
    "WILL",
    "DataType",
    "Properties",
    "PropertyId",
    "PropertySpec",
    "decode_properties",
    "encode_properties",
]


class DataType(Enum):
    """5.0 §1.5: the data types a property value can have."""

    BYTE = "Byte"
    TWO_BYTE_INTEGER = "Two Byte Integer"
    FOUR_BYTE_INTEGER = "Four Byte Integer"
    VARIABLE_BYTE_INTEGER = "Variable Byte Integer"
    UTF8_STRING = "UTF-8 Encoded String"
    BINARY_DATA = "Binary Data"
    UTF8_STRING_PAIR = "UTF-8 String Pair"


class PropertyId(IntEnum):
    """5.0 §2.2.2.2, Table 2-4."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


WILL: Final = "will"  # the Will Properties of a CONNECT payload, a context of their own
Context = PacketType | str

_P = PacketType
_ACKS = frozenset({_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP})
_ALL_WITH_PROPERTIES: frozenset[Context] = frozenset(
    {
        _P.CONNECT,
        _P.CONNACK,
        _P.PUBLISH,
        WILL,
        *_ACKS,
        _P.SUBSCRIBE,
        _P.SUBACK,
        _P.UNSUBSCRIBE,
        _P.UNSUBACK,
        _P.DISCONNECT,
        _P.AUTH,
    }
)


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One row of 5.0 Table 2-4, with the value rule its own section states."""

    identifier: PropertyId
    name: str  # the field of Properties that holds it
    data_type: DataType
    contexts: frozenset[Context]
    minimum: int = 0
    maximum: int | None = None  # None: the data type's own maximum
    repeatable: frozenset[Context] = frozenset()

    def value_problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be this property's value (None if it can)."""
        kind = self.data_type
        if kind is DataType.UTF8_STRING:
            if not isinstance(value, str):
                return "must be a str"
            problem = utf8_problem(value)
            if problem is None and self.identifier is PropertyId.RESPONSE_TOPIC:
                problem = topic_name_problem(value)  # §3.3.2.3.5 [MQTT-3.3.2-14]
            return problem
        if kind is DataType.BINARY_DATA:
            if not isinstance(value, bytes):
                return "must be bytes"
            return None if len(value) <= MAX_UINT16 else "is longer than 65535 bytes"
        if kind is DataType.UTF8_STRING_PAIR:
            if not (isinstance(value, tuple) and len(value) == 2):
                return "must be a (name, value) pair"
            problems = [
                utf8_problem(part) if isinstance(part, str) else "not a str" for part in value
            ]
            return next((p for p in problems if p is not None), None)
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an int"
        maximum = self.maximum if self.maximum is not None else _TYPE_MAXIMUM[kind]
        if not self.minimum <= value <= maximum:
            return f"must be in {self.minimum}..{maximum}, not {value}"
        return None


_TYPE_MAXIMUM: Final = {
    DataType.BYTE: 0xFF,
    DataType.TWO_BYTE_INTEGER: MAX_UINT16,
    DataType.FOUR_BYTE_INTEGER: MAX_UINT32,
    DataType.VARIABLE_BYTE_INTEGER: MAX_VARINT,
}

_I = PropertyId
_D = DataType
_PUBLISH_AND_WILL: frozenset[Context] = frozenset({_P.PUBLISH, WILL})
_REASON_STRING_IN: frozenset[Context] = frozenset(
    {_P.CONNACK, *_ACKS, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH}
)


def _spec(
    identifier: PropertyId,
    name: str,
    data_type: DataType,
    contexts: frozenset[Context] | set[Context],
    **rules: Any,
) -> PropertySpec:
    return PropertySpec(identifier, name, data_type, frozenset(contexts), **rules)


# 5.0 Table 2-4, with the value rules of §3.1.2.11, §3.2.2.3, §3.3.2.3 and §3.8.2.1.
PROPERTY_SPECS: Final[Mapping[int, PropertySpec]] = {
    spec.identifier: spec
    for spec in (
        _spec(_I.PAYLOAD_FORMAT_INDICATOR, "payload_format_indicator", _D.BYTE,
              _PUBLISH_AND_WILL, maximum=1),
        _spec(_I.MESSAGE_EXPIRY_INTERVAL, "message_expiry_interval", _D.FOUR_BYTE_INTEGER,
              _PUBLISH_AND_WILL),
        _spec(_I.CONTENT_TYPE, "content_type", _D.UTF8_STRING, _PUBLISH_AND_WILL),
        _spec(_I.RESPONSE_TOPIC, "response_topic", _D.UTF8_STRING, _PUBLISH_AND_WILL),
        _spec(_I.CORRELATION_DATA, "correlation_data", _D.BINARY_DATA, _PUBLISH_AND_WILL),
        _spec(_I.SUBSCRIPTION_IDENTIFIER, "subscription_identifiers", _D.VARIABLE_BYTE_INTEGER,
              {_P.PUBLISH, _P.SUBSCRIBE}, minimum=1, repeatable=frozenset({_P.PUBLISH})),
        _spec(_I.SESSION_EXPIRY_INTERVAL, "session_expiry_interval", _D.FOUR_BYTE_INTEGER,
              {_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
        _spec(_I.ASSIGNED_CLIENT_IDENTIFIER, "assigned_client_identifier", _D.UTF8_STRING,
              {_P.CONNACK}),
        _spec(_I.SERVER_KEEP_ALIVE, "server_keep_alive", _D.TWO_BYTE_INTEGER, {_P.CONNACK}),
        _spec(_I.AUTHENTICATION_METHOD, "authentication_method", _D.UTF8_STRING,
              {_P.CONNECT, _P.CONNACK, _P.AUTH}),
        _spec(_I.AUTHENTICATION_DATA, "authentication_data", _D.BINARY_DATA,
              {_P.CONNECT, _P.CONNACK, _P.AUTH}),
        _spec(_I.REQUEST_PROBLEM_INFORMATION, "request_problem_information", _D.BYTE,
              {_P.CONNECT}, maximum=1),
        _spec(_I.WILL_DELAY_INTERVAL, "will_delay_interval", _D.FOUR_BYTE_INTEGER, {WILL}),
        _spec(_I.REQUEST_RESPONSE_INFORMATION, "request_response_information", _D.BYTE,
              {_P.CONNECT}, maximum=1),
        _spec(_I.RESPONSE_INFORMATION, "response_information", _D.UTF8_STRING, {_P.CONNACK}),
        _spec(_I.SERVER_REFERENCE, "server_reference", _D.UTF8_STRING,
              {_P.CONNACK, _P.DISCONNECT}),
        _spec(_I.REASON_STRING, "reason_string", _D.UTF8_STRING, _REASON_STRING_IN),
        _spec(_I.RECEIVE_MAXIMUM, "receive_maximum", _D.TWO_BYTE_INTEGER,
              {_P.CONNECT, _P.CONNACK}, minimum=1),
        _spec(_I.TOPIC_ALIAS_MAXIMUM, "topic_alias_maximum", _D.TWO_BYTE_INTEGER,
              {_P.CONNECT, _P.CONNACK}),
        _spec(_I.TOPIC_ALIAS, "topic_alias", _D.TWO_BYTE_INTEGER, {_P.PUBLISH}, minimum=1),
        _spec(_I.MAXIMUM_QOS, "maximum_qos", _D.BYTE, {_P.CONNACK}, maximum=1),
        _spec(_I.RETAIN_AVAILABLE, "retain_available", _D.BYTE, {_P.CONNACK}, maximum=1),
        _spec(_I.USER_PROPERTY, "user_properties", _D.UTF8_STRING_PAIR, _ALL_WITH_PROPERTIES,
              repeatable=_ALL_WITH_PROPERTIES),
        _spec(_I.MAXIMUM_PACKET_SIZE, "maximum_packet_size", _D.FOUR_BYTE_INTEGER,
              {_P.CONNECT, _P.CONNACK}, minimum=1),
        _spec(_I.WILDCARD_SUBSCRIPTION_AVAILABLE, "wildcard_subscription_available", _D.BYTE,
              {_P.CONNACK}, maximum=1),
        _spec(_I.SUBSCRIPTION_IDENTIFIER_AVAILABLE, "subscription_identifier_available", _D.BYTE,
              {_P.CONNACK}, maximum=1),
        _spec(_I.SHARED_SUBSCRIPTION_AVAILABLE, "shared_subscription_available", _D.BYTE,
              {_P.CONNACK}, maximum=1),
    )
}  # fmt: skip

_MULTI_VALUED: Final = frozenset({"subscription_identifiers", "user_properties"})
_BY_NAME: Final = {spec.name: spec for spec in PROPERTY_SPECS.values()}


@dataclass(frozen=True, slots=True)
class Properties:
    """A set of MQTT 5.0 properties; None (or an empty tuple) means absent.

    The two repeatable ones are tuples: ``subscription_identifiers`` and ``user_properties``
    (``(name, value)`` pairs, in order; names may repeat).
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    # computed once: packets consult it on every encode and check (not a property of MQTT)
    _present: tuple[tuple[str, Any], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        present = tuple(
            (name, value)
            for name in _FIELD_NAMES
            if (value := getattr(self, name)) is not None and value != ()
        )
        object.__setattr__(self, "_present", present)
        for name, value in present:
            spec = _BY_NAME[name]
            values = value if name in _MULTI_VALUED else (value,)
            if name in _MULTI_VALUED and not isinstance(value, tuple):
                raise MqttUsageError(f"property {name} must be a tuple")
            for item in values:
                problem = spec.value_problem(item)
                if problem is not None:
                    raise MqttUsageError(f"property {name} {problem}")

    def present(self) -> tuple[tuple[str, Any], ...]:
        """``(field name, value)`` of every property that is present, in identifier order."""
        return self._present

    def __bool__(self) -> bool:
        return bool(self._present)

    def check_context(self, context: Context) -> None:
        """MqttUsageError unless every property present may be sent in ``context``."""
        for name, value in self.present():
            spec = _BY_NAME[name]
            if context not in spec.contexts:
                raise MqttUsageError(f"property {name} may not be sent in {_context_name(context)}")
            if name in _MULTI_VALUED and len(value) > 1 and context not in spec.repeatable:
                raise MqttUsageError(f"property {name} may appear once in {_context_name(context)}")


# Properties declares its fields in identifier order, so encoding walks them in that order.
_FIELD_NAMES: Final = tuple(item.name for item in fields(Properties) if item.init)

NO_PROPERTIES: Final = Properties()


def _context_name(context: Context) -> str:
    return context.name if isinstance(context, PacketType) else "Will Properties"


def encode_properties(properties: Properties, context: Context) -> bytes:
    """The Property Length and the properties, in identifier order (5.0 §2.2.2)."""
    properties.check_context(context)
    body = bytearray()
    for name, value in properties.present():
        spec = _BY_NAME[name]
        for item in value if name in _MULTI_VALUED else (value,):
            body += encode_varint(spec.identifier)
            body += _encode_value(spec.data_type, item)
    return encode_varint(len(body)) + bytes(body)


def _encode_value(data_type: DataType, value: Any) -> bytes:
    if data_type is DataType.BYTE:
        return bytes((value,))
    if data_type is DataType.TWO_BYTE_INTEGER:
        return encode_uint16(value)
    if data_type is DataType.FOUR_BYTE_INTEGER:
        return encode_uint32(value)
    if data_type is DataType.VARIABLE_BYTE_INTEGER:
        return encode_varint(value)
    if data_type is DataType.UTF8_STRING:
        return encode_utf8(value)
    if data_type is DataType.BINARY_DATA:
        return encode_binary(value)
    name, text = value
    return encode_utf8(name) + encode_utf8(text)


def _decode_value(data_type: DataType, reader: BodyReader, what: str) -> Any:
    if data_type is DataType.BYTE:
        return reader.byte(what)
    if data_type is DataType.TWO_BYTE_INTEGER:
        return reader.uint16(what)
    if data_type is DataType.FOUR_BYTE_INTEGER:
        return reader.uint32(what)
    if data_type is DataType.VARIABLE_BYTE_INTEGER:
        return reader.varint(what)
    if data_type is DataType.UTF8_STRING:
        return reader.utf8(what)
    if data_type is DataType.BINARY_DATA:
        return reader.binary(what)
    return (reader.utf8(what + " name"), reader.utf8(what + " value"))


def decode_properties(reader: BodyReader, context: Context) -> Properties:
    """Read a Property Length and the properties it covers (5.0 §2.2.2)."""
    where = _context_name(context)
    block = reader.sub_reader(reader.varint(f"{where} property length"), f"{where} properties")
    values: dict[str, Any] = {}
    while not block.at_end():
        identifier = block.varint(f"{where} property identifier")
        spec = PROPERTY_SPECS.get(identifier)
        if spec is None:
            raise MalformedPacket(f"{where}: unknown property identifier 0x{identifier:02X}")
        if context not in spec.contexts:
            raise MalformedPacket(f"{where}: property {spec.name} is not valid in this packet")
        value = _decode_value(spec.data_type, block, f"{where} property {spec.name}")
        problem = spec.value_problem(value)
        if problem is not None:
            raise ProtocolViolation(f"{where}: property {spec.name} {problem}")
        if spec.name in _MULTI_VALUED:
            if spec.name in values and context not in spec.repeatable:
                raise ProtocolViolation(f"{where}: property {spec.name} included more than once")
            values[spec.name] = (*values.get(spec.name, ()), value)
        elif spec.name in values:
            raise ProtocolViolation(f"{where}: property {spec.name} included more than once")
        else:
            values[spec.name] = value
    if not values:
        return NO_PROPERTIES
    return Properties(**values)
