"""Sans-I/O MQTT connections: bytes in, packets out; packets in, bytes out. Pure, no I/O.

Theory of operation. :class:`PacketReader` cuts a byte stream into packets: it waits for the first
byte and the Remaining Length (5.0 §2.1.4), then for the whole body, and hands both to
:func:`~protocols.mqtt.packets.decode`. Too few bytes is not an error (:data:`NEED_DATA`). The
buffer is bounded by the maximum packet size: a packet that announces more is refused as soon as
its Remaining Length is in, never after buffering it (5.0 §3.2.2.3.6, the server's Maximum Packet
Size: "If a Server receives a packet whose size exceeds this limit, this is a Protocol Error, the
Server uses DISCONNECT with Reason Code 0x95 (Packet too large)"). The caller drains events after
each ``receive_data``, so the buffer never holds more than one packet plus one read.

:class:`ServerConnection` is a reader plus the connection's state machine, seen from the server.
Its table, :data:`TRANSITIONS`, lists every (state, direction, packet type) that MQTT allows; any
other received packet is a :class:`~protocols.mqtt.errors.ProtocolViolation` and any other packet
we try to send is a :class:`~protocols.mqtt.errors.MqttUsageError`::

    AWAIT_CONNECT --recv CONNECT--> AWAIT_CONNACK --send CONNACK (accepted)--> CONNECTED
                                          |  \\--send CONNACK (refused)-------> CLOSED
                                          |  (the client may send on before our CONNACK: 5.0 §3.1.4
                                          |   speaks of a Client that "exploits its freedom to send
                                          |   Control Packets before it receives a CONNACK")
    CONNECTED --recv/send the packets of a session--> CONNECTED
    CONNECTED --recv DISCONNECT or send DISCONNECT--> CLOSED
    any state --bytes that break MQTT--> ERROR (the error is raised again on every later call)

Rules it applies: 3.1.1 §3.1.0 / 5.0 §3.1: "After a Network Connection is established by a Client
to a Server, the first packet sent from the Client to the Server MUST be a CONNECT packet
[MQTT-3.1.0-1]" and "The Server MUST process a second CONNECT packet sent from a Client as a
Protocol Error and close the Network Connection [MQTT-3.1.0-2]". 5.0 §3.14.4: after DISCONNECT
the sender "MUST NOT send any more MQTT Control Packets on that Network Connection
[MQTT-3.14.4-1]". 5.0 §3.14: "The Server MUST NOT send a DISCONNECT until after it has sent a
CONNACK with Reason Code of less than 0x80 [MQTT-3.14.0-1]" (before that a refusal is a CONNACK).

The packet type and flags are checked from the first byte, before the body arrives, so a peer that
is not speaking MQTT at all (an HTTP request, TLS on the plain port) is refused at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Final

from .codes import MQTT_3_1_1, MQTT_5, SUPPORTED_LEVELS, PacketType, is_failure
from .errors import MqttError, MqttUsageError, PacketTooLarge, ProtocolViolation
from .packets import ConnAck, Connect, Disconnect, Packet, check_fixed_header, decode, encode
from .wire import MAX_VARINT, parse_fixed_header

__all__ = [
    "CLIENT_PACKETS",
    "DEFAULT_MAX_PACKET_SIZE",
    "NEED_DATA",
    "SERVER_PACKETS",
    "TRANSITIONS",
    "Direction",
    "NeedData",
    "PacketReader",
    "ServerConnection",
    "State",
]

DEFAULT_MAX_PACKET_SIZE: Final = 1024 * 1024  # 1 MiB, fixed header included
MIN_PACKET_SIZE: Final = 5  # room for any fixed header; smaller limits make no sense


class NeedData(Enum):
    """Type of :data:`NEED_DATA`: more bytes are needed before the next packet can come out."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


def _check_max_packet_size(max_packet_size: int) -> None:
    if isinstance(max_packet_size, bool) or not isinstance(max_packet_size, int):
        raise MqttUsageError("max_packet_size must be an int")
    if not MIN_PACKET_SIZE <= max_packet_size <= MAX_VARINT + 5:
        raise MqttUsageError(
            f"max_packet_size must be in {MIN_PACKET_SIZE}..{MAX_VARINT + 5}, not {max_packet_size}"
        )


class PacketReader:
    """Cuts a byte stream into packets of one protocol level; no state machine.

    ``protocol_level`` None means "not known yet": the first packet must then be a CONNECT, whose
    level becomes the reader's. A client's reader knows the level from the start.
    """

    __slots__ = ("_buffer", "max_packet_size", "protocol_level")

    def __init__(
        self,
        protocol_level: int | None = None,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    ) -> None:
        _check_max_packet_size(max_packet_size)
        if protocol_level is not None and protocol_level not in SUPPORTED_LEVELS:
            raise MqttUsageError(f"protocol level must be 4 or 5, not {protocol_level!r}")
        self.protocol_level = protocol_level
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into packets."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the connection (``b""`` is a no-op; EOF is the transport's)."""
        self._buffer += data

    def peek_type(self) -> PacketType | None:
        """The type of the next packet once its first byte is in (checked, flags included)."""
        if not self._buffer:
            return None
        return check_fixed_header(self._buffer[0], self.protocol_level)

    def next_packet(self) -> Packet | NeedData:
        """The next whole packet, or :data:`NEED_DATA`; MqttError for bytes that break MQTT."""
        buffer = self._buffer
        if not buffer:
            return NEED_DATA
        first_byte = buffer[0]
        check_fixed_header(first_byte, self.protocol_level)
        header = parse_fixed_header(buffer)
        if header is None:
            return NEED_DATA
        header_length, remaining_length = header
        total = header_length + remaining_length
        if total > self.max_packet_size:
            raise PacketTooLarge(total, self.max_packet_size)
        if len(buffer) < total:
            return NEED_DATA
        body = bytes(buffer[header_length:total])
        del buffer[:total]
        if self.protocol_level is None:
            if first_byte >> 4 != PacketType.CONNECT:
                raise ProtocolViolation("the first packet must be CONNECT [MQTT-3.1.0-1]")
            packet = decode(first_byte, body, MQTT_3_1_1)  # CONNECT states its own level
            assert isinstance(packet, Connect)
            self.protocol_level = packet.protocol_level
            return packet
        return decode(first_byte, body, self.protocol_level)


class State(Enum):
    """The states of an MQTT connection, seen from the server (see the module docstring)."""

    AWAIT_CONNECT = "AWAIT_CONNECT"
    AWAIT_CONNACK = "AWAIT_CONNACK"
    CONNECTED = "CONNECTED"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


class Direction(Enum):
    RECEIVED = "received"
    SENT = "sent"


_T = PacketType
# 5.0 §2.1.2 Table 2-1, column "Direction of flow"
CLIENT_PACKETS: Final = frozenset(
    {_T.CONNECT, _T.PUBLISH, _T.PUBACK, _T.PUBREC, _T.PUBREL, _T.PUBCOMP, _T.SUBSCRIBE,
     _T.UNSUBSCRIBE, _T.PINGREQ, _T.DISCONNECT, _T.AUTH}
)  # fmt: skip
SERVER_PACKETS: Final = frozenset(
    {_T.CONNACK, _T.PUBLISH, _T.PUBACK, _T.PUBREC, _T.PUBREL, _T.PUBCOMP, _T.SUBACK,
     _T.UNSUBACK, _T.PINGRESP, _T.DISCONNECT, _T.AUTH}
)  # fmt: skip
_SESSION_FROM_CLIENT: Final = CLIENT_PACKETS - {_T.CONNECT, _T.DISCONNECT}
_SESSION_FROM_SERVER: Final = SERVER_PACKETS - {_T.CONNACK, _T.DISCONNECT}

_S = State
_R = Direction.RECEIVED
_W = Direction.SENT
TRANSITIONS: Final[Mapping[tuple[State, Direction, PacketType], State]] = {
    (_S.AWAIT_CONNECT, _R, _T.CONNECT): _S.AWAIT_CONNACK,
    **{(_S.AWAIT_CONNACK, _R, t): _S.AWAIT_CONNACK for t in _SESSION_FROM_CLIENT},
    (_S.AWAIT_CONNACK, _R, _T.DISCONNECT): _S.CLOSED,
    (_S.AWAIT_CONNACK, _W, _T.CONNACK): _S.CONNECTED,  # a refused CONNACK goes to CLOSED instead
    **{(_S.CONNECTED, _R, t): _S.CONNECTED for t in _SESSION_FROM_CLIENT},
    **{(_S.CONNECTED, _W, t): _S.CONNECTED for t in _SESSION_FROM_SERVER},
    (_S.CONNECTED, _R, _T.DISCONNECT): _S.CLOSED,
    (_S.CONNECTED, _W, _T.DISCONNECT): _S.CLOSED,
}


class ServerConnection:
    """The server's side of one MQTT connection, 3.1.1 or 5.0 (the CONNECT decides).

    ``receive_data(bytes)``, then ``next_event()`` until it returns :data:`NEED_DATA`;
    ``send(packet)`` returns the bytes to write. Every received-packet error is an
    :class:`~protocols.mqtt.errors.MqttError` (a ``RemoteProtocolError``), after which the
    connection is in state ERROR and can only send a refusal (see :meth:`send`).
    """

    __slots__ = ("_accepted", "_error", "_reader", "_session_expiry_zero", "_state")

    def __init__(self, *, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self._reader = PacketReader(max_packet_size=max_packet_size)
        self._state = State.AWAIT_CONNECT
        self._error: MqttError | None = None
        self._accepted = False  # an accepting CONNACK went out
        self._session_expiry_zero = True  # the CONNECT's Session Expiry Interval was 0 or absent

    @property
    def state(self) -> State:
        return self._state

    @property
    def protocol_level(self) -> int | None:
        """4 or 5 once the CONNECT is in, None before."""
        return self._reader.protocol_level

    @property
    def max_packet_size(self) -> int:
        return self._reader.max_packet_size

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    def receive_data(self, data: bytes) -> None:
        self._reader.receive_data(data)

    def next_event(self) -> Packet | NeedData:
        """The next packet from the client, or :data:`NEED_DATA`."""
        if self._error is not None:
            raise self._error
        try:
            packet_type = self._reader.peek_type()
            if packet_type is None:
                return NEED_DATA
            self._transition(_R, packet_type)  # check before the body is in ...
            packet = self._reader.next_packet()
            if isinstance(packet, NeedData):
                return packet
            following = self._transition(_R, packet.packet_type)  # ... and apply it after
            if isinstance(packet, Connect):
                self._session_expiry_zero = not packet.properties.session_expiry_interval
            elif (
                isinstance(packet, Disconnect)
                and self._session_expiry_zero
                and packet.properties.session_expiry_interval
            ):
                # 5.0 §3.14.2.2.2: "If the Session Expiry Interval in the CONNECT packet was zero,
                # then it is a Protocol Error to set a non-zero Session Expiry Interval in the
                # DISCONNECT packet sent by the Client [MQTT-3.14.2-2]" (not a valid DISCONNECT:
                # the connection is not closed by it, the server refuses it)
                raise ProtocolViolation(
                    "DISCONNECT sets a Session Expiry Interval after 0 in CONNECT [MQTT-3.14.2-2]"
                )
            self._state = following
            return packet
        except MqttError as exc:
            self._state = State.ERROR
            self._error = exc
            raise

    def _transition(self, direction: Direction, packet_type: PacketType) -> State:
        if direction is _R and packet_type not in CLIENT_PACKETS:
            raise ProtocolViolation(f"a client does not send {packet_type.name} (5.0 §2.1.2)")
        following = TRANSITIONS.get((self._state, direction, packet_type))
        if following is None:
            if direction is _R:
                if packet_type is _T.CONNECT:
                    raise ProtocolViolation("second CONNECT on a connection [MQTT-3.1.0-2]")
                if self._state is State.AWAIT_CONNECT:
                    raise ProtocolViolation(f"{packet_type.name} before CONNECT [MQTT-3.1.0-1]")
                raise ProtocolViolation(f"{packet_type.name} received in state {self._state.name}")
            raise MqttUsageError(f"cannot send {packet_type.name} in state {self._state.name}")
        return following

    def send(self, packet: Packet) -> bytes:
        """The bytes of ``packet``, after checking that the server may send it now.

        In state ERROR (a broken packet came in) only what 5.0 §4.13 allows is let out: a refused
        CONNACK if no CONNACK was sent yet, else a DISCONNECT, and only in 5.0.
        """
        level = self.protocol_level
        if level is None:
            raise MqttUsageError("nothing can be sent before the CONNECT is in")
        refused = isinstance(packet, ConnAck) and (
            is_failure(packet.reason_code) or (level == MQTT_3_1_1 and packet.reason_code != 0)
        )
        if self._state is State.ERROR:
            if not (
                (refused and not self._accepted)
                or (isinstance(packet, Disconnect) and self._accepted and level == MQTT_5)
            ):
                raise MqttUsageError(
                    f"after a protocol error only a refusal may be sent, not {packet.packet_type.name}"
                )
            return encode(packet, level)
        following = self._transition(_W, packet.packet_type)
        if refused:
            following = State.CLOSED
        data = encode(packet, level)
        self._state = following
        if isinstance(packet, ConnAck) and not refused:
            self._accepted = True
        return data
