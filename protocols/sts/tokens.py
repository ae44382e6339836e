"""Token fields and the 64-bit data block (IEC 62055-41 clauses 6.2 and 6.3).

Every token is 2 class bits plus a 64-bit data block. Bit 63 is the most significant::

    standard layout (class 0; class 2 subclasses 0, 1, 2, 5, 6, 7)
     63    60 59    56 55                   32 31                16 15        0
    +--------+--------+-----------------------+--------------------+-----------+
    |subclass|  RND   |       TID (24)        |  amount / payload  |    CRC    |
    +--------+--------+-----------------------+--------------------+-----------+
              (S&E nibble instead of RND for the currency subclasses 4..7, with CRC_C)

    class 1, subclass 0:  subclass | Control (36) 59..24 | MfrCode (8) 23..16  | CRC
    class 1, subclass 1:  subclass | Control (28) 59..32 | MfrCode (16) 31..16 | CRC

    class 2 key change ("KCT"), no TID:
      Set1st (3): KENHO 59..56 | KRN 55..52 | RO 51 | 3KCT 50 | KT 49..48 | NKHO  47..16 | CRC
      Set2nd (4): KENLO 59..56 | TI 55..48 (binary)                       | NKLO  47..16 | CRC
      Set3rd (8): SGC bits 11..0 in 59..48                                | NKMO2 47..16 | CRC
      Set4th (9): SGC bits 23..12 in 59..48                               | NKMO1 47..16 | CRC

The CRC covers the class bits and data block bits 63..16 (see :mod:`protocols.sts.crc`).

Field objects are frozen and validate on construction. Amounts are stored as the token carries them:
a TransferCredit built for 18 021.5 kWh (180 215 tenths) holds 180 224 tenths, because the
standard rounds up in the customer's favour; a receipt printed from the object is therefore exact.
The new-key sections of key change tokens are key material and are left out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self

from .amount import (
    decode_currency_amount,
    decode_transfer_amount,
    encode_currency_amount,
    encode_transfer_amount,
)
from .crc import token_crc, token_crc_c
from .errors import AuthenticationError, StsUsageError, UnsupportedTokenError
from .keys import KeyType
from .tid import TID_MAX

__all__ = [
    "ClearCredit",
    "ClearTamperCondition",
    "CreditType",
    "KeyChangeSection",
    "ManagementToken",
    "MeterTestToken",
    "Set1stSectionDecoderKey",
    "Set2ndSectionDecoderKey",
    "Set3rdSectionDecoderKey",
    "Set4thSectionDecoderKey",
    "SetMaximumPhasePowerUnbalanceLimit",
    "SetMaximumPowerLimit",
    "SetTariffRate",
    "SetWaterMeterFactor",
    "TokenClass",
    "TokenFields",
    "TransferCredit",
    "build_block",
    "parse_block",
]


class TokenClass(IntEnum):
    TRANSFER_CREDIT = 0
    NON_METER_SPECIFIC = 1
    MANAGEMENT = 2
    RESERVED = 3


class CreditType(IntEnum):
    """Class 0 subclasses (6.2.2): what a TransferCredit token credits, and in which unit."""

    ELECTRICITY = 0  # 0.1 kWh
    WATER = 1  # 0.1 m3
    GAS = 2  # 0.1 m3
    TIME = 3  # 0.1 min
    ELECTRICITY_CURRENCY = 4  # 1e-5 currency units
    WATER_CURRENCY = 5
    GAS_CURRENCY = 6
    TIME_CURRENCY = 7

    @property
    def is_currency(self) -> bool:
        return self >= CreditType.ELECTRICITY_CURRENCY

    @property
    def unit(self) -> str:
        return ("0.1 kWh", "0.1 m3", "0.1 m3", "0.1 min")[self] if self < 4 else "0.00001 currency"

    @property
    def display_unit(self) -> str:
        return ("kWh", "m3", "m3", "min")[self] if self < 4 else "currency"

    @property
    def scale(self) -> int:
        """Base units per display unit (10 tenths, or 100 000 for currency)."""
        return 100_000 if self.is_currency else 10


def _check(name: str, value: object, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise StsUsageError(f"{name} must be an integer 0..{(1 << bits) - 1}, got {value!r}")
    return value


def _check_tid(tid: object) -> None:
    _check("tid", tid, 24)


@dataclass(frozen=True, slots=True)
class TransferCredit:
    """Class 0: credit of one kind, in base units (0.1 kWh ... or 1e-5 currency, signed)."""

    token_class: ClassVar[TokenClass] = TokenClass.TRANSFER_CREDIT
    credit_type: CreditType
    amount: int
    tid: int
    rnd: int = 0

    def __post_init__(self) -> None:
        try:
            credit_type = CreditType(self.credit_type)
        except ValueError:
            raise StsUsageError(f"credit type must be 0..7, got {self.credit_type!r}") from None
        object.__setattr__(self, "credit_type", credit_type)
        _check_tid(self.tid)
        if credit_type.is_currency:
            field_, se = encode_currency_amount(self.amount)
            object.__setattr__(self, "amount", decode_currency_amount(field_, se))
            object.__setattr__(self, "rnd", 0)
        else:
            _check("rnd", self.rnd, 4)
            unit = credit_type.unit
            object.__setattr__(
                self, "amount", decode_transfer_amount(encode_transfer_amount(self.amount, unit))
            )

    @property
    def subclass(self) -> int:
        return int(self.credit_type)


@dataclass(frozen=True, slots=True)
class MeterTestToken:
    """Class 1: initiate a meter test or display (not encrypted, not meter specific).

    Subclass 0 serves meters with a 2-digit manufacturer code (8-bit MfrCode, 36-bit Control);
    subclass 1 those with a 4-digit code (16-bit MfrCode, 28-bit Control). Control selects tests,
    one bit each (6.3.8); every meter supports test 0.
    """

    token_class: ClassVar[TokenClass] = TokenClass.NON_METER_SPECIFIC
    control: int
    mfr_code: int
    subclass: int = 0

    def __post_init__(self) -> None:
        if self.subclass not in (0, 1):
            raise StsUsageError(f"test token subclass must be 0 or 1, got {self.subclass!r}")
        _check("control", self.control, 36 if self.subclass == 0 else 28)
        _check("mfr_code", self.mfr_code, 8 if self.subclass == 0 else 16)
        if self.mfr_code > (99 if self.subclass == 0 else 9999):
            raise StsUsageError(
                f"manufacturer code {self.mfr_code} has more than "
                f"{2 if self.subclass == 0 else 4} digits"
            )


@dataclass(frozen=True, slots=True)
class _Management:
    """Class 2 tokens with the standard layout (RND, TID, a 16-bit payload).

    Each subclass names its payload field (``_payload``) and whether that field is coded like a
    TransferAmount (``_amount_coded``, for power limits in watts) or carried as a raw 16-bit value.
    """

    token_class: ClassVar[TokenClass] = TokenClass.MANAGEMENT
    subclass: ClassVar[int]
    _payload: ClassVar[str]
    _amount_coded: ClassVar[bool] = False
    tid: int
    rnd: int

    def __post_init__(self) -> None:
        _check_tid(self.tid)
        _check("rnd", self.rnd, 4)
        value = getattr(self, self._payload)
        if self._amount_coded:
            carried = decode_transfer_amount(encode_transfer_amount(value, "W"))
            object.__setattr__(self, self._payload, carried)
        else:
            _check(self._payload, value, 16)

    def payload(self) -> int:
        """The 16-bit field of data block bits 31..16."""
        value: int = getattr(self, self._payload)
        return encode_transfer_amount(value, "W") if self._amount_coded else value

    @classmethod
    def from_payload(cls, tid: int, rnd: int, payload: int) -> Self:
        value = decode_transfer_amount(payload) if cls._amount_coded else payload
        return cls(tid, rnd, value)  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class SetMaximumPowerLimit(_Management):
    """Subclass 0: maximum power limit in watts, coded like a TransferAmount (6.3.9)."""

    subclass: ClassVar[int] = 0
    _payload: ClassVar[str] = "watts"
    _amount_coded: ClassVar[bool] = True
    watts: int = 0


@dataclass(frozen=True, slots=True)
class ClearCredit(_Management):
    """Subclass 1: clear a credit register (0 electricity ... 0xFFFF all registers) (6.3.13)."""

    subclass: ClassVar[int] = 1
    _payload: ClassVar[str] = "register"
    ALL_REGISTERS: ClassVar[int] = 0xFFFF
    register: int = 0xFFFF


@dataclass(frozen=True, slots=True)
class SetTariffRate(_Management):
    """Subclass 2: tariff rate, 16 bits reserved for definition by the STS Association (6.3.11)."""

    subclass: ClassVar[int] = 2
    _payload: ClassVar[str] = "rate"
    rate: int = 0


@dataclass(frozen=True, slots=True)
class ClearTamperCondition(_Management):
    """Subclass 5: clear the meter's tamper condition; the 16-bit pad is 0 (6.3.14)."""

    subclass: ClassVar[int] = 5
    _payload: ClassVar[str] = "pad"
    pad: int = 0


@dataclass(frozen=True, slots=True)
class SetMaximumPhasePowerUnbalanceLimit(_Management):
    """Subclass 6: maximum phase power unbalance in watts, coded like a TransferAmount (6.3.10)."""

    subclass: ClassVar[int] = 6
    _payload: ClassVar[str] = "watts"
    _amount_coded: ClassVar[bool] = True
    watts: int = 0


@dataclass(frozen=True, slots=True)
class SetWaterMeterFactor(_Management):
    """Subclass 7: water meter factor, 16 bits reserved for water applications (6.3.12)."""

    subclass: ClassVar[int] = 7
    _payload: ClassVar[str] = "factor"
    factor: int = 0


@dataclass(frozen=True, slots=True)
class Set1stSectionDecoderKey:
    """Subclass 3: new key high 32 bits (NKHO), KEN high nibble, new KRN, RO bit, new KT."""

    token_class: ClassVar[TokenClass] = TokenClass.MANAGEMENT
    subclass: ClassVar[int] = 3
    ken_high: int
    new_krn: int
    rollover: bool
    new_key_type: KeyType
    nkho: int = field(repr=False)
    three_kct: bool = False

    def __post_init__(self) -> None:
        _check("ken_high", self.ken_high, 4)
        _check("new_krn", self.new_krn, 4)
        _check("nkho", self.nkho, 32)
        try:
            object.__setattr__(self, "new_key_type", KeyType(self.new_key_type))
        except ValueError:
            raise StsUsageError(f"key type must be 0..3, got {self.new_key_type!r}") from None
        object.__setattr__(self, "rollover", bool(self.rollover))
        object.__setattr__(self, "three_kct", bool(self.three_kct))


@dataclass(frozen=True, slots=True)
class Set2ndSectionDecoderKey:
    """Subclass 4: new key low 32 bits (NKLO), KEN low nibble, new tariff index (binary)."""

    token_class: ClassVar[TokenClass] = TokenClass.MANAGEMENT
    subclass: ClassVar[int] = 4
    ken_low: int
    new_tariff_index: int
    nklo: int = field(repr=False)

    def __post_init__(self) -> None:
        _check("ken_low", self.ken_low, 4)
        _check("new_tariff_index", self.new_tariff_index, 8)
        _check("nklo", self.nklo, 32)


@dataclass(frozen=True, slots=True)
class Set3rdSectionDecoderKey:
    """Subclass 8 (128-bit keys): new key bits 95..64 (NKMO2) and SGC bits 11..0."""

    token_class: ClassVar[TokenClass] = TokenClass.MANAGEMENT
    subclass: ClassVar[int] = 8
    sgc_low: int
    nkmo2: int = field(repr=False)

    def __post_init__(self) -> None:
        _check("sgc_low", self.sgc_low, 12)
        _check("nkmo2", self.nkmo2, 32)


@dataclass(frozen=True, slots=True)
class Set4thSectionDecoderKey:
    """Subclass 9 (128-bit keys): new key bits 63..32 (NKMO1) and SGC bits 23..12."""

    token_class: ClassVar[TokenClass] = TokenClass.MANAGEMENT
    subclass: ClassVar[int] = 9
    sgc_high: int
    nkmo1: int = field(repr=False)

    def __post_init__(self) -> None:
        _check("sgc_high", self.sgc_high, 12)
        _check("nkmo1", self.nkmo1, 32)


ManagementToken = (
    SetMaximumPowerLimit
    | ClearCredit
    | SetTariffRate
    | ClearTamperCondition
    | SetMaximumPhasePowerUnbalanceLimit
    | SetWaterMeterFactor
)
KeyChangeSection = (
    Set1stSectionDecoderKey
    | Set2ndSectionDecoderKey
    | Set3rdSectionDecoderKey
    | Set4thSectionDecoderKey
)
TokenFields = TransferCredit | MeterTestToken | ManagementToken | KeyChangeSection

_MANAGEMENT_BY_SUBCLASS: dict[int, Callable[[int, int, int], ManagementToken]] = {
    cls.subclass: cls.from_payload
    for cls in (
        SetMaximumPowerLimit,
        ClearCredit,
        SetTariffRate,
        ClearTamperCondition,
        SetMaximumPhasePowerUnbalanceLimit,
        SetWaterMeterFactor,
    )
}


def _body(fields: TokenFields) -> tuple[int, bool]:
    """(data block bits 63..16, whether the CRC is CRC_C)."""
    if isinstance(fields, TransferCredit):
        if fields.credit_type.is_currency:
            amount_field, se = encode_currency_amount(fields.amount)
            return (fields.subclass << 44) | (se << 40) | (fields.tid << 16) | amount_field, True
        amount_field = encode_transfer_amount(fields.amount)
        return (fields.subclass << 44) | (fields.rnd << 40) | (
            fields.tid << 16
        ) | amount_field, False
    if isinstance(fields, MeterTestToken):
        if fields.subclass == 0:
            return (fields.control << 8) | fields.mfr_code, False
        return (1 << 44) | (fields.control << 16) | fields.mfr_code, False
    if isinstance(fields, Set1stSectionDecoderKey):
        control = (
            (fields.new_krn << 4)
            | (int(fields.rollover) << 3)
            | (int(fields.three_kct) << 2)
            | int(fields.new_key_type)
        )
        return (3 << 44) | (fields.ken_high << 40) | (control << 32) | fields.nkho, False
    if isinstance(fields, Set2ndSectionDecoderKey):
        return (
            (4 << 44) | (fields.ken_low << 40) | (fields.new_tariff_index << 32) | fields.nklo
        ), False
    if isinstance(fields, Set3rdSectionDecoderKey):
        return (8 << 44) | (fields.sgc_low << 32) | fields.nkmo2, False
    if isinstance(fields, Set4thSectionDecoderKey):
        return (9 << 44) | (fields.sgc_high << 32) | fields.nkmo1, False
    if isinstance(fields, _Management):
        return (
            (fields.subclass << 44) | (fields.rnd << 40) | (fields.tid << 16) | fields.payload()
        ), False
    raise StsUsageError(f"not an STS token field object: {type(fields).__name__}")


def build_block(fields: TokenFields) -> int:
    """The 64-bit plaintext data block of ``fields``, CRC included."""
    body, uses_crc_c = _body(fields)
    token_class = int(fields.token_class)
    crc = token_crc_c(token_class, body) if uses_crc_c else token_crc(token_class, body)
    return (body << 16) | crc


def parse_block(token_class: int, block: int) -> TokenFields:
    """The fields of a decrypted data block; AuthenticationError if its CRC does not match."""
    body = block >> 16
    subclass = body >> 44
    uses_crc_c = token_class == 0 and 4 <= subclass <= 7
    expected = token_crc_c(token_class, body) if uses_crc_c else token_crc(token_class, body)
    if expected != block & 0xFFFF:
        raise AuthenticationError("token failed authentication (CRC): wrong key or mistyped token")
    nibble = (body >> 40) & 0xF
    tid = (body >> 16) & TID_MAX
    payload = body & 0xFFFF
    if token_class == TokenClass.TRANSFER_CREDIT:
        if subclass > 7:
            raise UnsupportedTokenError(f"class 0 subclass {subclass} is reserved or proprietary")
        credit_type = CreditType(subclass)
        if credit_type.is_currency:
            amount = decode_currency_amount(payload, nibble)
            return TransferCredit(credit_type, amount, tid)
        return TransferCredit(credit_type, decode_transfer_amount(payload), tid, nibble)
    if token_class == TokenClass.NON_METER_SPECIFIC:
        if subclass == 0:
            control, mfr = (body >> 8) & ((1 << 36) - 1), body & 0xFF
        elif subclass == 1:
            control, mfr = (body >> 16) & ((1 << 28) - 1), body & 0xFFFF
        else:
            raise UnsupportedTokenError(f"class 1 subclass {subclass} is not supported")
        if mfr > (99 if subclass == 0 else 9999):
            raise UnsupportedTokenError(f"manufacturer code {mfr} is not a decimal code")
        return MeterTestToken(control=control, mfr_code=mfr, subclass=subclass)
    if token_class == TokenClass.MANAGEMENT:
        key_half = body & 0xFFFF_FFFF
        control = (body >> 32) & 0xFF
        if subclass == 3:
            return Set1stSectionDecoderKey(
                ken_high=nibble,
                new_krn=control >> 4,
                rollover=bool(control & 8),
                new_key_type=KeyType(control & 3),
                nkho=key_half,
                three_kct=bool(control & 4),
            )
        if subclass == 4:
            return Set2ndSectionDecoderKey(ken_low=nibble, new_tariff_index=control, nklo=key_half)
        if subclass == 8:
            return Set3rdSectionDecoderKey(sgc_low=(body >> 32) & 0xFFF, nkmo2=key_half)
        if subclass == 9:
            return Set4thSectionDecoderKey(sgc_high=(body >> 32) & 0xFFF, nkmo1=key_half)
        management = _MANAGEMENT_BY_SUBCLASS.get(subclass)
        if management is None:
            raise UnsupportedTokenError(f"class 2 subclass {subclass} is reserved or proprietary")
        return management(tid, nibble, payload)
    raise UnsupportedTokenError("token class 3 is reserved")
