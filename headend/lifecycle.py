"""A customer's life-cycle beyond open, suspend and close: a change of tenant, a meter replaced.

Change of tenant. The old account is closed and a new one opened for the new customer on the same
meter and tariffs, in one transaction. What stays where:

* the old account keeps its debt and its history (the utility recovers that debt from the old
  tenant, not from the next one); the new account starts with the debt given (usually none) and a
  fresh month, so the new tenant's first purchase starts at the first block;
* the credit left in the meter stays in the meter: STS credit lives in the meter, not in the
  account, and nothing the head-end does can take it out short of a clear-credit token, which is a
  supervisor's decision. The answer says so and gives the last credit the meter reported.

Meter replacement. The old meter becomes ``replaced``; its account moves to the new meter, which
the new meter's gateway must have registered (so that it exists, with its own STS key attributes
as it reported them) and which must be active and on no account. The account keeps its month
state and debt: they belong to the customer, not to the hardware. The old meter's credit (read
from its display by the technician, or the last credit it reported) goes to the new meter as a
credit token at no price (:func:`headend.vending.thd_transfer_credit`). Each step is audited in
the same transaction.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from .audit import thd_audit
from .keystore import TokenIssuer
from .store.schema import accounts, customers, meters, readings
from .vending import Seller, thd_transfer_credit

__all__ = ["LifecycleError", "thd_change_tenant", "thd_last_credit_wh", "thd_replace_meter"]


class LifecycleError(Exception):
    """A life-cycle step that cannot be taken, with the reason; ``status`` for the API."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def _account_view(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def _account(connection: sa.Connection, account_id: int) -> Any:
    return connection.execute(sa.select(accounts).where(accounts.c.id == account_id)).first()


def thd_change_tenant(connection: sa.Connection, account_id: int, customer_id: int, actor: str,
                      now: float, debt_minor: int = 0,
                      debt_recovery_share: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Close ``account_id`` and open an account for ``customer_id`` on the same meter."""
    old = _account(connection, account_id)
    if old is None:
        raise LifecycleError(f"no account {account_id}", 404)
    if old.status == "closed":
        raise LifecycleError(f"account {account_id} is closed already")
    if old.meter_id is None:
        raise LifecycleError(f"account {account_id} has no meter")
    if connection.execute(sa.select(customers.c.id).where(customers.c.id == customer_id)).first() \
            is None:  # fmt: skip
        raise LifecycleError(f"no customer {customer_id}", 404)
    if customer_id == old.customer_id:
        raise LifecycleError(f"customer {customer_id} holds account {account_id} already")
    if debt_minor < 0:
        raise LifecycleError("debt_minor must be 0 or more", 422)
    share = old.debt_recovery_share if debt_recovery_share is None else debt_recovery_share
    try:
        valid = 0 <= Decimal(share) <= 1
    except InvalidOperation:
        valid = False
    if not valid:
        raise LifecycleError("debt_recovery_share must be a decimal between 0 and 1", 422)
    connection.execute(sa.update(accounts).where(accounts.c.id == account_id).values(
        status="closed", closed_at=now))  # fmt: skip
    thd_audit(connection, now, actor, "account.closed", f"account:{account_id}",
              {"reason": "change of tenant", "new_customer_id": customer_id,
               "debt_minor": old.debt_minor})  # fmt: skip
    new_id = int(connection.execute(
        sa.insert(accounts).values(
            customer_id=customer_id, meter_id=old.meter_id, tariff_id=old.tariff_id,
            tou_tariff_id=old.tou_tariff_id, status="open", debt_minor=debt_minor,
            debt_recovery_share=share, opened_at=now,
        ).returning(accounts.c.id)
    ).scalar_one())  # fmt: skip
    thd_audit(connection, now, actor, "account.open", f"account:{new_id}",
              {"reason": "change of tenant", "previous_account_id": account_id,
               "customer_id": customer_id, "meter_id": old.meter_id, "tariff_id": old.tariff_id,
               "debt_minor": debt_minor, "debt_recovery_share": share})  # fmt: skip
    credit_wh = thd_last_credit_wh(connection, old.meter_id)
    return {
        "closed_account": _account_view(_account(connection, account_id)),
        "account": _account_view(_account(connection, new_id)),
        "meter_id": old.meter_id,
        "meter_credit_wh": credit_wh,
        "note": (
            f"the credit left in meter {old.meter_id} stays with the meter"
            + (f" (last reported: {credit_wh} Wh)" if credit_wh is not None else "")
            + f"; the previous account keeps its debt of {old.debt_minor}"
        ),
    }


def thd_last_credit_wh(connection: sa.Connection, meter_id: str) -> int | None:
    """The credit a meter last reported in a reading (None when it never did)."""
    value = connection.execute(
        sa.select(readings.c.credit_wh)
        .where(readings.c.meter_id == meter_id, readings.c.credit_wh.is_not(None))
        .order_by(readings.c.ts.desc()).limit(1)
    ).scalar()  # fmt: skip
    return None if value is None else int(value)


def thd_replace_meter(connection: sa.Connection, issuer: TokenIssuer, old_meter_id: str,
                      new_meter_id: str, seller: Seller, now: float, *,
                      transfer_credit_wh: int | None = None,
                      expiry_s: float = 86400.0) -> dict[str, Any]:  # fmt: skip
    """Replace ``old_meter_id`` with ``new_meter_id`` on its account; move the credit over.

    ``transfer_credit_wh`` is the credit read from the old meter; None: the last credit it
    reported (0 when it never reported any). A transfer below 100 Wh (one token unit) issues no
    token.
    """
    old = connection.execute(sa.select(meters).where(meters.c.id == old_meter_id)).first()
    if old is None:
        raise LifecycleError(f"no meter {old_meter_id}", 404)
    if old.status != "active":
        raise LifecycleError(f"meter {old_meter_id} is {old.status}")
    if new_meter_id == old_meter_id:
        raise LifecycleError("a meter cannot replace itself", 422)
    new = connection.execute(sa.select(meters).where(meters.c.id == new_meter_id)).first()
    if new is None:
        raise LifecycleError(
            f"no meter {new_meter_id}: install it and let its gateway register it first", 404
        )
    if new.status != "active":
        raise LifecycleError(f"meter {new_meter_id} is {new.status}")
    taken = connection.execute(
        sa.select(accounts.c.id).where(accounts.c.meter_id == new_meter_id,
                                       accounts.c.status != "closed")
    ).scalar()  # fmt: skip
    if taken is not None:
        raise LifecycleError(f"meter {new_meter_id} is on account {taken} already")
    account = connection.execute(
        sa.select(accounts).where(accounts.c.meter_id == old_meter_id,
                                  accounts.c.status != "closed")
    ).first()  # fmt: skip
    if account is None:
        raise LifecycleError(f"meter {old_meter_id} is on no open account: nothing to move")
    if transfer_credit_wh is None:
        transfer_credit_wh = max(thd_last_credit_wh(connection, old_meter_id) or 0, 0)
    elif transfer_credit_wh < 0:
        raise LifecycleError("transfer_credit_wh must be 0 or more", 422)

    connection.execute(sa.update(meters).where(meters.c.id == old_meter_id).values(
        status="replaced"))  # fmt: skip
    thd_audit(connection, now, seller.name, "meter.replaced", f"meter:{old_meter_id}",
              {"replaced_by": new_meter_id, "account_id": account.id,
               "credit_wh": transfer_credit_wh})  # fmt: skip
    connection.execute(sa.update(accounts).where(accounts.c.id == account.id).values(
        meter_id=new_meter_id))  # fmt: skip
    thd_audit(connection, now, seller.name, "account.meter_changed", f"account:{account.id}",
              {"from_meter": old_meter_id, "to_meter": new_meter_id})  # fmt: skip
    transfer = None
    if transfer_credit_wh >= 100:
        transfer = thd_transfer_credit(connection, issuer, seller, account.id, new_meter_id,
                                       transfer_credit_wh, old_meter_id, now, expiry_s=expiry_s)  # fmt: skip
    notes = [f"the account's month state and debt stay on account {account.id}",
             f"meter {new_meter_id} keeps its own STS key attributes"]  # fmt: skip
    if 0 < transfer_credit_wh < 100:
        notes.append(f"{transfer_credit_wh} Wh is less than a token's 0.1 kWh: nothing transferred")
    if account.tou_tariff_id is not None:
        notes.append(f"push TOU tariff {account.tou_tariff_id} to meter {new_meter_id}")
    return {
        "old_meter_id": old_meter_id,
        "old_meter_status": "replaced",
        "new_meter_id": new_meter_id,
        "account": _account_view(_account(connection, account.id)),
        "transfer_credit_wh": transfer_credit_wh,
        "transfer": transfer,
        "notes": notes,
    }
