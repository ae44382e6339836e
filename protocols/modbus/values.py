"""Typed values in Modbus registers: the data types of a meter profile.

Modbus itself knows only 16-bit registers and single bits (Modbus Application Protocol V1.1b3,
section 4.3); every meter maker chooses how longer values are laid out. A profile point says:

    type        registers   value
    u16, s16    1           integer (two's complement for s16)
    u32, s32    2           integer
    u64         4           integer
    f32         2           IEEE 754 single precision
    bcd         length      packed BCD, 4 digits per register
    string      length      ASCII, 2 characters per register, NUL padded
    bool        -           a coil or discrete input

``word_order`` says which register holds the most significant word ("big": the first, as in the
Modbus convention for most meters; "little": the last, as many meters do for 32-bit values), and
``byte_order`` which byte of each register is sent first. A ``scale`` turns the raw integer into
engineering units exactly (Decimal): raw 12345 with scale 0.01 is 123.45 kWh.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from enum import Enum

from protocols.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ByteOrder",
    "DataType",
    "Value",
    "WordOrder",
    "decode_registers",
    "encode_registers",
    "register_count",
]

Value = int | Decimal | float | str | bool


class DataType(Enum):
    U16 = "u16"
    S16 = "s16"
    U32 = "u32"
    S32 = "s32"
    U64 = "u64"
    F32 = "f32"
    BCD = "bcd"
    STRING = "string"
    BOOL = "bool"


class WordOrder(Enum):
    BIG = "big"
    LITTLE = "little"


class ByteOrder(Enum):
    BIG = "big"
    LITTLE = "little"


_FIXED_WORDS = {
    DataType.U16: 1,
    DataType.S16: 1,
    DataType.U32: 2,
    DataType.S32: 2,
    DataType.U64: 4,
    DataType.F32: 2,
}
_SIGNED = {DataType.S16, DataType.S32}


def register_count(data_type: DataType, length: int | None = None) -> int:
    """How many registers a value of ``data_type`` occupies (``length`` for bcd and string)."""
    if data_type in _FIXED_WORDS:
        return _FIXED_WORDS[data_type]
    if data_type is DataType.BOOL:
        return 1
    if not length or length < 1:
        raise LocalProtocolError(f"{data_type.value} needs a length in registers")
    return length


def _to_bytes(registers: list[int], word_order: WordOrder, byte_order: ByteOrder) -> bytes:
    words = registers if word_order is WordOrder.BIG else list(reversed(registers))
    out = bytearray()
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise RemoteProtocolError(f"register value {word!r} is not 16 bits")
        pair = word.to_bytes(2, "big")
        out += pair if byte_order is ByteOrder.BIG else pair[::-1]
    return bytes(out)


def _from_bytes(data: bytes, word_order: WordOrder, byte_order: ByteOrder) -> list[int]:
    words = []
    for index in range(0, len(data), 2):
        pair = data[index : index + 2]
        words.append(int.from_bytes(pair if byte_order is ByteOrder.BIG else pair[::-1], "big"))
    return words if word_order is WordOrder.BIG else list(reversed(words))


def decode_registers(
    registers: list[int],
    data_type: DataType,
    *,
    scale: Decimal = Decimal(1),
    word_order: WordOrder = WordOrder.BIG,
    byte_order: ByteOrder = ByteOrder.BIG,
) -> Value:
    """The value that ``registers`` (exactly the point's registers) hold."""
    if data_type is DataType.BOOL:
        return bool(registers[0])
    data = _to_bytes(registers, word_order, byte_order)
    if data_type is DataType.STRING:
        return data.rstrip(b"\x00 ").decode("ascii", errors="replace")
    if data_type is DataType.F32:
        number = struct.unpack(">f", data)[0]
        return number * float(scale) if scale != 1 else float(number)
    if data_type is DataType.BCD:
        digits = data.hex()
        if not digits.isdigit():
            raise RemoteProtocolError(f"register value {digits.upper()} is not BCD")
        raw = int(digits)
    else:
        raw = int.from_bytes(data, "big", signed=data_type in _SIGNED)
    return raw if scale == 1 else raw * scale


def encode_registers(
    value: Value,
    data_type: DataType,
    *,
    length: int | None = None,
    scale: Decimal = Decimal(1),
    word_order: WordOrder = WordOrder.BIG,
    byte_order: ByteOrder = ByteOrder.BIG,
) -> list[int]:
    """The registers that hold ``value``; LocalProtocolError when it does not fit or is inexact."""
    if data_type is DataType.BOOL:
        return [1 if value else 0]
    words = register_count(data_type, length)
    if data_type is DataType.STRING:
        text = str(value).encode("ascii")
        if len(text) > 2 * words:
            raise LocalProtocolError(f"string {value!r} longer than {2 * words} characters")
        return _from_bytes(text.ljust(2 * words, b"\x00"), word_order, byte_order)
    if data_type is DataType.F32:
        if isinstance(value, str):
            raise LocalProtocolError(f"f32 needs a number, got {value!r}")
        number = float(value) / float(scale)
        if math.isnan(number) or abs(number) > 3.4e38:
            raise LocalProtocolError(f"{value!r} does not fit an f32")
        return _from_bytes(struct.pack(">f", number), word_order, byte_order)
    if isinstance(value, str | float):
        raise LocalProtocolError(f"{data_type.value} needs an integer or Decimal, got {value!r}")
    exact = Decimal(value) / scale
    if exact != exact.to_integral_value():
        raise LocalProtocolError(f"{value} is not a multiple of the scale {scale}")
    raw = int(exact)
    if data_type is DataType.BCD:
        if raw < 0 or raw >= 10 ** (4 * words):
            raise LocalProtocolError(f"{value} does not fit {4 * words} BCD digits")
        data = bytes.fromhex(f"{raw:0{4 * words}d}")
    else:
        signed = data_type in _SIGNED
        try:
            data = raw.to_bytes(2 * words, "big", signed=signed)
        except OverflowError:
            raise LocalProtocolError(f"{value} does not fit a {data_type.value}") from None
    return _from_bytes(data, word_order, byte_order)
