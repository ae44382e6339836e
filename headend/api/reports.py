"""Report routes: sales, token delivery, arrears, consumption, alarms; JSON or ``?format=csv``.

Each report is computed by :mod:`headend.reports`; the CSV is the same figures as the JSON, one
header row then one row per line of the report (``text/csv; charset=utf-8``, CRLF line ends).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

import sqlalchemy as sa

from ..reports import (
    ReportError,
    csv_rows,
    thd_alarms,
    thd_arrears,
    thd_consumption,
    thd_sales,
    thd_token_delivery,
    to_csv,
)
from .common import number, run
from .framework import ApiError, Request, Response, Router

__all__ = ["router"]

router = Router()
P = ParamSpec("P")

_WINDOW = {"since": "epoch s, inclusive", "until": "epoch s, exclusive",
           "format": "json (default) | csv"}  # fmt: skip
FORMATS = ("json", "csv")


async def _report(request: Request, name: str,
                  function: Callable[Concatenate[sa.Connection, P], dict[str, Any]],
                  *args: P.args, **kw: P.kwargs) -> Any:  # fmt: skip
    """Run a report; answer with its JSON, or with its CSV when ``?format=csv``."""
    fmt = request.query.get("format") or "json"
    if fmt not in FORMATS:
        raise ApiError(400, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    try:
        report = await run(request, function, *args, **kw)
    except ReportError as exc:
        raise ApiError(exc.status, str(exc)) from None
    if fmt == "json":
        return report
    columns, rows = csv_rows(report)
    disposition = f'attachment; filename="{name}.csv"'
    return Response(200, to_csv(columns, rows), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": disposition})  # fmt: skip


def _window(request: Request) -> tuple[float | None, float | None]:
    return number(request, "since"), number(request, "until")


@router.route("GET", "/api/v1/reports/sales", permission="reports", tags=("reports",),
              summary="Sales per day or month (issued vends; cancelled ones counted apart)",
              query=_WINDOW | {"period": "day (default) | month",
                               "group_by": "operator | vending_point",
                               "tz": "IANA zone for the day boundaries (default UTC)"})  # fmt: skip
async def sales(request: Request) -> Any:
    since, until = _window(request)
    return await _report(request, "sales", thd_sales, request.query.get("period") or "day",
                         since, until, request.query.get("group_by") or None,
                         request.query.get("tz") or "UTC")  # fmt: skip


@router.route("GET", "/api/v1/reports/token-delivery", permission="reports", tags=("reports",),
              summary="Token commands by final state, rejections by STS code, success rate and "
                      "keypad fallbacks", query=_WINDOW)  # fmt: skip
async def token_delivery(request: Request) -> Any:
    since, until = _window(request)
    return await _report(request, "token-delivery", thd_token_delivery, since, until)


@router.route("GET", "/api/v1/reports/arrears", permission="reports", tags=("reports",),
              summary="Accounts in debt, largest first (paginated; the CSV has them all), and "
                      "the debt outstanding and recovered",
              query={"limit": "page size", "offset": "skip",
                     "format": "json (default) | csv"})  # fmt: skip
async def arrears(request: Request) -> Any:
    page = request.page()
    if request.query.get("format") == "csv":
        return await _report(request, "arrears", thd_arrears)
    return await _report(request, "arrears", thd_arrears, page.limit, page.offset)


@router.route("GET", "/api/v1/reports/consumption", permission="reports", tags=("reports",),
              summary="Energy used per meter group or TOU band (register rise in the window)",
              query=_WINDOW | {"by": "group (default) | band"})  # fmt: skip
async def consumption(request: Request) -> Any:
    since, until = _window(request)
    return await _report(request, "consumption", thd_consumption, since, until,
                         request.query.get("by") or "group")  # fmt: skip


@router.route("GET", "/api/v1/reports/alarms", permission="reports", tags=("reports",),
              summary="Alarms raised by kind and severity: open, acknowledged, cleared, mean "
                      "times to acknowledge and to clear", query=_WINDOW)  # fmt: skip
async def alarm_report(request: Request) -> Any:
    since, until = _window(request)
    return await _report(request, "alarms", thd_alarms, since, until)
