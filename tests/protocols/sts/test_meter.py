"""The meter-side decoder: what a customer at the keypad (or a remote push) sees happen."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from protocols.sts import (
    BaseDate,
    ClearCredit,
    ClearTamperCondition,
    CreditType,
    DecoderKeyInputs,
    Dkga,
    EncryptionAlgorithm,
    KeyType,
    MeterDecoder,
    MeterPan,
    MeterState,
    MeterTestToken,
    SetMaximumPowerLimit,
    TokenCoder,
    TokenResult,
    TransferCredit,
    VendingKey,
    derive_decoder_key,
    encode_test_token,
    key_change_set,
    tid_of,
)

VK02 = VendingKey.from_hex("ABABABABABABABAB")
VK02_2014 = VendingKey.from_hex("9494949494949494")
VK04 = VendingKey.from_hex("abababababababab949494949494949401234567")
PAN = MeterPan.from_drn("00000000000")
METER_93 = DecoderKeyInputs(pan=PAN, supply_group_code="123456", base_date=BaseDate.Y1993)


def make_meter(
    inputs: DecoderKeyInputs = METER_93, vk: VendingKey = VK02, **state: object
) -> MeterDecoder:
    key = derive_decoder_key(vk, inputs)
    return MeterDecoder(
        MeterState(
            key=key,
            algorithm=inputs.algorithm,
            key_type=inputs.key_type,
            key_revision_number=inputs.key_revision_number,
            base_date=inputs.base_date,
            **state,  # type: ignore[arg-type]
        )
    )


def credit(coder: TokenCoder, tenths: int, tid: int) -> str:
    return coder.encode(TransferCredit(CreditType.ELECTRICITY, tenths, tid, rnd=7)).digits


@pytest.fixture
def coder() -> TokenCoder:
    return TokenCoder.derive(VK02, METER_93)


def test_credit_token_is_accepted_once_then_used(coder: TokenCoder) -> None:
    meter = make_meter()
    token = credit(coder, 250, tid_of(datetime(2020, 1, 1, 8, 0)))
    first = meter.enter(token)
    assert first.result is TokenResult.ACCEPT
    assert meter.state.credit[CreditType.ELECTRICITY] == 250
    replay = meter.enter(" ".join(token[i : i + 4] for i in range(0, 20, 4)))
    assert replay.result is TokenResult.USED
    assert meter.state.credit[CreditType.ELECTRICITY] == 250


def test_token_older_than_the_tid_memory_is_old(coder: TokenCoder) -> None:
    meter = make_meter(tid_memory_size=5)
    start = tid_of(datetime(2020, 1, 1))
    late = credit(coder, 10, start)  # issued first, entered last
    for minute in range(1, 6):
        assert meter.enter(credit(coder, 10, start + minute)).result is TokenResult.ACCEPT
    assert meter.enter(late).result is TokenResult.OLD
    # An older token not yet forgotten would still be fine: one between the remembered TIDs.
    assert meter.state.tid_memory == [start + m for m in range(1, 6)]
    assert meter.state.credit[CreditType.ELECTRICITY] == 50


def test_out_of_order_tokens_inside_the_memory_are_accepted(coder: TokenCoder) -> None:
    meter = make_meter(tid_memory_size=5)
    start = tid_of(datetime(2020, 1, 1))
    assert meter.enter(credit(coder, 10, start + 10)).accepted
    assert meter.enter(credit(coder, 10, start + 3)).accepted
    assert meter.state.credit[CreditType.ELECTRICITY] == 20


def test_key_expiry_number_refuses_later_tokens(coder: TokenCoder) -> None:
    tid = tid_of(datetime(2020, 1, 1))
    meter = make_meter(ken=(tid >> 16) - 1)
    outcome = meter.enter(credit(coder, 10, tid))
    assert outcome.result is TokenResult.KEY_EXPIRED
    assert meter.state.credit[CreditType.ELECTRICITY] == 0
    assert make_meter(ken=tid >> 16).enter(credit(coder, 10, tid)).result is TokenResult.ACCEPT


def test_default_key_cannot_take_credit_but_can_take_management_tokens() -> None:
    ddtk = DecoderKeyInputs(pan=PAN, supply_group_code="123456", key_type=KeyType.DDTK)
    meter = make_meter(ddtk)
    coder = TokenCoder.derive(VK02, ddtk)
    tid = tid_of(datetime(2020, 1, 1))
    assert meter.enter(credit(coder, 10, tid)).result is TokenResult.DDTK
    limit = coder.encode(SetMaximumPowerLimit(tid=tid + 1, rnd=1, watts=5000)).digits
    assert meter.enter(limit).result is TokenResult.ACCEPT
    assert meter.state.max_power_limit_w == 5000


def test_wrong_key_and_typos_are_crc_errors(coder: TokenCoder) -> None:
    meter = make_meter()
    token = credit(coder, 10, tid_of(datetime(2020, 1, 1)))
    other = TokenCoder.derive(VK02, DecoderKeyInputs(pan=PAN, supply_group_code="654321"))
    assert meter.enter(credit(other, 10, tid_of(datetime(2020, 1, 1)))).result is TokenResult.CRC
    typo = token[:-1] + str((int(token[-1]) + 1) % 10)
    assert meter.enter(typo).result is TokenResult.CRC
    assert meter.enter("1234").result is TokenResult.FORMAT
    assert meter.enter("9" * 20).result is TokenResult.FORMAT  # past 66 bits
    assert meter.state.credit[CreditType.ELECTRICITY] == 0


def test_overflow_and_unmetered_registers(coder: TokenCoder) -> None:
    meter = make_meter(credit_register_max=1000)
    tid = tid_of(datetime(2020, 1, 1))
    assert meter.enter(credit(coder, 900, tid)).accepted
    assert meter.enter(credit(coder, 200, tid + 1)).result is TokenResult.OVERFLOW
    water = coder.encode(TransferCredit(CreditType.WATER, 10, tid + 2, rnd=0)).digits
    assert meter.enter(water).result is TokenResult.FUNCTION
    assert meter.state.credit[CreditType.ELECTRICITY] == 900


def test_management_tokens_change_the_meter(coder: TokenCoder) -> None:
    meter = make_meter(tamper=True)
    tid = tid_of(datetime(2020, 1, 1))
    assert meter.enter(credit(coder, 500, tid)).accepted
    assert meter.enter(coder.encode(ClearTamperCondition(tid=tid + 1, rnd=0)).digits).accepted
    assert meter.state.tamper is False
    bad_register = coder.encode(ClearCredit(tid=tid + 2, rnd=0, register=3)).digits
    assert meter.enter(bad_register).result is TokenResult.RANGE
    assert meter.enter(coder.encode(ClearCredit(tid=tid + 3, rnd=0)).digits).accepted
    assert meter.state.credit[CreditType.ELECTRICITY] == 0


def test_test_tokens_need_the_makers_code() -> None:
    meter = make_meter(mfr_code=12)
    assert meter.enter(encode_test_token(MeterTestToken(1, 12)).digits).accepted
    wrong = meter.enter(encode_test_token(MeterTestToken(1, 13)).digits)
    assert wrong.result is TokenResult.MFR_CODE
    four = meter.enter(encode_test_token(MeterTestToken(1, 12, subclass=1)).digits)
    assert four.result is TokenResult.ACCEPT


def test_2024_rollover_to_base_2014() -> None:
    """A base-1993 meter gets a roll-over key change, then takes 2014 tokens and refuses old ones."""
    meter = make_meter()
    old_coder = TokenCoder.derive(VK02, METER_93)
    before = old_coder.encode(
        TransferCredit(CreditType.ELECTRICITY, 100, tid_of(datetime(2024, 11, 1), 1993), rnd=3)
    ).digits
    assert meter.enter(before).accepted
    assert meter.state.tid_memory[-1] == tid_of(datetime(2024, 11, 1), 1993)

    meter_14 = DecoderKeyInputs(
        pan=PAN, supply_group_code="123456", key_revision_number=2, base_date=BaseDate.Y2014
    )
    change = key_change_set(VK02, METER_93, VK02_2014, meter_14)
    assert len(change) == 2
    assert change[0].fields.rollover is True  # type: ignore[union-attr]
    results = [meter.enter(t.digits, now_s=10.0).result for t in reversed(change)]
    assert results == [TokenResult.FIRST_KCT_ENTERED, TokenResult.ACCEPT]
    assert meter.state.key_revision_number == 2
    assert meter.state.base_date is BaseDate.Y2014
    assert set(meter.state.tid_memory) == {0}

    new_coder = TokenCoder.derive(VK02_2014, meter_14)
    after = tid_of(datetime(2024, 12, 1), 2014)
    assert after < tid_of(datetime(2024, 11, 1), 1993)  # small TIDs relative to 2014
    assert meter.enter(credit(new_coder, 50, after)).result is TokenResult.ACCEPT
    assert meter.state.credit[CreditType.ELECTRICITY] == 150
    # Tokens for the old key are refused, old and new TID alike.
    assert meter.enter(before).result is TokenResult.CRC
    stale = credit(old_coder, 50, tid_of(datetime(2024, 11, 20), 1993))
    assert meter.enter(stale).result is TokenResult.CRC
    # The spent key change set cannot be replayed either.
    assert meter.enter(change[0].digits).result is TokenResult.CRC


def test_misty1_key_change_in_shuffled_order() -> None:
    current = DecoderKeyInputs(
        pan=MeterPan.parse("600727000000000009"), supply_group_code="123457",
        algorithm=EncryptionAlgorithm.MISTY1, dkga=Dkga.DKGA04, base_date=BaseDate.Y2014,
    )  # fmt: skip
    new = DecoderKeyInputs(
        pan=current.pan, supply_group_code="123461", key_revision_number=2,
        algorithm=EncryptionAlgorithm.MISTY1, dkga=Dkga.DKGA04, base_date=BaseDate.Y2014,
    )  # fmt: skip
    meter = make_meter(current, VK04)
    tokens = key_change_set(VK04, current, VK04, new, ken=0xF0)
    assert len(tokens) == 4
    order = [2, 0, 3, 1]
    results = [meter.enter(tokens[i].digits, now_s=float(n)).result for n, i in enumerate(order)]
    assert results == [
        TokenResult.FIRST_KCT_ENTERED,
        TokenResult.SECOND_KCT_ENTERED,
        TokenResult.SECOND_KCT_ENTERED,
        TokenResult.ACCEPT,
    ]
    assert meter.state.supply_group_code == 123461
    assert meter.state.ken == 0xF0
    assert meter.state.key == derive_decoder_key(VK04, new)
    tid = tid_of(datetime(2025, 3, 1, 12, 0), 2014)
    coder = TokenCoder.derive(VK04, new)
    assert meter.enter(credit(coder, 75, tid)).result is TokenResult.ACCEPT
    assert meter.state.credit[CreditType.ELECTRICITY] == 75


def test_key_change_sections_expire_from_the_buffer() -> None:
    meter = make_meter()
    new = DecoderKeyInputs(pan=PAN, supply_group_code="123456", key_revision_number=2)
    first, second = key_change_set(VK02, METER_93, VK02, new)
    assert meter.enter(first.digits, now_s=0.0).result is TokenResult.FIRST_KCT_ENTERED
    late = meter.enter(second.digits, now_s=meter.key_change_timeout_s + 1)
    assert late.result is TokenResult.FIRST_KCT_ENTERED  # the first was dropped; this starts over
    assert meter.state.key_revision_number == 1
    assert meter.enter(first.digits, now_s=meter.key_change_timeout_s + 2).accepted
    assert meter.state.key_revision_number == 2


def test_only_an_initialisation_key_can_become_one() -> None:
    meter = make_meter()
    ditk = DecoderKeyInputs(pan=PAN, supply_group_code="123456", key_type=KeyType.DITK)
    first, _ = key_change_set(VK02, METER_93, VK02, ditk)
    outcome = meter.enter(first.digits)
    assert outcome.result is TokenResult.KEY_TYPE
    assert meter.pending_key_change_sections == frozenset()


def test_decoder_never_raises_on_random_digits(coder: TokenCoder) -> None:
    meter = make_meter()
    rng = random.Random(62055)
    credited = 0
    for _ in range(2000):
        outcome = meter.enter("".join(rng.choice("0123456789") for _ in range(20)))
        assert isinstance(outcome.result, TokenResult)
        if outcome.accepted and isinstance(outcome.fields, TransferCredit):
            credited += outcome.fields.amount
    assert meter.state.credit[CreditType.ELECTRICITY] == credited
