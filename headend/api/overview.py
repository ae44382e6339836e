"""The overview an operator opens first: the fleet, open alarms, today's sales and deliveries.

Everything is an aggregate computed in the database (counts and sums grouped by state), so the
answer costs the same for ten meters as for a million, except the per-gateway health, which is
one small JSON document per gateway.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from ..reports import delivery_counts, delivery_outcome, delivery_success_rate
from ..store.schema import alarms, commands, gateways, meters, readings, vends
from .common import number, run
from .framework import Request, Router

__all__ = ["bus_reads", "router", "thd_overview"]

router = Router()

REPORTING_WINDOW_S = 3600.0
SEVERITIES = ("critical", "major", "minor", "warning", "info")


def bus_reads(health: dict[str, Any]) -> tuple[int, int]:
    """(requests, requests that failed: timeouts + failures) over a gateway's buses, from the
    ``bus.<name>.<figure>`` metrics its health message carries."""
    requests = failed = 0
    for key, value in health.items():
        if not key.startswith("bus.") or isinstance(value, bool) or not isinstance(value, int):
            continue
        figure = key.rsplit(".", 1)[-1]
        if figure == "requests":
            requests += value
        elif figure in ("timeouts", "failures"):
            failed += value
    return requests, failed


def thd_overview(connection: sa.Connection, now: float, since: float) -> dict[str, Any]:
    online: dict[Any, int] = dict(connection.execute(
        sa.select(gateways.c.online, sa.func.count()).group_by(gateways.c.online)).all())  # fmt: skip
    requests = failed = 0
    for (health,) in connection.execute(sa.select(gateways.c.health)):
        try:
            sent, lost = bus_reads(json.loads(health or "{}"))
        except (ValueError, AttributeError):
            continue
        requests, failed = requests + sent, failed + lost
    by_status: dict[str, int] = dict(connection.execute(
        sa.select(meters.c.status, sa.func.count()).group_by(meters.c.status)).all())  # fmt: skip
    reporting = connection.execute(
        sa.select(sa.func.count(sa.distinct(readings.c.meter_id)))
        .where(readings.c.ts >= now - REPORTING_WINDOW_S)
    ).scalar()  # fmt: skip
    open_alarms: dict[str, int] = dict(connection.execute(
        sa.select(alarms.c.severity, sa.func.count()).where(alarms.c.state == "open")
        .group_by(alarms.c.severity)).all())  # fmt: skip
    unacked = connection.execute(
        sa.select(sa.func.count()).where(alarms.c.state == "open", alarms.c.acked_at.is_(None))
    ).scalar()  # fmt: skip
    sales = connection.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(vends.c.amount_minor), 0),
                  sa.func.coalesce(sa.func.sum(vends.c.energy_wh), 0))
        .where(vends.c.created_at >= since, vends.c.status == "issued")
    ).one()  # fmt: skip
    deliveries = delivery_counts()
    for state, count in connection.execute(
        sa.select(commands.c.state, sa.func.count())
        .where(commands.c.type == "token", commands.c.created_at >= since)
        .group_by(commands.c.state)
    ):  # fmt: skip
        deliveries[delivery_outcome(state)] += int(count)
    return {
        "at": now,
        "since": since,
        "gateways": {"online": int(online.get(True, 0)), "offline": int(online.get(False, 0)),
                     "total": int(sum(online.values()))},
        "meters": {"total": int(sum(by_status.values())), "by_status": by_status,
                   "reporting": int(reporting or 0), "reporting_window_s": REPORTING_WINDOW_S},
        "reads": {"requests": requests, "failed": failed,
                  "success_rate": None if requests == 0 else round((requests - failed) / requests, 4)},
        "alarms": {"open": int(sum(open_alarms.values())), "unacknowledged": int(unacked or 0),
                   "by_severity": {s: int(open_alarms.get(s, 0)) for s in
                                   (*SEVERITIES, *sorted(set(open_alarms) - set(SEVERITIES)))}},
        "sales": {"vends": int(sales[0]), "amount_minor": int(sales[1]), "energy_wh": int(sales[2])},
        "deliveries": deliveries | {
            "success_rate": delivery_success_rate(deliveries)},
    }  # fmt: skip


@router.route("GET", "/api/v1/overview", permission="read", tags=("field",),
              summary="The fleet at a glance: gateways, meters reporting, open alarms by "
                      "severity, sales and token deliveries since a moment, read success rate",
              query={"since": "epoch s the sales and deliveries count from (default: 24 h ago)"})  # fmt: skip
async def overview(request: Request) -> dict[str, Any]:
    now = request.app.clock.seconds()
    since = number(request, "since")
    view: dict[str, Any] = await run(request, thd_overview, now,
                                     now - 86400 if since is None else since)  # fmt: skip
    return view
