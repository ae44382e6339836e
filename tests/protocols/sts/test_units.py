"""TIDs, amounts, identities, key handling and token-number details, with values from the standard."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone

import pytest

from protocols.sts import (
    AmountRangeError,
    BaseDate,
    CreditType,
    DecoderKey,
    DecoderKeyInputs,
    Dkga,
    EncryptionAlgorithm,
    FormatError,
    KeyDerivationError,
    MeterPan,
    Set1stSectionDecoderKey,
    StsDeprecationWarning,
    StsError,
    TidRangeError,
    TokenCoder,
    TransferCredit,
    VendingKey,
    datetime_of_tid,
    decode_transfer_amount,
    derive_decoder_key,
    encode_transfer_amount,
    format_token,
    key_change_sections,
    last_valid_datetime,
    luhn_check_digit,
    next_tid,
    normalize_token,
    tid_of,
)

# -- TIDs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "last"),
    [(1993, datetime(2024, 11, 24, 20, 15)), (2014, datetime(2045, 11, 24, 20, 15)),
     (2035, datetime(2066, 11, 24, 20, 15))],
)  # fmt: skip
def test_each_base_date_ends_on_its_rollover_minute(base: int, last: datetime) -> None:
    assert last_valid_datetime(base) == last
    assert tid_of(last, base) == (1 << 24) - 1
    with pytest.raises(TidRangeError, match="roll-over"):
        tid_of(last + timedelta(minutes=1), base)


def test_tid_counts_wall_clock_minutes() -> None:
    assert tid_of(datetime(1993, 1, 1)) == 0
    assert tid_of(datetime(1996, 3, 25, 13, 55, 59)) == 1698595  # seconds are dropped
    aware = datetime(2014, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=3)))
    assert tid_of(aware, 2014) == 480  # its own wall clock, as a point of sale would read it
    assert datetime_of_tid(6472570) == datetime(2005, 4, 22, 20, 10)
    with pytest.raises(TidRangeError, match="before base date"):
        tid_of(datetime(2013, 12, 31, 23, 59), 2014)
    with pytest.raises(TidRangeError):
        BaseDate.parse(2000)


def test_next_tid_never_repeats_within_a_minute() -> None:
    now = datetime(2025, 1, 1, 12, 0, 30)
    first = next_tid(now, 2014, None)
    second = next_tid(now, 2014, first)
    assert second == first + 1
    assert next_tid(now + timedelta(minutes=5), 2014, second) == first + 5


# -- amounts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [(0, 0x0000), (16383, 0x3FFF), (16384, 0x4000), (180214, 0x7FFF), (180215, 0x8000),
     (180224, 0x8000), (1818524, 0xBFFF), (1818624, 0xC000), (18201624, 0xFFFF), (16385, 0x4001)],
)  # fmt: skip
def test_transfer_amount_fields(value: int, field: int) -> None:
    assert encode_transfer_amount(value) == field


def test_rounding_is_in_the_customers_favour() -> None:
    # 18 022.3 kWh cannot be carried; the customer gets the next value up, never less.
    assert decode_transfer_amount(encode_transfer_amount(180223)) == 180224
    assert TransferCredit(CreditType.ELECTRICITY, 16385 + 5, 0).amount == 16394
    with pytest.raises(AmountRangeError, match="out of range"):
        encode_transfer_amount(18201625)
    with pytest.raises(AmountRangeError):
        encode_transfer_amount(-1)


# -- identities and keys --------------------------------------------------------------------------


def test_meter_pan_check_digits() -> None:
    assert MeterPan.from_drn("00000000000").pan == "600727000000000009"
    assert MeterPan.parse("000001000000000082") == MeterPan("0000", "0100000000008")
    assert luhn_check_digit("7992739871") == 3  # the classic Luhn example
    with pytest.raises(KeyDerivationError, match="Luhn"):
        MeterPan.from_drn("00000000001")
    with pytest.raises(KeyDerivationError, match="Luhn"):
        MeterPan.parse("600727000000000008")
    with pytest.raises(KeyDerivationError):
        MeterPan("600727", "0100000000008")


def test_unsupported_combinations_are_refused_with_a_reason() -> None:
    pan = MeterPan.from_drn("00000000000")
    with pytest.raises(KeyDerivationError, match="DKGA04"):
        DecoderKeyInputs(pan=pan, supply_group_code="123456", algorithm=EncryptionAlgorithm.MISTY1)
    with pytest.raises(KeyDerivationError, match="not supported"):
        DecoderKeyInputs(pan=pan, supply_group_code="123456", dkga=Dkga.parse("01"))
    with pytest.raises(KeyDerivationError, match=r"1\.\.9"):
        DecoderKeyInputs(pan=pan, supply_group_code="123456", key_revision_number=10)
    inputs = DecoderKeyInputs(pan=pan, supply_group_code="123456", dkga=Dkga.DKGA04)
    with pytest.raises(KeyDerivationError, match="160-bit"):
        derive_decoder_key(VendingKey.from_hex("AB" * 8), inputs)


SECRET = "ABABABABABABABAB"
DK_HEX = "E653341F9D5BF36F"


def test_keys_never_show_in_repr_str_or_errors() -> None:
    vk = VendingKey.from_hex(SECRET)
    inputs = DecoderKeyInputs(pan=MeterPan.from_drn("00000000000"), supply_group_code="123456")
    dk = derive_decoder_key(vk, inputs)
    coder = TokenCoder(dk, "07")
    shown = " ".join([repr(vk), str(vk), repr(dk), str(dk), repr(coder), repr(coder._cipher)])
    for secret in (SECRET, DK_HEX, SECRET.lower(), DK_HEX.lower()):
        assert secret not in shown
    assert dk == DecoderKey.from_hex(DK_HEX)
    sections = key_change_sections(dk, new_key_type=2, new_krn=2, new_tariff_index=1)
    first = sections[0]
    assert isinstance(first, Set1stSectionDecoderKey)
    assert all(
        DK_HEX[:8] not in repr(s).upper() and DK_HEX[8:] not in repr(s).upper() for s in sections
    )
    assert DK_HEX[:8] in f"{first.nkho:08X}"  # the material is there, just not shown
    with pytest.raises(StsError) as caught:
        TokenCoder(DecoderKey.from_hex(SECRET + "00"), "07")
    assert SECRET not in str(caught.value)


def test_dea_is_deprecated_but_works() -> None:
    key = DecoderKey.from_hex(DK_HEX)
    with pytest.warns(StsDeprecationWarning, match="deprecated"):
        coder = TokenCoder(key, EncryptionAlgorithm.DEA)
    token = coder.encode(TransferCredit(CreditType.ELECTRICITY, 10, 100, 1))
    assert coder.decode(token.digits) == token.fields
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StsDeprecationWarning)
        sta = TokenCoder(key, EncryptionAlgorithm.STA)
    assert sta.encode(token.fields).digits != token.digits


# -- token numbers --------------------------------------------------------------------------------


def test_token_text_forms() -> None:
    assert normalize_token("7350-8892-9496-6510-5367") == "73508892949665105367"
    assert normalize_token(" 7350 8892\t9496.6510_5367 ") == "73508892949665105367"
    assert format_token("73508892949665105367") == "7350 8892 9496 6510 5367"
    for bad in ("7350889294966510536", "735088929496651053670", "7350889294966510536x",
                "٧٣٥٠٨٨٩٢٩٤٩٦٦٥١٠٥٣٦٧", "99999999999999999999"):  # fmt: skip
        with pytest.raises(FormatError):
            normalize_token(bad)
