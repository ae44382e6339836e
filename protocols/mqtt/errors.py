"""Errors of the MQTT codec, after :mod:`protocols.errors` (h11's split). Pure, no I/O.

Every error the peer can cause is a :class:`MqttError`, a
:class:`~protocols.errors.RemoteProtocolError` carrying the MQTT 5.0 reason code a server puts in
the DISCONNECT (or CONNACK) it sends before closing the connection. 5.0 §4.13.1:

    "Where a Server detects a Malformed Packet or Protocol Error, and a Reason Code is given in the
    specification, it MUST close the Network Connection. In the case of an error in a CONNECT
    packet it MAY send a CONNACK packet containing the Reason Code, before closing the Network
    Connection. In the case of an error in any other packet it SHOULD send a DISCONNECT packet
    containing the Reason Code before closing the Network Connection."

5.0 §1.2 draws the line this hierarchy follows: a *Malformed Packet* "cannot be parsed according to
this specification" (0x81); a *Protocol Error* is "an error that is detected after the packet has
been parsed and found to contain data that is not allowed by the protocol or is inconsistent with
the state of the Client or Server" (0x82). MQTT 3.1.1 has no reason codes: its server just closes.

:class:`MqttUsageError` is ours (a :class:`~protocols.errors.LocalProtocolError`): we asked the
codec for a packet MQTT cannot carry.
"""

from __future__ import annotations

from protocols.errors import LocalProtocolError, RemoteProtocolError

from .codes import ReasonCode

__all__ = [
    "MalformedPacket",
    "MqttError",
    "MqttUsageError",
    "PacketTooLarge",
    "ProtocolViolation",
    "UnsupportedProtocolVersion",
]


class MqttError(RemoteProtocolError):
    """The peer sent bytes or packets that break MQTT; ``reason_code`` is the 5.0 code to send."""

    default_reason_code: int = ReasonCode.UNSPECIFIED_ERROR

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = self.default_reason_code if reason_code is None else reason_code


class MalformedPacket(MqttError):
    """Bytes that cannot be parsed as the packet they claim to be (5.0 reason code 0x81)."""

    default_reason_code = ReasonCode.MALFORMED_PACKET


class ProtocolViolation(MqttError):
    """A well-formed packet that MQTT does not allow here (5.0 reason code 0x82)."""

    default_reason_code = ReasonCode.PROTOCOL_ERROR


class PacketTooLarge(MqttError):
    """A packet longer than the receiver's maximum packet size (5.0 reason code 0x95)."""

    default_reason_code = ReasonCode.PACKET_TOO_LARGE

    def __init__(self, size: int, maximum: int) -> None:
        super().__init__(f"packet of {size} bytes exceeds the maximum packet size of {maximum}")
        self.size = size
        self.maximum = maximum


class UnsupportedProtocolVersion(MqttError):
    """A CONNECT for a protocol other than MQTT 3.1.1 or 5.0 (MQTT 3.1, or not MQTT at all).

    3.1.1 §3.1.2.2: "The Server MUST respond to the CONNECT Packet with a CONNACK return code 0x01
    (unacceptable protocol level) and then disconnect the Client if the Protocol Level is not
    supported by the Server [MQTT-3.1.2-2]." 5.0 uses reason code 0x84 for the same.
    """

    default_reason_code = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION

    def __init__(self, protocol_name: str, protocol_level: int) -> None:
        super().__init__(
            f"unsupported protocol {protocol_name!r} level {protocol_level} "
            "(this codec speaks MQTT 3.1.1, level 4, and MQTT 5.0, level 5)"
        )
        self.protocol_name = protocol_name
        self.protocol_level = protocol_level


class MqttUsageError(LocalProtocolError):
    """We asked for a packet or value that MQTT cannot carry."""
