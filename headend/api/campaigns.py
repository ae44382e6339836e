"""Key-change campaign routes (see headend.campaigns): create, list, progress, each meter's
state, retry."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.sts import KeyDerivationError

from ..campaigns import (
    IN_FLIGHT,
    STATES,
    CampaignError,
    thd_campaign,
    thd_campaigns,
    thd_create_campaign,
    thd_retry_campaign,
)
from ..store.schema import commands, key_campaign_meters, key_campaigns
from .common import actor, count_and_page, run
from .framework import ApiError, Page, Request, Response, Router, page_of

__all__ = ["router"]

router = Router()


class TargetBody(BaseModel):
    """The key attributes to move to; those not given stay as each meter has them."""

    model_config = ConfigDict(extra="forbid")
    base_date: Literal[1993, 2014, 2035]
    key_revision: int | None = Field(default=None, ge=1, le=9)
    sgc: int | None = Field(default=None, ge=0, le=999_999)
    tariff_index: int | None = Field(default=None, ge=0, le=99)
    key_type: int | None = Field(default=None, ge=1, le=3,
                                 description="1 DDTK, 2 DUTK, 3 DCTK (never back to 0)")  # fmt: skip


class CampaignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    group: str | None = Field(default=None, min_length=1, max_length=64)
    meter_ids: list[str] | None = Field(default=None, min_length=1, max_length=100_000)
    target: TargetBody

    @model_validator(mode="after")
    def _meters(self) -> CampaignBody:
        if (self.group is None) == (self.meter_ids is None):
            raise ValueError("give group or meter_ids")
        return self


def _campaign_id(request: Request) -> int:
    try:
        return int(request.path_params["campaign_id"])
    except ValueError:
        raise ApiError(404, f"no key campaign {request.path_params['campaign_id']!r}") from None


async def _run(request: Request, *args: Any, **kw: Any) -> Any:
    try:
        return await run(request, *args, **kw)
    except CampaignError as exc:
        raise ApiError(exc.status, str(exc)) from None
    except KeyDerivationError as exc:
        # a meter whose id is no STS DRN (a DL/T 645 address): no decoder key, so no key change
        raise ApiError(409, f"a meter cannot take an STS key change set: {exc}") from None


@router.route("POST", "/api/v1/key-campaigns", permission="keys", body=CampaignBody,
              tags=("keys",), responses={201: "the campaign, its key change sets queued"},
              summary="Start a key-change campaign (a TID roll-over to base date 2014, a new key "
                      "revision, ...): one key change set per meter, pushed as one command")  # fmt: skip
async def create(request: Request) -> Response:
    body: CampaignBody = request.body
    app = request.app
    view = await _run(request, thd_create_campaign, app.issuer, body.name,
                      body.target.model_dump(exclude_none=True), actor(request),
                      app.clock.seconds(), group=body.group, meter_ids=body.meter_ids,
                      expiry_s=app.config.commands.expiry_s)  # fmt: skip
    app.dispatcher.poke()
    return Response(201, view)


@router.route("GET", "/api/v1/key-campaigns", permission="keys", tags=("keys",),
              summary="Key-change campaigns, newest first, with their meters by state")  # fmt: skip
async def list_campaigns(request: Request) -> dict[str, Any]:
    page = request.page()
    items, total = await _run(request, thd_campaigns, page.limit, page.offset)
    return page_of(items, total, page)


@router.route("GET", "/api/v1/key-campaigns/{campaign_id}", permission="keys", tags=("keys",),
              summary="A campaign's progress: meters by state and the meters not done")  # fmt: skip
async def get_campaign(request: Request) -> dict[str, Any]:
    view: dict[str, Any] = await _run(request, thd_campaign, _campaign_id(request))
    return view


@router.route("POST", "/api/v1/key-campaigns/{campaign_id}/retry", permission="keys",
              tags=("keys",),
              summary="Push the same key change set again to the meters whose set failed or "
                      "expired")  # fmt: skip
async def retry(request: Request) -> dict[str, Any]:
    app = request.app
    view: dict[str, Any] = await _run(request, thd_retry_campaign, _campaign_id(request),
                                      actor(request), app.clock.seconds(),
                                      expiry_s=app.config.commands.expiry_s)  # fmt: skip
    if view["requeued"]:
        app.dispatcher.poke()
    return view


# A meter's state in a campaign as headend.campaigns shows it (its ``_effective``), in SQL so that
# the list can be filtered and paged in the database: its own state, or, while pending, what its
# command came to when that ended without a gateway status.
def _effective_state() -> sa.Label[Any]:
    return sa.case(
        (sa.or_(key_campaign_meters.c.state != "pending", commands.c.state.is_(None)),
         key_campaign_meters.c.state),
        (commands.c.state.in_((*IN_FLIGHT, "applied")), sa.literal("pending")),
        (commands.c.state == "superseded", sa.literal("cancelled")),
        else_=commands.c.state,
    ).label("state")  # fmt: skip


# what a meter's row can say: its states, "cancelled", and the command's in-flight states, which
# headend.followups writes to the row when the gateway reports one (``received``)
MEMBER_STATES = (*STATES, "cancelled", *IN_FLIGHT)


def _thd_campaign_meters(connection: sa.Connection, campaign_id: int, state: str | None,
                         page: Page) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    if connection.execute(
        sa.select(key_campaigns.c.id).where(key_campaigns.c.id == campaign_id)
    ).first() is None:  # fmt: skip
        raise CampaignError(f"no key campaign {campaign_id}", 404)
    effective = _effective_state()
    query = (
        sa.select(key_campaign_meters.c.meter_id, effective, key_campaign_meters.c.command_id,
                  commands.c.state.label("command_state"), commands.c.code, commands.c.attempts,
                  sa.func.coalesce(sa.func.nullif(commands.c.detail, ""),
                                   key_campaign_meters.c.detail).label("detail"))
        .outerjoin(commands, commands.c.id == key_campaign_meters.c.command_id)
        .where(key_campaign_meters.c.campaign_id == campaign_id)
    )  # fmt: skip
    if state is not None:
        query = query.where(effective == state)
    rows, total = count_and_page(connection, query, page, [key_campaign_meters.c.meter_id])
    return [dict(row._mapping) for row in rows], total


@router.route("GET", "/api/v1/key-campaigns/{campaign_id}/meters", permission="keys",
              tags=("keys",), query={"state": " | ".join(MEMBER_STATES)},
              summary="A campaign's meters, each with its state and its command's, by meter id")  # fmt: skip
async def campaign_meters(request: Request) -> dict[str, Any]:
    page = request.page()
    state = request.query.get("state") or None
    if state is not None and state not in MEMBER_STATES:
        raise ApiError(400, f"state must be one of {', '.join(MEMBER_STATES)}, not {state!r}")
    items, total = await _run(request, _thd_campaign_meters, _campaign_id(request), state, page)
    return page_of(items, total, page)
