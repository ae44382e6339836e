"""Q/GDW 1376.2 frames between a concentrator and its local communication (PLC) module.

The frame (Q/GDW 376.2-2009 clause 4.3 "frame format"; the 2013 edition Q/GDW 1376.2 keeps it)::

      0    1   2    3    4 ..... 9    10 ..                                  +0    +1   +2
    +----+--------+----+-----------+-----------------------------------------+-----+---------+
    | 68 | L lo hi|  C | R1 ... R6 | A: source (6) | relays (n x 6) | dest (6)| AFN | DT1 DT2 | ...
    +----+--------+----+-----------+-----------------------------------------+-----+---------+
                                     ^ only when R1 bit 2 (module flag) = 1;
                                       relay addresses only in downstream frames
         ... +---------------+----+----+
             |   data unit   | CS | 16 |
             +---------------+----+----+
    L  = length of the whole frame, 68H to 16H inclusive, low byte first
    CS = sum of every byte from C to the end of the data unit, modulo 256
    Fn = 8 * DT2 + (position of the single bit set in DT1) + 1

Control field C (clause 4.3)::

    D7 DIR   0 = downstream (concentrator -> module), 1 = upstream (module -> concentrator)
    D6 PRM   1 = start frame (the sender asks), 0 = slave frame (the sender answers)
    D5..D0   communication mode: 1 narrow-band PLC with centralised routing, 2 distributed routing,
             3 broadband PLC (HPLC), 10 micro-power wireless, 20 Ethernet

Information field R (clause 5.2), downstream and upstream::

    downstream                                      upstream
    R1 D0 routing flag (1 = bypass, no routing)     R1 D0 routing flag
       D1 attached-node flag                           D1 reserved
       D2 communication module flag                    D2 communication module flag
       D3 conflict detection                           D3 reserved
       D7..D4 relay level (0..15)                      D7..D4 relay level
    R2 D3..D0 channel, D7..D4 error-correction code R2 D3..D0 channel, D7..D4 reserved
    R3 expected reply length in bytes               R3 D3..D0 measured phase (0 unknown, 1..3)
                                                       D7..D4 meter channel characteristic
    R4 R5 rate D14..D0 (0 = default),               R4 D3..D0 last-hop command signal quality
          D15 unit: 0 bit/s, 1 kbit/s                  D7..D4 last-hop reply signal quality
                                                    R5 D0 event flag, D7..D1 reserved
    R6 SEQ (frame sequence number)                  R6 SEQ

Addresses (clause 5.3) are 6 bytes of BCD, low byte first; this package holds them as 12-character
strings, most significant digit first (wire ``01 00 00 00 00 00`` is ``"000000000001"``). Nibbles
above 9 (a wildcard ``AA``, an ``FF`` fill) are kept as hex letters so that any frame a module
sends can be shown and re-encoded byte for byte.

Where the facts come from (public material; the standard text itself was not available):

* [SPEC] ``/work/shared/specs/dlt645.md`` section 9 and ``dlt645_vectors.json`` key
  ``qgdw_1376_2``: frame layout, C values 41H/43H/4AH and 01H/03H/0AH, the AFN list, and the
  AFN 13H F1 vector (constructed from gdgly/NUC97X_JS).
* [NUC] gdgly/NUC97X_JS ``STM32F4xx/DL698/Uart_3762_RxTx.c`` @b8a5193 (a concentrator's
  firmware): length framing (L counts the whole frame), the checksum span, the SEQ handling, a
  12-byte address field skipped in upstream frames, the 500 ms byte timeout of its receiver.
* [LN] liuning587/QGDW1376_2 ``GDW1376_2/src/GDW1376_2.c`` and ``chkfrm.c`` (a frame decoder):
  control bits and mode names, every bit of both views of R, "only downstream frames carry relay
  addresses", the frame checks (start byte, L, end byte, checksum).
* [TOC] the table of contents of Q/GDW 376.2-2009, https://m.taowenge.com/p-16675679.html: the
  clause numbers quoted here (4.3 frame format, 5.2 information field R, 5.3 address field A,
  5.4 application data field, 5.5 application data messages).
* An unattributed public C header ``format.h`` ("FORMAT3762", 2013) found by code search lists the
  same fields of both views of R (it agrees with [LN]); and two more decoders agree on the upstream
  bit positions.

Unverified: the R5 event flag sits in D0 per [LN] and one other decoder, but a third public header
declares it as the last of eight bit-field bits (D7 with common compilers); the clause numbers are
from the 2009 edition and may have moved in 2013.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum

from protocols.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_FRAME_LENGTH",
    "MIN_FRAME_LENGTH",
    "NEED_DATA",
    "BadFrame",
    "ChecksumError",
    "CommunicationMode",
    "DataUnitIdError",
    "Direction",
    "DownstreamInfo",
    "EndByteError",
    "Frame",
    "FrameLengthError",
    "FrameReceiver",
    "InfoField",
    "NeedData",
    "Qgdw13762Error",
    "Qgdw13762UsageError",
    "ReceiveBufferFull",
    "StartByteError",
    "UpstreamInfo",
    "address_from_bytes",
    "address_to_bytes",
    "decode_frame",
    "dt_to_fn",
    "encode_frame",
    "fn_to_dt",
    "make_control",
]

START_BYTE = 0x68
END_BYTE = 0x16
HEADER_LENGTH = 10  # 68H, L (2), C, R1..R6
ADDRESS_LENGTH = 6
MIN_FRAME_LENGTH = HEADER_LENGTH + 3 + 2  # no address field, AFN DT1 DT2, empty data unit, CS 16H
MAX_FRAME_LENGTH = 0xFFFF  # L is two bytes
MAX_FN = 8 * 255 + 8  # DT2 = FFH, DT1 = 80H

_ADDRESS = re.compile(r"[0-9A-F]{12}")


# --- errors ------------------------------------------------------------------------------------


class Qgdw13762Error(RemoteProtocolError):
    """Bytes that do not form a valid Q/GDW 1376.2 frame or message."""


class StartByteError(Qgdw13762Error):
    """The first byte is not 68H."""

    def __init__(self, found: int) -> None:
        self.found = found
        super().__init__(f"frame starts with {found:02X}H, not the start byte 68H")


class FrameLengthError(Qgdw13762Error):
    """The L field disagrees with the bytes given, or cannot hold what the frame announces."""


class EndByteError(Qgdw13762Error):
    """The byte at the position L gives for the end is not 16H."""

    def __init__(self, found: int, length: int) -> None:
        self.found = found
        self.length = length
        super().__init__(
            f"byte {length - 1} (the last one by the L field, L={length}) is {found:02X}H, "
            "not the end byte 16H"
        )


class ChecksumError(Qgdw13762Error):
    """CS is not the sum of the bytes from C to the end of the data unit, modulo 256."""

    def __init__(self, expected: int, found: int) -> None:
        self.expected = expected
        self.found = found
        super().__init__(
            f"checksum is {found:02X}H but the bytes from C to the end of the data unit sum to "
            f"{expected:02X}H (mod 256)"
        )


class DataUnitIdError(Qgdw13762Error):
    """DT1 must have exactly one bit set (one Fn per frame)."""

    def __init__(self, dt1: int, dt2: int) -> None:
        self.dt1 = dt1
        self.dt2 = dt2
        super().__init__(
            f"data unit identifier DT1={dt1:02X}H DT2={dt2:02X}H names no single Fn "
            "(DT1 must have exactly one bit set)"
        )


class Qgdw13762UsageError(LocalProtocolError):
    """We asked for a frame or message that Q/GDW 1376.2 cannot carry."""


class ReceiveBufferFull(Qgdw13762UsageError):
    """More bytes were fed to a :class:`FrameReceiver` than it may hold without being drained."""


# --- small codecs ------------------------------------------------------------------------------


class Direction(IntEnum):
    """C bit D7."""

    DOWN = 0  # concentrator -> module
    UP = 1  # module -> concentrator


class CommunicationMode(IntEnum):
    """C bits D5..D0 (names from [LN] ``get_commtype_str``; 1, 3 and 10 also in [SPEC])."""

    CENTRALISED_ROUTING_PLC = 1  # narrow-band PLC, the module routes
    DISTRIBUTED_ROUTING_PLC = 2
    BROADBAND_PLC = 3  # HPLC
    MICRO_POWER_WIRELESS = 10
    ETHERNET = 20


def make_control(direction: Direction, *, prm: bool, mode: int) -> int:
    """The control byte C for a direction, start (``prm=True``) or slave frame, and mode."""
    if not 0 <= mode <= 0x3F:
        raise Qgdw13762UsageError(f"communication mode {mode} does not fit in C bits D5..D0")
    return (int(direction) << 7) | (0x40 if prm else 0) | mode


def address_to_bytes(address: str) -> bytes:
    """``"000000000001"`` -> ``01 00 00 00 00 00`` (BCD, low byte first)."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise Qgdw13762UsageError(
            f"address {address!r} is not 12 digits (0-9, or A-F for wildcard/fill nibbles)"
        )
    return bytes.fromhex(address)[::-1]


def address_from_bytes(raw: bytes) -> str:
    """``01 00 00 00 00 00`` -> ``"000000000001"``; non-decimal nibbles stay hex letters."""
    if len(raw) != ADDRESS_LENGTH:
        raise Qgdw13762UsageError(f"an address is 6 bytes, not {len(raw)}")
    return bytes(raw[::-1]).hex().upper()


def fn_to_dt(fn: int) -> bytes:
    """DT1 DT2 for Fn: DT1 = 1 << ((Fn-1) % 8), DT2 = (Fn-1) // 8 ([SPEC]; [NUC] TxData)."""
    if not 1 <= fn <= MAX_FN:
        raise Qgdw13762UsageError(f"Fn must be 1..{MAX_FN}, not {fn}")
    return bytes((1 << ((fn - 1) % 8), (fn - 1) // 8))


def dt_to_fn(dt1: int, dt2: int) -> int:
    """Fn for DT1 DT2; :class:`DataUnitIdError` unless DT1 has exactly one bit set."""
    if dt1 == 0 or dt1 & (dt1 - 1):
        raise DataUnitIdError(dt1, dt2)
    return dt2 * 8 + dt1.bit_length()


def _check_range(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise Qgdw13762UsageError(f"{name} must be an integer 0..{maximum}, not {value!r}")


# --- information field R -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DownstreamInfo:
    """R1..R6 as the concentrator sends them (clause 5.2; bit positions from [LN])."""

    routing_flag: bool = False  # True: the module works without routing (bypass)
    attached_node_flag: bool = False
    module_flag: bool = False  # True: the frame is for a slave node's module; A is present
    conflict_detection: bool = False
    relay_level: int = 0
    channel: int = 0  # 0 = not split by channel, 1..15
    error_correction: int = 0  # 0 = none, 1 = RS ([LN] get_errcode_type)
    expected_reply_length: int = 0  # bytes ([SPEC]: R3; [NUC] fills the 645 reply length here)
    rate: int = 0  # 0 = the module's default rate
    rate_in_kbps: bool = False  # R5 D7 (D15 of R4 R5): unit of ``rate``
    seq: int = 0

    def __post_init__(self) -> None:
        _check_range("relay_level", self.relay_level, 15)
        _check_range("channel", self.channel, 15)
        _check_range("error_correction", self.error_correction, 15)
        _check_range("expected_reply_length", self.expected_reply_length, 0xFF)
        _check_range("rate", self.rate, 0x7FFF)
        _check_range("seq", self.seq, 0xFF)

    def to_bytes(self) -> bytes:
        r1 = (
            int(self.routing_flag)
            | int(self.attached_node_flag) << 1
            | int(self.module_flag) << 2
            | int(self.conflict_detection) << 3
            | self.relay_level << 4
        )
        rate = self.rate | (0x8000 if self.rate_in_kbps else 0)
        return bytes(
            (
                r1,
                self.channel | self.error_correction << 4,
                self.expected_reply_length,
                rate & 0xFF,
                rate >> 8,
                self.seq,
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> DownstreamInfo:
        r1, r2, r3, r4, r5, r6 = raw
        return cls(
            routing_flag=bool(r1 & 0x01),
            attached_node_flag=bool(r1 & 0x02),
            module_flag=bool(r1 & 0x04),
            conflict_detection=bool(r1 & 0x08),
            relay_level=r1 >> 4,
            channel=r2 & 0x0F,
            error_correction=r2 >> 4,
            expected_reply_length=r3,
            rate=r4 | (r5 & 0x7F) << 8,
            rate_in_kbps=bool(r5 & 0x80),
            seq=r6,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamInfo:
    """R1..R6 as the module sends them (clause 5.2; bit positions from [LN], [NUC] reads R3)."""

    routing_flag: bool = False
    module_flag: bool = False
    relay_level: int = 0  # relays the reply came through; no relay addresses follow upstream
    channel: int = 0
    phase: int = 0  # measured phase of the slave node: 0 unknown, 1..3
    meter_channel: int = 0  # meter channel characteristic ([LN]: 1..4 single/three-phase kinds)
    command_quality: int = 0  # last-hop command signal quality, 0 none, 1 lowest .. 15
    reply_quality: int = 0  # last-hop reply signal quality
    event_flag: bool = False  # R5 D0 (unverified position, see the module docstring)
    seq: int = 0

    def __post_init__(self) -> None:
        for name in (
            "relay_level",
            "channel",
            "phase",
            "meter_channel",
            "command_quality",
            "reply_quality",
        ):
            _check_range(name, getattr(self, name), 15)
        _check_range("seq", self.seq, 0xFF)

    def to_bytes(self) -> bytes:
        return bytes(
            (
                int(self.routing_flag) | int(self.module_flag) << 2 | self.relay_level << 4,
                self.channel,
                self.phase | self.meter_channel << 4,
                self.command_quality | self.reply_quality << 4,
                int(self.event_flag),
                self.seq,
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> UpstreamInfo:
        r1, r2, r3, r4, r5, r6 = raw
        return cls(
            routing_flag=bool(r1 & 0x01),
            module_flag=bool(r1 & 0x04),
            relay_level=r1 >> 4,
            channel=r2 & 0x0F,
            phase=r3 & 0x0F,
            meter_channel=r3 >> 4,
            command_quality=r4 & 0x0F,
            reply_quality=r4 >> 4,
            event_flag=bool(r5 & 0x01),
            seq=r6,
        )


@dataclass(frozen=True, slots=True)
class InfoField:
    """The six bytes R1..R6 as on the wire, with a downstream and an upstream view.

    The raw bytes are what the frame holds, so reserved bits survive a decode/encode round trip;
    which view applies depends on the frame's direction (:attr:`Frame.direction`). The bits both
    views share (routing flag, module flag, relay level, channel, SEQ) are plain properties.
    """

    raw: bytes = bytes(6)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 6:
            raise Qgdw13762UsageError(
                f"the information field is 6 bytes (R1..R6), not {self.raw!r}"
            )

    @classmethod
    def of(cls, view: DownstreamInfo | UpstreamInfo) -> InfoField:
        return cls(view.to_bytes())

    @property
    def downstream(self) -> DownstreamInfo:
        return DownstreamInfo.from_bytes(self.raw)

    @property
    def upstream(self) -> UpstreamInfo:
        return UpstreamInfo.from_bytes(self.raw)

    @property
    def routing_flag(self) -> bool:
        return bool(self.raw[0] & 0x01)

    @property
    def module_flag(self) -> bool:
        """R1 D2: 1 when the frame is about a slave node's module, and carries addresses."""
        return bool(self.raw[0] & 0x04)

    @property
    def relay_level(self) -> int:
        return self.raw[0] >> 4

    @property
    def channel(self) -> int:
        return self.raw[1] & 0x0F

    @property
    def seq(self) -> int:
        return self.raw[5]


# --- the frame ---------------------------------------------------------------------------------


def _address_length(control: int, r1: int) -> int:
    """Bytes of address field announced by C and R1 ([LN] print_struct; [NUC] RxData skips 12)."""
    if not r1 & 0x04:
        return 0
    relays = 0 if control & 0x80 else r1 >> 4
    return ADDRESS_LENGTH * (2 + relays)


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One Q/GDW 1376.2 frame. The data unit is opaque here; :mod:`.messages` reads it.

    ``source``, ``relays`` and ``destination`` are present exactly when the information field's
    module flag is 1; a downstream frame then carries as many relays as its relay level, an
    upstream frame none (its relay level only reports how many relays the reply used).
    """

    control: int
    info: InfoField
    afn: int
    fn: int
    data: bytes = b""
    source: str | None = None
    relays: tuple[str, ...] = ()
    destination: str | None = None

    def __post_init__(self) -> None:
        _check_range("control", self.control, 0xFF)
        _check_range("afn", self.afn, 0xFF)
        if isinstance(self.fn, bool) or not isinstance(self.fn, int) or not 1 <= self.fn <= MAX_FN:
            raise Qgdw13762UsageError(f"Fn must be 1..{MAX_FN}, not {self.fn!r}")
        if not isinstance(self.info, InfoField):
            raise Qgdw13762UsageError("info must be an InfoField")
        if not isinstance(self.data, bytes):
            raise Qgdw13762UsageError(f"data must be bytes, not {type(self.data).__name__}")
        if not isinstance(self.relays, tuple):
            raise Qgdw13762UsageError("relays must be a tuple of addresses")
        addresses = [a for a in (self.source, *self.relays, self.destination) if a is not None]
        for address in addresses:
            address_to_bytes(address)
        if self.info.module_flag:
            if self.source is None or self.destination is None:
                raise Qgdw13762UsageError(
                    "the module flag (R1 bit 2) is 1, so the frame needs a source and a "
                    "destination address"
                )
            expected_relays = 0 if self.direction is Direction.UP else self.info.relay_level
            if len(self.relays) != expected_relays:
                raise Qgdw13762UsageError(
                    f"{self.direction.name.lower()}stream frame with relay level "
                    f"{self.info.relay_level} must carry {expected_relays} relay addresses, "
                    f"not {len(self.relays)}"
                )
        elif addresses:
            raise Qgdw13762UsageError(
                "the module flag (R1 bit 2) is 0, so the frame carries no address field; "
                "set it to send addresses"
            )
        if self.length > MAX_FRAME_LENGTH:
            raise Qgdw13762UsageError(
                f"frame would be {self.length} bytes; L allows at most {MAX_FRAME_LENGTH}"
            )

    @property
    def direction(self) -> Direction:
        return Direction(self.control >> 7)

    @property
    def prm(self) -> bool:
        """C bit D6: True for a start frame, False for a slave (reply) frame."""
        return bool(self.control & 0x40)

    @property
    def communication_mode(self) -> int:
        return self.control & 0x3F

    @property
    def seq(self) -> int:
        return self.info.seq

    @property
    def length(self) -> int:
        """The L field: the whole frame's length in bytes."""
        return MIN_FRAME_LENGTH + _address_length(self.control, self.info.raw[0]) + len(self.data)


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame``, 68H to 16H."""
    body = bytearray((frame.control,))
    body += frame.info.raw
    if frame.info.module_flag:
        assert frame.source is not None and frame.destination is not None  # by __post_init__
        for address in (frame.source, *frame.relays, frame.destination):
            body += address_to_bytes(address)
    body.append(frame.afn)
    body += fn_to_dt(frame.fn)
    body += frame.data
    length = len(body) + 5
    return bytes((START_BYTE, length & 0xFF, length >> 8, *body, sum(body) & 0xFF, END_BYTE))


def _check_envelope(raw: bytes) -> tuple[int, int]:
    """Start byte, L and end byte of one whole frame; returns (expected CS, found CS)."""
    if not raw:
        raise FrameLengthError(f"no bytes: the smallest frame is {MIN_FRAME_LENGTH} bytes")
    if raw[0] != START_BYTE:
        raise StartByteError(raw[0])
    if len(raw) < 3:
        raise FrameLengthError(f"{len(raw)} bytes are too few to hold the L field")
    length = raw[1] | raw[2] << 8
    if length < MIN_FRAME_LENGTH:
        raise FrameLengthError(
            f"L field says {length} bytes; the smallest frame is {MIN_FRAME_LENGTH}"
        )
    if len(raw) < length:
        raise FrameLengthError(f"L field says {length} bytes but only {len(raw)} were given")
    if len(raw) > length:
        raise FrameLengthError(
            f"L field says {length} bytes but {len(raw)} were given "
            f"({len(raw) - length} bytes after the end of the frame)"
        )
    if raw[-1] != END_BYTE:
        raise EndByteError(raw[-1], length)
    return sum(raw[3:-2]) & 0xFF, raw[-2]


def _parse_body(raw: bytes) -> Frame:
    """The fields of a frame whose envelope was checked (the checksum is not looked at)."""
    length = len(raw)
    control = raw[3]
    info = InfoField(bytes(raw[4:HEADER_LENGTH]))
    address_length = _address_length(control, info.raw[0])
    if MIN_FRAME_LENGTH + address_length > length:
        raise FrameLengthError(
            f"L={length} leaves no room for the {address_length}-byte address field that the "
            f"information field announces (module flag 1, relay level {info.relay_level}) "
            f"plus AFN and DT: the frame needs at least {MIN_FRAME_LENGTH + address_length} bytes"
        )
    offset = HEADER_LENGTH
    source = destination = None
    relays: tuple[str, ...] = ()
    if address_length:
        addresses = [
            address_from_bytes(raw[at : at + ADDRESS_LENGTH])
            for at in range(offset, offset + address_length, ADDRESS_LENGTH)
        ]
        source, *middle, destination = addresses
        relays = tuple(middle)
        offset += address_length
    afn = raw[offset]
    fn = dt_to_fn(raw[offset + 1], raw[offset + 2])
    return Frame(
        control=control,
        info=info,
        afn=afn,
        fn=fn,
        data=bytes(raw[offset + 3 : -2]),
        source=source,
        relays=relays,
        destination=destination,
    )


def decode_frame(raw: bytes) -> Frame:
    """Exactly one frame (68H .. 16H) -> :class:`Frame`.

    Raises :class:`StartByteError`, :class:`FrameLengthError`, :class:`EndByteError`,
    :class:`ChecksumError` or :class:`DataUnitIdError`, checked in that order.
    """
    raw = bytes(raw)
    expected, found = _check_envelope(raw)
    if expected != found:
        raise ChecksumError(expected, found)
    return _parse_body(raw)


def _inspect(raw: bytes) -> tuple[Frame, int, int]:
    """Like :func:`decode_frame` but returns the checksums instead of raising on a mismatch."""
    raw = bytes(raw)
    expected, found = _check_envelope(raw)
    return _parse_body(raw), expected, found


# --- sans-I/O receiver -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NeedData:
    """:meth:`FrameReceiver.next_event` needs more bytes before it can say anything."""


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A candidate frame that was cut out by its L field but is not valid.

    ``raw`` is the candidate (L bytes from a 68H) and ``error`` says what is wrong with it.
    """

    raw: bytes
    error: Qgdw13762Error = field(compare=False)


class FrameReceiver:
    """Cuts frames out of a byte stream from the module (or the concentrator): bytes in, events out.

    ``receive_data(chunk)`` then call ``next_event()`` until it returns :data:`NEED_DATA`; each
    call returns a :class:`Frame`, a :class:`BadFrame`, or :data:`NEED_DATA`.

    Theory of operation. Frames are cut by the L field, never by looking for 16H (a 16H can sit
    anywhere inside a frame). Bytes before a 68H are garbage: skipped and counted in
    :attr:`garbage_bytes`. A 68H whose L is below the smallest frame, above
    ``max_frame_length``, or too small for the address field its C and R1 announce, is not a start
    byte either: it is counted as garbage and the hunt goes on from the next byte. Once L bytes
    are in, the candidate is decoded:

    * valid: a :class:`Frame`, and the L bytes are consumed;
    * end byte wrong: the L field (or the 68H) was false, so a :class:`BadFrame` is returned and
      only the 68H is dropped; a real frame that began inside the candidate is found next;
    * end byte right but checksum or DT wrong: a frame of the right size arrived damaged, so a
      :class:`BadFrame` is returned and all L bytes are consumed.

    The buffer is bounded: at most ``max_buffer_size`` bytes may be held undrained, and the part
    that is waiting for the rest of a frame never exceeds ``max_frame_length``. A false start with
    a plausible L makes the receiver wait for bytes that will never complete it; a caller with a
    clock calls :meth:`discard_partial` when the line has been quiet for longer than a byte gap
    ([NUC] uses 500 ms), as a UART receiver would.
    """

    __slots__ = ("_bad_frames", "_buffer", "_garbage", "max_buffer_size", "max_frame_length")

    def __init__(self, *, max_frame_length: int = 4096, max_buffer_size: int = 65536) -> None:
        if not MIN_FRAME_LENGTH <= max_frame_length <= MAX_FRAME_LENGTH:
            raise Qgdw13762UsageError(
                f"max_frame_length must be {MIN_FRAME_LENGTH}..{MAX_FRAME_LENGTH}, "
                f"not {max_frame_length}"
            )
        if max_buffer_size < max_frame_length:
            raise Qgdw13762UsageError("max_buffer_size must be at least max_frame_length")
        self.max_frame_length = max_frame_length
        self.max_buffer_size = max_buffer_size
        self._buffer = bytearray()
        self._garbage = 0
        self._bad_frames = 0

    @property
    def garbage_bytes(self) -> int:
        """Bytes skipped so far because they could not start a frame."""
        return self._garbage

    @property
    def bad_frames(self) -> int:
        """:class:`BadFrame` events returned so far."""
        return self._bad_frames

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events or counted as garbage."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the line. Raises :class:`ReceiveBufferFull` (our misuse) if more than
        ``max_buffer_size`` bytes would be held: drain with :meth:`next_event` between chunks."""
        if not self._buffer:
            start = data.find(START_BYTE)
            if start < 0:
                self._garbage += len(data)
                return
            self._garbage += start
            data = data[start:]
        if len(self._buffer) + len(data) > self.max_buffer_size:
            raise ReceiveBufferFull(
                f"{len(self._buffer)} bytes are waiting and {len(data)} more would pass the "
                f"{self.max_buffer_size}-byte limit; call next_event() until it returns NEED_DATA"
            )
        self._buffer += data

    def next_event(self) -> Frame | BadFrame | NeedData:
        buffer = self._buffer
        while True:
            if not self._skip_to_start():
                return NEED_DATA
            if len(buffer) < 3:
                return NEED_DATA
            length = self._plausible_length()
            if length is None:
                self._drop_start_byte()
                continue
            if len(buffer) < length:
                return NEED_DATA
            candidate = bytes(buffer[:length])
            try:
                frame = decode_frame(candidate)
            except EndByteError as error:
                del buffer[0]
                self._bad_frames += 1
                return BadFrame(candidate, error)
            except Qgdw13762Error as error:
                del buffer[:length]
                self._bad_frames += 1
                return BadFrame(candidate, error)
            del buffer[:length]
            return frame

    def discard_partial(self) -> int:
        """Give up on every incomplete frame candidate (call after the line went quiet).

        Drops start bytes one at a time until the buffer is empty or begins with a candidate
        whose L bytes are all in (which :meth:`next_event` will then report); every dropped or
        skipped byte counts as garbage. Returns the number of bytes dropped.
        """
        before = self._garbage
        buffer = self._buffer
        while self._skip_to_start():
            length = self._plausible_length() if len(buffer) >= 3 else None
            if length is not None and len(buffer) >= length:
                break
            self._drop_start_byte()
        return self._garbage - before

    def _skip_to_start(self) -> bool:
        """Drop bytes before the next 68H; False if none is buffered."""
        buffer = self._buffer
        start = buffer.find(START_BYTE)
        if start < 0:
            self._garbage += len(buffer)
            buffer.clear()
            return False
        if start:
            self._garbage += start
            del buffer[:start]
        return True

    def _drop_start_byte(self) -> None:
        del self._buffer[0]
        self._garbage += 1

    def _plausible_length(self) -> int | None:
        """L of the candidate at the buffer's head, or None if it cannot be a frame's L."""
        buffer = self._buffer
        length = buffer[1] | buffer[2] << 8
        if not MIN_FRAME_LENGTH <= length <= self.max_frame_length:
            return None
        if len(buffer) >= 5 and length < MIN_FRAME_LENGTH + _address_length(buffer[3], buffer[4]):
            return None
        return length
