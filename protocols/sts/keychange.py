"""Key change token sets (IEC 62055-41 clauses 6.2.4 to 6.2.7, meter side 7.3.1).

A new decoder key reaches a meter in a set of class 2 tokens, encrypted with the meter's *current*
key. A 64-bit key (STA, DEA) needs two tokens, a 128-bit MISTY1 key four::

    new key (64)  = NKHO (Set1st) | NKLO (Set2nd)
    new key (128) = NKHO (Set1st) | NKMO2 (Set3rd) | NKMO1 (Set4th) | NKLO (Set2nd)

Set1st also carries the new KRN and key type, the high nibble of the key expiry number (KEN) and the
roll-over bit (RO); Set2nd the low KEN nibble and the new tariff index; Set3rd/Set4th the new supply
group code in two 12-bit halves. The tokens may be entered in any order. A set with RO = 1 makes the
meter clear its TID memory: that is how meters on base date 1993 move to 2014 (the "2024 TID
rollover"), with their new tokens' small TIDs accepted and every old token refused (wrong key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .codec import Token, TokenCoder
from .errors import StsUsageError
from .keys import DecoderKey, DecoderKeyInputs, KeyType, VendingKey, derive_decoder_key
from .tokens import (
    KeyChangeSection,
    Set1stSectionDecoderKey,
    Set2ndSectionDecoderKey,
    Set3rdSectionDecoderKey,
    Set4thSectionDecoderKey,
)

__all__ = [
    "KEN_NO_EXPIRY",
    "NewKeyAttributes",
    "assemble_key_change",
    "key_change_sections",
    "key_change_set",
    "key_change_tokens",
]

KEN_NO_EXPIRY = 0xFF


def key_change_sections(
    new_key: DecoderKey,
    *,
    new_key_type: KeyType | int,
    new_krn: int,
    new_tariff_index: int | str,
    ken: int = KEN_NO_EXPIRY,
    rollover: bool = False,
    new_sgc: int | str | None = None,
) -> list[KeyChangeSection]:
    """The sections (not yet encrypted) that load ``new_key``: 2 for 64 bits, 4 for 128 bits."""
    if not 0 <= ken <= 0xFF:
        raise StsUsageError(f"KEN must be 0..255, got {ken!r}")
    if not 1 <= new_krn <= 9:
        raise StsUsageError(f"key revision number must be 1..9, got {new_krn!r}")
    ti = int(new_tariff_index)
    if not 0 <= ti <= 99:
        raise StsUsageError(f"tariff index must be 0..99, got {new_tariff_index!r}")
    key = int.from_bytes(new_key.material, "big")
    if new_key.bits == 64:
        high, low = key >> 32, key & 0xFFFF_FFFF
    else:
        high, low = key >> 96, key & 0xFFFF_FFFF
    sections: list[KeyChangeSection] = [
        Set1stSectionDecoderKey(
            ken_high=ken >> 4,
            new_krn=new_krn,
            rollover=rollover,
            new_key_type=KeyType(int(new_key_type)),
            nkho=high,
        ),
        Set2ndSectionDecoderKey(ken_low=ken & 0xF, new_tariff_index=ti, nklo=low),
    ]
    if new_key.bits == 128:
        if new_sgc is None:
            raise StsUsageError("a 128-bit key change carries the new supply group code: give it")
        sgc = int(new_sgc)
        if not 0 <= sgc <= 999_999:
            raise StsUsageError(f"supply group code must have 6 digits, got {new_sgc!r}")
        sections.append(
            Set3rdSectionDecoderKey(sgc_low=sgc & 0xFFF, nkmo2=(key >> 64) & 0xFFFF_FFFF)
        )
        sections.append(
            Set4thSectionDecoderKey(sgc_high=sgc >> 12, nkmo1=(key >> 32) & 0xFFFF_FFFF)
        )
    return sections


def key_change_tokens(
    current: TokenCoder,
    new_key: DecoderKey,
    *,
    new_key_type: KeyType | int,
    new_krn: int,
    new_tariff_index: int | str,
    ken: int = KEN_NO_EXPIRY,
    rollover: bool = False,
    new_sgc: int | str | None = None,
) -> list[Token]:
    """The key change tokens, each encrypted with the meter's current key (``current``)."""
    sections = key_change_sections(
        new_key,
        new_key_type=new_key_type,
        new_krn=new_krn,
        new_tariff_index=new_tariff_index,
        ken=ken,
        rollover=rollover,
        new_sgc=new_sgc,
    )
    return [current.encode(section) for section in sections]


def key_change_set(
    current_vending_key: VendingKey,
    current: DecoderKeyInputs,
    new_vending_key: VendingKey,
    new: DecoderKeyInputs,
    *,
    ken: int = KEN_NO_EXPIRY,
    rollover: bool | None = None,
) -> list[Token]:
    """The key change set that moves a meter from ``current`` to ``new`` key attributes.

    The roll-over bit defaults to "the base date moves forward", which is what the TID rollover
    needs (1993 -> 2014 with KRN + 1, say).
    """
    if current.pan != new.pan:
        raise StsUsageError("a key change keeps the meter's PAN")
    if rollover is None:
        rollover = new.base_date > current.base_date
    new_key = derive_decoder_key(new_vending_key, new)
    return key_change_tokens(
        TokenCoder.derive(current_vending_key, current),
        new_key,
        new_key_type=new.key_type,
        new_krn=new.key_revision_number,
        new_tariff_index=new.tariff_index,
        ken=ken,
        rollover=rollover,
        new_sgc=new.supply_group_code,
    )


@dataclass(frozen=True, slots=True)
class NewKeyAttributes:
    """What a complete key change set tells a meter."""

    key: DecoderKey = field(repr=False)
    key_type: KeyType
    key_revision_number: int
    tariff_index: int
    ken: int
    rollover: bool
    supply_group_code: int | None  # None for 2-token sets, which carry no SGC


def assemble_key_change(sections: Mapping[int, KeyChangeSection]) -> NewKeyAttributes | None:
    """The new key once every section of the set is present (by subclass), else None.

    A set is complete with subclasses 3 and 4 for a 64-bit key; if either 8 or 9 is present the key
    is 128 bits and all four are needed.
    """
    first, second = sections.get(3), sections.get(4)
    third, fourth = sections.get(8), sections.get(9)
    if not isinstance(first, Set1stSectionDecoderKey) or not isinstance(
        second, Set2ndSectionDecoderKey
    ):
        return None
    sgc: int | None = None
    if third is None and fourth is None:
        key = DecoderKey(((first.nkho << 32) | second.nklo).to_bytes(8, "big"))
    elif isinstance(third, Set3rdSectionDecoderKey) and isinstance(fourth, Set4thSectionDecoderKey):
        value = (first.nkho << 96) | (third.nkmo2 << 64) | (fourth.nkmo1 << 32) | second.nklo
        key = DecoderKey(value.to_bytes(16, "big"))
        sgc = (fourth.sgc_high << 12) | third.sgc_low
    else:
        return None
    return NewKeyAttributes(
        key=key,
        key_type=first.new_key_type,
        key_revision_number=first.new_krn,
        tariff_index=second.new_tariff_index,
        ken=(first.ken_high << 4) | second.ken_low,
        rollover=first.rollover,
        supply_group_code=sgc,
    )
