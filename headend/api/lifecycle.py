"""Life-cycle routes: a change of tenant on an account, a meter replaced (see headend.lifecycle).

Suspending, reopening and closing an account is ``POST /api/v1/accounts/{id}/status``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..lifecycle import LifecycleError, thd_change_tenant, thd_replace_meter
from ..vending import Seller
from .common import actor, run
from .framework import ApiError, Request, Response, Router

__all__ = ["router"]

router = Router()


class ChangeTenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: int = Field(description="the new tenant (an existing customer)")
    debt_minor: int = Field(default=0, ge=0, le=10**12,
                            description="debt the new account starts with")  # fmt: skip
    debt_recovery_share: str | None = Field(
        default=None, description="share of each purchase paid to debt; default: the old account's"
    )

    @field_validator("debt_recovery_share")
    @classmethod
    def _share(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            share = Decimal(value)
        except InvalidOperation:
            raise ValueError("a decimal fraction like 0.25") from None
        if not 0 <= share <= 1:
            raise ValueError("between 0 and 1")
        return value


class ReplaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_meter_id: str = Field(min_length=1, max_length=64)
    transfer_credit_wh: int | None = Field(
        default=None, ge=0, le=10**9,
        description="credit read from the old meter; default: the last credit it reported",
    )  # fmt: skip


def _account_id(request: Request) -> int:
    try:
        return int(request.path_params["account_id"])
    except ValueError:
        raise ApiError(404, f"no account {request.path_params['account_id']!r}") from None


@router.route("POST", "/api/v1/accounts/{account_id}/change-tenant", permission="customers",
              body=ChangeTenantBody, tags=("customers",), responses={201: "the new account"},
              summary="Change of tenant: close the account, open one for the new customer on the "
                      "same meter and tariff (the meter's credit stays with the meter)")  # fmt: skip
async def change_tenant(request: Request) -> Response:
    body: ChangeTenantBody = request.body
    try:
        view = await run(request, thd_change_tenant, _account_id(request), body.customer_id,
                         actor(request), request.app.clock.seconds(), body.debt_minor,
                         body.debt_recovery_share)  # fmt: skip
    except LifecycleError as exc:
        raise ApiError(exc.status, str(exc)) from None
    return Response(201, view)


@router.route("POST", "/api/v1/meters/{meter_id}/replace", permission="meters", body=ReplaceBody,
              tags=("customers",),
              summary="Replace a meter: its account moves to the new meter (registered by its "
                      "gateway) and its credit follows as a token at no price")  # fmt: skip
async def replace_meter(request: Request) -> dict[str, Any]:
    body: ReplaceBody = request.body
    app = request.app
    principal = request.principal
    assert principal is not None
    seller = Seller(actor(request), principal.vending_point)
    try:
        view: dict[str, Any] = await run(
            request, thd_replace_meter, app.issuer, request.path_params["meter_id"],
            body.new_meter_id, seller, app.clock.seconds(),
            transfer_credit_wh=body.transfer_credit_wh, expiry_s=app.config.commands.expiry_s,
        )  # fmt: skip
    except LifecycleError as exc:
        raise ApiError(exc.status, str(exc)) from None
    if view["transfer"] is not None:
        app.dispatcher.poke()
    return view
