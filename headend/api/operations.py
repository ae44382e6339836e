"""Routes for operations: alarms and notifications, customers and accounts, vending keys."""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..audit import thd_audit
from ..store.schema import (
    accounts,
    alarms,
    customers,
    meters,
    notification_rules,
    notifications,
    tariffs,
    vending_keys,
)
from .common import actor, count_and_page, listed, mapping, run
from .framework import ApiError, Request, Response, Router, page_of

__all__ = ["router"]

router = Router()


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=1000)


class CustomerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(default="", max_length=32)
    email: str = Field(default="", max_length=200)
    address: str = Field(default="", max_length=1000)


class AccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: int
    meter_id: str = Field(max_length=64)
    tariff_id: int
    tou_tariff_id: int | None = None
    debt_minor: int = Field(default=0, ge=0)
    debt_recovery_share: str = "0"

    @field_validator("debt_recovery_share")
    @classmethod
    def _share(cls, value: str) -> str:
        try:
            share = Decimal(value)
        except InvalidOperation:
            raise ValueError("a decimal fraction like 0.25") from None
        if not 0 <= share <= 1:
            raise ValueError("between 0 and 1")
        return value


class AccountState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(pattern="^(open|suspended|closed)$")
    reason: str = Field(default="", max_length=500)


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=64)
    channel: str = Field(pattern="^(email|sms)$")
    recipient: str = Field(min_length=1, max_length=200)


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # 64 bits for DKGA02, 160 bits for DKGA04 (protocols.sts.VendingKey)
    key_hex: str = Field(pattern=r"^[0-9A-Fa-f]{16}$|^[0-9A-Fa-f]{40}$", repr=False)
    sgc: int = Field(ge=0, le=999_999)
    key_revision: int = Field(ge=1, le=9)
    key_type: int = Field(ge=0, le=3)
    algorithm: str = Field(pattern="^(sta|misty1|dea)$")
    dkga: Literal[2, 4] = Field(description="2 (DKGA02, a 16-digit key) or 4 (DKGA04, 40 digits)")

    @model_validator(mode="after")
    def _key_fits_dkga(self) -> KeyBody:
        if (len(self.key_hex) == 16) != (self.dkga == 2):
            raise ValueError("a DKGA02 vending key has 16 hex digits, a DKGA04 key 40")
        return self


@router.route("GET", "/api/v1/alarms", permission="read", tags=("alarms",),
              summary="Alarms, newest first",
              query={"state": "open | cleared", "kind": "low_credit, tamper, ...",
                     "severity": "critical | major | ...", "meter_id": "one meter",
                     "acked": "true | false"})  # fmt: skip
async def list_alarms(request: Request) -> dict[str, Any]:
    page = request.page()
    query = sa.select(alarms)
    for name in ("state", "kind", "severity", "meter_id", "gateway_id"):
        if request.query.get(name):
            query = query.where(alarms.c[name] == request.query[name])
    if request.query.get("acked") == "true":
        query = query.where(alarms.c.acked_at.is_not(None))
    elif request.query.get("acked") == "false":
        query = query.where(alarms.c.acked_at.is_(None))

    return await listed(request, page, query, [alarms.c.raised_at.desc()], mapping)


@router.route("POST", "/api/v1/alarms/{alarm_id}/ack", permission="alarms.ack", body=AckBody,
              tags=("alarms",), summary="Acknowledge an alarm, with a comment")  # fmt: skip
async def ack_alarm(request: Request) -> dict[str, Any]:
    alarm_id = _int(request.path_params["alarm_id"], "alarm")
    now = request.app.clock.seconds()
    who = actor(request)

    def thd(connection: sa.Connection) -> dict[str, Any]:
        row = connection.execute(sa.select(alarms).where(alarms.c.id == alarm_id)).first()
        if row is None:
            raise ApiError(404, f"no alarm {alarm_id}")
        if row.acked_at is not None:
            raise ApiError(409, f"alarm {alarm_id} was acknowledged by {row.acked_by}")
        connection.execute(sa.update(alarms).where(alarms.c.id == alarm_id).values(
            acked_at=now, acked_by=who, ack_comment=request.body.comment))  # fmt: skip
        thd_audit(connection, now, who, "alarm.ack", f"alarm:{alarm_id}",
                  {"comment": request.body.comment})  # fmt: skip
        return dict(
            connection.execute(sa.select(alarms).where(alarms.c.id == alarm_id)).one()._mapping
        )

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("GET", "/api/v1/notifications", permission="read", tags=("alarms",),
              summary="Notifications sent, failed or held back",
              query={"alarm_id": "for one alarm", "outcome": "sent | failed | suppressed"})  # fmt: skip
async def list_notifications(request: Request) -> dict[str, Any]:
    page = request.page()
    query = sa.select(notifications)
    if request.query.get("alarm_id"):
        query = query.where(notifications.c.alarm_id == _int(request.query["alarm_id"], "alarm"))
    if request.query.get("outcome"):
        query = query.where(notifications.c.outcome == request.query["outcome"])

    return await listed(request, page, query, [notifications.c.id.desc()], mapping)


@router.route("GET", "/api/v1/notification-rules", permission="read", tags=("alarms",),
              summary="Who is told about which alarm")  # fmt: skip
async def list_rules(request: Request) -> dict[str, Any]:
    page = request.page()

    return await listed(
        request, page, sa.select(notification_rules), [notification_rules.c.id], mapping
    )


@router.route("POST", "/api/v1/notification-rules", permission="admin", body=RuleBody,
              tags=("alarms",),
              summary="Add a notification rule ('customer': the account holder)")  # fmt: skip
async def add_rule(request: Request) -> Response:
    values = request.body.model_dump()
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> int:
        rule_id = connection.execute(
            sa.insert(notification_rules).values(**values).returning(notification_rules.c.id)
        ).scalar_one()
        thd_audit(connection, now, actor(request), "notification_rule.create", f"rule:{rule_id}",
                  values)  # fmt: skip
        return int(rule_id)

    return Response(201, {"id": await run(request, thd)} | values)


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str | None = Field(default=None, min_length=1, max_length=64)
    channel: str | None = Field(default=None, pattern="^(email|sms)$")
    recipient: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None


@router.route("PATCH", "/api/v1/notification-rules/{rule_id}", permission="admin",
              body=RuleUpdate, tags=("alarms",),
              summary="Change a notification rule, or disable (enabled: false) or enable it")  # fmt: skip
async def update_rule(request: Request) -> dict[str, Any]:
    rule_id = _int(request.path_params["rule_id"], "notification rule")
    values = request.body.model_dump(exclude_none=True)
    if not values:
        raise ApiError(400, "nothing to change: give kind, channel, recipient or enabled")
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> dict[str, Any]:
        where = notification_rules.c.id == rule_id
        if connection.execute(sa.select(notification_rules.c.id).where(where)).first() is None:
            raise ApiError(404, f"no notification rule {rule_id}")
        connection.execute(sa.update(notification_rules).where(where).values(values))
        thd_audit(connection, now, actor(request), "notification_rule.update", f"rule:{rule_id}",
                  values)  # fmt: skip
        return dict(connection.execute(sa.select(notification_rules).where(where)).one()._mapping)

    view: dict[str, Any] = await run(request, thd)
    return view


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(404, f"no {what} {text!r}") from None


@router.route("POST", "/api/v1/customers", permission="customers", body=CustomerBody,
              tags=("customers",), summary="Add a customer")  # fmt: skip
async def add_customer(request: Request) -> Response:
    values = request.body.model_dump()
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> int:
        customer_id = connection.execute(
            sa.insert(customers).values(created_at=now, **values).returning(customers.c.id)
        ).scalar_one()
        thd_audit(connection, now, actor(request), "customer.create", f"customer:{customer_id}")
        return int(customer_id)

    return Response(201, {"id": await run(request, thd)} | values)


# what a cashier types for a phone number: digits, maybe a leading + and spaces
PHONE = re.compile(r"\+?[0-9][0-9 ]*")


@router.route("GET", "/api/v1/customers", permission="read", tags=("customers",),
              summary="Customers, each with its accounts that are not closed",
              query={"q": "name starts with; digits (a leading + or not): phone starts with"})  # fmt: skip
async def list_customers(request: Request) -> dict[str, Any]:
    page = request.page()
    query = sa.select(customers)
    text = request.query.get("q", "").strip()
    if PHONE.fullmatch(text):
        # a phone is stored as typed at sign-up, "+27..." or "082...": both ways of asking match
        digits = text.replace(" ", "").lstrip("+")
        query = query.where(sa.or_(customers.c.phone.startswith(digits, autoescape=True),
                                   customers.c.phone.startswith("+" + digits, autoescape=True)))  # fmt: skip
    elif text:
        query = query.where(customers.c.name.startswith(text, autoescape=True))

    def thd(connection: sa.Connection) -> tuple[list[dict[str, Any]], int]:
        rows, total = count_and_page(connection, query, page, [customers.c.id])
        # one look-up for the page's customers, however many there are in all
        held: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for account in connection.execute(
            sa.select(accounts.c.id, accounts.c.customer_id, accounts.c.meter_id,
                      accounts.c.status, accounts.c.debt_minor)
            .where(accounts.c.customer_id.in_([row.id for row in rows]),
                   accounts.c.status != "closed")
            .order_by(accounts.c.id)
        ):  # fmt: skip
            held[account.customer_id].append(
                {"id": account.id, "meter_id": account.meter_id, "status": account.status,
                 "debt_minor": account.debt_minor})  # fmt: skip
        return [mapping(row) | {"accounts": held[row.id]} for row in rows], total

    items, total = await run(request, thd)
    return page_of(items, total, page)


@router.route("POST", "/api/v1/accounts", permission="customers", body=AccountBody,
              tags=("customers",),
              summary="Open an account: a customer, a meter and a tariff (change of tenant: "
                      "close the old account first)")  # fmt: skip
async def open_account(request: Request) -> Response:
    body: AccountBody = request.body
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> int:
        if (
            connection.execute(sa.select(meters.c.id).where(meters.c.id == body.meter_id)).first()
            is None
        ):
            raise ApiError(404, f"no meter {body.meter_id}")
        kind = connection.execute(
            sa.select(tariffs.c.kind).where(tariffs.c.id == body.tariff_id)
        ).scalar()
        if kind is None:
            raise ApiError(404, f"no tariff {body.tariff_id}")
        if kind != "step":
            raise ApiError(422, f"tariff {body.tariff_id} is a {kind} tariff: an account is sold "
                                "through a step tariff (tou_tariff_id names its TOU tariff)")  # fmt: skip
        if (
            body.tou_tariff_id is not None
            and connection.execute(
                sa.select(tariffs.c.kind).where(tariffs.c.id == body.tou_tariff_id)
            ).scalar()
            != "tou"
        ):
            raise ApiError(422, f"tariff {body.tou_tariff_id} is not a TOU tariff")
        taken = connection.execute(
            sa.select(accounts.c.id).where(accounts.c.meter_id == body.meter_id,
                                           accounts.c.status != "closed")
        ).scalar()  # fmt: skip
        if taken is not None:
            raise ApiError(409, f"meter {body.meter_id} is on account {taken}; close it first")
        account_id = connection.execute(
            sa.insert(accounts).values(opened_at=now, **body.model_dump()).returning(accounts.c.id)
        ).scalar_one()
        thd_audit(connection, now, actor(request), "account.open", f"account:{account_id}",
                  body.model_dump())  # fmt: skip
        return int(account_id)

    return Response(201, {"id": await run(request, thd)} | body.model_dump())


@router.route("GET", "/api/v1/accounts/{account_id}", permission="read", tags=("customers",),
              summary="An account: its customer, meter, month's purchases and debt")  # fmt: skip
async def get_account(request: Request) -> dict[str, Any]:
    account_id = _int(request.path_params["account_id"], "account")

    def thd(connection: sa.Connection) -> dict[str, Any]:
        row = connection.execute(sa.select(accounts).where(accounts.c.id == account_id)).first()
        if row is None:
            raise ApiError(404, f"no account {account_id}")
        return dict(row._mapping)

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("POST", "/api/v1/accounts/{account_id}/status", permission="customers",
              body=AccountState, tags=("customers",),
              summary="Suspend, reopen or close an account")  # fmt: skip
async def account_status(request: Request) -> dict[str, Any]:
    account_id = _int(request.path_params["account_id"], "account")
    body: AccountState = request.body
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> dict[str, Any]:
        row = connection.execute(sa.select(accounts).where(accounts.c.id == account_id)).first()
        if row is None:
            raise ApiError(404, f"no account {account_id}")
        if row.status == "closed":
            raise ApiError(409, f"account {account_id} is closed")
        values: dict[str, Any] = {"status": body.status}
        if body.status == "closed":
            values["closed_at"] = now
        connection.execute(sa.update(accounts).where(accounts.c.id == account_id).values(values))
        thd_audit(connection, now, actor(request), f"account.{body.status}",
                  f"account:{account_id}", {"reason": body.reason})  # fmt: skip
        return dict(
            connection.execute(sa.select(accounts).where(accounts.c.id == account_id))
            .one()
            ._mapping
        )

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("POST", "/api/v1/keys", permission="keys", body=KeyBody, tags=("keys",),
              summary="Import a vending key; it is sealed at once and never shown again")  # fmt: skip
async def add_key(request: Request) -> Response:
    body: KeyBody = request.body
    app = request.app
    now = app.clock.seconds()

    def thd(connection: sa.Connection) -> None:
        app.issuer.add_key(connection, body.id, body.key_hex, body.sgc, body.key_revision,
                           body.key_type, body.algorithm, body.dkga, now)  # fmt: skip
        thd_audit(connection, now, actor(request), "key.import", f"key:{body.id}",
                  body.model_dump(exclude={"key_hex"}))  # fmt: skip

    await run(request, thd)
    return Response(201, body.model_dump(exclude={"key_hex"}))


@router.route("GET", "/api/v1/keys", permission="read", tags=("keys",),
              summary="Vending keys: attributes only, never key material")  # fmt: skip
async def list_keys(request: Request) -> dict[str, Any]:
    page = request.page()
    columns = [c for c in vending_keys.c if c.name != "sealed"]

    return await listed(request, page, sa.select(*columns), [vending_keys.c.id], mapping)
