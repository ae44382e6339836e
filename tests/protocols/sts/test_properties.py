"""Hypothesis properties of the token engine: round trips, and no crash on arbitrary input."""

from __future__ import annotations

import warnings

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.sts import (
    TRANSFER_AMOUNT_MAX,
    AmountRangeError,
    ClearCredit,
    ClearTamperCondition,
    CreditType,
    DecoderKey,
    EncryptionAlgorithm,
    KeyType,
    MeterTestToken,
    Set1stSectionDecoderKey,
    Set2ndSectionDecoderKey,
    Set3rdSectionDecoderKey,
    Set4thSectionDecoderKey,
    SetMaximumPhasePowerUnbalanceLimit,
    SetMaximumPowerLimit,
    SetTariffRate,
    SetWaterMeterFactor,
    StsDeprecationWarning,
    TokenCoder,
    TokenFields,
    TokenRejected,
    TransferCredit,
    decode_currency_amount,
    decode_token,
    decode_transfer_amount,
    encode_currency_amount,
    encode_test_token,
    encode_transfer_amount,
    format_token,
    normalize_token,
)

tids = st.integers(0, (1 << 24) - 1)
nibbles = st.integers(0, 15)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)


def _credit(draw: st.DrawFn) -> TransferCredit:
    credit_type = CreditType(draw(st.integers(0, 7)))
    if credit_type.is_currency:
        amount = draw(st.integers(-(10**30), 10**30))
    else:
        amount = draw(st.integers(0, TRANSFER_AMOUNT_MAX))
    return TransferCredit(credit_type, amount, draw(tids), draw(nibbles))


@st.composite
def encrypted_fields(draw: st.DrawFn) -> TokenFields:
    """Any class 0 or class 2 token."""
    kind = draw(st.integers(0, 10))
    tid, rnd = draw(tids), draw(nibbles)
    watts = st.integers(0, TRANSFER_AMOUNT_MAX)
    options: list[TokenFields] = [
        _credit(draw),
        SetMaximumPowerLimit(tid=tid, rnd=rnd, watts=draw(watts)),
        ClearCredit(tid=tid, rnd=rnd, register=draw(u16)),
        SetTariffRate(tid=tid, rnd=rnd, rate=draw(u16)),
        ClearTamperCondition(tid=tid, rnd=rnd, pad=draw(u16)),
        SetMaximumPhasePowerUnbalanceLimit(tid=tid, rnd=rnd, watts=draw(watts)),
        SetWaterMeterFactor(tid=tid, rnd=rnd, factor=draw(u16)),
        Set1stSectionDecoderKey(
            ken_high=draw(nibbles),
            new_krn=draw(nibbles),
            rollover=draw(st.booleans()),
            new_key_type=KeyType(draw(st.integers(0, 3))),
            nkho=draw(u32),
            three_kct=draw(st.booleans()),
        ),
        Set2ndSectionDecoderKey(
            ken_low=draw(nibbles), new_tariff_index=draw(st.integers(0, 255)), nklo=draw(u32)
        ),
        Set3rdSectionDecoderKey(sgc_low=draw(st.integers(0, 0xFFF)), nkmo2=draw(u32)),
        Set4thSectionDecoderKey(sgc_high=draw(st.integers(0, 0xFFF)), nkmo1=draw(u32)),
    ]
    return options[kind]


@st.composite
def coders(draw: st.DrawFn) -> TokenCoder:
    algorithm = draw(st.sampled_from(list(EncryptionAlgorithm)))
    key = DecoderKey(draw(st.binary(min_size=algorithm.key_bytes, max_size=algorithm.key_bytes)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StsDeprecationWarning)
        return TokenCoder(key, algorithm)


@settings(max_examples=400)
@given(coder=coders(), fields=encrypted_fields())
def test_decode_inverts_encode_for_every_class_and_algorithm(
    coder: TokenCoder, fields: TokenFields
) -> None:
    token = coder.encode(fields)
    assert len(token.digits) == 20 and token.digits.isdigit()
    assert token.fields == fields
    assert coder.decode(token.digits) == fields
    assert coder.decode(format_token(token.digits, "-")) == fields


@given(
    control=st.integers(0, (1 << 28) - 1),
    mfr=st.integers(0, 99),
    wide=st.booleans(),
    extra=st.integers(0, (1 << 8) - 1),
)
def test_test_tokens_round_trip_without_a_key(
    control: int, mfr: int, wide: bool, extra: int
) -> None:
    if wide:
        fields = MeterTestToken(control=control, mfr_code=mfr * 100 + 99, subclass=1)
    else:
        fields = MeterTestToken(control=(control << 8) | extra, mfr_code=mfr, subclass=0)
    assert decode_token(encode_test_token(fields).digits, None) == fields


@settings(max_examples=1000)
@given(coder=coders(), digits=st.text("0123456789", min_size=20, max_size=20))
def test_arbitrary_digits_decode_or_raise_a_typed_rejection(coder: TokenCoder, digits: str) -> None:
    try:
        fields = coder.decode(digits)
    except TokenRejected as exc:
        assert exc.result in {"FormatError", "CRCError", "FunctionError"}
    else:
        assert fields.token_class in (0, 1, 2)


@given(st.text(max_size=40))
def test_arbitrary_text_is_a_format_error_or_twenty_digits(text: str) -> None:
    try:
        digits = normalize_token(text)
    except TokenRejected as exc:
        assert exc.result == "FormatError"
    else:
        assert len(digits) == 20 and digits.isdigit()


@given(st.integers(0, TRANSFER_AMOUNT_MAX))
def test_amounts_round_up_to_the_nearest_representable_value(value: int) -> None:
    field = encode_transfer_amount(value)
    carried = decode_transfer_amount(field)
    assert carried >= value
    if field:  # fields grow with their value, so field - 1 is the next value down
        assert decode_transfer_amount(field - 1) < value


@given(st.integers(TRANSFER_AMOUNT_MAX + 1, 10**12))
def test_amounts_past_the_maximum_are_refused(value: int) -> None:
    try:
        encode_transfer_amount(value)
    except AmountRangeError as exc:
        assert exc.maximum == TRANSFER_AMOUNT_MAX
    else:
        raise AssertionError("an amount past the maximum was encoded")


@given(st.integers(-(10**35), 10**35))
def test_currency_amounts_round_in_the_customers_favour(value: int) -> None:
    field, se = encode_currency_amount(value)
    carried = decode_currency_amount(field, se)
    assert carried >= value if value >= 0 else value <= carried <= 0
