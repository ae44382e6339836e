"""The data units a concentrator and its PLC module exchange to read a meter (clause 5.5).

A concentrator-driven read is one AFN 13H F1 "monitor slave node" exchange: the concentrator asks
the module to deliver a meter frame (DL/T 645 or DL/T 698.45, opaque here) to one slave node and
the module answers with the meter's reply, or denies with AFN 00H F2 and a reason::

    concentrator                                              PLC module
      | C=41H R1 module flag, A = master, meter   AFN 13H F1      |
      |  protocol | delay flag | n | n x addr | len | meter frame |
      | ------------------------------------------------------->  |
      |                                                           |  ... PLC, seconds ...
      | C=81H A = meter, master                   AFN 13H F1      |
      |  transit time (2, s) | protocol | len | meter's reply     |
      | <-------------------------------------------------------  |
      |              or AFN 00H F2: reason (1 byte)               |

Data units (all multi-byte numbers low byte first, addresses as in :mod:`.frame`)::

    AFN 00H F1 confirm (both directions)   status (4): D0 command processed,
                                                       D1..D31 channel 1..31 idle (1) or busy (0)
                                           wait time (2), seconds
    AFN 00H F2 deny (both directions)      reason (1), see DenyReason
    AFN 03H F4 query master node address   down: empty; up: master node address (6)
    AFN 05H F3 start broadcast (down)      control word (1) | length (1) | frame
    AFN 13H F1 monitor slave node, down    protocol (1) | delay-related flag (1) |
                                           attached nodes n (1) | n x address (6) |
                                           length (1) | frame
    AFN 13H F1 monitor slave node, up      transit time (2), seconds | protocol (1) |
                                           length (1) | frame

Where the layouts come from (the standard text was not available; see :mod:`.frame` for the keys):

* AFN 13H F1 down: [SPEC] (vector ``con-3762-afn13f1-read-energy``), [NUC]
  ``Uart_3762_AFN13F1_Tx``, [LN] ``AFN13.c``, and the ``format.h`` header (AFN13_F1_DOWN).
* AFN 13H F1 up: [LN] ``AFN13.c`` (upstream branch: 2-byte "current message local communication
  upstream duration" in seconds, protocol, length, content), ``format.h`` (AFN13_F1_UP, a 2-byte
  TransTime first), and [NUC] ``Uart_3762_AFN13F1_Rx``, which takes the length at data byte 3
  and the meter frame from data byte 4 - three sources that agree. The 2009 edition may lack
  the 2-byte transit time (unverified; all three sources follow the 2013 layout).
* AFN 00H F1: [LN] ``AFN00.c`` (6 bytes: 32 status bits, 2-byte wait time in s), ``format.h``
  (CommandStatus, ChannelStatus[31], WaitingTime); [NUC] confirms the module's reports with a
  6-byte data unit ``FF FF FF FF 00 00``.
* AFN 00H F2 reasons 0..12: [LN] ``AFN00.c``, the same list in at least three more public
  concentrator and test-tool sources (found by code search). Reasons 109..111 belong to an HPLC
  concurrent-reading extension seen in two public sources; unverified against the standard.
* AFN 03H F4 and AFN 05H F3: [LN] ``AFN03.c``/``AFN05.c`` and ``format.h``; [NUC] sends AFN 05H F3
  for broadcast time sync and waits 120 s. The control word's value 03H is "phase
  identification" per [LN] and one more decoder (not DL/T 698.45 as in AFN 13H).
* Protocol type 03H = DL/T 698.45: [LN] ``AFN13.c`` and [NUC]'s AFN 06H F5 comments.
* Replies echo the request's SEQ: [NUC] keeps its SEQ while it waits "so as to compare", and a
  public test tool reports "SEQ mismatch". That an upstream reply's A field is (meter, master),
  i.e. the request's addresses swapped, follows from "A1 source, A3 destination" but was not seen
  in a captured frame (unverified); [NUC] only checks the meter address inside the 645 reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from .frame import (
    ADDRESS_LENGTH,
    CommunicationMode,
    Direction,
    DownstreamInfo,
    Frame,
    InfoField,
    Qgdw13762Error,
    Qgdw13762UsageError,
    UpstreamInfo,
    address_from_bytes,
    address_to_bytes,
    make_control,
)

__all__ = [
    "ALL_CHANNELS",
    "BroadcastControl",
    "Confirm",
    "Deny",
    "DenyReason",
    "MasterAddress",
    "Message",
    "MessageError",
    "MonitorSlaveNodeReply",
    "MonitorSlaveNodeRequest",
    "ProtocolType",
    "QueryMasterAddress",
    "StartBroadcast",
    "message_class",
    "monitor_slave_node",
    "parse_message",
    "reply_to",
    "request",
]


class MessageError(Qgdw13762Error):
    """A data unit that does not match the layout of its AFN and Fn."""

    def __init__(self, afn: int, fn: int, problem: str) -> None:
        self.afn = afn
        self.fn = fn
        super().__init__(f"AFN {afn:02X}H F{fn}: {problem}")


class ProtocolType(IntEnum):
    """The protocol of a tunnelled meter frame (AFN 13H F1 and others); 04H..FFH reserved."""

    TRANSPARENT = 0x00
    DLT645_1997 = 0x01
    DLT645_2007 = 0x02
    DLT698_45 = 0x03


class BroadcastControl(IntEnum):
    """Control word of AFN 05H F3 start broadcast ([LN] AFN05.c)."""

    TRANSPARENT = 0x00
    DLT645_1997 = 0x01
    DLT645_2007 = 0x02
    PHASE_IDENTIFICATION = 0x03


class DenyReason(IntEnum):
    """AFN 00H F2 error status; 13..255 are reserved (except the extension values below)."""

    COMMUNICATION_TIMEOUT = 0
    INVALID_DATA_UNIT = 1
    LENGTH_ERROR = 2
    CHECKSUM_ERROR = 3
    NO_SUCH_INFORMATION_CLASS = 4  # AFN/Fn not supported
    FORMAT_ERROR = 5
    DUPLICATE_METER = 6
    NO_SUCH_METER = 7
    METER_NO_REPLY = 8  # the node relayed fine, the meter's application layer did not answer
    MASTER_NODE_BUSY = 9  # still executing the previous command
    MASTER_NODE_UNSUPPORTED = 10
    SLAVE_NODE_NO_REPLY = 11
    SLAVE_NODE_NOT_IN_NETWORK = 12
    # HPLC concurrent-reading extension (two public sources; unverified against the standard)
    TOO_MANY_CONCURRENT_READS = 109
    TOO_MANY_METER_FRAMES = 110
    METER_BEING_READ = 111


ALL_CHANNELS: tuple[int, ...] = tuple(range(1, 32))


def _check_byte_range(afn: int, fn: int, name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise Qgdw13762UsageError(
            f"AFN {afn:02X}H F{fn}: {name} must be 0..{maximum}, not {value!r}"
        )


def _check_frame(afn: int, fn: int, frame: bytes) -> None:
    if not isinstance(frame, bytes):
        raise Qgdw13762UsageError(f"AFN {afn:02X}H F{fn}: the meter frame must be bytes")
    if len(frame) > 0xFF:
        raise Qgdw13762UsageError(
            f"AFN {afn:02X}H F{fn}: the meter frame is {len(frame)} bytes; its length byte "
            "allows at most 255"
        )


def _take_frame(afn: int, fn: int, data: bytes, at: int) -> bytes:
    """The length-prefixed frame at ``data[at]``, which must end the data unit exactly."""
    if len(data) <= at:
        raise MessageError(
            afn, fn, f"data unit is {len(data)} bytes; the frame length byte is missing"
        )
    length = data[at]
    frame = data[at + 1 :]
    if len(frame) != length:
        raise MessageError(
            afn,
            fn,
            f"frame length byte says {length} bytes but {len(frame)} follow "
            f"(data unit should be {at + 1 + length} bytes, is {len(data)})",
        )
    return bytes(frame)


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorSlaveNodeRequest:
    """AFN 13H F1 downstream: deliver ``frame`` to one slave node and bring back its answer."""

    AFN: ClassVar[int] = 0x13
    FN: ClassVar[int] = 1
    DIRECTION: ClassVar[Direction | None] = Direction.DOWN
    NAME: ClassVar[str] = "monitor slave node"

    frame: bytes
    protocol: int = ProtocolType.DLT645_2007
    delay_flag: int = 0  # 0: reply does not depend on transit delay; 1: it does (time sync)
    attached_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_byte_range(self.AFN, self.FN, "protocol", self.protocol, 0xFF)
        _check_byte_range(self.AFN, self.FN, "delay_flag", self.delay_flag, 0xFF)
        _check_frame(self.AFN, self.FN, self.frame)
        if not isinstance(self.attached_nodes, tuple) or len(self.attached_nodes) > 0xFF:
            raise Qgdw13762UsageError("attached_nodes must be a tuple of at most 255 addresses")
        for address in self.attached_nodes:
            address_to_bytes(address)

    def encode(self) -> bytes:
        nodes = b"".join(address_to_bytes(a) for a in self.attached_nodes)
        return bytes(
            (self.protocol, self.delay_flag, len(self.attached_nodes), *nodes, len(self.frame))
        ) + bytes(self.frame)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) < 4:
            raise MessageError(
                cls.AFN, cls.FN, f"data unit is {len(data)} bytes; it needs at least 4"
            )
        count = data[2]
        at = 3 + ADDRESS_LENGTH * count
        if len(data) < at + 1:
            raise MessageError(
                cls.AFN,
                cls.FN,
                f"{count} attached node addresses announced but the data unit is only "
                f"{len(data)} bytes",
            )
        nodes = tuple(
            address_from_bytes(data[i : i + ADDRESS_LENGTH]) for i in range(3, at, ADDRESS_LENGTH)
        )
        return cls(
            protocol=data[0],
            delay_flag=data[1],
            attached_nodes=nodes,
            frame=_take_frame(cls.AFN, cls.FN, data, at),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorSlaveNodeReply:
    """AFN 13H F1 upstream: the slave node's answer and how long it took to come back."""

    AFN: ClassVar[int] = 0x13
    FN: ClassVar[int] = 1
    DIRECTION: ClassVar[Direction | None] = Direction.UP
    NAME: ClassVar[str] = "monitor slave node (reply)"

    frame: bytes
    protocol: int = ProtocolType.DLT645_2007
    transit_time_s: int = 0  # "current message local communication upstream duration"

    def __post_init__(self) -> None:
        _check_byte_range(self.AFN, self.FN, "protocol", self.protocol, 0xFF)
        _check_byte_range(self.AFN, self.FN, "transit_time_s", self.transit_time_s, 0xFFFF)
        _check_frame(self.AFN, self.FN, self.frame)

    def encode(self) -> bytes:
        time = self.transit_time_s
        return bytes((time & 0xFF, time >> 8, self.protocol, len(self.frame))) + bytes(self.frame)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) < 4:
            raise MessageError(
                cls.AFN, cls.FN, f"data unit is {len(data)} bytes; the reply needs at least 4"
            )
        return cls(
            transit_time_s=data[0] | data[1] << 8,
            protocol=data[2],
            frame=_take_frame(cls.AFN, cls.FN, data, 3),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirm:
    """AFN 00H F1: the command was received (and, with ``command_processed``, carried out)."""

    AFN: ClassVar[int] = 0x00
    FN: ClassVar[int] = 1
    DIRECTION: ClassVar[Direction | None] = None
    NAME: ClassVar[str] = "confirm"

    command_processed: bool = True
    idle_channels: tuple[int, ...] = ALL_CHANNELS  # channels 1..31 reported idle
    wait_time_s: int = 0

    def __post_init__(self) -> None:
        _check_byte_range(self.AFN, self.FN, "wait_time_s", self.wait_time_s, 0xFFFF)
        channels = tuple(sorted(set(self.idle_channels)))
        if any(isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= 31 for c in channels):
            raise Qgdw13762UsageError(f"AFN 00H F1: idle channels are 1..31, not {channels}")
        object.__setattr__(self, "idle_channels", channels)

    def encode(self) -> bytes:
        status = int(self.command_processed)
        for channel in self.idle_channels:
            status |= 1 << channel
        return status.to_bytes(4, "little") + self.wait_time_s.to_bytes(2, "little")

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) != 6:
            raise MessageError(
                cls.AFN,
                cls.FN,
                f"confirm carries 6 bytes (4 status, 2 wait time), not {len(data)}",
            )
        status = int.from_bytes(data[:4], "little")
        return cls(
            command_processed=bool(status & 1),
            idle_channels=tuple(c for c in range(1, 32) if status >> c & 1),
            wait_time_s=int.from_bytes(data[4:], "little"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Deny:
    """AFN 00H F2: the command failed; ``reason`` is a :class:`DenyReason` value."""

    AFN: ClassVar[int] = 0x00
    FN: ClassVar[int] = 2
    DIRECTION: ClassVar[Direction | None] = None
    NAME: ClassVar[str] = "deny"

    reason: int

    def __post_init__(self) -> None:
        _check_byte_range(self.AFN, self.FN, "reason", self.reason, 0xFF)

    @property
    def reason_name(self) -> str:
        try:
            return DenyReason(self.reason).name
        except ValueError:
            return "RESERVED"

    def encode(self) -> bytes:
        return bytes((self.reason,))

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) != 1:
            raise MessageError(cls.AFN, cls.FN, f"deny carries 1 byte (reason), not {len(data)}")
        return cls(reason=data[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryMasterAddress:
    """AFN 03H F4 downstream: ask the module for the master node (its own) address."""

    AFN: ClassVar[int] = 0x03
    FN: ClassVar[int] = 4
    DIRECTION: ClassVar[Direction | None] = Direction.DOWN
    NAME: ClassVar[str] = "query master node address"

    def encode(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if data:
            raise MessageError(
                cls.AFN, cls.FN, f"query carries no data unit, got {len(data)} bytes"
            )
        return cls()


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterAddress:
    """AFN 03H F4 upstream: the master node address."""

    AFN: ClassVar[int] = 0x03
    FN: ClassVar[int] = 4
    DIRECTION: ClassVar[Direction | None] = Direction.UP
    NAME: ClassVar[str] = "master node address"

    address: str

    def __post_init__(self) -> None:
        address_to_bytes(self.address)

    def encode(self) -> bytes:
        return address_to_bytes(self.address)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) != ADDRESS_LENGTH:
            raise MessageError(cls.AFN, cls.FN, f"address is 6 bytes, data unit is {len(data)}")
        return cls(address=address_from_bytes(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class StartBroadcast:
    """AFN 05H F3 downstream: broadcast ``frame`` (e.g. a DL/T 645 time sync) to every node."""

    AFN: ClassVar[int] = 0x05
    FN: ClassVar[int] = 3
    DIRECTION: ClassVar[Direction | None] = Direction.DOWN
    NAME: ClassVar[str] = "start broadcast"

    frame: bytes
    control: int = BroadcastControl.DLT645_2007

    def __post_init__(self) -> None:
        _check_byte_range(self.AFN, self.FN, "control", self.control, 0xFF)
        _check_frame(self.AFN, self.FN, self.frame)

    def encode(self) -> bytes:
        return bytes((self.control, len(self.frame))) + bytes(self.frame)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) < 2:
            raise MessageError(cls.AFN, cls.FN, f"data unit is {len(data)} bytes; it needs 2+")
        return cls(control=data[0], frame=_take_frame(cls.AFN, cls.FN, data, 1))


Message = (
    MonitorSlaveNodeRequest
    | MonitorSlaveNodeReply
    | Confirm
    | Deny
    | QueryMasterAddress
    | MasterAddress
    | StartBroadcast
)

_MESSAGES: dict[tuple[int, int, Direction], type[Message]] = {}
for _cls in (
    MonitorSlaveNodeRequest,
    MonitorSlaveNodeReply,
    Confirm,
    Deny,
    QueryMasterAddress,
    MasterAddress,
    StartBroadcast,
):
    for _direction in (Direction.DOWN, Direction.UP):
        if _cls.DIRECTION in (None, _direction):
            _MESSAGES[_cls.AFN, _cls.FN, _direction] = _cls
del _cls, _direction


def message_class(afn: int, fn: int, direction: Direction) -> type[Message] | None:
    """The message class this package has for (AFN, Fn) in ``direction``, if any."""
    return _MESSAGES.get((afn, fn, direction))


def parse_message(frame: Frame) -> Message | None:
    """The data unit of ``frame`` as a message; None for an (AFN, Fn) this package does not read.

    Raises :class:`MessageError` when the data unit does not fit its AFN and Fn.
    """
    cls = message_class(frame.afn, frame.fn, frame.direction)
    return None if cls is None else cls.parse(frame.data)


# --- building frames ---------------------------------------------------------------------------


def request(
    message: Message,
    *,
    seq: int,
    mode: int = CommunicationMode.CENTRALISED_ROUTING_PLC,
    source: str | None = None,
    destination: str | None = None,
    relays: tuple[str, ...] = (),
    expected_reply_length: int = 0,
) -> Frame:
    """A downstream start frame (PRM=1) carrying ``message``.

    With ``source`` and ``destination`` (master node and slave node) the module flag is set and
    the address field is sent; without them the command is for the module itself.
    """
    if message.DIRECTION is Direction.UP:
        raise Qgdw13762UsageError(f"{type(message).__name__} is sent by the module, not to it")
    addressed = source is not None or destination is not None
    info = DownstreamInfo(
        module_flag=addressed,
        relay_level=len(relays),
        expected_reply_length=expected_reply_length,
        seq=seq,
    )
    return Frame(
        control=make_control(Direction.DOWN, prm=True, mode=mode),
        info=InfoField.of(info),
        afn=message.AFN,
        fn=message.FN,
        data=message.encode(),
        source=source,
        relays=relays,
        destination=destination,
    )


def monitor_slave_node(
    *,
    seq: int,
    master_address: str,
    meter_address: str,
    meter_frame: bytes,
    protocol: int = ProtocolType.DLT645_2007,
    delay_flag: int = 0,
    attached_nodes: tuple[str, ...] = (),
    relays: tuple[str, ...] = (),
    expected_reply_length: int = 0,
    mode: int = CommunicationMode.CENTRALISED_ROUTING_PLC,
) -> Frame:
    """The AFN 13H F1 frame that reads one meter through the module (as [NUC] builds it)."""
    message = MonitorSlaveNodeRequest(
        frame=meter_frame, protocol=protocol, delay_flag=delay_flag, attached_nodes=attached_nodes
    )
    return request(
        message,
        seq=seq,
        mode=mode,
        source=master_address,
        destination=meter_address,
        relays=relays,
        expected_reply_length=expected_reply_length,
    )


def reply_to(
    received: Frame, message: Message, *, info: UpstreamInfo | DownstreamInfo | None = None
) -> Frame:
    """The slave frame (PRM=0) answering ``received`` with ``message``, in the other direction.

    It keeps the communication mode and echoes SEQ. An upstream reply to an addressed request
    has the request's addresses swapped (A1 = the slave node, A3 = the master node) and reports
    the request's relay level; a downstream reply (the concentrator confirming a report) has no
    address field, as [NUC] sends it. Pass ``info`` to report phase or signal quality; its
    module flag decides whether the address field is sent.
    """
    direction = Direction.DOWN if received.direction is Direction.UP else Direction.UP
    if message.DIRECTION is not None and message.DIRECTION is not direction:
        raise Qgdw13762UsageError(
            f"{type(message).__name__} travels {message.DIRECTION.name.lower()}, but a reply to "
            f"a {received.direction.name.lower()}stream frame travels {direction.name.lower()}"
        )
    if info is None:
        if direction is Direction.UP:
            info = UpstreamInfo(
                routing_flag=received.info.routing_flag,
                module_flag=received.info.module_flag,
                relay_level=len(received.relays),
                channel=received.info.channel,
                seq=received.seq,
            )
        else:
            info = DownstreamInfo(seq=received.seq)
    elif isinstance(info, UpstreamInfo) is (direction is Direction.DOWN):
        raise Qgdw13762UsageError(f"a {direction.name.lower()}stream reply needs that view of R")
    source = destination = None
    if info.module_flag:
        if received.source is None or received.destination is None:
            raise Qgdw13762UsageError(
                "the reply's module flag is set but the received frame has no addresses to swap"
            )
        source, destination = received.destination, received.source
    return Frame(
        control=make_control(direction, prm=False, mode=received.communication_mode),
        info=InfoField.of(info),
        afn=message.AFN,
        fn=message.FN,
        data=message.encode(),
        source=source,
        destination=destination,
    )
