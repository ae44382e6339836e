"""MQTT numbers: control packet types, protocol levels and reason codes. Pure, no I/O.

Sources: MQTT Version 3.1.1 (OASIS Standard, 29 October 2014) and MQTT Version 5.0 (OASIS
Standard, 7 March 2019), cited below as "3.1.1" and "5.0" with their section numbers.

* 5.0 §2.1.2 "MQTT Control Packet type": the high nibble of the first byte, 1 (CONNECT) to 15
  (AUTH); 0 is reserved, and so is 15 in 3.1.1.
* 3.1.1 §3.1.2.2 / 5.0 §3.1.2.2 "Protocol Level" / "Protocol Version": 4 is MQTT 3.1.1, 5 is
  MQTT 5.0 (3 was MQTT 3.1, protocol name ``MQIsdp``, which we do not speak).
* 3.1.1 §3.2.2.3 "Connect Return code" (0 to 5), and 5.0 §2.4 "Reason Code": one byte, "values
  less than 0x80 indicate successful completion ... values of 0x80 or greater indicate failure".
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

__all__ = [
    "MQTT_3_1_1",
    "MQTT_5",
    "SUPPORTED_LEVELS",
    "ConnectReturnCode",
    "PacketType",
    "ReasonCode",
    "is_failure",
]

MQTT_3_1_1: Final = 4
MQTT_5: Final = 5
SUPPORTED_LEVELS: Final = frozenset({MQTT_3_1_1, MQTT_5})


class PacketType(IntEnum):
    """5.0 §2.1.2, Table 2-1: the control packet types (bits 7-4 of the first byte)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15  # MQTT 5.0 only; reserved in 3.1.1


class ConnectReturnCode(IntEnum):
    """3.1.1 §3.2.2.3, Table 3.1: the CONNACK return codes of MQTT 3.1.1."""

    ACCEPTED = 0x00
    UNACCEPTABLE_PROTOCOL_VERSION = 0x01
    IDENTIFIER_REJECTED = 0x02
    SERVER_UNAVAILABLE = 0x03
    BAD_USERNAME_OR_PASSWORD = 0x04
    NOT_AUTHORIZED = 0x05


class ReasonCode(IntEnum):
    """5.0 §2.4, Table 2-6: the reason codes of MQTT 5.0 (one byte; 0x80 and above are failures).

    0x00 has three names in the spec (Success, Normal disconnection, Granted QoS 0); the aliases
    below keep each packet's vocabulary readable.
    """

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


def is_failure(reason_code: int) -> bool:
    """5.0 §2.4: "Reason Code values of 0x80 or greater indicate failure"."""
    return reason_code >= 0x80
