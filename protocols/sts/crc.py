"""The token CRC (IEC 62055-41 clause 6.3.7) and CRC_C (clause 6.3.22).

The CRC covers the 50-bit token body: class (2 bits), subclass (4), and the 44 bits that follow in
the data block (RND/TID/amount, or the management payload). Laid out for the CRC it is 7 bytes::

    byte 0           bytes 1..6
    000000cc         ssss rrrr tttt... (data block bits 63..16)
          ^^ class

The polynomial is x^16 + x^15 + x^2 + 1, computed as CRC-16/MODBUS (reflected 0xA001, initial value
0xFFFF, no final XOR); the two result bytes are swapped before they go into data block bits 15..0.
Checks: CRC(000B19EB230100) = 0xC207 and CRC(00004A2D900FF2) = 0x0FFA (the standard's example, as
reproduced in public simulators), and the STS Association's TID page example gives 0x1970.

CRC_C, used by the currency transfer subclasses 4..7, is the same computation over the 7 bytes
followed by one byte 0x01.
"""

from __future__ import annotations

__all__ = ["crc16", "crc_c", "token_crc", "token_crc_c"]


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def _modbus_crc(data: bytes) -> int:
    crc = 0xFFFF
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def crc16(data: bytes) -> int:
    """The STS CRC of ``data`` as it is placed in the data block (bytes already swapped)."""
    crc = _modbus_crc(data)
    return ((crc & 0xFF) << 8) | (crc >> 8)


def crc_c(data: bytes) -> int:
    """CRC_C: the STS CRC over ``data`` followed by the byte 0x01."""
    return crc16(data + b"\x01")


def token_crc(token_class: int, body48: int) -> int:
    """CRC of a token whose data block bits 63..16 are ``body48``."""
    return crc16(((token_class << 48) | body48).to_bytes(7, "big"))


def token_crc_c(token_class: int, body48: int) -> int:
    """CRC_C of a token whose data block bits 63..16 are ``body48``."""
    return crc_c(((token_class << 48) | body48).to_bytes(7, "big"))
