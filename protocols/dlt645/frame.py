"""DL/T 645-2007 frames: byte layout, encoding, decoding and a sans-I/O receiver. Pure, no I/O.

Frame layout (spec notes ``dlt645.md`` §1; one cell per byte, data field L bytes long)::

    +---------+----+-------------------+----+---+---+-----------------------+----+----+
    | FE x0-4 | 68 | A0 A1 A2 A3 A4 A5 | 68 | C | L | D0 ... D(L-1)  (+33H) | CS | 16 |
    +---------+----+-------------------+----+---+---+-----------------------+----+----+
     wake-up    ^    address, 12 BCD                                          ^
     preamble   |    digits, A0 holds                                         |
                |    the two lowest                                           |
                +------ CS = sum of these bytes mod 256 (no preamble) --------+

    control byte C:   D7           D6              D5              D4 .. D0
                      direction    abnormal reply  follow-up data  function code
                      0 master     1 = the meter   1 = more frames (11H read, 14H write,
                      1 meter      refused         follow          1CH relay control, ...)

Rules quoted from the notes, each next to the code that applies it:

* "every data byte is sent as ``(b + 0x33) & 0xFF`` and received as ``(b - 0x33) & 0xFF``";
  :class:`Frame` holds the data field *unscrambled*, as the meter means it.
* "sum of all bytes from the first 68H through the last data byte, mod 256; the FE preamble is
  excluded".
* "receivers must skip 0-4 FE", and meters prefix replies too: :func:`decode_frame` skips any
  number of leading FEH (they carry nothing), :func:`encode_frame` sends 0 to 4.
* Frames are cut by the L field, never by looking for 16H: addresses, data and checksums may
  contain 16H (meter 201500000016 goes on the wire as ``68 16 00 00 00 15 20 68``; notes §7 on
  xgbt/dlt645-go).

The address is held as the printed 12-digit string, most significant digit first
(``"000000000001"`` goes on the wire as ``01 00 00 00 00 00``). ``999999999999`` is the broadcast
address, ``AAAAAAAAAAAA`` the wildcard; an abbreviated address pads its high bytes with AAH
(``"AAAAAAAA0001"``).

:class:`FrameReceiver` follows h11's shape: ``receive_data(bytes)``, then ``next_event()`` until it
returns :data:`NEED_DATA`. Garbage is skipped and counted, a frame that fails a check comes out as a
:class:`BadFrame` event (the receiver then carries on one byte further, so a corrupted L byte cannot
swallow the good frame behind it), and the buffer is bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

from protocols.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "BROADCAST_ADDRESS",
    "DEFAULT_MAX_BUFFER",
    "MAX_DATA_LENGTH",
    "MAX_FRAME_LENGTH",
    "MAX_PREAMBLE",
    "NEED_DATA",
    "WILDCARD_ADDRESS",
    "AddressError",
    "BadFrame",
    "ChecksumError",
    "DataFormatError",
    "Dlt645Error",
    "Dlt645UsageError",
    "EndByteError",
    "Frame",
    "FrameLengthError",
    "FrameReceiver",
    "FunctionCode",
    "MessageError",
    "NeedData",
    "ParsedFrame",
    "StartByteError",
    "address_from_wire",
    "address_matches",
    "address_to_wire",
    "decode_frame",
    "encode_frame",
    "function",
    "has_follow_up",
    "is_abnormal",
    "is_reply",
    "normalise_address",
    "parse_frame",
]

START: Final = 0x68
END: Final = 0x16
WAKE_UP: Final = 0xFE
SCRAMBLE: Final = 0x33
MAX_PREAMBLE: Final = 4
MAX_DATA_LENGTH: Final = 0xFF  # L is one byte
HEADER_LENGTH: Final = 10  # 68, A0..A5, 68, C, L
MIN_FRAME_LENGTH: Final = HEADER_LENGTH + 2  # ... CS, 16 with L = 0
MAX_FRAME_LENGTH: Final = MIN_FRAME_LENGTH + MAX_DATA_LENGTH  # without the wake-up preamble
DEFAULT_MAX_BUFFER: Final = 4096

BROADCAST_ADDRESS: Final = "999999999999"
WILDCARD_ADDRESS: Final = "AAAAAAAAAAAA"

DIRECTION_BIT: Final = 0x80
ABNORMAL_BIT: Final = 0x40
FOLLOW_UP_BIT: Final = 0x20
FUNCTION_MASK: Final = 0x1F


# -- errors -------------------------------------------------------------------------------------


class Dlt645Error(RemoteProtocolError):
    """Bytes from a meter or concentrator that are not valid DL/T 645 (base of the remote errors)."""


class StartByteError(Dlt645Error):
    """A start byte (68H) is missing where the layout needs one."""

    def __init__(self, offset: int, found: int, which: str = "start byte") -> None:
        self.offset = offset
        self.found = found
        super().__init__(f"{which}: expected 68H at offset {offset}, found {found:02X}H")


class FrameLengthError(Dlt645Error):
    """The byte count does not match the frame's L field (truncated, or bytes after the end)."""


class EndByteError(Dlt645Error):
    """The byte that L says ends the frame is not 16H (a wrong L, or a damaged frame)."""

    def __init__(self, offset: int, found: int, length: int) -> None:
        self.offset = offset
        self.found = found
        super().__init__(
            f"end byte: expected 16H at offset {offset} (after L={length} data bytes), "
            f"found {found:02X}H"
        )


class ChecksumError(Dlt645Error):
    """CS is not the sum of the bytes from the first 68H to the last data byte, mod 256."""

    def __init__(self, expected: int, found: int) -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"checksum: frame carries {found:02X}H, its bytes sum to {expected:02X}H")


class AddressError(Dlt645Error):
    """An address field that is neither BCD nor AAH-padded BCD."""


class DataFormatError(Dlt645Error):
    """A value in a data field that its data identifier's format does not allow (e.g. not BCD)."""


class MessageError(Dlt645Error):
    """A well-formed frame whose data field does not fit its function code."""


class Dlt645UsageError(LocalProtocolError):
    """We asked for a frame, message or value that DL/T 645 cannot carry."""


# -- control byte -------------------------------------------------------------------------------


class FunctionCode(IntEnum):
    """D4..D0 of the control byte, DL/T 645-2007 (notes §2; vector file ``control_codes_2007``)."""

    SECURITY_AUTHENTICATION = 0x03
    BROADCAST_TIME = 0x08
    READ = 0x11
    READ_FOLLOW_UP = 0x12
    READ_ADDRESS = 0x13
    WRITE = 0x14
    WRITE_ADDRESS = 0x15
    FREEZE = 0x16
    CHANGE_BAUD_RATE = 0x17
    CHANGE_PASSWORD = 0x18
    CLEAR_MAX_DEMAND = 0x19
    CLEAR_METER = 0x1A
    CLEAR_EVENTS = 0x1B
    RELAY_CONTROL = 0x1C
    MULTI_FUNCTION_OUTPUT = 0x1D


def is_reply(control: int) -> bool:
    """D7 = 1: sent by the meter (slave) to the master."""
    return bool(control & DIRECTION_BIT)


def is_abnormal(control: int) -> bool:
    """D6 = 1: the meter refused the request; the data field is one error byte."""
    return bool(control & ABNORMAL_BIT)


def has_follow_up(control: int) -> bool:
    """D5 = 1: more data follows in further frames (read them with 12H)."""
    return bool(control & FOLLOW_UP_BIT)


def function(control: int) -> int:
    """D4..D0: the function code (11H read, 14H write, ...)."""
    return control & FUNCTION_MASK


# -- addresses ----------------------------------------------------------------------------------

# Leading AA pairs (abbreviated address padding), then decimal pairs, 12 characters in all.
_ADDRESS = re.compile(r"(?:AA)*(?:[0-9]{2})*")


def normalise_address(address: str) -> str:
    """``address`` as the 12-character upper-case string frames hold; Dlt645UsageError if invalid."""
    if not isinstance(address, str):
        raise Dlt645UsageError(
            f"address must be a 12-character string, not {type(address).__name__}"
        )
    text = address.upper()
    if len(text) != 12 or _ADDRESS.fullmatch(text) is None:
        raise Dlt645UsageError(
            f"address {address!r} is not 12 BCD digits (high bytes may be AA, e.g. AAAAAAAA0001)"
        )
    return text


def address_to_wire(address: str) -> bytes:
    """The 6 address bytes in transmission order, low byte (A0) first."""
    return bytes.fromhex(normalise_address(address))[::-1]


def address_from_wire(raw: bytes) -> str:
    """The printed address of 6 wire bytes A0..A5; AddressError if they are not (padded) BCD."""
    if len(raw) != 6:
        raise AddressError(f"address field is {len(raw)} bytes, not 6")
    padding = True
    for index in range(5, -1, -1):  # A5 (highest digits) down to A0
        byte = raw[index]
        if padding and byte == 0xAA:
            continue
        padding = False
        if byte >> 4 > 9 or byte & 0x0F > 9:
            raise AddressError(
                f"address byte A{index} is {byte:02X}H: not BCD"
                + (" (AAH may only pad the high bytes)" if byte == 0xAA else "")
            )
    return raw[::-1].hex().upper()


def address_matches(target: str, meter: str) -> bool:
    """Whether a frame sent to ``target`` is meant for the meter whose own address is ``meter``.

    True for the meter's address, the broadcast address, and the wildcard or an abbreviated
    address whose non-AA low digits equal the meter's.
    """
    target = normalise_address(target)
    meter = normalise_address(meter)
    if target in (meter, BROADCAST_ADDRESS):
        return True
    # A valid address has only whole AA pairs in front and decimal digits after them.
    return meter.endswith(target.lstrip("A"))


# -- frames -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """One DL/T 645 frame: address, control byte and the data field, held unscrambled."""

    address: str
    control: int
    data: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        if isinstance(self.control, bool) or not isinstance(self.control, int):
            raise Dlt645UsageError("control must be an int (one byte)")
        if not 0 <= self.control <= 0xFF:
            raise Dlt645UsageError(f"control {self.control} does not fit one byte")
        if not isinstance(self.data, bytes | bytearray | memoryview):
            raise Dlt645UsageError("data must be bytes")
        object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > MAX_DATA_LENGTH:
            raise Dlt645UsageError(
                f"data field is {len(self.data)} bytes; L is one byte (at most {MAX_DATA_LENGTH})"
            )

    def __repr__(self) -> str:
        data = f"bytes.fromhex({self.data.hex().upper()!r})" if self.data else "b''"
        return f"Frame(address={self.address!r}, control=0x{self.control:02X}, data={data})"

    @property
    def is_reply(self) -> bool:
        return is_reply(self.control)

    @property
    def is_abnormal(self) -> bool:
        return is_abnormal(self.control)

    @property
    def has_follow_up(self) -> bool:
        return has_follow_up(self.control)

    @property
    def function(self) -> int:
        return function(self.control)


def _scramble(data: bytes) -> bytes:
    return bytes((b + SCRAMBLE) & 0xFF for b in data)


def _unscramble(data: bytes) -> bytes:
    return bytes((b - SCRAMBLE) & 0xFF for b in data)


def encode_frame(frame: Frame, preamble: int = MAX_PREAMBLE) -> bytes:
    """The wire bytes of ``frame``, after ``preamble`` (0-4) FEH wake-up bytes."""
    if isinstance(preamble, bool) or not isinstance(preamble, int):
        raise Dlt645UsageError("preamble must be an int")
    if not 0 <= preamble <= MAX_PREAMBLE:
        raise Dlt645UsageError(f"preamble is 0 to {MAX_PREAMBLE} FEH bytes, not {preamble}")
    body = (
        bytes((START,))
        + address_to_wire(frame.address)
        + bytes((START, frame.control, len(frame.data)))
        + _scramble(frame.data)
    )
    return bytes((WAKE_UP,)) * preamble + body + bytes((sum(body) & 0xFF, END))


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    """A structurally valid frame and what its checksum check found (see :func:`parse_frame`)."""

    frame: Frame
    preamble: int
    checksum_expected: int
    checksum_found: int

    @property
    def checksum_ok(self) -> bool:
        return self.checksum_expected == self.checksum_found


def parse_frame(raw: bytes) -> ParsedFrame:
    """Split exactly one frame (leading FEH allowed) without enforcing its checksum.

    Structural faults raise StartByteError, FrameLengthError, EndByteError or AddressError; a
    checksum mismatch is reported in the result instead, for tools that show a technician what a
    damaged frame would have said. Receivers use :func:`decode_frame`.
    """
    raw = bytes(raw)
    preamble = len(raw) - len(raw.lstrip(bytes((WAKE_UP,))))
    body = raw[preamble:]
    if not body:
        raise FrameLengthError(f"no frame: {len(raw)} bytes, all FEH wake-up preamble")
    if body[0] != START:
        raise StartByteError(preamble, body[0], "first start byte")
    if len(body) > 7 and body[7] != START:
        raise StartByteError(preamble + 7, body[7], "second start byte")
    if len(body) < MIN_FRAME_LENGTH:
        raise FrameLengthError(
            f"truncated: {len(body)} bytes from the first 68H; the shortest frame (L=0) has "
            f"{MIN_FRAME_LENGTH}"
        )
    length = body[9]
    total = MIN_FRAME_LENGTH + length
    if len(body) < total:
        raise FrameLengthError(
            f"truncated: L={length} needs {total} bytes from the first 68H, got {len(body)}"
        )
    if body[total - 1] != END:
        raise EndByteError(preamble + total - 1, body[total - 1], length)
    if len(body) > total:
        raise FrameLengthError(
            f"{len(body) - total} bytes after the end byte 16H (L={length} makes a {total}-byte "
            "frame); decode one frame at a time"
        )
    address = address_from_wire(body[1:7])
    frame = Frame(address, body[8], _unscramble(body[HEADER_LENGTH : HEADER_LENGTH + length]))
    return ParsedFrame(frame, preamble, sum(body[: total - 2]) & 0xFF, body[total - 2])


def decode_frame(raw: bytes) -> Frame:
    """Decode exactly one frame; leading FEH bytes are skipped. Raises a :class:`Dlt645Error`."""
    parsed = parse_frame(raw)
    if not parsed.checksum_ok:
        raise ChecksumError(parsed.checksum_expected, parsed.checksum_found)
    return parsed.frame


# -- streaming receiver -------------------------------------------------------------------------


class NeedData(Enum):
    """Type of :data:`NEED_DATA`: the receiver needs more bytes before it can say anything."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Bytes that were framed like a DL/T 645 frame but failed a check; ``reason`` says which."""

    reason: str
    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not self.reason:
            raise Dlt645UsageError("a BadFrame needs a reason")
        object.__setattr__(self, "raw", bytes(self.raw))


class FrameReceiver:
    """Cuts a byte stream (RS485, a PLC module, a TCP tunnel) into frames, sans I/O.

    Theory of operation: the buffer always starts where the next frame might. Bytes before the
    first 68H are skipped (counted in :attr:`skipped_bytes`, except FEH wake-up bytes, which are
    expected). A 68H counts as a frame start only when the second 68H sits 7 bytes later; the
    address between them is checked at once, so a stray pair of 68H in noise cannot make the
    receiver wait for up to 255 data bytes. Once L has arrived the frame's length is known, and
    only then is the end byte and checksum checked. Any failed check yields :class:`BadFrame` and
    drops just the first 68H, so the bytes after it are searched again: a frame whose L byte was
    corrupted must not hide the frame that follows it (those bytes then count as skipped).

    ``max_buffer`` bounds memory: if the caller feeds more than that without draining events, the
    oldest bytes are dropped and counted in :attr:`dropped_bytes`.
    """

    __slots__ = ("_buffer", "dropped_bytes", "max_buffer", "skipped_bytes")

    def __init__(self, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int):
            raise Dlt645UsageError("max_buffer must be an int")
        if max_buffer < MAX_FRAME_LENGTH:
            raise Dlt645UsageError(
                f"max_buffer must hold the longest frame ({MAX_FRAME_LENGTH} bytes), "
                f"not {max_buffer}"
            )
        self.max_buffer = max_buffer
        self.skipped_bytes = 0
        self.dropped_bytes = 0
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the line (an empty chunk is a no-op: serial lines have no EOF)."""
        self._buffer += data
        excess = len(self._buffer) - self.max_buffer
        if excess > 0:
            del self._buffer[:excess]
            self.dropped_bytes += excess

    def next_event(self) -> Frame | BadFrame | NeedData:
        """The next :class:`Frame` or :class:`BadFrame`, or :data:`NEED_DATA`."""
        buffer = self._buffer
        while True:
            start = buffer.find(START)
            if start < 0:
                self._skip(len(buffer))
                return NEED_DATA
            self._skip(start)
            if len(buffer) < 8:
                return NEED_DATA
            if buffer[7] != START:
                self._skip(1)  # a 68H inside garbage, not a frame start
                continue
            try:
                address_from_wire(bytes(buffer[1:7]))
            except AddressError as exc:
                return self._reject(str(exc), bytes(buffer[:8]))
            if len(buffer) < HEADER_LENGTH:
                return NEED_DATA
            total = MIN_FRAME_LENGTH + buffer[9]
            if len(buffer) < total:
                return NEED_DATA
            raw = bytes(buffer[:total])
            try:
                frame = decode_frame(raw)
            except Dlt645Error as exc:
                return self._reject(str(exc), raw)
            del buffer[:total]
            return frame

    def _skip(self, count: int) -> None:
        if count:
            skipped = self._buffer[:count]
            self.skipped_bytes += count - skipped.count(WAKE_UP)
            del self._buffer[:count]

    def _reject(self, reason: str, raw: bytes) -> BadFrame:
        del self._buffer[:1]  # resynchronise one byte on: the L byte may be what was damaged
        return BadFrame(reason, raw)
