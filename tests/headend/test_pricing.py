"""Vend calculation: hand-computed receipts, the rules one by one, and properties.

The arithmetic of each hand-computed example is written out in comments, so a reader can check the
figures without running anything. Money is in cents (minor units), energy in Wh.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headend.pricing import (
    TOKEN_STEP_WH,
    AmountTooSmall,
    Block,
    Debt,
    LineKind,
    MonthState,
    PricingError,
    StepTariff,
    VendQuote,
    token_energy_floor_wh,
    vend_by_energy,
    vend_by_money,
)
from protocols.sts.amount import TRANSFER_AMOUNT_MAX, round_up_transfer_amount

D = Decimal
MARCH = MonthState(2024, 3)
NO_DEBT = Debt()

# Two blocks, 15 % VAT, nothing else: the block arithmetic on its own.
TWO_BLOCKS = StepTariff("ZAR", (Block(50, D(150)), Block(None, D(200))), tax_rate=D("0.15"))

# A municipal-style tariff: three blocks, R20 fixed charge a month, 15 % VAT, 50 kWh FBE.
MUNICIPAL = StepTariff(
    "ZAR",
    (Block(50, D(150)), Block(350, D("185.5")), Block(None, D(250))),
    fixed_charge_minor=2000,
    tax_rate=D("0.15"),
    fbe_kwh=50,
)


def kinds(quote: VendQuote) -> list[LineKind]:
    return [line.kind for line in quote.lines]


def amounts(quote: VendQuote) -> list[int]:
    return [line.amount_minor for line in quote.lines]


# --------------------------------------------------------------------------------------------
# Hand-computed receipts


def test_block_crossing_with_change() -> None:
    # R100.00 at the start of the month:
    #   block 1: 50 kWh x 150 = 7500 net, tax 7500 x 0.15 = 1125, line 8625; 10000 - 8625 = 1375 left
    #   block 2: 200 x 1.15 = 230 per kWh with tax; 1375 / 230 = 5.978 kWh -> 5.9 kWh (whole 0.1)
    #            5.9 x 200 = 1180 net, tax 1180 x 0.15 = 177, line 1357 (6.0 kWh would be 1380)
    #   total 8625 + 1357 = 9982, change 10000 - 9982 = 18, token 55.9 kWh
    quote = vend_by_money(TWO_BLOCKS, 10_000, MARCH, NO_DEBT)
    assert [(line.quantity_wh, line.net_minor, line.tax_minor) for line in quote.lines] == [
        (50_000, 7500, 1125),
        (5_900, 1180, 177),
    ]
    assert (quote.total_minor, quote.tax_minor, quote.change_minor) == (9982, 1302, 18)
    assert quote.energy_wh == quote.purchased_wh == 55_900
    assert quote.token_units == 559
    assert quote.month_state == MonthState(2024, 3, purchased_wh=55_900)
    assert any("18 could not buy another 0.1 kWh" in note for note in quote.notes)


def test_monthly_accumulation_places_the_purchase_in_the_blocks() -> None:
    # 45 kWh already bought this month, R20.00 now:
    #   block 1 has 5 kWh left: 5 x 150 = 750 net, tax 112.5 -> 113, line 863; 2000 - 863 = 1137
    #   block 2: 1137 / 230 = 4.943 kWh -> 4.9 kWh: 980 net, tax 147, line 1127 (5.0 kWh: 1150)
    #   change 1137 - 1127 = 10; the month now stands at 45 + 5 + 4.9 = 54.9 kWh
    quote = vend_by_money(TWO_BLOCKS, 2000, MonthState(2024, 3, purchased_wh=45_000), NO_DEBT)
    assert [(line.quantity_wh, line.amount_minor) for line in quote.lines] == [
        (5_000, 863),
        (4_900, 1127),
    ]
    assert quote.change_minor == 10
    assert quote.month_state.purchased_wh == 54_900


def test_purchase_entirely_in_a_higher_block() -> None:
    # 60 kWh bought already: block 1 is used up, all R11.50 goes at 230 per kWh = 5 kWh exactly.
    quote = vend_by_money(TWO_BLOCKS, 1150, MonthState(2024, 3, purchased_wh=60_000), NO_DEBT)
    assert [(line.quantity_wh, line.net_minor, line.tax_minor) for line in quote.lines] == [
        (5_000, 1000, 150)
    ]
    assert "block 2" in quote.lines[0].description
    assert quote.change_minor == 0


def test_purchase_exactly_to_a_block_bound_then_past_it() -> None:
    # 8625 buys exactly block 1 (50 kWh, see above): one line, no change, and the next purchase
    # starts in block 2: 2300 / 230 = 10 kWh.
    first = vend_by_money(TWO_BLOCKS, 8625, MARCH, NO_DEBT)
    assert [(line.quantity_wh, line.amount_minor) for line in first.lines] == [(50_000, 8625)]
    second = vend_by_money(TWO_BLOCKS, 2300, first.month_state, NO_DEBT)
    assert [(line.quantity_wh, line.amount_minor) for line in second.lines] == [(10_000, 2300)]
    assert "over 50 kWh" in second.lines[0].description


def test_decimal_price_rounds_half_up_once_per_line() -> None:
    # 185.5 per kWh, no tax; the block has 0.3 kWh left before 50 kWh... use a one-block tariff:
    #   0.1 kWh: 18.55 -> 19 (half-up);  0.2 kWh: 37.1 -> 37;  0.3 kWh: 55.65 -> 56
    # R0.37 buys 0.2 kWh exactly; R0.55 buys 0.2 kWh too (0.3 kWh is 56) with change 18.
    tariff = StepTariff("ZAR", (Block(None, D("185.5")),))
    assert vend_by_money(tariff, 19, MARCH, NO_DEBT).energy_wh == 100
    assert vend_by_money(tariff, 37, MARCH, NO_DEBT).energy_wh == 200
    quote = vend_by_money(tariff, 55, MARCH, NO_DEBT)
    assert (quote.energy_wh, quote.total_minor, quote.change_minor) == (200, 37, 18)
    assert vend_by_money(tariff, 56, MARCH, NO_DEBT).energy_wh == 300


def test_tax_is_computed_on_the_line_net_as_printed() -> None:
    # 0.3 kWh at 185.5 = 55.65 -> net 56; tax 56 x 0.15 = 8.4 -> 8; line 64.
    # (Tax on the unrounded net, 8.3475, would also give 8; 0.7 kWh: 129.85 -> 130, tax 19.5 -> 20,
    #  where 129.85 x 0.15 = 19.4775 would give 19: the receipt's own figures decide.)
    tariff = StepTariff("ZAR", (Block(None, D("185.5")),), tax_rate=D("0.15"))
    quote = vend_by_energy(tariff, 300, MARCH, NO_DEBT)
    assert (quote.lines[0].net_minor, quote.lines[0].tax_minor, quote.total_minor) == (56, 8, 64)
    quote = vend_by_energy(tariff, 700, MARCH, NO_DEBT)
    assert (quote.lines[0].net_minor, quote.lines[0].tax_minor, quote.total_minor) == (130, 20, 150)


def test_first_purchase_of_the_month_full_receipt() -> None:
    # MUNICIPAL, a new month, debt R100 recovered at 25 %, R200.00 tendered:
    #   debt: 25 % of 20000 = 5000, capped at 10000 -> 5000; 15000 left
    #   fixed charge: 2000 net + 300 tax = 2300; 12700 left
    #   FBE: 50 kWh at 0
    #   block 1: 50 kWh x 150 = 7500 + 1125 tax = 8625; 4075 left
    #   block 2: 185.5 x 1.15 = 213.325 per kWh; 4075 / 213.325 = 19.10 kWh -> try 19.1 kWh:
    #            19.1 x 185.5 = 3543.05 -> 3543 net, tax 531.45 -> 531, line 4074 (19.2 kWh: 4095)
    #   total 5000 + 2300 + 0 + 8625 + 4074 = 19999, change 1
    #   token: 50 (FBE) + 50 + 19.1 = 119.1 kWh
    quote = vend_by_money(MUNICIPAL, 20_000, MARCH, Debt(10_000, D("0.25")))
    assert kinds(quote) == [
        LineKind.DEBT,
        LineKind.FIXED_CHARGE,
        LineKind.FBE,
        LineKind.ENERGY,
        LineKind.ENERGY,
    ]
    assert amounts(quote) == [5000, 2300, 0, 8625, 4074]
    assert [line.tax_minor for line in quote.lines] == [0, 300, 0, 1125, 531]
    assert (quote.total_minor, quote.tax_minor, quote.change_minor) == (19_999, 1956, 1)
    assert (quote.purchased_wh, quote.fbe_wh, quote.energy_wh) == (69_100, 50_000, 119_100)
    assert quote.debt == Debt(5000, D("0.25"))
    assert quote.month_state == MonthState(
        2024, 3, purchased_wh=69_100, fixed_charge_paid_minor=2000, fbe_issued=True
    )
    assert "5000 still owed" in quote.lines[0].description


def test_second_purchase_of_the_month_has_no_fixed_charge_and_no_fbe() -> None:
    # The month stands at 69.1 kWh bought, fixed charge paid, FBE issued; R50.00, no debt:
    #   block 2 (up to 350 kWh): 5000 / 213.325 = 23.44 kWh -> 23.4 kWh:
    #   23.4 x 185.5 = 4340.7 -> 4341 net, tax 651.15 -> 651, line 4992 (23.5 kWh: 5013)
    state = MonthState(2024, 3, purchased_wh=69_100, fixed_charge_paid_minor=2000, fbe_issued=True)
    quote = vend_by_money(MUNICIPAL, 5000, state, NO_DEBT)
    assert kinds(quote) == [LineKind.ENERGY]
    assert (quote.lines[0].net_minor, quote.lines[0].tax_minor) == (4341, 651)
    assert (quote.energy_wh, quote.fbe_wh, quote.change_minor) == (23_400, 0, 8)


# --------------------------------------------------------------------------------------------
# The month


def test_month_rollover_starts_afresh() -> None:
    january = MonthState(
        2024, 1, purchased_wh=400_000, fixed_charge_paid_minor=2000, fbe_issued=True
    )
    assert january.rolled_to(2024, 1) is january
    february = january.rolled_to(2024, 2)
    assert february == MonthState(2024, 2)
    # In February the fixed charge, the FBE and block 1 come back:
    quote = vend_by_money(MUNICIPAL, 10_925, february, NO_DEBT)
    # 2300 fixed + 0 FBE + 8625 (all of block 1) = 10925 exactly
    assert kinds(quote) == [LineKind.FIXED_CHARGE, LineKind.FBE, LineKind.ENERGY]
    assert amounts(quote) == [2300, 0, 8625]
    # The same money in January buys block 3 energy only: 250 x 1.15 = 287.5 per kWh,
    # 10925 / 287.5 = 38 kWh exactly (9500 net + 1425 tax).
    quote = vend_by_money(MUNICIPAL, 10_925, january, NO_DEBT)
    assert [(line.quantity_wh, line.amount_minor) for line in quote.lines] == [(38_000, 10_925)]


def test_rollover_across_the_year_and_never_backwards() -> None:
    december = MonthState(2023, 12, purchased_wh=1000)
    assert december.rolled_to(2024, 1) == MonthState(2024, 1)
    with pytest.raises(PricingError, match="cannot go back from month 2024-03 to 2024-02"):
        MARCH.rolled_to(2024, 2)


# --------------------------------------------------------------------------------------------
# Free basic electricity


def test_fbe_is_issued_once_a_month_and_is_not_counted_in_the_blocks() -> None:
    tariff = StepTariff("ZAR", TWO_BLOCKS.blocks, tax_rate=D("0.15"), fbe_kwh=50)
    first = vend_by_money(tariff, 1725, MARCH, NO_DEBT)
    # FBE 50 kWh free; 1725 / (150 x 1.15 = 172.5) = 10 kWh in block 1, not block 2.
    assert [(line.kind, line.quantity_wh, line.amount_minor) for line in first.lines] == [
        (LineKind.FBE, 50_000, 0),
        (LineKind.ENERGY, 10_000, 1725),
    ]
    assert first.energy_wh == 60_000
    assert first.month_state == MonthState(2024, 3, purchased_wh=10_000, fbe_issued=True)
    second = vend_by_money(tariff, 1725, first.month_state, NO_DEBT)
    assert kinds(second) == [LineKind.ENERGY]
    assert second.energy_wh == 10_000


def test_fbe_alone_when_the_money_buys_less_than_100_wh() -> None:
    # 100 Wh costs 15 + round(2.25) = 17; R0.10 buys none of it but the FBE still goes on the token.
    tariff = StepTariff("ZAR", TWO_BLOCKS.blocks, tax_rate=D("0.15"), fbe_kwh=50)
    quote = vend_by_money(tariff, 10, MARCH, NO_DEBT)
    assert (quote.energy_wh, quote.purchased_wh, quote.total_minor, quote.change_minor) == (
        50_000,
        0,
        0,
        10,
    )


# --------------------------------------------------------------------------------------------
# The fixed charge


def test_fixed_charge_partly_paid_earlier_is_completed_first() -> None:
    # 1200 of the 2000 already paid: 800 net + 120 tax = 920 due; FBE already issued.
    # R20.00: 2000 - 920 = 1080 for energy: 1080 / 172.5 = 6.26 kWh -> 6.2 kWh:
    #   6.2 x 150 = 930 net, tax 139.5 -> 140, line 1070; change 10
    state = MonthState(2024, 3, fixed_charge_paid_minor=1200, fbe_issued=True)
    quote = vend_by_money(MUNICIPAL, 2000, state, NO_DEBT)
    fixed = quote.lines[0]
    assert (fixed.kind, fixed.net_minor, fixed.tax_minor, fixed.amount_minor) == (
        LineKind.FIXED_CHARGE,
        800,
        120,
        920,
    )
    assert (quote.lines[1].quantity_wh, quote.lines[1].amount_minor) == (6_200, 1070)
    assert quote.change_minor == 10
    assert quote.month_state.fixed_charge_paid_minor == 2000


def test_purchase_smaller_than_the_fixed_charge_pays_what_it_can() -> None:
    # New month, FBE due, R10.00: all of it goes to the fixed charge (2300 due with tax).
    #   net = round_half_up(1000 / 1.15 = 869.57) = 870, tax = 1000 - 870 = 130
    # The token carries the FBE only; 2000 - 870 = 1130 net stays due.
    quote = vend_by_money(MUNICIPAL, 1000, MARCH, NO_DEBT)
    assert [(line.kind, line.net_minor, line.tax_minor) for line in quote.lines] == [
        (LineKind.FIXED_CHARGE, 870, 130),
        (LineKind.FBE, 0, 0),
    ]
    assert "1130 (before tax) still due" in quote.lines[0].description
    assert (quote.energy_wh, quote.change_minor) == (50_000, 0)
    assert quote.month_state.fixed_charge_paid_minor == 870
    # The next purchase pays the rest: 1130 net + 169.5 -> 170 tax = 1300. Over the month the
    # customer paid 1000 + 1300 = 2300, the fixed charge with its tax, to the cent.
    rest = vend_by_money(MUNICIPAL, 1300 + 17, quote.month_state, NO_DEBT)
    assert amounts(rest)[0] == 1300
    assert (rest.purchased_wh, rest.month_state.fixed_charge_paid_minor) == (100, 2000)


def test_part_payment_never_pays_the_whole_net() -> None:
    # 10 net due with 15 % tax: 10 + 1.5 -> 2 = 12. A part payment of 11: 11 / 1.15 = 9.57 -> 10
    # would settle the charge for 11; the net stops at 9 (tax 2) and 1 net (+0 tax) stays due.
    tariff = StepTariff("ZAR", TWO_BLOCKS.blocks, 10, D("0.15"), fbe_kwh=1)
    quote = vend_by_money(tariff, 11, MARCH, NO_DEBT)
    assert (quote.lines[0].net_minor, quote.lines[0].tax_minor) == (9, 2)
    rest = vend_by_energy(tariff, 100, quote.month_state, NO_DEBT)
    assert (rest.lines[0].net_minor, rest.lines[0].tax_minor) == (1, 0)


def test_without_fbe_a_purchase_below_the_fixed_charge_is_refused() -> None:
    # No FBE due, nothing else to put on a token: 2300 (fixed) + 17 (100 Wh: 15 + 2.25 -> 2) = 2317.
    state = MonthState(2024, 3, fbe_issued=True)
    with pytest.raises(AmountTooSmall) as caught:
        vend_by_money(MUNICIPAL, 1000, state, NO_DEBT)
    assert (caught.value.amount_minor, caught.value.minimum_minor) == (1000, 2317)
    assert "smallest amount that buys 0.1 kWh is 2317" in str(caught.value)
    assert vend_by_money(MUNICIPAL, 2317, state, NO_DEBT).energy_wh == 100
    with pytest.raises(AmountTooSmall):
        vend_by_money(MUNICIPAL, 2316, state, NO_DEBT)


# --------------------------------------------------------------------------------------------
# Debt recovery


def test_debt_share_comes_first() -> None:
    # 25 % of 10000 = 2500 to debt (of 50000); 7500 / 172.5 = 43.48 kWh -> 43.4 kWh:
    #   43.4 x 150 = 6510 net, tax 976.5 -> 977, line 7487; change 13
    quote = vend_by_money(TWO_BLOCKS, 10_000, MARCH, Debt(50_000, D("0.25")))
    assert amounts(quote) == [2500, 7487]
    assert (quote.energy_wh, quote.change_minor) == (43_400, 13)
    assert quote.debt == Debt(47_500, D("0.25"))


def test_debt_recovery_is_capped_at_the_outstanding_debt() -> None:
    # 25 % of 10000 would be 2500, but only 300 is owed: 300 to debt, the debt is cleared.
    quote = vend_by_money(TWO_BLOCKS, 10_000, MARCH, Debt(300, D("0.25")))
    assert quote.lines[0].amount_minor == 300
    assert quote.debt.outstanding_minor == 0
    # And a cleared debt takes nothing from the next purchase.
    again = vend_by_money(TWO_BLOCKS, 10_000, MARCH, quote.debt)
    assert kinds(again) == [LineKind.ENERGY, LineKind.ENERGY]


def test_debt_share_rounds_half_up() -> None:
    # 12.5 % of 1004 = 125.5 -> 126
    quote = vend_by_money(TWO_BLOCKS, 1004, MARCH, Debt(10_000, D("0.125")))
    assert quote.lines[0].amount_minor == 126
    assert "12.5% of 1004" in quote.lines[0].description


# --------------------------------------------------------------------------------------------
# Selling by energy


def test_vend_by_energy_rounds_down_to_whole_100_wh_and_says_so() -> None:
    # 12.34 kWh asked: 12.3 kWh on the token: 12.3 x 150 = 1845 net, tax 276.75 -> 277, 2122
    quote = vend_by_energy(TWO_BLOCKS, 12_340, MARCH, NO_DEBT)
    assert (quote.energy_wh, quote.total_minor, quote.change_minor) == (12_300, 2122, 0)
    assert quote.tendered_minor == 2122
    assert quote.notes == ("12.34 kWh asked for, 12.3 kWh sold: STS tokens carry whole 0.1 kWh.",)
    assert vend_by_energy(TWO_BLOCKS, 12_300, MARCH, NO_DEBT).notes == ()


def test_vend_by_energy_charges_debt_share_and_fixed_charge() -> None:
    # 10 kWh in MUNICIPAL's block 1 (1500 + 225 = 1725), fixed charge 2300: 4025 for the purchase.
    # With 25 % debt recovery the amount T must leave 4025: T - round(T / 4) = 4025 -> T = 5367
    # (5367 / 4 = 1341.75 -> 1342; 5367 - 1342 = 4025; T = 5366 leaves 5366 - 1342 = 4024).
    quote = vend_by_energy(MUNICIPAL, 10_000, MARCH, Debt(100_000, D("0.25")))
    assert amounts(quote) == [1342, 2300, 0, 1725]
    assert (quote.tendered_minor, quote.total_minor, quote.change_minor) == (5367, 5367, 0)
    assert (quote.purchased_wh, quote.fbe_wh) == (10_000, 50_000)
    assert vend_by_money(MUNICIPAL, 5367, MARCH, Debt(100_000, D("0.25"))) == quote


def test_vend_by_energy_when_the_debt_cap_binds() -> None:
    # Only 100 owed: the purchase costs 1725 + 2300 + 100 = 4125.
    quote = vend_by_energy(MUNICIPAL, 10_000, MARCH, Debt(100, D("0.25")))
    assert quote.total_minor == 4125
    assert quote.debt.outstanding_minor == 0


def test_vend_by_energy_refuses_less_than_a_token_step() -> None:
    with pytest.raises(PricingError, match=r"less than the 0\.1 kWh"):
        vend_by_energy(TWO_BLOCKS, 99, MARCH, NO_DEBT)
    for bad in (0, -100):
        with pytest.raises(PricingError, match="energy_wh must be an integer above 0"):
            vend_by_energy(TWO_BLOCKS, bad, MARCH, NO_DEBT)


# --------------------------------------------------------------------------------------------
# What an STS token carries


def test_large_purchase_is_rounded_down_to_a_value_the_token_carries() -> None:
    # Above 1638.3 kWh the TransferAmount has 1 kWh steps from 1638.4 kWh (16384 x 0.1 kWh):
    # 2000.5 kWh = 20005 units; 20005 - 16384 = 3621; 3621 // 10 = 362 steps of 10 units;
    # 16384 + 3620 = 20004 units = 2000.4 kWh.
    tariff = StepTariff("ZAR", (Block(None, D(100)),))
    quote = vend_by_energy(tariff, 2_000_500, MARCH, NO_DEBT)
    assert quote.energy_wh == 2_000_400
    assert round_up_transfer_amount(quote.token_units) == quote.token_units
    assert any("coarser steps" in note for note in quote.notes)


def test_token_energy_floor_matches_the_sts_amount_coding() -> None:
    assert token_energy_floor_wh(12_399) == 12_300
    assert token_energy_floor_wh(1_638_300) == 1_638_300
    assert token_energy_floor_wh(1_638_399) == 1_638_300
    assert token_energy_floor_wh(1_639_300) == 1_638_400
    assert token_energy_floor_wh(TRANSFER_AMOUNT_MAX * 100) == TRANSFER_AMOUNT_MAX * 100
    with pytest.raises(PricingError, match="more than one STS token carries"):
        token_energy_floor_wh((TRANSFER_AMOUNT_MAX + 1) * 100)


@given(st.integers(0, TRANSFER_AMOUNT_MAX))
def test_token_energy_floor_is_the_largest_carried_value(units: int) -> None:
    floor = token_energy_floor_wh(units * 100 + 99) // 100
    assert floor <= units
    assert round_up_transfer_amount(floor) == floor  # a token carries it exactly
    if floor < TRANSFER_AMOUNT_MAX:  # nothing a token carries lies in between
        assert round_up_transfer_amount(floor + 1) > units


def test_money_too_large_for_one_token() -> None:
    tariff = StepTariff("ZAR", (Block(None, D(10)),))
    with pytest.raises(PricingError, match="more than one STS token carries"):
        vend_by_money(tariff, 10**12, MARCH, NO_DEBT)


# --------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "100"])
def test_non_positive_or_non_integer_amounts_are_refused(amount: object) -> None:
    with pytest.raises(PricingError, match="amount_minor must be an integer above 0"):
        vend_by_money(TWO_BLOCKS, amount, MARCH, NO_DEBT)  # type: ignore[arg-type]


def test_tariff_reports_every_problem_at_once() -> None:
    with pytest.raises(PricingError) as caught:
        StepTariff(
            "zar",
            (Block(100, D(1)), Block(50, D(2)), Block(200, D(3))),
            fixed_charge_minor=-1,
            tax_rate=0.15,  # type: ignore[arg-type]
            fbe_kwh=-5,
        )
    message = str(caught.value)
    for expected in (
        "currency: must be an ISO 4217 code",
        "blocks[1].upper_kwh: must be above the previous block's 100, got 50",
        "blocks[2].upper_kwh: the last block has no upper bound",
        "fixed_charge_minor: must be an integer >= 0",
        "tax_rate: must be a Decimal in 0..1 (not a float)",
        "fbe_kwh: must be a whole number",
    ):
        assert expected in message


def test_open_block_must_be_last_and_blocks_must_exist() -> None:
    with pytest.raises(PricingError, match=r"blocks\[0\].upper_kwh: only the last block"):
        StepTariff("ZAR", (Block(None, D(1)), Block(None, D(2))))
    with pytest.raises(PricingError, match="at least one block"):
        StepTariff("ZAR", ())


@pytest.mark.parametrize("price", [D(0), D(-1), 1.5, D("NaN")])
def test_block_price_must_be_a_positive_decimal(price: object) -> None:
    with pytest.raises(PricingError, match="price_minor_per_kwh: must be a Decimal above 0"):
        Block(None, price)  # type: ignore[arg-type]


def test_integer_prices_become_decimals() -> None:
    assert Block(None, 150).price_minor_per_kwh == D(150)  # type: ignore[arg-type]
    assert isinstance(Block(None, 150).price_minor_per_kwh, Decimal)  # type: ignore[arg-type]


def test_month_state_and_debt_validation() -> None:
    with pytest.raises(PricingError, match=r"month: must be 1\.\.12"):
        MonthState(2024, 13)
    with pytest.raises(PricingError, match="purchased_wh: must be an integer >= 0"):
        MonthState(2024, 1, purchased_wh=-1)
    with pytest.raises(PricingError, match=r"recovery_share: must be a Decimal in 0\.\.1"):
        Debt(100, D("1.5"))
    with pytest.raises(PricingError, match="outstanding_minor: must be an integer >= 0"):
        Debt(-1)


# --------------------------------------------------------------------------------------------
# Properties


@st.composite
def tariffs(draw: st.DrawFn) -> StepTariff:
    count = draw(st.integers(1, 4))
    uppers = sorted(draw(st.sets(st.integers(1, 600), min_size=count - 1, max_size=count - 1)))
    # Prices of at least 10 per kWh: every further 100 Wh then costs at least one minor unit.
    prices = draw(st.lists(st.integers(100, 5000), min_size=count, max_size=count))
    blocks = tuple(
        Block(upper, D(price) / 10) for upper, price in zip([*uppers, None], prices, strict=True)
    )
    return StepTariff(
        "ZAR",
        blocks,
        fixed_charge_minor=draw(st.integers(0, 5000)),
        tax_rate=draw(st.sampled_from([D(0), D("0.075"), D("0.14"), D("0.15"), D("0.2")])),
        fbe_kwh=draw(st.sampled_from([0, 0, 6, 50])),
    )


@st.composite
def month_states(draw: st.DrawFn) -> MonthState:
    return MonthState(
        2024,
        3,
        purchased_wh=draw(st.integers(0, 7000)) * 100,
        fixed_charge_paid_minor=draw(st.integers(0, 5000)),
        fbe_issued=draw(st.booleans()),
    )


debts = st.builds(
    Debt,
    st.integers(0, 20_000),
    st.sampled_from([D(0), D("0.1"), D("0.125"), D("0.25"), D("0.5"), D(1)]),
)
amounts_minor = st.integers(1, 300_000)


def _vend_or_none(
    tariff: StepTariff, amount: int, state: MonthState, debt: Debt
) -> VendQuote | None:
    try:
        return vend_by_money(tariff, amount, state, debt)
    except AmountTooSmall as exc:
        assert exc.minimum_minor > amount
        return None


@settings(deadline=None)
@given(tariffs(), amounts_minor, month_states(), debts)
def test_lines_sum_to_the_total_and_no_money_is_created(
    tariff: StepTariff, amount: int, state: MonthState, debt: Debt
) -> None:
    quote = _vend_or_none(tariff, amount, state, debt)
    if quote is None:
        return
    assert quote.total_minor == sum(line.amount_minor for line in quote.lines)
    assert quote.tax_minor == sum(line.tax_minor for line in quote.lines)
    assert quote.total_minor + quote.change_minor == amount
    assert quote.change_minor >= 0
    assert all(line.amount_minor >= 0 and line.tax_minor >= 0 for line in quote.lines)
    recovered = sum(line.amount_minor for line in quote.lines if line.kind is LineKind.DEBT)
    assert recovered <= debt.outstanding_minor
    assert quote.debt.outstanding_minor == debt.outstanding_minor - recovered
    assert quote.energy_wh % TOKEN_STEP_WH == 0
    assert quote.energy_wh > 0
    energy_lines = [line.quantity_wh or 0 for line in quote.lines if line.kind is LineKind.ENERGY]
    assert sum(energy_lines) == quote.purchased_wh
    assert quote.month_state.purchased_wh == state.purchased_wh + quote.purchased_wh
    assert quote.month_state.fixed_charge_paid_minor <= max(
        tariff.fixed_charge_minor, state.fixed_charge_paid_minor
    )


@settings(deadline=None)
@given(tariffs(), amounts_minor, st.integers(1, 5000), month_states(), debts)
def test_more_money_never_gives_less_energy(
    tariff: StepTariff, amount: int, extra: int, state: MonthState, debt: Debt
) -> None:
    less = _vend_or_none(tariff, amount, state, debt)
    more = _vend_or_none(tariff, amount + extra, state, debt)
    assert (0 if less is None else less.energy_wh) <= (0 if more is None else more.energy_wh)


@settings(deadline=None)
@given(tariffs(), amounts_minor, month_states(), debts)
def test_change_is_less_than_another_token_step(
    tariff: StepTariff, amount: int, state: MonthState, debt: Debt
) -> None:
    quote = _vend_or_none(tariff, amount, state, debt)
    if quote is None or quote.purchased_wh == 0 or quote.energy_wh >= 1_638_300:
        return  # (above 1638.3 kWh a token's steps are coarser than 100 Wh)
    # One more 100 Wh would have cost more than the money handed over.
    dearer = vend_by_energy(tariff, quote.purchased_wh + TOKEN_STEP_WH, state, debt)
    assert dearer.total_minor > amount


@settings(deadline=None)
@given(tariffs(), st.integers(1, 8000), month_states(), debts)
def test_vend_by_energy_and_vend_by_money_agree(
    tariff: StepTariff, units: int, state: MonthState, debt: Debt
) -> None:
    by_energy = vend_by_energy(tariff, units * TOKEN_STEP_WH, state, debt)
    assert by_energy.purchased_wh == units * TOKEN_STEP_WH
    assert by_energy.change_minor == 0
    by_money = vend_by_money(tariff, by_energy.total_minor, state, debt)
    assert by_money == by_energy
    if by_energy.total_minor > 1:
        # One minor unit less buys less energy (or none).
        cheaper = _vend_or_none(tariff, by_energy.total_minor - 1, state, debt)
        assert cheaper is None or cheaper.purchased_wh < by_energy.purchased_wh


@settings(deadline=None)
@given(tariffs(), amounts_minor, month_states(), debts)
def test_too_small_names_the_amount_that_works(
    tariff: StepTariff, amount: int, state: MonthState, debt: Debt
) -> None:
    try:
        vend_by_money(tariff, amount, state, debt)
    except AmountTooSmall as exc:
        assert vend_by_money(tariff, exc.minimum_minor, state, debt).energy_wh > 0
        with pytest.raises(AmountTooSmall):
            vend_by_money(tariff, exc.minimum_minor - 1, state, debt)
