"""Key-change campaign routes (see headend.campaigns): create, list, progress, retry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..campaigns import (
    CampaignError,
    thd_campaign,
    thd_campaigns,
    thd_create_campaign,
    thd_retry_campaign,
)
from .common import actor, run
from .framework import ApiError, Request, Response, Router, page_of

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
