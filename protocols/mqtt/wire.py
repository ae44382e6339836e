"""MQTT data representation: integers, strings, binary data and the fixed header. Pure, no I/O.

Theory of operation. Every MQTT control packet is a fixed header, then a body of exactly
"Remaining Length" bytes (5.0 §2.1.1, 3.1.1 §2.2)::

    bit      7   6   5   4   3   2   1   0
    byte 1  | packet type   |    flags      |
    byte 2… | Remaining Length: 1 to 4 bytes, a Variable Byte Integer |
    body    | variable header (packet-specific), then the payload      |

The body is read with a :class:`BodyReader`, a cursor that raises :class:`MalformedPacket` when a
field runs past the end of the body (the Remaining Length "does not include the bytes used to
encode the Remaining Length", 5.0 §2.1.4, so a field that overruns it is malformed).

Data types of 5.0 §1.5 (3.1.1 §1.5 has the first, third and fifth):

* §1.5.2 / §1.5.3 Two and Four Byte Integers: big-endian ("high order byte precedes the lower
  order byte").
* §1.5.4 UTF-8 Encoded String: a Two Byte Integer length, then that many bytes of UTF-8. "The
  character data in a UTF-8 Encoded String MUST be well-formed UTF-8 ... In particular, the
  character data MUST NOT include encodings of code points between U+D800 and U+DFFF
  [MQTT-1.5.4-1]" and "A UTF-8 Encoded String MUST NOT include an encoding of the null character
  U+0000 [MQTT-1.5.4-2]". (Python's strict UTF-8 decoder refuses surrogates and overlong forms.)
* §1.5.5 Variable Byte Integer: "The least significant seven bits of each byte encode the data,
  and the most significant bit is used to indicate whether there are bytes following in the
  representation", at most four bytes (so at most 268,435,455), and "The encoded value MUST use
  the minimum number of bytes necessary to represent the value [MQTT-1.5.5-1]": a continuation
  byte followed by a last byte of 0x00 is therefore malformed.
* §1.5.6 Binary Data: a Two Byte Integer length, then that many bytes.
* §1.5.7 UTF-8 String Pair: two UTF-8 Encoded Strings (name, value); used by User Properties.
"""

from __future__ import annotations

from typing import Final

from .errors import MalformedPacket, MqttUsageError

__all__ = [
    "MAX_UINT16",
    "MAX_UINT32",
    "MAX_VARINT",
    "BodyReader",
    "encode_binary",
    "encode_uint16",
    "encode_uint32",
    "encode_utf8",
    "encode_varint",
    "parse_fixed_header",
    "utf8_problem",
]

MAX_UINT16: Final = 0xFFFF
MAX_UINT32: Final = 0xFFFF_FFFF
MAX_VARINT: Final = 268_435_455  # 5.0 §1.5.5: 0xFF 0xFF 0xFF 0x7F
MAX_VARINT_BYTES: Final = 4


# -- encoding -----------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """5.0 §1.5.5: seven bits per byte, least significant group first, high bit = more follow."""
    if not 0 <= value <= MAX_VARINT:
        raise MqttUsageError(f"variable byte integer out of range 0..{MAX_VARINT}: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_uint16(value: int) -> bytes:
    if not 0 <= value <= MAX_UINT16:
        raise MqttUsageError(f"two byte integer out of range: {value}")
    return value.to_bytes(2, "big")


def encode_uint32(value: int) -> bytes:
    if not 0 <= value <= MAX_UINT32:
        raise MqttUsageError(f"four byte integer out of range: {value}")
    return value.to_bytes(4, "big")


def utf8_problem(text: str) -> str | None:
    """Why ``text`` cannot be an MQTT UTF-8 Encoded String (None if it can); 5.0 §1.5.4."""
    if "\x00" in text:
        return "contains U+0000 [MQTT-1.5.4-2]"
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a surrogate code point [MQTT-1.5.4-1]"
    if len(encoded) > MAX_UINT16:
        return f"is {len(encoded)} bytes long in UTF-8, more than 65535"
    return None


def encode_utf8(text: str) -> bytes:
    problem = utf8_problem(text)
    if problem is not None:
        raise MqttUsageError(f"string {text[:40]!r} {problem}")
    encoded = text.encode("utf-8")
    return len(encoded).to_bytes(2, "big") + encoded


def encode_binary(data: bytes) -> bytes:
    if len(data) > MAX_UINT16:
        raise MqttUsageError(f"binary data is {len(data)} bytes long, more than 65535")
    return len(data).to_bytes(2, "big") + bytes(data)


# -- decoding -----------------------------------------------------------------------------------


def parse_fixed_header(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """``(header_length, remaining_length)`` of the packet at the start of ``buffer``.

    None if the Remaining Length is not complete yet. MalformedPacket if it runs over four bytes
    or is not minimally encoded (5.0 §1.5.5, §2.1.4).
    """
    value = 0
    for index in range(MAX_VARINT_BYTES):
        position = 1 + index
        if position >= len(buffer):
            return None
        byte = buffer[position]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if index and byte == 0:
                raise MalformedPacket("Remaining Length is not minimally encoded [MQTT-1.5.5-1]")
            return position + 1, value
    raise MalformedPacket("Remaining Length runs over four bytes (5.0 §1.5.5)")


class BodyReader:
    """A cursor over one packet body; any field running past the end is a MalformedPacket."""

    __slots__ = ("_data", "_end", "_position")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._position = start
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._position

    def at_end(self) -> bool:
        return self._position >= self._end

    def take(self, count: int, what: str) -> bytes:
        if count > self._end - self._position:
            raise MalformedPacket(
                f"{what}: needs {count} bytes, only {self._end - self._position} left in the packet"
            )
        start = self._position
        self._position += count
        return self._data[start : self._position]

    def sub_reader(self, length: int, what: str) -> BodyReader:
        """A reader over the next ``length`` bytes (a property block), skipping them here."""
        if length > self._end - self._position:
            raise MalformedPacket(
                f"{what}: {length} bytes announced, only {self._end - self._position} left"
            )
        start = self._position
        self._position += length
        return BodyReader(self._data, start, self._position)

    def byte(self, what: str) -> int:
        if self._position >= self._end:
            raise MalformedPacket(f"{what}: missing (the packet ends here)")
        value = self._data[self._position]
        self._position += 1
        return value

    def uint16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def uint32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    def varint(self, what: str) -> int:
        value = 0
        for index in range(MAX_VARINT_BYTES):
            byte = self.byte(what)
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                if index and byte == 0:
                    raise MalformedPacket(f"{what}: not minimally encoded [MQTT-1.5.5-1]")
                return value
        raise MalformedPacket(f"{what}: variable byte integer runs over four bytes")

    def utf8(self, what: str) -> str:
        raw = self.take(self.uint16(what), what)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPacket(f"{what}: not well-formed UTF-8 [MQTT-1.5.4-1]") from exc
        if "\x00" in text:
            raise MalformedPacket(f"{what}: contains U+0000 [MQTT-1.5.4-2]")
        return text

    def binary(self, what: str) -> bytes:
        return self.take(self.uint16(what), what)

    def rest(self) -> bytes:
        start = self._position
        self._position = self._end
        return self._data[start : self._end]
