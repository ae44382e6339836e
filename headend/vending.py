"""Vending: money -> energy through the customer's tariff -> an STS token -> a command to the meter.

One transaction does all of it: the quote (``headend.pricing``), the token (made by the key store,
the only place keys are used), the vend and its receipt, the account's month and debt, the token
record (immutable), the command that carries the token to the meter, and the audit record. If any
step fails nothing is kept, so there is never a token without a sale or a sale without a token.

* Reprint shows the same token again (never a new one: the meter would take both).
* Cancel is allowed while the token has not been sent to the meter; the sale is reversed (month
  state and debt restored) and the command cancelled. Once sent, the token may already be in the
  meter, so it can only be refunded by a credit-clearing engineering token, which is a decision
  for a supervisor, not a button.
* An idempotency key makes a retried request (a cashier's double click, a client timeout) return
  the first vend instead of selling twice.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from protocols.link import CommandType
from protocols.sts import (
    ClearCredit,
    ClearTamperCondition,
    CreditType,
    SetMaximumPowerLimit,
    TidRangeError,
    TokenFields,
    TransferCredit,
    next_tid,
    random_rnd,
    tid_of,
)

from .audit import thd_audit
from .commands import NewCommand, thd_cancel, thd_enqueue
from .keystore import MeterKeys, TokenIssuer
from .pricing import Block, Debt, MonthState, StepTariff, VendQuote, vend_by_energy, vend_by_money
from .store.schema import (
    accounts,
    commands,
    key_campaign_meters,
    meters,
    tariff_versions,
    tariffs,
    tokens,
    vends,
)

__all__ = [
    "TRANSFER_RECEIPT_PREFIX",
    "VendError",
    "meter_keys",
    "step_tariff_from",
    "thd_cancel_vend",
    "thd_engineering_token",
    "thd_quote",
    "thd_transfer_credit",
    "thd_vend",
    "thd_vend_view",
]


class VendError(Exception):
    """A sale that cannot be made, with the reason for the cashier."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Seller:
    name: str
    vending_point: str = "head-office"


def step_tariff_from(body: dict[str, Any]) -> StepTariff:
    return StepTariff(
        currency=body["currency"],
        blocks=tuple(
            Block(b.get("upper_kwh"), Decimal(str(b["price_minor_per_kwh"])))
            for b in body["blocks"]
        ),
        fixed_charge_minor=int(body.get("fixed_charge_minor", 0)),
        tax_rate=Decimal(str(body.get("tax_rate", "0"))),
        fbe_kwh=int(body.get("fbe_kwh", 0)),
    )


def meter_keys(row: Any) -> MeterKeys:
    return MeterKeys(row.drn, row.sgc, row.tariff_index, row.key_revision, row.key_type,
                     row.base_date, row.algorithm)  # fmt: skip


def _tariff_body(connection: sa.Connection, tariff_id: int) -> dict[str, Any]:
    row = connection.execute(
        sa.select(tariff_versions.c.body)
        .join(tariffs, tariffs.c.id == tariff_versions.c.tariff_id)
        .where(tariffs.c.id == tariff_id, tariff_versions.c.version == tariffs.c.current_version)
    ).first()
    if row is None:
        raise VendError(f"tariff {tariff_id} has no version in force")
    body: dict[str, Any] = json.loads(row.body)
    if "blocks" not in body:
        raise VendError(f"tariff {tariff_id} is not a step tariff; the account cannot be sold to")
    return body


def _account(connection: sa.Connection, meter_id: str | None, account_id: int | None,
             lock: bool = False) -> Any:  # fmt: skip
    query = sa.select(accounts)
    if lock:  # a sale changes the account's month and debt: one sale to an account at a time
        query = query.with_for_update()
    if account_id is not None:
        query = query.where(accounts.c.id == account_id)
    else:
        query = query.where(accounts.c.meter_id == meter_id, accounts.c.status != "closed")
    row = connection.execute(query).first()
    if row is None:
        what = f"account {account_id}" if account_id is not None else f"meter {meter_id}"
        raise VendError(f"no open account for {what}", 404)
    if row.status != "open":
        raise VendError(f"account {row.id} is {row.status}: no sales until it is reopened")
    if row.meter_id is None:
        raise VendError(f"account {row.id} has no meter")
    return row


TID_WINDOW = 30 * 24 * 60  # minutes: the TIDs that can collide with now's


def _next_tid(connection: sa.Connection, meter: Any, now: float) -> int:
    """Now's TID on the meter's base date, or one past the last issued if that is not less.

    Only TIDs near now's count: after a roll-over (base date 1993 -> 2014) the old tokens' TIDs
    are near the top of the range and belong to the old base date; continuing from them would
    waste the new base date's range (and the meter has forgotten them anyway).
    """
    moment = datetime.fromtimestamp(now, UTC)
    try:
        current = tid_of(moment, meter.base_date)
    except TidRangeError as exc:
        raise VendError(f"meter {meter.id} cannot be given a token now: {exc}") from None
    # one token for the meter at a time, so that two (two head-ends selling to it at once, say)
    # do not both take the last TID + 1: the meter would reject the second as Used
    connection.execute(sa.select(meters.c.id).where(meters.c.id == meter.id).with_for_update())
    last = connection.execute(
        sa.select(sa.func.max(tokens.c.tid)).where(
            tokens.c.meter_id == meter.id,
            tokens.c.tid.between(current - TID_WINDOW, current + TID_WINDOW),
        )
    ).scalar()
    return next_tid(moment, meter.base_date, last)


def _key_change_on_its_way(connection: sa.Connection, meter_id: str) -> bool:
    pending = connection.execute(
        sa.select(commands.c.id)
        .join(key_campaign_meters, key_campaign_meters.c.command_id == commands.c.id)
        .where(key_campaign_meters.c.meter_id == meter_id,
               commands.c.state.in_(("queued", "sent", "received")))
    ).first()  # fmt: skip
    return pending is not None


def _store_token(connection: sa.Connection, meter: Any, kind: str, fields: TokenFields,
                 digits: str, now: float, actor: str, vend_id: int | None = None,
                 set_index: int = 0) -> int:  # fmt: skip
    return int(connection.execute(
        sa.insert(tokens).values(
            meter_id=meter.id, vend_id=vend_id, kind=kind, token_class=fields.token_class,
            subclass=fields.subclass, tid=getattr(fields, "tid", 0),
            amount=getattr(fields, "amount", None), digits=digits, set_index=set_index,
            created_at=now, created_by=actor,
        ).returning(tokens.c.id)
    ).scalar_one())  # fmt: skip


def _price(connection: sa.Connection, now: float, meter_id: str | None, account_id: int | None,
           amount_minor: int | None, energy_wh: int | None,
           lock: bool = False) -> tuple[Any, Any, VendQuote]:  # fmt: skip
    """The account, its meter and what a sale would give, through the account's tariff and this
    month's purchases so far; :class:`VendError` when the meter cannot be sold to now."""
    if (amount_minor is None) == (energy_wh is None):
        raise VendError("give either amount_minor or energy_wh", 400)
    account = _account(connection, meter_id, account_id, lock)
    meter = connection.execute(sa.select(meters).where(meters.c.id == account.meter_id)).one()
    if meter.status != "active":
        raise VendError(f"meter {meter.id} is {meter.status}")
    if _key_change_on_its_way(connection, meter.id):
        raise VendError(
            f"a key change is on its way to meter {meter.id}: a token made now would use the "
            "old key, which the meter may no longer hold; sell once the key change is applied"
        )
    tariff = step_tariff_from(_tariff_body(connection, account.tariff_id))
    moment = datetime.fromtimestamp(now, UTC)
    if account.month:
        year, month = (int(part) for part in account.month.split("-"))
        state = MonthState(year, month, account.month_energy_wh, account.month_fixed_paid_minor,
                           account.month_fbe_issued).rolled_to(moment.year, moment.month)  # fmt: skip
    else:
        state = MonthState(moment.year, moment.month)
    debt = Debt(account.debt_minor, Decimal(account.debt_recovery_share))
    quote: VendQuote = (
        vend_by_money(tariff, amount_minor, state, debt)
        if amount_minor is not None
        else vend_by_energy(tariff, int(energy_wh or 0), state, debt)
    )
    return account, meter, quote


def thd_quote(connection: sa.Connection, now: float, *, meter_id: str | None = None,
              account_id: int | None = None, amount_minor: int | None = None,
              energy_wh: int | None = None) -> dict[str, Any]:  # fmt: skip
    """What a sale would give, itemised as its receipt would be, without selling: no token, no
    change to the account."""
    account, meter, quote = _price(connection, now, meter_id, account_id, amount_minor, energy_wh)
    view = _receipt(quote, meter, account, Seller("", ""), "", now, "")
    for name in ("receipt_no", "issued_at", "operator", "vending_point", "token"):
        del view[name]
    return view | {"quote": True}


def thd_vend(connection: sa.Connection, issuer: TokenIssuer, seller: Seller, now: float, *,
             meter_id: str | None = None, account_id: int | None = None,
             amount_minor: int | None = None, energy_wh: int | None = None,
             idempotency_key: str | None = None, expiry_s: float = 86400.0,
             deliver: bool = True) -> dict[str, Any]:  # fmt: skip
    """Sell credit; the vend with its token, receipt and the id of the command delivering it."""
    if idempotency_key:
        earlier = connection.execute(
            sa.select(vends.c.id).where(vends.c.idempotency_key == idempotency_key)
        ).scalar()
        if earlier is not None:
            return thd_vend_view(connection, int(earlier))
    account, meter, quote = _price(connection, now, meter_id, account_id, amount_minor, energy_wh,
                                   lock=True)  # fmt: skip
    fields = TransferCredit(CreditType.ELECTRICITY, amount=quote.energy_wh // 100,
                            tid=_next_tid(connection, meter, now), rnd=random_rnd())  # fmt: skip
    token = issuer.issue(connection, meter_keys(meter), fields)
    receipt_no = f"R{int(now):010d}{secrets.randbelow(10**6):06d}"
    receipt = _receipt(quote, meter, account, seller, receipt_no, now, token.grouped)
    recovered = account.debt_minor - quote.debt.outstanding_minor
    vend_id = int(connection.execute(
        sa.insert(vends).values(
            receipt_no=receipt_no, account_id=account.id, meter_id=meter.id,
            operator=seller.name, vending_point=seller.vending_point,
            amount_minor=quote.total_minor, energy_wh=quote.energy_wh, debt_minor=recovered,
            receipt=json.dumps(receipt, separators=(",", ":")), status="issued",
            idempotency_key=idempotency_key, created_at=now,
        ).returning(vends.c.id)
    ).scalar_one())  # fmt: skip
    _store_token(connection, meter, "credit", fields, token.digits, now, seller.name, vend_id)
    new_state = quote.month_state
    connection.execute(sa.update(accounts).where(accounts.c.id == account.id).values(
        month=new_state.label, month_energy_wh=new_state.purchased_wh,
        month_fixed_paid_minor=new_state.fixed_charge_paid_minor,
        month_fbe_issued=new_state.fbe_issued, debt_minor=quote.debt.outstanding_minor,
        debt_recovered_minor=account.debt_recovered_minor + recovered,
    ))  # fmt: skip
    if deliver and meter.gateway_id is not None:
        thd_enqueue(connection, NewCommand(CommandType.TOKEN, meter.id,
                                           {"tokens": [token.digits]}, seller.name, vend_id,
                                           expiry_s), now)  # fmt: skip
    thd_audit(connection, now, seller.name, "vend", f"meter:{meter.id}",
              {"vend_id": vend_id, "receipt_no": receipt_no, "amount_minor": quote.total_minor,
               "energy_wh": quote.energy_wh})  # fmt: skip
    return thd_vend_view(connection, vend_id)


def _receipt(quote: VendQuote, meter: Any, account: Any, seller: Seller, receipt_no: str,
             now: float, grouped: str) -> dict[str, Any]:  # fmt: skip
    return {
        "receipt_no": receipt_no, "issued_at": now, "meter": meter.id, "account": account.id,
        "operator": seller.name, "vending_point": seller.vending_point,
        "currency": quote.currency, "tendered_minor": quote.tendered_minor,
        "lines": [
            {"kind": str(line.kind), "description": line.description,
             "quantity_wh": line.quantity_wh,
             "unit_price_minor": None if line.unit_price_minor is None
             else str(line.unit_price_minor),
             "net_minor": line.net_minor, "tax_minor": line.tax_minor,
             "amount_minor": line.amount_minor}
            for line in quote.lines
        ],
        "total_minor": quote.total_minor, "tax_minor": quote.tax_minor,
        "change_minor": quote.change_minor, "energy_wh": quote.energy_wh,
        "fbe_wh": quote.fbe_wh, "debt_remaining_minor": quote.debt.outstanding_minor,
        "notes": list(quote.notes), "token": grouped,
    }  # fmt: skip


def thd_vend_view(connection: sa.Connection, vend_id: int) -> dict[str, Any]:
    vend = connection.execute(sa.select(vends).where(vends.c.id == vend_id)).first()
    if vend is None:
        raise VendError(f"no vend {vend_id}", 404)
    token_rows = connection.execute(
        sa.select(tokens.c.digits).where(tokens.c.vend_id == vend_id).order_by(tokens.c.id)
    ).all()
    delivery = connection.execute(
        sa.select(commands.c.id, commands.c.state, commands.c.code, commands.c.detail,
                  commands.c.result)
        .where(commands.c.vend_id == vend_id).order_by(commands.c.created_at.desc()).limit(1)
    ).first()  # fmt: skip
    return {
        "id": vend.id, "receipt_no": vend.receipt_no, "meter_id": vend.meter_id,
        "account_id": vend.account_id, "status": vend.status, "operator": vend.operator,
        "amount_minor": vend.amount_minor, "energy_wh": vend.energy_wh,
        "created_at": vend.created_at,
        "tokens": [_group(row.digits) for row in token_rows],
        "receipt": json.loads(vend.receipt),
        "delivery": None if delivery is None else {
            "command_id": delivery.id, "state": delivery.state, "code": delivery.code,
            "detail": delivery.detail,
            "fallback": json.loads(delivery.result).get("fallback"),
        },
    }  # fmt: skip


def _group(digits: str) -> str:
    return " ".join(digits[i : i + 4] for i in range(0, 20, 4))


def thd_cancel_vend(connection: sa.Connection, vend_id: int, actor: str, now: float,
                    reason: str) -> dict[str, Any]:  # fmt: skip
    vend = connection.execute(sa.select(vends).where(vends.c.id == vend_id)).first()
    if vend is None:
        raise VendError(f"no vend {vend_id}", 404)
    if vend.status != "issued":
        raise VendError(f"vend {vend_id} is {vend.status}")
    pending = connection.execute(
        sa.select(commands.c.id, commands.c.state).where(commands.c.vend_id == vend_id)
    ).all()
    if any(row.state != "queued" for row in pending):
        raise VendError(
            f"vend {vend_id}'s token has been sent to the meter and may be in it already; "
            "it cannot be cancelled (a supervisor can clear the credit with an engineering token)"
        )
    for row in pending:
        thd_cancel(connection, row.id, now, actor)
    receipt = json.loads(vend.receipt)
    account = connection.execute(sa.select(accounts).where(accounts.c.id == vend.account_id)
                                 .with_for_update()).one()  # fmt: skip
    fixed = sum(line["net_minor"] for line in receipt["lines"] if line["kind"] == "fixed_charge")
    fbe = any(line["kind"] == "fbe" for line in receipt["lines"])
    purchased = vend.energy_wh - int(receipt.get("fbe_wh", 0))
    connection.execute(sa.update(accounts).where(accounts.c.id == account.id).values(
        month_energy_wh=max(account.month_energy_wh - purchased, 0),
        month_fixed_paid_minor=max(account.month_fixed_paid_minor - fixed, 0),
        month_fbe_issued=account.month_fbe_issued and not fbe,
        debt_minor=account.debt_minor + vend.debt_minor,
        debt_recovered_minor=account.debt_recovered_minor - vend.debt_minor,
    ))  # fmt: skip
    connection.execute(sa.update(vends).where(vends.c.id == vend_id).values(
        status="cancelled", cancelled_at=now))  # fmt: skip
    thd_audit(connection, now, actor, "vend.cancel", f"vend:{vend_id}",
              {"reason": reason, "amount_minor": vend.amount_minor})  # fmt: skip
    return thd_vend_view(connection, vend_id)


ENGINEERING = ("clear_tamper", "clear_credit", "max_power")


def thd_engineering_token(connection: sa.Connection, issuer: TokenIssuer, meter_id: str,
                          kind: str, actor: str, now: float, *, watts: int | None = None,
                          deliver: bool = True, expiry_s: float = 86400.0) -> dict[str, Any]:  # fmt: skip
    """A management token (IEC 62055-41 class 2): clear tamper, clear credit, maximum power."""
    meter = connection.execute(sa.select(meters).where(meters.c.id == meter_id)).first()
    if meter is None:
        raise VendError(f"no meter {meter_id}", 404)
    tid = _next_tid(connection, meter, now)
    fields: TokenFields
    if kind == "clear_tamper":
        fields = ClearTamperCondition(tid=tid, rnd=random_rnd())
    elif kind == "clear_credit":
        fields = ClearCredit(tid=tid, rnd=random_rnd(), register=0)  # the electricity register
    elif kind == "max_power":
        if watts is None or watts < 0:
            raise VendError("a maximum power token needs watts >= 0", 400)
        fields = SetMaximumPowerLimit(tid=tid, rnd=random_rnd(), watts=watts)
    else:
        raise VendError(f"unknown engineering token {kind!r}; one of {', '.join(ENGINEERING)}", 400)
    token = issuer.issue(connection, meter_keys(meter), fields)
    token_id = _store_token(connection, meter, kind, fields, token.digits, now, actor)
    command_id = None
    if deliver and meter.gateway_id is not None:
        command_id, _ = thd_enqueue(connection, NewCommand(
            CommandType.TOKEN, meter.id, {"tokens": [token.digits]}, actor, None, expiry_s), now)  # fmt: skip
    thd_audit(connection, now, actor, f"engineering.{kind}", f"meter:{meter_id}",
              {"token_id": token_id, "watts": watts})  # fmt: skip
    return {"token_id": token_id, "meter_id": meter_id, "kind": kind, "token": token.grouped,
            "command_id": command_id}  # fmt: skip


# a credit transfer's receipt number starts with this (a sale's with "R"): reports tell them apart
TRANSFER_RECEIPT_PREFIX = "T"


def thd_transfer_credit(connection: sa.Connection, issuer: TokenIssuer, seller: Seller,
                        account_id: int, meter_id: str, energy_wh: int, from_meter_id: str,
                        now: float, *, expiry_s: float = 86400.0,
                        deliver: bool = True) -> dict[str, Any]:  # fmt: skip
    """Move credit read from a replaced meter to its successor: a credit token at no price.

    The token carries ``energy_wh`` rounded down to the 0.1 kWh unit (the customer is never given
    more than the old meter held). It is recorded like a sale, so that it is reprinted, resent and
    shown like one: a vend of amount 0 whose receipt has one line, "credit transferred from meter
    X", and whose receipt number starts with :data:`TRANSFER_RECEIPT_PREFIX`. The account's month
    purchases, fixed charge and debt are untouched: the energy was paid for on the old meter.
    """
    units = energy_wh // 100
    if units <= 0:
        raise VendError(f"{energy_wh} Wh is less than the token's unit of 0.1 kWh", 400)
    account = connection.execute(sa.select(accounts).where(accounts.c.id == account_id)).first()
    if account is None:
        raise VendError(f"no account {account_id}", 404)
    meter = connection.execute(sa.select(meters).where(meters.c.id == meter_id)).first()
    if meter is None:
        raise VendError(f"no meter {meter_id}", 404)
    if meter.status != "active":
        raise VendError(f"meter {meter.id} is {meter.status}")
    fields = TransferCredit(CreditType.ELECTRICITY, amount=units,
                            tid=_next_tid(connection, meter, now), rnd=random_rnd())  # fmt: skip
    token = issuer.issue(connection, meter_keys(meter), fields)
    try:
        currency = _tariff_body(connection, account.tariff_id).get("currency")
    except VendError:
        currency = None
    receipt_no = f"{TRANSFER_RECEIPT_PREFIX}{int(now):010d}{secrets.randbelow(10**6):06d}"
    description = f"credit transferred from meter {from_meter_id}"
    receipt = {
        "receipt_no": receipt_no, "issued_at": now, "meter": meter.id, "account": account.id,
        "operator": seller.name, "vending_point": seller.vending_point, "currency": currency,
        "tendered_minor": 0,
        "lines": [{"kind": "credit_transfer", "description": description,
                   "quantity_wh": units * 100, "unit_price_minor": None, "net_minor": 0,
                   "tax_minor": 0, "amount_minor": 0}],
        "total_minor": 0, "tax_minor": 0, "change_minor": 0, "energy_wh": units * 100,
        "fbe_wh": 0, "debt_remaining_minor": account.debt_minor,
        "notes": [f"{description}: {energy_wh} Wh read, {units * 100} Wh in 0.1 kWh units"],
        "token": token.grouped,
    }  # fmt: skip
    vend_id = int(connection.execute(
        sa.insert(vends).values(
            receipt_no=receipt_no, account_id=account.id, meter_id=meter.id,
            operator=seller.name, vending_point=seller.vending_point, amount_minor=0,
            energy_wh=units * 100, debt_minor=0,
            receipt=json.dumps(receipt, separators=(",", ":")), status="issued", created_at=now,
        ).returning(vends.c.id)
    ).scalar_one())  # fmt: skip
    _store_token(connection, meter, "credit", fields, token.digits, now, seller.name, vend_id)
    if deliver and meter.gateway_id is not None:
        thd_enqueue(connection, NewCommand(CommandType.TOKEN, meter.id,
                                           {"tokens": [token.digits]}, seller.name, vend_id,
                                           expiry_s), now)  # fmt: skip
    thd_audit(connection, now, seller.name, "vend.credit_transfer", f"meter:{meter.id}",
              {"vend_id": vend_id, "receipt_no": receipt_no, "from_meter": from_meter_id,
               "energy_wh": units * 100})  # fmt: skip
    return thd_vend_view(connection, vend_id)
