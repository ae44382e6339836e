"""MQTT 3.1.1 and 5.0 codec for the server side: packets, properties, topics. Pure, no I/O.

It is the codec under the embedded broker (:mod:`headend.broker`), which lets ``amr demo`` and the
tests run without Mosquitto. Built from the OASIS standards, MQTT Version 3.1.1 (29 October 2014)
and MQTT Version 5.0 (7 March 2019); each module quotes the sections it implements.

A server reading a client's CONNECT and answering it::

    >>> from protocols.mqtt import NEED_DATA, ConnAck, ServerConnection
    >>> connection = ServerConnection()
    >>> connection.receive_data(bytes.fromhex("10 10 00 04 4D 51 54 54 05 02 00 3C 00"))
    >>> connection.next_event()
    NEED_DATA
    >>> connection.receive_data(bytes.fromhex("00 03 61 62 63"))
    >>> connect = connection.next_event()
    >>> connect.client_id, connect.protocol_level, connect.keep_alive_s
    ('abc', 5, 60)
    >>> connection.send(ConnAck()).hex(" ")
    '20 03 00 00 00'

Modules: :mod:`.wire` (data types, fixed header), :mod:`.properties` (MQTT 5.0 properties),
:mod:`.packets` (the packet dataclasses, ``encode``/``decode``), :mod:`.connection` (framing,
the connection state table), :mod:`.topics` (names, filters, wildcards, ``$share``),
:mod:`.codes` (packet types, reason codes) and :mod:`.errors`.

What is not here: a client state machine (tests use :class:`PacketReader` with a known level),
and any policy (which QoS to grant, sessions, retained messages): that is the broker's.
"""

from __future__ import annotations

from .codes import (
    MQTT_3_1_1,
    MQTT_5,
    SUPPORTED_LEVELS,
    ConnectReturnCode,
    PacketType,
    ReasonCode,
    is_failure,
)
from .connection import (
    CLIENT_PACKETS,
    DEFAULT_MAX_PACKET_SIZE,
    NEED_DATA,
    SERVER_PACKETS,
    TRANSITIONS,
    Direction,
    NeedData,
    PacketReader,
    ServerConnection,
    State,
)
from .errors import (
    MalformedPacket,
    MqttError,
    MqttUsageError,
    PacketTooLarge,
    ProtocolViolation,
    UnsupportedProtocolVersion,
)
from .packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    decode,
    encode,
)
from .properties import NO_PROPERTIES, PROPERTY_SPECS, Properties, PropertyId
from .topics import (
    SharedFilter,
    filter_matches,
    parse_shared,
    split_levels,
    topic_filter_problem,
    topic_matches,
    topic_name_problem,
)

__all__ = [
    "CLIENT_PACKETS",
    "DEFAULT_MAX_PACKET_SIZE",
    "MQTT_3_1_1",
    "MQTT_5",
    "NEED_DATA",
    "NO_PROPERTIES",
    "PROPERTY_SPECS",
    "SERVER_PACKETS",
    "SUPPORTED_LEVELS",
    "TRANSITIONS",
    "Auth",
    "ConnAck",
    "Connect",
    "ConnectReturnCode",
    "Direction",
    "Disconnect",
    "MalformedPacket",
    "MqttError",
    "MqttUsageError",
    "NeedData",
    "Packet",
    "PacketReader",
    "PacketTooLarge",
    "PacketType",
    "PingReq",
    "PingResp",
    "Properties",
    "PropertyId",
    "ProtocolViolation",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "ReasonCode",
    "ServerConnection",
    "SharedFilter",
    "State",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "UnsupportedProtocolVersion",
    "Will",
    "decode",
    "encode",
    "filter_matches",
    "is_failure",
    "parse_shared",
    "split_levels",
    "topic_filter_problem",
    "topic_matches",
    "topic_name_problem",
]
