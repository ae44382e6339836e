"""Keys, meter identity and decoder key generation (IEC 62055-41 clauses 6.1, 6.5.2, 6.5.3).

A meter's decoder key (DK) is derived from a vending key (VK) held by the vending system and the
meter's identity and key attributes::

    MeterPAN     = IIN (6 digits, 600727; or 4) | DRN (11 or 13 digits, Luhn check last) | Luhn
    PANBlock     = the 16 digits of the PAN after its first digit, before its check digit
                   (the last 5 IIN digits + 11 DRN digits, or last 3 + 13); for KT 3 the IIN part
                   followed by zeros
    CONTROLBlock = KT | SGC (6) | TI (2) | KRN | FFFFFF       each decimal digit as one hex nibble

    DKGA02 (6.5.3.4), 64-bit VK:   X = PANBlock xor CONTROLBlock
                                   DK = DES_VK(X) xor X xor VK
    DKGA04 (STS Edition 2), 160-bit VK: DK = HMAC-SHA-256_VK(message)[:8 or 16]
        message = 04 | 02 "04" | 02 BD | 02 EA | 02 TI | 00 | 04 | 06 SGC | 01 KT | 01 KRN
                  | 12 PAN (18 ASCII digits) | L (4 bytes, 64 or 128)

DKGA01 and DKGA03 are not implemented: no conformance vectors are public for them, and an engine that
could vend wrong tokens for a legacy key is worse than one that says it does not support them.

Key objects never show their material: repr/str are redacted, and errors never quote a key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Self

from .ciphers import EncryptionAlgorithm, des_encrypt
from .errors import KeyDerivationError, StsUsageError
from .tid import BaseDate

__all__ = [
    "DecoderKey",
    "DecoderKeyInputs",
    "Dkga",
    "KeyType",
    "MeterPan",
    "VendingKey",
    "control_block",
    "derive_decoder_key",
    "dkga04_message",
    "luhn_check_digit",
    "pan_block",
]


class _SecretBytes:
    """Key material that is never printed."""

    __slots__ = ("_material",)
    _kind = "key"

    def __init__(self, material: bytes) -> None:
        if not isinstance(material, bytes | bytearray):
            raise StsUsageError(f"{self._kind} must be bytes")
        self._material = bytes(material)

    @classmethod
    def from_hex(cls, text: str) -> Self:
        cleaned = "".join(str(text).split()).replace("-", "")
        try:
            material = bytes.fromhex(cleaned)
        except ValueError:
            raise StsUsageError(f"{cls._kind} must be hexadecimal digits") from None
        return cls(material)

    @property
    def material(self) -> bytes:
        """The key bytes. Pass them to ciphers only; never log or return them."""
        return self._material

    @property
    def bits(self) -> int:
        return len(self._material) * 8

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{self.bits}-bit, redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _SecretBytes) or type(other) is not type(self):
            return NotImplemented
        return hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash((type(self).__name__, hashlib.sha256(self._material).digest()))

    def __reduce__(self) -> str:  # pragma: no cover - refuse to pickle secrets by accident
        raise TypeError(f"{type(self).__name__} cannot be pickled")


class DecoderKey(_SecretBytes):
    """A meter's decoder key: 64 bits (STA, DEA) or 128 bits (MISTY1)."""

    __slots__ = ()
    _kind = "decoder key"

    def __init__(self, material: bytes) -> None:
        super().__init__(material)
        if len(self._material) not in (8, 16):
            raise StsUsageError("decoder key must be 64 or 128 bits")


class VendingKey(_SecretBytes):
    """A vending key: 64 bits for DKGA02 (DES), 160 bits for DKGA04 (HMAC-SHA-256)."""

    __slots__ = ()
    _kind = "vending key"

    def __init__(self, material: bytes) -> None:
        super().__init__(material)
        if len(self._material) not in (8, 20):
            raise StsUsageError("vending key must be 64 bits (DKGA02) or 160 bits (DKGA04)")


class KeyType(IntEnum):
    """Decoder key types (6.5.2.5)."""

    DITK = 0  # initialisation key, factory only
    DDTK = 1  # default key: cannot accept credit tokens
    DUTK = 2  # unique key
    DCTK = 3  # common key


class Dkga(Enum):
    """Decoder key generation algorithms implemented here."""

    DKGA02 = "02"
    DKGA04 = "04"

    @classmethod
    def parse(cls, value: str | int | Dkga) -> Dkga:
        if isinstance(value, Dkga):
            return value
        text = str(value).strip().upper().removeprefix("DKGA")
        if text.isascii() and text.isdigit():  # not '²', which int() refuses
            text = f"{int(text):02d}"
        for member in cls:
            if member.value == text:
                return member
        if text in ("01", "03"):
            raise KeyDerivationError(
                f"DKGA{text} is not supported (no public conformance vectors); use DKGA02 or DKGA04"
            )
        raise KeyDerivationError(
            f"key generation algorithm must be DKGA02 or DKGA04, got {value!r}"
        )


def luhn_check_digit(digits: str) -> int:
    """The Luhn (mod 10) check digit to append to ``digits``."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return (10 - total % 10) % 10


def _digits(value: object, length: tuple[int, ...], what: str) -> str:
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) not in length:
        wanted = " or ".join(str(n) for n in length)
        raise KeyDerivationError(f"{what} must be {wanted} digits, got {value!r}")
    return text


@dataclass(frozen=True, slots=True)
class MeterPan:
    """A meter's primary account number: IIN | DRN (with its check digit) | PAN check digit."""

    iin: str
    drn: str

    def __post_init__(self) -> None:
        iin = _digits(self.iin, (4, 6), "IIN")
        drn = _digits(self.drn, (11, 13), "DRN")
        if len(iin) + len(drn) != 17:
            raise KeyDerivationError(
                "a 6-digit IIN goes with an 11-digit DRN and a 4-digit IIN with a 13-digit DRN"
            )
        if luhn_check_digit(drn[:-1]) != int(drn[-1]):
            raise KeyDerivationError(f"DRN {drn} fails its Luhn check digit")
        object.__setattr__(self, "iin", iin)
        object.__setattr__(self, "drn", drn)

    @classmethod
    def parse(cls, pan: str, iin: str | None = None) -> MeterPan:
        """From the 18-digit MeterPAN. The IIN is 600727 when the PAN starts with it, else 4 digits."""
        text = _digits(pan, (18,), "MeterPAN")
        if luhn_check_digit(text[:-1]) != int(text[-1]):
            raise KeyDerivationError(f"MeterPAN {text} fails its Luhn check digit")
        iin_length = len(iin) if iin else (6 if text.startswith("600727") else 4)
        return cls(text[:iin_length], text[iin_length:-1])

    @classmethod
    def from_drn(cls, drn: str, iin: str = "600727") -> MeterPan:
        return cls(iin, drn)

    @property
    def pan(self) -> str:
        body = self.iin + self.drn
        return body + str(luhn_check_digit(body))

    def __str__(self) -> str:
        return self.pan


def pan_block(pan: MeterPan, key_type: KeyType) -> int:
    """The PANBlock (6.5.3.1) as a 64-bit integer."""
    digits = pan.pan[1:17]
    if key_type is KeyType.DCTK:
        iin_part = 5 if len(pan.iin) == 6 else 3
        digits = digits[:iin_part] + "0" * (16 - iin_part)
    return int(digits, 16)


@dataclass(frozen=True, slots=True)
class DecoderKeyInputs:
    """Everything besides the vending key that determines a meter's decoder key.

    These are the meter's STS key attributes as a vending system stores them.
    """

    pan: MeterPan
    supply_group_code: str
    tariff_index: str = "01"
    key_revision_number: int = 1
    key_type: KeyType = KeyType.DUTK
    base_date: BaseDate = BaseDate.Y1993
    algorithm: EncryptionAlgorithm = EncryptionAlgorithm.STA
    dkga: Dkga = Dkga.DKGA02

    def __post_init__(self) -> None:
        sgc = _digits(self.supply_group_code, (6,), "supply group code")
        ti = str(self.tariff_index).strip()
        if ti.isdigit() and len(ti) == 1:
            ti = "0" + ti
        ti = _digits(ti, (2,), "tariff index")
        if not isinstance(self.key_revision_number, int) or not 1 <= self.key_revision_number <= 9:
            raise KeyDerivationError(
                f"key revision number must be 1..9, got {self.key_revision_number!r}"
            )
        try:
            key_type = KeyType(int(self.key_type))
        except ValueError:
            raise KeyDerivationError(f"key type must be 0..3, got {self.key_type!r}") from None
        algorithm = EncryptionAlgorithm.parse(self.algorithm)
        dkga = Dkga.parse(self.dkga)
        base = BaseDate.parse(self.base_date)
        if algorithm is EncryptionAlgorithm.MISTY1 and dkga is not Dkga.DKGA04:
            raise KeyDerivationError("EA11 (MISTY1) needs a 128-bit key: use DKGA04")
        if algorithm is EncryptionAlgorithm.DEA and dkga is not Dkga.DKGA02:
            raise KeyDerivationError("EA09 (DEA) keys come from DKGA02")
        object.__setattr__(self, "supply_group_code", sgc)
        object.__setattr__(self, "tariff_index", ti)
        object.__setattr__(self, "key_type", key_type)
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "dkga", dkga)
        object.__setattr__(self, "base_date", base)


def control_block(inputs: DecoderKeyInputs) -> int:
    """The CONTROLBlock (6.5.3.2) as a 64-bit integer: KT SGC TI KRN FFFFFF, digits as nibbles."""
    text = (
        f"{int(inputs.key_type)}{inputs.supply_group_code}{inputs.tariff_index}"
        f"{inputs.key_revision_number}FFFFFF"
    )
    return int(text, 16)


def dkga04_message(inputs: DecoderKeyInputs) -> bytes:
    """The HMAC-SHA-256 message of DKGA04 (label, separator, context, output length in bits)."""

    def field_(value: str) -> bytes:
        data = value.encode("ascii")
        return bytes([len(data)]) + data

    bits = inputs.algorithm.key_bytes * 8
    label = b"\x04" + field_("04") + field_(inputs.base_date.code)
    label += field_(inputs.algorithm.value) + field_(inputs.tariff_index)
    context = b"\x04" + field_(inputs.supply_group_code) + field_(f"{int(inputs.key_type):X}")
    context += field_(str(inputs.key_revision_number)) + field_(inputs.pan.pan)
    return label + b"\x00" + context + bits.to_bytes(4, "big")


def derive_decoder_key(vending_key: VendingKey, inputs: DecoderKeyInputs) -> DecoderKey:
    """The decoder key of the meter described by ``inputs`` under ``vending_key``."""
    if inputs.dkga is Dkga.DKGA02:
        if vending_key.bits != 64:
            raise KeyDerivationError("DKGA02 needs a 64-bit vending key")
        vk = vending_key.material
        x = pan_block(inputs.pan, inputs.key_type) ^ control_block(inputs)
        y = int.from_bytes(des_encrypt(vk, x.to_bytes(8, "big")), "big")
        return DecoderKey((y ^ x ^ int.from_bytes(vk, "big")).to_bytes(8, "big"))
    if vending_key.bits != 160:
        raise KeyDerivationError("DKGA04 needs a 160-bit vending key")
    digest = hmac.new(vending_key.material, dkga04_message(inputs), hashlib.sha256).digest()
    return DecoderKey(digest[: inputs.algorithm.key_bytes])
