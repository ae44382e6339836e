"""Vending routes: sell credit, reprint, cancel, engineering tokens."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.link import CommandType

from ..audit import thd_audit
from ..commands import NewCommand, thd_enqueue
from ..store.schema import audit_log, vends
from ..vending import (
    Seller,
    thd_cancel_vend,
    thd_engineering_token,
    thd_quote,
    thd_vend,
    thd_vend_view,
)
from .common import actor, count_and_page, number, run
from .framework import ApiError, Request, Response, Router, page_of

__all__ = ["router"]

router = Router()


class QuoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meter_id: str | None = Field(default=None, max_length=64)
    account_id: int | None = None
    amount_minor: int | None = Field(default=None, gt=0, le=10**9)
    energy_wh: int | None = Field(default=None, gt=0, le=10**9)

    @model_validator(mode="after")
    def _one_of_each(self) -> QuoteBody:
        if (self.meter_id is None) == (self.account_id is None):
            raise ValueError("give meter_id or account_id")
        if (self.amount_minor is None) == (self.energy_wh is None):
            raise ValueError("give amount_minor or energy_wh")
        return self


class VendBody(QuoteBody):
    idempotency_key: str | None = Field(default=None, max_length=64)
    deliver: bool = True


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=500)


class EngineeringBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(pattern="^(clear_tamper|clear_credit|max_power)$")
    watts: int | None = Field(default=None, ge=0, le=10**7)
    deliver: bool = True


def _vend_id(request: Request) -> int:
    try:
        return int(request.path_params["vend_id"])
    except ValueError:
        raise ApiError(404, f"no vend {request.path_params['vend_id']!r}") from None


@router.route("POST", "/api/v1/vends", permission="vend", body=VendBody, tags=("vending",),
              summary="Sell credit: price it through the tariff, issue the token, push it")  # fmt: skip
async def vend(request: Request) -> Response:
    body: VendBody = request.body
    app = request.app
    principal = request.principal
    assert principal is not None
    seller = Seller(principal.name, principal.vending_point)
    view = await run(request, thd_vend, app.issuer, seller, app.clock.seconds(),
                     meter_id=body.meter_id, account_id=body.account_id,
                     amount_minor=body.amount_minor, energy_wh=body.energy_wh,
                     idempotency_key=body.idempotency_key,
                     expiry_s=app.config.commands.expiry_s, deliver=body.deliver)  # fmt: skip
    app.dispatcher.poke()
    return Response(201, view)


@router.route("POST", "/api/v1/vends/quote", permission="vend", body=QuoteBody,
              tags=("vending",),
              summary="Price a sale without making it: the receipt's breakdown, no token")  # fmt: skip
async def quote(request: Request) -> dict[str, Any]:
    body: QuoteBody = request.body
    view: dict[str, Any] = await run(request, thd_quote, request.app.clock.seconds(),
                                     meter_id=body.meter_id, account_id=body.account_id,
                                     amount_minor=body.amount_minor, energy_wh=body.energy_wh)  # fmt: skip
    return view


@router.route("GET", "/api/v1/vends", permission="read", tags=("vending",),
              summary="Vends, newest first",
              query={"meter_id": "one meter", "operator": "sold by", "since": "epoch s",
                     "until": "epoch s", "status": "issued | cancelled"})  # fmt: skip
async def list_vends(request: Request) -> dict[str, Any]:
    page = request.page()
    since, until = number(request, "since"), number(request, "until")
    query = sa.select(vends.c.id)
    for name in ("meter_id", "operator", "status"):
        if request.query.get(name):
            query = query.where(vends.c[name] == request.query[name])
    if since is not None:
        query = query.where(vends.c.created_at >= since)
    if until is not None:
        query = query.where(vends.c.created_at < until)

    def thd(connection: sa.Connection) -> tuple[list[dict[str, Any]], int]:
        rows, total = count_and_page(connection, query, page, [vends.c.id.desc()])
        return [thd_vend_view(connection, row.id) for row in rows], total

    items, total = await run(request, thd)
    return page_of(items, total, page)


def thd_cancellation(connection: sa.Connection, view: dict[str, Any]) -> dict[str, Any]:
    """A vend's view with ``cancelled``: when, by whom and why (from the audit log), or None."""
    if view["status"] != "cancelled":
        return view | {"cancelled": None}
    record = connection.execute(
        sa.select(audit_log.c.at, audit_log.c.actor, audit_log.c.detail)
        .where(audit_log.c.action == "vend.cancel", audit_log.c.target == f"vend:{view['id']}")
        .order_by(audit_log.c.id.desc()).limit(1)
    ).first()  # fmt: skip
    if record is None:
        return view | {"cancelled": {"at": None, "by": None, "reason": ""}}
    reason = json.loads(record.detail).get("reason", "")
    return view | {"cancelled": {"at": record.at, "by": record.actor, "reason": reason}}


@router.route("GET", "/api/v1/vends/{vend_id}", permission="read", tags=("vending",),
              summary="A vend: receipt, token, the state of its delivery and, when cancelled, "
                      "when, by whom and why")  # fmt: skip
async def get_vend(request: Request) -> dict[str, Any]:
    vend_id = _vend_id(request)

    def thd(connection: sa.Connection) -> dict[str, Any]:
        return thd_cancellation(connection, thd_vend_view(connection, vend_id))

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("POST", "/api/v1/vends/{vend_id}/reprint", permission="vend", tags=("vending",),
              summary="Reprint a receipt: the same token, never a new one")  # fmt: skip
async def reprint(request: Request) -> dict[str, Any]:
    vend_id = _vend_id(request)
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> dict[str, Any]:
        view = thd_vend_view(connection, vend_id)
        thd_audit(connection, now, actor(request), "vend.reprint", f"vend:{vend_id}")
        return view

    view: dict[str, Any] = await run(request, thd)
    return view | {"reprint": True}


@router.route("POST", "/api/v1/vends/{vend_id}/cancel", permission="vend.cancel",
              body=CancelBody, tags=("vending",),
              summary="Cancel a vend whose token has not been sent to the meter")  # fmt: skip
async def cancel(request: Request) -> dict[str, Any]:
    vend_id = _vend_id(request)
    who, now, reason = actor(request), request.app.clock.seconds(), request.body.reason

    def thd(connection: sa.Connection) -> dict[str, Any]:
        return thd_cancellation(connection, thd_cancel_vend(connection, vend_id, who, now, reason))

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("POST", "/api/v1/meters/{meter_id}/engineering", permission="engineering",
              body=EngineeringBody, tags=("vending",),
              summary="Issue an engineering token (clear tamper, clear credit, power limit)")  # fmt: skip
async def engineering(request: Request) -> Response:
    body: EngineeringBody = request.body
    app = request.app
    result = await run(request, thd_engineering_token, app.issuer, request.path_params["meter_id"],
                       body.kind, actor(request), app.clock.seconds(), watts=body.watts,
                       deliver=body.deliver, expiry_s=app.config.commands.expiry_s)  # fmt: skip
    app.dispatcher.poke()
    return Response(201, result)


@router.route("POST", "/api/v1/vends/{vend_id}/resend", permission="vend", tags=("vending",),
              summary="Push a vend's token to the meter again (the same token; a meter that has "
                      "it answers Used)")  # fmt: skip
async def resend(request: Request) -> Response:
    vend_id = _vend_id(request)
    app = request.app
    now = app.clock.seconds()
    who = actor(request)

    def thd(connection: sa.Connection) -> dict[str, Any]:
        view = thd_vend_view(connection, vend_id)
        if view["status"] != "issued":
            raise ApiError(409, f"vend {vend_id} is {view['status']}")
        digits = [t.replace(" ", "") for t in view["tokens"]]
        command_id, _ = thd_enqueue(connection, NewCommand(
            CommandType.TOKEN, view["meter_id"], {"tokens": digits}, who, vend_id,
            app.config.commands.expiry_s), now)  # fmt: skip
        thd_audit(connection, now, who, "vend.resend", f"vend:{vend_id}",
                  {"command_id": command_id})  # fmt: skip
        return thd_vend_view(connection, vend_id)

    view = await run(request, thd)
    app.dispatcher.poke()
    return Response(202, view)
