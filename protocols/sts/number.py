"""The 66-bit token number and its 20 decimal digits (IEC 62055-41 clause 6.4.2).

After encryption the two class bits are not simply prepended: they are *transposed* into bits 28
and 27 of the 64-bit block, and the two bits they displace move to bits 65 and 64::

     65 64 63                    29 28 27 26                       0
    +-----+------------------------+-----+--------------------------+
    |e28 e27|  encrypted 63..29     |c1 c0|  encrypted 26..0         |
    +-----+------------------------+-----+--------------------------+

The 66-bit number (at most 7.4e19) is written in decimal, left-padded with zeros to 20 digits, and
is usually printed in five groups of four. A meter reverses the steps to find the class before it
decrypts anything, which is why class 1 tokens (not encrypted) can be recognised by any meter.
"""

from __future__ import annotations

import re

from .errors import FormatError

__all__ = ["TOKEN_DIGITS", "format_token", "join_number", "normalize_token", "split_number"]

TOKEN_DIGITS = 20
_MASK64 = (1 << 64) - 1
_CLASS_BITS = 3 << 27
_SEPARATORS = re.compile(r"[\s\-_.]+")


def join_number(token_class: int, block: int) -> int:
    """The 66-bit token number of an (encrypted) 64-bit block and its class."""
    displaced = (block >> 27) & 3
    return (displaced << 64) | (block & ~_CLASS_BITS & _MASK64) | ((token_class & 3) << 27)


def split_number(number: int) -> tuple[int, int]:
    """(class, encrypted 64-bit block) of a 66-bit token number."""
    token_class = (number >> 27) & 3
    block = (number & _MASK64 & ~_CLASS_BITS) | (((number >> 64) & 3) << 27)
    return token_class, block


def normalize_token(text: str) -> str:
    """The 20 digits of a token typed or printed with any spaces, dashes, dots or underscores.

    Raises FormatError for anything that is not exactly 20 digits of a 66-bit number.
    """
    if not isinstance(text, str):
        raise FormatError(f"a token is a string of 20 digits, got {type(text).__name__}")
    digits = _SEPARATORS.sub("", text)
    if len(digits) != TOKEN_DIGITS or not digits.isascii() or not digits.isdigit():
        shown = digits if len(digits) <= 40 else digits[:40] + "..."
        raise FormatError(f"a token has exactly 20 digits; got {len(digits)} characters {shown!r}")
    if int(digits) >> 66:
        raise FormatError("token value is larger than 66 bits; it cannot be an STS token")
    return digits


def format_token(digits: str, separator: str = " ") -> str:
    """The usual printed form: five groups of four digits."""
    digits = normalize_token(digits)
    return separator.join(digits[i : i + 4] for i in range(0, TOKEN_DIGITS, 4))
