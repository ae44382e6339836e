"""Vend calculation for prepaid electricity: money in, energy on an STS credit token out.

A cashier (or a bank, or a mobile-money gateway) sells electricity two ways: "R100 worth" or
"20 kWh". Both go through the same rules, here, with no I/O, so that the vending service, the REST
API and the receipt printer all agree to the cent and to the watt-hour, and a reader can check a
receipt by hand.

Units
-----
* Money is integer **minor units** (cents). Prices are minor units per kWh as a ``Decimal``, **tax
  exclusive** (``Decimal("185.5")`` is 185.5 cents per kWh before tax).
* Energy is integer **Wh**. Block bounds and free basic electricity are whole kWh per calendar month.
* STS credit tokens carry energy in 0.1 kWh (IEC 62055-41, 6.3.6). Energy put on a token is therefore
  **rounded down to whole 100 Wh**. Above 1638.3 kWh a token's TransferAmount has coarser steps
  (1 kWh, then 10 kWh, ...); the energy is rounded down to a value the token carries exactly, so the
  token always carries what the customer paid for, and never more (6.3.6.2 would round *up*).

Where the money of a purchase goes, in this order
-------------------------------------------------
1. **Debt recovery.** ``recovery_share`` of the amount tendered, rounded half-up to the minor unit,
   at most the outstanding debt. Debt carries no tax (the debt was taxed when it arose).
2. **The month's fixed charge**, tax exclusive, plus its tax. It is collected on the first purchase
   of the month that can pay it. A purchase that cannot pay all of what is outstanding pays what it
   can: *all* of the money left goes to the fixed charge, none to energy. ``MonthState`` records the
   tax-exclusive part paid; the tax of a part payment is the part payment less its net,
   ``net = round_half_up(part / (1 + tax_rate))``, and the net of a part payment never reaches the
   whole outstanding charge (so the last part pays the last cent of net and its tax).
3. **Energy**, priced by **block (step) tariff with monthly accumulation**: the energy bought this
   month so far (``MonthState.purchased_wh``) decides where the new energy starts, and energy that
   crosses a block bound is split into one line per block. The money left buys the most whole
   100 Wh whose price, tax included, it covers.
4. **Free basic electricity (FBE)**: on the first purchase of the month that succeeds, ``fbe_kwh`` is
   added to the token at zero price, as its own line. FBE does not count towards the block
   accumulation (it is not bought).

Rounding and change
-------------------
* Every money figure of a line is rounded half-up to the minor unit **once**: a line's net is
  ``round_half_up(Wh x price / 1000)`` from the exact price; its tax is ``round_half_up(net x
  tax_rate)`` on the net as printed, so a reader can check it. A line's amount is net + tax, the
  total is the sum of the lines' amounts, and the tax total the sum of their taxes: the lines sum
  exactly to the total.
* **Change.** Money is turned into energy, the energy is rounded down to whole 100 Wh, and the
  customer is charged exactly for the rounded energy. What is left (less than the price of another
  100 Wh) is ``change_minor``: the quote says so in its notes, and ``total_minor + change_minor`` is
  always the amount tendered. The caller hands it back or credits the account; nothing is silently
  kept. (The alternative, charging the whole amount for rounded-down energy, takes money for energy
  that is never delivered.)
* A purchase that would put **no energy** on a token is refused with ``AmountTooSmall``, which
  carries the smallest amount that would buy 100 Wh.
* ``vend_by_energy`` asks for energy *bought*; FBE due comes on top. It charges the smallest amount
  that ``vend_by_money`` turns into exactly that energy with no change, so the two agree (for prices
  of at least 10 minor units per kWh, where every further 100 Wh costs at least one minor unit).

The month
---------
``MonthState`` is what the account has bought in one calendar month. The caller, who knows the local
date of the sale, moves it to the sale's month with ``MonthState.rolled_to(year, month)``, which
starts afresh in a new month: no kWh bought, no fixed charge paid, FBE due again.

Everything is integer or exact rational arithmetic: the same inputs give the same quote, always.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from protocols.sts.amount import TRANSFER_AMOUNT_MAX

__all__ = [
    "TOKEN_STEP_WH",
    "AmountTooSmall",
    "Block",
    "Debt",
    "LineKind",
    "MonthState",
    "PricingError",
    "QuoteLine",
    "StepTariff",
    "VendQuote",
    "token_energy_floor_wh",
    "vend_by_energy",
    "vend_by_money",
]

TOKEN_STEP_WH = 100
"""The energy unit of an STS credit token: 0.1 kWh (IEC 62055-41, 6.3.6)."""

_MANTISSA_MAX = (1 << 14) - 1


class PricingError(ValueError):
    """A tariff, account state or vend request that breaks the pricing rules; the message says which."""


class AmountTooSmall(PricingError):
    """The money left after debt recovery and the fixed charge buys no energy (not even 100 Wh)."""

    def __init__(self, amount_minor: int, minimum_minor: int) -> None:
        self.amount_minor = amount_minor
        self.minimum_minor = minimum_minor
        super().__init__(
            f"amount {amount_minor} buys no energy after debt recovery and the fixed charge; "
            f"the smallest amount that buys 0.1 kWh is {minimum_minor}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decimal(value: object) -> Decimal | None:
    """``value`` as a finite Decimal (ints accepted), or None: floats are refused, they are inexact."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    return None


def _round_half_up(value: Fraction) -> int:
    """``value`` (>= 0) rounded to an integer, halves up: 2.5 -> 3, 2.4999 -> 2."""
    return int((value + Fraction(1, 2)) // 1)


def _kwh(wh: int) -> str:
    """Wh as kWh text without trailing zeros: 12300 -> '12.3', 50000 -> '50'."""
    text = f"{Decimal(wh) / 1000:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _percent(share: Decimal) -> str:
    """A share as percent text: Decimal('0.25') -> '25', Decimal('0.125') -> '12.5'."""
    return f"{(share * 100).normalize():f}"


def token_energy_floor_wh(wh: int) -> int:
    """The most energy at most ``wh`` that an STS credit token carries exactly.

    Whole 100 Wh up to 1638.3 kWh; above, the TransferAmount (IEC 62055-41, 6.3.6.1)
    ``t = m x 10**e + sum(2**14 x 10**(i - 1), i = 1..e)`` has steps of 1, 10 and 100 kWh.
    """
    if not _is_int(wh) or wh < 0:
        raise PricingError(f"energy must be an integer number of Wh >= 0, got {wh!r}")
    units = wh // TOKEN_STEP_WH
    if units > TRANSFER_AMOUNT_MAX:
        raise PricingError(
            f"{_kwh(wh)} kWh is more than one STS token carries "
            f"({_kwh(TRANSFER_AMOUNT_MAX * TOKEN_STEP_WH)} kWh)"
        )
    best = 0
    for exponent in range(4):
        scale = 10**exponent
        offset = (1 << 14) * (scale - 1) // 9
        if units < offset:
            break
        mantissa = min((units - offset) // scale, _MANTISSA_MAX)
        best = max(best, offset + mantissa * scale)
    return best * TOKEN_STEP_WH


# --------------------------------------------------------------------------------------------
# The tariff and the account's state


@dataclass(frozen=True, slots=True)
class Block:
    """One step of a block tariff: energy of the month up to ``upper_kwh`` costs this price.

    ``upper_kwh`` is the block's upper bound in kWh bought this calendar month (None for the last
    block, which has none); the block starts where the previous one ends. The price is minor units
    per kWh, tax exclusive, and may have decimals (``Decimal("185.5")``).
    """

    upper_kwh: int | None
    price_minor_per_kwh: Decimal

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.upper_kwh is not None and (not _is_int(self.upper_kwh) or self.upper_kwh <= 0):
            problems.append(
                f"upper_kwh: must be a whole number of kWh above 0 or None, got {self.upper_kwh!r}"
            )
        price = _decimal(self.price_minor_per_kwh)
        if price is None or price <= 0:
            problems.append(
                f"price_minor_per_kwh: must be a Decimal above 0 (not a float), "
                f"got {self.price_minor_per_kwh!r}"
            )
        else:
            object.__setattr__(self, "price_minor_per_kwh", price)
        if problems:
            raise PricingError("invalid block:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class StepTariff:
    """A prepaid step tariff; invalid values raise ``PricingError`` listing every problem.

    ``fixed_charge_minor`` is the monthly fixed charge, tax exclusive; ``tax_rate`` the VAT rate
    (``Decimal("0.15")`` for 15 %); ``fbe_kwh`` the free basic electricity per month.
    """

    currency: str
    blocks: tuple[Block, ...]
    fixed_charge_minor: int = 0
    tax_rate: Decimal = Decimal(0)
    fbe_kwh: int = 0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not (
            isinstance(self.currency, str)
            and len(self.currency) == 3
            and self.currency.isascii()
            and self.currency.isalpha()
            and self.currency.isupper()
        ):
            problems.append(f"currency: must be an ISO 4217 code like 'ZAR', got {self.currency!r}")
        blocks = tuple(self.blocks)
        object.__setattr__(self, "blocks", blocks)
        if not blocks:
            problems.append("blocks: at least one block is needed")
        previous = 0
        for index, block in enumerate(blocks):
            path = f"blocks[{index}]"
            if not isinstance(block, Block):
                problems.append(f"{path}: must be a Block, got {block!r}")
                continue
            last = index == len(blocks) - 1
            upper = block.upper_kwh
            if last and upper is not None:
                problems.append(f"{path}.upper_kwh: the last block has no upper bound (None)")
            elif not last and upper is None:
                problems.append(f"{path}.upper_kwh: only the last block may be open (None)")
            elif upper is not None and upper <= previous:
                problems.append(
                    f"{path}.upper_kwh: must be above the previous block's {previous}, got {upper}"
                )
            elif upper is not None:
                previous = upper
        if not _is_int(self.fixed_charge_minor) or self.fixed_charge_minor < 0:
            problems.append(
                f"fixed_charge_minor: must be an integer >= 0, got {self.fixed_charge_minor!r}"
            )
        rate = _decimal(self.tax_rate)
        if rate is None or not 0 <= rate <= 1:
            problems.append(
                f"tax_rate: must be a Decimal in 0..1 (not a float), got {self.tax_rate!r}"
            )
        else:
            object.__setattr__(self, "tax_rate", rate)
        if not _is_int(self.fbe_kwh) or self.fbe_kwh < 0:
            problems.append(f"fbe_kwh: must be a whole number of kWh >= 0, got {self.fbe_kwh!r}")
        if problems:
            raise PricingError("invalid tariff:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class MonthState:
    """What one account has bought in one calendar month (``year``, ``month``).

    ``purchased_wh`` is the energy bought (not FBE), which places the next purchase in the blocks;
    ``fixed_charge_paid_minor`` the tax-exclusive part of the month's fixed charge paid so far;
    ``fbe_issued`` whether this month's free basic electricity is on a token already.
    """

    year: int
    month: int
    purchased_wh: int = 0
    fixed_charge_paid_minor: int = 0
    fbe_issued: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not _is_int(self.year) or not 1 <= self.year <= 9999:
            problems.append(f"year: must be 1..9999, got {self.year!r}")
        if not _is_int(self.month) or not 1 <= self.month <= 12:
            problems.append(f"month: must be 1..12, got {self.month!r}")
        for name in ("purchased_wh", "fixed_charge_paid_minor"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                problems.append(f"{name}: must be an integer >= 0, got {value!r}")
        if not isinstance(self.fbe_issued, bool):
            problems.append(f"fbe_issued: must be a bool, got {self.fbe_issued!r}")
        if problems:
            raise PricingError("invalid month state:\n  " + "\n  ".join(problems))

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def rolled_to(self, year: int, month: int) -> MonthState:
        """The state for a sale in (``year``, ``month``): this one, or a fresh one in a later month.

        A month before this one is refused: a sale cannot be priced in a month already closed.
        """
        if (year, month) == (self.year, self.month):
            return self
        fresh = MonthState(year, month)
        if (year, month) < (self.year, self.month):
            raise PricingError(f"cannot go back from month {self.label} to {fresh.label}")
        return fresh


@dataclass(frozen=True, slots=True)
class Debt:
    """An account's outstanding debt and the share of each purchase that goes to paying it off."""

    outstanding_minor: int = 0
    recovery_share: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not _is_int(self.outstanding_minor) or self.outstanding_minor < 0:
            problems.append(
                f"outstanding_minor: must be an integer >= 0, got {self.outstanding_minor!r}"
            )
        share = _decimal(self.recovery_share)
        if share is None or not 0 <= share <= 1:
            problems.append(
                f"recovery_share: must be a Decimal in 0..1 (not a float), "
                f"got {self.recovery_share!r}"
            )
        else:
            object.__setattr__(self, "recovery_share", share)
        if problems:
            raise PricingError("invalid debt:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------------------------
# The quote


class LineKind(enum.StrEnum):
    DEBT = "debt"
    FIXED_CHARGE = "fixed_charge"
    FBE = "fbe"
    ENERGY = "energy"


@dataclass(frozen=True, slots=True)
class QuoteLine:
    """One line of a receipt. ``amount_minor`` is what the line costs, tax included.

    ``quantity_wh`` and ``unit_price_minor`` (per kWh, tax exclusive) are None for lines that are
    not energy (debt recovery, fixed charge).
    """

    kind: LineKind
    description: str
    quantity_wh: int | None
    unit_price_minor: Decimal | None
    net_minor: int
    tax_minor: int
    amount_minor: int

    def __post_init__(self) -> None:
        if (
            self.amount_minor != self.net_minor + self.tax_minor
            or min(self.net_minor, self.tax_minor) < 0
        ):
            raise PricingError(f"inconsistent line {self!r}")


@dataclass(frozen=True, slots=True)
class VendQuote:
    """The result of a vend: the receipt, the energy for the token and the account's new state.

    ``tendered_minor`` is the money handed over; ``total_minor`` (the sum of the lines' amounts) is
    what the purchase costs; ``change_minor = tendered_minor - total_minor``. ``energy_wh`` is what
    goes on the token: ``purchased_wh + fbe_wh``, a whole number of 100 Wh. ``month_state`` and
    ``debt`` are the account's state after this vend.
    """

    currency: str
    tendered_minor: int
    lines: tuple[QuoteLine, ...]
    total_minor: int
    tax_minor: int
    change_minor: int
    energy_wh: int
    purchased_wh: int
    fbe_wh: int
    month_state: MonthState
    debt: Debt
    notes: tuple[str, ...]

    def __post_init__(self) -> None:
        ok = (
            self.total_minor == sum(line.amount_minor for line in self.lines)
            and self.tax_minor == sum(line.tax_minor for line in self.lines)
            and self.total_minor + self.change_minor == self.tendered_minor
            and self.change_minor >= 0
            and self.energy_wh == self.purchased_wh + self.fbe_wh
            and self.energy_wh % TOKEN_STEP_WH == 0
        )
        if not ok:
            raise PricingError(f"inconsistent quote {self!r}")

    @property
    def token_units(self) -> int:
        """The token's amount in its own unit, 0.1 kWh (what the STS token generator takes)."""
        return self.energy_wh // TOKEN_STEP_WH


# --------------------------------------------------------------------------------------------
# The rules


@dataclass(frozen=True, slots=True)
class _Segment:
    """The part of a purchase that falls in one block, priced."""

    block: int
    lower_kwh: int
    upper_kwh: int | None
    wh: int
    price: Decimal
    net: int
    tax: int


def _segments(tariff: StepTariff, already_wh: int, wh: int) -> list[_Segment]:
    """``wh`` bought after ``already_wh`` this month, split at the block bounds and priced."""
    rate = Fraction(tariff.tax_rate)
    segments: list[_Segment] = []
    cursor, remaining, lower_kwh = already_wh, wh, 0
    for index, block in enumerate(tariff.blocks):
        if remaining == 0:
            break
        upper = block.upper_kwh
        if upper is None or cursor < upper * 1000:
            take = remaining if upper is None else min(remaining, upper * 1000 - cursor)
            price = block.price_minor_per_kwh
            net = _round_half_up(Fraction(take) * Fraction(price) / 1000)
            tax = _round_half_up(net * rate)
            segments.append(_Segment(index, lower_kwh, upper, take, price, net, tax))
            cursor += take
            remaining -= take
        lower_kwh = upper or 0
    return segments


def _energy_lines(tariff: StepTariff, already_wh: int, wh: int) -> list[QuoteLine]:
    """Receipt lines for ``wh`` bought after ``already_wh`` this month: one per block touched."""
    lines = []
    for seg in _segments(tariff, already_wh, wh):
        span = (
            f"over {seg.lower_kwh} kWh"
            if seg.upper_kwh is None
            else f"{seg.lower_kwh}-{seg.upper_kwh} kWh"
        )
        lines.append(
            QuoteLine(
                LineKind.ENERGY,
                f"Energy, block {seg.block + 1} ({span}/month): {_kwh(seg.wh)} kWh "
                f"at {seg.price}/kWh",
                seg.wh,
                seg.price,
                seg.net,
                seg.tax,
                seg.net + seg.tax,
            )
        )
    return lines


def _energy_cost(tariff: StepTariff, already_wh: int, wh: int) -> int:
    """What ``wh`` bought after ``already_wh`` this month costs, tax included."""
    return sum(seg.net + seg.tax for seg in _segments(tariff, already_wh, wh))


def _fixed_outstanding(tariff: StepTariff, state: MonthState) -> tuple[int, int]:
    """(net, tax) of the month's fixed charge still due."""
    net = max(0, tariff.fixed_charge_minor - state.fixed_charge_paid_minor)
    return net, _round_half_up(net * Fraction(tariff.tax_rate))


def _debt_share(debt: Debt, amount: int) -> int:
    return min(debt.outstanding_minor, _round_half_up(Fraction(debt.recovery_share) * amount))


def _most_energy(tariff: StepTariff, already_wh: int, budget: int) -> int:
    """The most whole 100 Wh whose price ``budget`` covers (the cost rises with the energy)."""
    limit = TRANSFER_AMOUNT_MAX + 1  # in 0.1 kWh: one step past what a token can carry
    low, high = 0, 1
    while high < limit and _energy_cost(tariff, already_wh, high * TOKEN_STEP_WH) <= budget:
        low, high = high, min(high * 2, limit)
    if high == limit and _energy_cost(tariff, already_wh, high * TOKEN_STEP_WH) <= budget:
        return high * TOKEN_STEP_WH  # too much for one token: token_energy_floor_wh says so
    while high - low > 1:  # cost(low) <= budget < cost(high)
        middle = (low + high) // 2
        if _energy_cost(tariff, already_wh, middle * TOKEN_STEP_WH) <= budget:
            low = middle
        else:
            high = middle
    return low * TOKEN_STEP_WH


@dataclass(frozen=True, slots=True)
class _Plan:
    lines: tuple[QuoteLine, ...]
    purchased_wh: int
    fbe_wh: int
    change_minor: int
    recovered_minor: int
    fixed_paid_minor: int
    notes: tuple[str, ...]


def _plan(
    tariff: StepTariff, amount: int, state: MonthState, debt: Debt, want_wh: int | None
) -> _Plan:
    """Spend ``amount``: debt share, fixed charge, then energy (``want_wh`` of it, or the most)."""
    rate = Fraction(tariff.tax_rate)
    lines: list[QuoteLine] = []
    notes: list[str] = []

    recovered = _debt_share(debt, amount)
    if recovered:
        still_owed = debt.outstanding_minor - recovered
        lines.append(
            QuoteLine(
                LineKind.DEBT,
                f"Debt recovery ({_percent(debt.recovery_share)}% of {amount}, at most the debt "
                f"of {debt.outstanding_minor}); {still_owed} still owed",
                None,
                None,
                recovered,
                0,
                recovered,
            )
        )
    budget = amount - recovered

    fixed_net, fixed_tax = _fixed_outstanding(tariff, state)
    fixed_paid = 0
    if fixed_net and budget >= fixed_net + fixed_tax:
        fixed_paid = fixed_net
        lines.append(
            QuoteLine(
                LineKind.FIXED_CHARGE,
                f"Fixed charge {state.label}",
                None,
                None,
                fixed_net,
                fixed_tax,
                fixed_net + fixed_tax,
            )
        )
        budget -= fixed_net + fixed_tax
    elif fixed_net and budget > 0:
        # A part payment takes all that is left; its net stops one short of the whole charge.
        fixed_paid = min(_round_half_up(budget / (1 + rate)), fixed_net - 1)
        lines.append(
            QuoteLine(
                LineKind.FIXED_CHARGE,
                f"Fixed charge {state.label}, part payment: {fixed_net - fixed_paid} (before tax) "
                "still due",
                None,
                None,
                fixed_paid,
                budget - fixed_paid,
                budget,
            )
        )
        notes.append("The fixed charge is not fully paid, so no energy is bought.")
        budget = 0

    fbe_wh = 0 if state.fbe_issued else tariff.fbe_kwh * 1000
    wanted = _most_energy(tariff, state.purchased_wh, budget) if want_wh is None else want_wh
    on_token = token_energy_floor_wh(wanted + fbe_wh)
    purchased = on_token - fbe_wh
    if on_token < (wanted + fbe_wh) // TOKEN_STEP_WH * TOKEN_STEP_WH:
        notes.append(
            f"Above 1638.3 kWh an STS token carries coarser steps (IEC 62055-41 6.3.6): "
            f"energy rounded down to {_kwh(on_token)} kWh."
        )
    if fbe_wh:
        lines.append(
            QuoteLine(
                LineKind.FBE,
                f"Free basic electricity {state.label}: {_kwh(fbe_wh)} kWh",
                fbe_wh,
                Decimal(0),
                0,
                0,
                0,
            )
        )
    lines += _energy_lines(tariff, state.purchased_wh, purchased)
    change = amount - sum(line.amount_minor for line in lines)
    if change:
        notes.append(
            f"STS tokens carry whole 0.1 kWh: {change} could not buy another 0.1 kWh "
            "and is returned as change."
        )
    return _Plan(tuple(lines), purchased, fbe_wh, change, recovered, fixed_paid, tuple(notes))


def _quote(
    tariff: StepTariff, amount: int, state: MonthState, debt: Debt, plan: _Plan
) -> VendQuote:
    lines = plan.lines
    new_state = replace(
        state,
        purchased_wh=state.purchased_wh + plan.purchased_wh,
        fixed_charge_paid_minor=state.fixed_charge_paid_minor + plan.fixed_paid_minor,
        fbe_issued=state.fbe_issued or plan.fbe_wh > 0,
    )
    return VendQuote(
        currency=tariff.currency,
        tendered_minor=amount,
        lines=lines,
        total_minor=sum(line.amount_minor for line in lines),
        tax_minor=sum(line.tax_minor for line in lines),
        change_minor=plan.change_minor,
        energy_wh=plan.purchased_wh + plan.fbe_wh,
        purchased_wh=plan.purchased_wh,
        fbe_wh=plan.fbe_wh,
        month_state=new_state,
        debt=replace(debt, outstanding_minor=debt.outstanding_minor - plan.recovered_minor),
        notes=plan.notes,
    )


def _check_inputs(tariff: StepTariff, state: MonthState, debt: Debt) -> None:
    for name, value, kind in (
        ("tariff", tariff, StepTariff),
        ("month_state", state, MonthState),
        ("debt", debt, Debt),
    ):
        if not isinstance(value, kind):
            raise PricingError(f"{name} must be a {kind.__name__}, got {value!r}")


def _minimum_amount(tariff: StepTariff, state: MonthState, debt: Debt, above: int) -> int:
    """The smallest amount (> ``above``, which buys nothing) that puts energy on a token."""

    def buys(amount: int) -> bool:
        plan = _plan(tariff, amount, state, debt, None)
        return plan.purchased_wh + plan.fbe_wh > 0

    low, high = above, max(2 * above, 1)
    while not buys(high):  # more money never buys less: the first amount that buys is the bound
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        if buys(middle):
            high = middle
        else:
            low = middle
    return high


def vend_by_money(
    tariff: StepTariff, amount_minor: int, month_state: MonthState, debt: Debt
) -> VendQuote:
    """Sell electricity for ``amount_minor``: as much energy as the money buys after deductions.

    Raises ``AmountTooSmall`` (with the smallest amount that works) when no energy would go on
    the token, and ``PricingError`` for a non-positive amount or one too large for one token.
    """
    _check_inputs(tariff, month_state, debt)
    if not _is_int(amount_minor) or amount_minor <= 0:
        raise PricingError(f"amount_minor must be an integer above 0, got {amount_minor!r}")
    plan = _plan(tariff, amount_minor, month_state, debt, None)
    if plan.purchased_wh + plan.fbe_wh == 0:
        raise AmountTooSmall(amount_minor, _minimum_amount(tariff, month_state, debt, amount_minor))
    return _quote(tariff, amount_minor, month_state, debt, plan)


def vend_by_energy(
    tariff: StepTariff, energy_wh: int, month_state: MonthState, debt: Debt
) -> VendQuote:
    """Sell ``energy_wh`` (rounded down to what a token carries), FBE due on top, at its price.

    The amount charged is the smallest that ``vend_by_money`` spends on exactly this energy after
    the debt share and the fixed charge due; the quote's ``change_minor`` is therefore 0.
    """
    _check_inputs(tariff, month_state, debt)
    if not _is_int(energy_wh) or energy_wh <= 0:
        raise PricingError(f"energy_wh must be an integer above 0, got {energy_wh!r}")
    fbe_wh = 0 if month_state.fbe_issued else tariff.fbe_kwh * 1000
    purchased = token_energy_floor_wh(energy_wh + fbe_wh) - fbe_wh
    if purchased <= 0:
        raise PricingError(
            f"energy_wh {energy_wh} is less than the 0.1 kWh an STS token carries; "
            "buy at least 100 Wh"
        )
    fixed_net, fixed_tax = _fixed_outstanding(tariff, month_state)
    needed = fixed_net + fixed_tax + _energy_cost(tariff, month_state.purchased_wh, purchased)
    # The amount T with T - debt_share(T) == needed; T - debt_share(T) rises by 0 or 1 per unit.
    low, high = needed - 1, needed + debt.outstanding_minor
    while high - low > 1:
        middle = (low + high) // 2
        if middle - _debt_share(debt, middle) >= needed:
            high = middle
        else:
            low = middle
    plan = _plan(tariff, high, month_state, debt, purchased)
    if purchased != energy_wh:
        reason = (
            "STS tokens carry whole 0.1 kWh"
            if purchased == energy_wh // TOKEN_STEP_WH * TOKEN_STEP_WH
            else "above 1638.3 kWh an STS token carries coarser steps (IEC 62055-41 6.3.6)"
        )
        note = f"{_kwh(energy_wh)} kWh asked for, {_kwh(purchased)} kWh sold: {reason}."
        plan = replace(plan, notes=(note, *plan.notes))
    return _quote(tariff, high, month_state, debt, plan)
