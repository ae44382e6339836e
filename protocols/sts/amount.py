"""TransferAmount coding (IEC 62055-41 clause 6.3.6), also used for MPL and MPPUL (6.3.9, 6.3.10).

A 16-bit field carries an exponent and a 14-bit mantissa::

    15 14 13                                        0
    +-----+-------------------------------------------+
    |  e  |                  m                        |
    +-----+-------------------------------------------+

    t = m * 10**e + sum(2**14 * 10**(i - 1) for i in 1..e)

so each exponent continues exactly where the previous one ends:

    e=0: 0 .. 16 383     e=1: 16 384 .. 180 214     e=2: 180 224 .. 1 818 524
    e=3: 1 818 624 .. 18 201 624   (in 0.1 kWh, 0.1 m3, 0.1 min or W)

"All TransferAmount conversions shall be rounded up in favour of the customer" (6.3.6.2): an amount
that no field represents exactly is encoded as the next representable value above it. Values just
above an exponent's range roll over to the next exponent with m = 0 (180 215 -> 180 224).

The currency subclasses 4..7 (6.3.6.3, 6.3.21) use a 5-bit exponent: its two low bits are the field's
bits 15..14 and its three high bits are bits 2..0 of the S&E nibble that takes the RND's place in the
data block; S&E bit 3 is the sign (1 = negative). The unit is 10**-5 of the base currency.

All arithmetic is on integers: amounts are never floats.
"""

from __future__ import annotations

from .errors import AmountRangeError, StsUsageError

__all__ = [
    "CURRENCY_MAX_EXPONENT",
    "TRANSFER_AMOUNT_MAX",
    "decode_currency_amount",
    "decode_transfer_amount",
    "encode_currency_amount",
    "encode_transfer_amount",
    "round_up_transfer_amount",
]

_MANTISSA_MAX = (1 << 14) - 1
CURRENCY_MAX_EXPONENT = 31


def _offset(exponent: int) -> int:
    """sum(2**14 * 10**(i - 1) for i in 1..exponent) = 16384 * (10**e - 1) / 9."""
    power: int = 10**exponent
    return (1 << 14) * (power - 1) // 9


def _decode(exponent: int, mantissa: int) -> int:
    scale: int = 10**exponent
    return mantissa * scale + _offset(exponent)


def _max_value(max_exponent: int) -> int:
    return _decode(max_exponent, _MANTISSA_MAX)


TRANSFER_AMOUNT_MAX = _max_value(3)  # 18 201 624


def _encode(value: int, max_exponent: int, round_up: bool, unit: str) -> tuple[int, int]:
    """(exponent, mantissa) of the representable value nearest ``value`` in the customer's favour."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StsUsageError(f"amount must be an integer number of {unit}, got {value!r}")
    if value < 0 or value > _max_value(max_exponent):
        raise AmountRangeError(value, _max_value(max_exponent), unit)
    for exponent in range(max_exponent + 1):
        scale: int = 10**exponent
        excess = value - _offset(exponent)
        if excess < 0:
            # Only reached when rounding up rolled past the previous exponent's last value.
            return exponent, 0
        mantissa = -(-excess // scale) if round_up else excess // scale
        if mantissa <= _MANTISSA_MAX:
            return exponent, mantissa
    raise AssertionError("unreachable: the range check above bounds the exponent")


def encode_transfer_amount(value: int, unit: str = "base units") -> int:
    """The 16-bit field for ``value`` base units, rounded up; AmountRangeError past 18 201 624."""
    exponent, mantissa = _encode(value, 3, True, unit)
    return (exponent << 14) | mantissa


def decode_transfer_amount(field: int) -> int:
    """The value in base units that a 16-bit TransferAmount field stands for."""
    if not 0 <= field <= 0xFFFF:
        raise StsUsageError(f"amount field must be 16 bits, got {field!r}")
    return _decode(field >> 14, field & _MANTISSA_MAX)


def round_up_transfer_amount(value: int) -> int:
    """The value a token for ``value`` base units actually carries (>= value)."""
    return decode_transfer_amount(encode_transfer_amount(value))


def encode_currency_amount(value: int) -> tuple[int, int]:
    """(16-bit amount field, S&E nibble) for a signed amount in units of 10**-5 currency.

    A positive amount rounds up and a negative one rounds towards zero: both in favour of the
    customer.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise StsUsageError(f"currency amount must be an integer of 1e-5 units, got {value!r}")
    negative = value < 0
    exponent, mantissa = _encode(
        -value if negative else value, CURRENCY_MAX_EXPONENT, not negative, "1e-5 currency units"
    )
    field = ((exponent & 3) << 14) | mantissa
    se_nibble = (int(negative) << 3) | (exponent >> 2)
    return field, se_nibble


def decode_currency_amount(field: int, se_nibble: int) -> int:
    """The signed amount, in 10**-5 currency units, of a currency token's field and S&E nibble."""
    if not 0 <= field <= 0xFFFF or not 0 <= se_nibble <= 0xF:
        raise StsUsageError("currency amount field must be 16 bits and its S&E nibble 4 bits")
    exponent = (field >> 14) | ((se_nibble & 7) << 2)
    magnitude = _decode(exponent, field & _MANTISSA_MAX)
    return -magnitude if se_nibble & 8 else magnitude
