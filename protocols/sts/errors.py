"""Typed errors of the STS token engine.

Two families, as in the house style:

* :class:`StsUsageError`: the caller asked for something the standard does not allow (an amount past
  the maximum, a TID past the base date's range, a key of the wrong length, an algorithm that cannot
  be combined with a key derivation). These are our own mistakes or an operator's bad input.
* :class:`TokenRejected`: a 20-digit token, as received from a person or a wire, is not acceptable.
  Each subclass carries the meter-side result it maps to (IEC 62055-41 clause 7 names: FormatError,
  CRCError, ...), so a decoder at a vending point and a meter report the same thing.

Error messages never contain key material, plaintext data blocks or decrypted fields.
"""

from __future__ import annotations

__all__ = [
    "AmountRangeError",
    "AuthenticationError",
    "FormatError",
    "KeyDerivationError",
    "StsError",
    "StsUsageError",
    "TidRangeError",
    "TokenRejected",
    "UnsupportedTokenError",
]


class StsError(Exception):
    """Base class of every error raised by :mod:`protocols.sts`."""


class StsUsageError(StsError, ValueError):
    """A request that the standard does not allow (bad field value, bad key, bad combination)."""


class AmountRangeError(StsUsageError):
    """A TransferAmount (or MPL/MPPUL) past the largest value the 16-bit field can carry."""

    def __init__(self, value: int, maximum: int, unit: str = "base units") -> None:
        self.value = value
        self.maximum = maximum
        super().__init__(f"amount {value} {unit} is out of range (0..{maximum} {unit})")


class TidRangeError(StsUsageError):
    """A time before the base date, or past the last minute the 24-bit TID can count."""


class KeyDerivationError(StsUsageError):
    """Decoder key generation inputs that are invalid or cannot be combined."""


class TokenRejected(StsError):
    """A token that cannot be accepted; ``result`` is the IEC 62055-41 result name."""

    result = "FormatError"


class FormatError(TokenRejected, ValueError):
    """Not a 20-digit STS token (wrong length, non-digits, or a value past 66 bits)."""

    result = "FormatError"


class AuthenticationError(TokenRejected):
    """The CRC of the decrypted block does not match: wrong key, a typo, or a forged token."""

    result = "CRCError"


class UnsupportedTokenError(TokenRejected):
    """A class/subclass that is reserved, proprietary, or not implemented (IEC FunctionError)."""

    result = "FunctionError"
