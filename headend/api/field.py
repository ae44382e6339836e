"""Routes for the field: gateways, meters, readings, commands (relay, on-demand read)."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from protocols.link import CommandType

from ..audit import thd_audit
from ..commands import NewCommand, command_view, thd_cancel, thd_command, thd_enqueue
from ..records import thd_ensure_group
from ..reports import ReportError, band_registers, zone
from ..schedule import ScheduleError
from ..scheduler import schedule_from_spec
from ..store.schema import (
    accounts,
    alarms,
    commands,
    customers,
    gateways,
    meters,
    read_schedules,
    readings,
    uplink_seen,
)
from .common import actor, count_and_page, listed, number, run
from .framework import ApiError, Request, Response, Router, page_of

__all__ = ["router"]

router = Router()


class RelayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(pattern="^(connect|disconnect)$")
    reason: str = Field(default="", max_length=500)


class ReadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: list[str] = Field(default_factory=list, max_length=16)


class MeterPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group_name: str | None = Field(default=None, max_length=64)
    sgc: int | None = Field(default=None, ge=0, le=999_999)
    tariff_index: int | None = Field(default=None, ge=0, le=99)
    key_revision: int | None = Field(default=None, ge=1, le=9)
    key_type: int | None = Field(default=None, ge=0, le=3)
    base_date: int | None = Field(default=None)
    algorithm: str | None = Field(default=None, pattern="^(sta|misty1|dea)$")


def _gateway_view(row: Any, now: float) -> dict[str, Any]:
    return {"id": row.id, "online": row.online, "version": row.version,
            "first_seen_at": row.first_seen_at, "last_seen_at": row.last_seen_at,
            "seconds_since_seen": round(now - row.last_seen_at, 1), "max_seq": row.max_seq,
            "health": json.loads(row.health), "health_at": row.health_at}  # fmt: skip


@router.route("GET", "/api/v1/gateways", permission="read", tags=("field",),
              summary="Gateways with their health", query={"online": "true | false"})  # fmt: skip
async def list_gateways(request: Request) -> dict[str, Any]:
    page = request.page()
    query = sa.select(gateways)
    if request.query.get("online") in ("true", "false"):
        query = query.where(gateways.c.online.is_(request.query["online"] == "true"))
    now = request.app.clock.seconds()

    return await listed(request, page, query, [gateways.c.id], lambda row: _gateway_view(row, now))


@router.route("GET", "/api/v1/gateways/{gateway_id}", permission="read", tags=("field",),
              summary="A gateway, its health and how many meters are behind it")  # fmt: skip
async def get_gateway(request: Request) -> dict[str, Any]:
    gateway_id = request.path_params["gateway_id"]
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> dict[str, Any]:
        row = connection.execute(sa.select(gateways).where(gateways.c.id == gateway_id)).first()
        if row is None:
            raise ApiError(404, f"no gateway {gateway_id}")
        count = connection.execute(
            sa.select(sa.func.count()).where(meters.c.gateway_id == gateway_id)
        ).scalar()
        return _gateway_view(row, now) | {"meters": count}

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("GET", "/api/v1/gateways/{gateway_id}/gaps", permission="read", tags=("field",),
              summary="Seq numbers not (yet) received from a gateway, as ranges",
              query={"since": "epoch s (default: the last day)"})  # fmt: skip
async def gaps(request: Request) -> dict[str, Any]:
    gateway_id = request.path_params["gateway_id"]
    since = number(request, "since") or request.app.clock.seconds() - 86400

    def thd(connection: sa.Connection) -> list[list[int]]:
        seqs = [row.seq for row in connection.execute(
            sa.select(uplink_seen.c.seq).where(uplink_seen.c.gateway_id == gateway_id,
                                               uplink_seen.c.received_at >= since)
            .order_by(uplink_seen.c.seq))]  # fmt: skip
        return [[a + 1, b - 1] for a, b in itertools.pairwise(seqs) if b > a + 1]

    missing = await run(request, thd)
    return {"gateway_id": gateway_id, "missing": missing}


@router.route("POST", "/api/v1/gateways/{gateway_id}/read", permission="commands",
              body=ReadBody, tags=("field",),
              summary="Read every active meter behind a gateway now: one read command per meter")  # fmt: skip
async def read_gateway(request: Request) -> Response:
    gateway_id = request.path_params["gateway_id"]
    app = request.app
    now = app.clock.seconds()
    args = {"groups": request.body.groups} if request.body.groups else {}
    who = actor(request)

    def thd(connection: sa.Connection) -> dict[str, Any]:
        if connection.execute(
            sa.select(gateways.c.id).where(gateways.c.id == gateway_id)
        ).first() is None:  # fmt: skip
            raise ApiError(404, f"no gateway {gateway_id}")
        meter_ids = connection.execute(
            sa.select(meters.c.id).where(meters.c.gateway_id == gateway_id,
                                         meters.c.status == "active").order_by(meters.c.id)
        ).scalars().all()  # fmt: skip
        created = 0
        for meter_id in meter_ids:
            new = NewCommand(CommandType.READ, meter_id, args, who,
                             expiry_s=app.config.commands.expiry_s)  # fmt: skip
            created += thd_enqueue(connection, new, now, gateway_id)[1]
        thd_audit(connection, now, who, "read", f"gateway:{gateway_id}",
                  {"meters": len(meter_ids), **args})  # fmt: skip
        return {"gateway_id": gateway_id, "meters": len(meter_ids), "queued": created,
                "coalesced": len(meter_ids) - created}  # fmt: skip

    view = await run(request, thd)
    app.dispatcher.poke()
    return Response(202, view)


def _meter_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "drn": row.drn, "gateway_id": row.gateway_id, "group": row.group_name,
        "profile": row.profile, "status": row.status, "registered_at": row.registered_at,
        "sts": {"sgc": f"{row.sgc:06d}", "tariff_index": row.tariff_index,
                "key_revision": row.key_revision, "key_type": row.key_type,
                "base_date": row.base_date, "algorithm": row.algorithm},
        "relay_state": row.relay_state, "tou_version": row.tou_version,
    }  # fmt: skip


# a customer id as the filter gives it: digits that fit a BIGINT
CUSTOMER_ID_DIGITS = 18


@router.route("GET", "/api/v1/meters", permission="read", tags=("field",),
              summary="Meters, filtered and paginated on the server, each with its customer and "
                      "the kinds of its open alarms",
              query={"gateway_id": "behind this gateway", "group": "meter group",
                     "status": "active | replaced | ...", "q": "id starts with",
                     "alarm": "with an open alarm of this kind",
                     "customer": "on an open account of this customer: id, or name starts with"})  # fmt: skip
async def list_meters(request: Request) -> dict[str, Any]:
    page = request.page()
    query = sa.select(meters)
    if request.query.get("gateway_id"):
        query = query.where(meters.c.gateway_id == request.query["gateway_id"])
    if request.query.get("group"):
        query = query.where(meters.c.group_name == request.query["group"])
    if request.query.get("status"):
        query = query.where(meters.c.status == request.query["status"])
    if request.query.get("q"):
        query = query.where(meters.c.id.startswith(request.query["q"], autoescape=True))
    if request.query.get("alarm"):
        query = query.where(meters.c.id.in_(sa.select(alarms.c.meter_id).where(
            alarms.c.kind == request.query["alarm"], alarms.c.state == "open")))  # fmt: skip
    customer = request.query.get("customer", "").strip()
    if customer:
        match = customers.c.name.startswith(customer, autoescape=True)
        if customer.isdecimal() and len(customer) <= CUSTOMER_ID_DIGITS:
            match = sa.or_(match, customers.c.id == int(customer))
        query = query.where(meters.c.id.in_(
            sa.select(accounts.c.meter_id)
            .join(customers, customers.c.id == accounts.c.customer_id)
            .where(accounts.c.status != "closed", match)))  # fmt: skip

    def thd(connection: sa.Connection) -> tuple[list[dict[str, Any]], int]:
        rows, total = count_and_page(connection, query, page, [meters.c.id])
        ids = [row.id for row in rows]
        # two look-ups for the page's meters, whatever the size of the fleet
        owners = {row.meter_id: {"id": row.id, "name": row.name} for row in connection.execute(
            sa.select(accounts.c.meter_id, customers.c.id, customers.c.name)
            .join(customers, customers.c.id == accounts.c.customer_id)
            .where(accounts.c.meter_id.in_(ids), accounts.c.status != "closed"))}  # fmt: skip
        kinds: dict[str, list[str]] = defaultdict(list)
        for row in connection.execute(
            sa.select(alarms.c.meter_id, alarms.c.kind).distinct()
            .where(alarms.c.meter_id.in_(ids), alarms.c.state == "open")
            .order_by(alarms.c.meter_id, alarms.c.kind)
        ):  # fmt: skip
            kinds[row.meter_id].append(row.kind)
        items = [_meter_view(row) | {"customer": owners.get(row.id),
                                     "open_alarm_kinds": kinds.get(row.id, [])}
                 for row in rows]  # fmt: skip
        return items, total

    items, total = await run(request, thd)
    return page_of(items, total, page)


def thd_meter(connection: sa.Connection, meter_id: str) -> dict[str, Any]:
    row = connection.execute(sa.select(meters).where(meters.c.id == meter_id)).first()
    if row is None:
        raise ApiError(404, f"no meter {meter_id}")
    latest = connection.execute(
        sa.select(readings).where(readings.c.meter_id == meter_id, readings.c.credit_wh.is_not(None))
        .order_by(readings.c.ts.desc()).limit(1)
    ).first()  # fmt: skip
    account = connection.execute(
        sa.select(accounts.c.id, accounts.c.customer_id, customers.c.name.label("customer_name"),
                  accounts.c.status)
        .join(customers, customers.c.id == accounts.c.customer_id)
        .where(accounts.c.meter_id == meter_id, accounts.c.status != "closed")
    ).first()  # fmt: skip
    # a relay command's read-back is the meter reporting its relay, often before the next reading
    switched = connection.execute(
        sa.select(commands.c.result, commands.c.updated_at)
        .where(commands.c.meter_id == meter_id, commands.c.type == CommandType.RELAY.value,
               commands.c.state == "applied")
        .order_by(commands.c.updated_at.desc()).limit(1)
    ).first()  # fmt: skip
    open_alarms = connection.execute(
        sa.select(alarms.c.id, alarms.c.kind, alarms.c.severity, alarms.c.raised_at)
        .where(alarms.c.meter_id == meter_id, alarms.c.state == "open")
    ).all()  # fmt: skip
    values = json.loads(latest.values) if latest is not None else {}
    relay_state = values.get("relay_state", row.relay_state)
    relay_state_at = latest.ts if latest is not None and "relay_state" in values else None
    if switched is not None and (relay_state_at is None or switched.updated_at > relay_state_at):
        read_back = json.loads(switched.result).get("relay_state")
        if read_back is not None:
            relay_state, relay_state_at = read_back, switched.updated_at
    return _meter_view(row) | {
        "credit_wh": latest.credit_wh if latest is not None else None,
        "last_status_at": latest.ts if latest is not None else None,
        "relay_state": relay_state,
        "relay_state_at": relay_state_at,
        "account": None if account is None else dict(account._mapping),
        "open_alarms": [dict(a._mapping) for a in open_alarms],
    }


@router.route("GET", "/api/v1/meters/{meter_id}", permission="read", tags=("field",),
              summary="A meter: identity, STS key attributes, credit, relay, open alarms")  # fmt: skip
async def get_meter(request: Request) -> dict[str, Any]:
    view: dict[str, Any] = await run(request, thd_meter, request.path_params["meter_id"])
    return view


@router.route("PATCH", "/api/v1/meters/{meter_id}", permission="meters", body=MeterPatch,
              tags=("field",), summary="Set a meter's group or STS key attributes")  # fmt: skip
async def patch_meter(request: Request) -> dict[str, Any]:
    meter_id = request.path_params["meter_id"]
    values = request.body.model_dump(exclude_none=True)
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> dict[str, Any]:
        thd_meter(connection, meter_id)
        if values.get("group_name"):
            thd_ensure_group(connection, values["group_name"])
        if values:
            connection.execute(sa.update(meters).where(meters.c.id == meter_id).values(**values))
        thd_audit(connection, now, actor(request), "meter.update", f"meter:{meter_id}", values)
        return thd_meter(connection, meter_id)

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("GET", "/api/v1/meters/{meter_id}/readings", permission="read", tags=("field",),
              summary="A meter's readings, newest first",
              query={"since": "epoch s", "until": "epoch s"})  # fmt: skip
async def meter_readings(request: Request) -> dict[str, Any]:
    page = request.page()
    meter_id = request.path_params["meter_id"]
    query = sa.select(readings).where(readings.c.meter_id == meter_id)
    since, until = number(request, "since"), number(request, "until")
    if since is not None:
        query = query.where(readings.c.ts >= since)
    if until is not None:
        query = query.where(readings.c.ts < until)

    return await listed(request, page, query, [readings.c.ts.desc()], _reading_view)


CONSUMPTION_PERIODS = {"day": 30, "month": 12}


def _bucket_starts(period: str, count: int, now: float, tz: ZoneInfo) -> list[datetime]:
    """The local starts of the last ``count`` days or months up to now, and the next start."""
    today = datetime.fromtimestamp(now, tz).date()
    if period == "day":
        first = today - timedelta(days=count - 1)
        days = [first + timedelta(days=i) for i in range(count + 1)]
        return [datetime.combine(day, time(), tz) for day in days]
    months = []
    year, month = today.year, today.month
    for _ in range(count):
        months.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    months.reverse()
    y, m = months[-1]
    months.append((y, m + 1) if m < 12 else (y + 1, 1))
    return [datetime(y, m, 1, tzinfo=tz) for y, m in months]


def _registers(row: Any) -> dict[str, Any]:
    bands = band_registers(json.loads(row.values))
    return {"energy_wh": row.energy_wh, "bands": {str(b): int(wh) for b, wh in bands.items()}}


def thd_consumption(connection: sa.Connection, meter_id: str, period: str, count: int,
                    now: float, tz: ZoneInfo) -> dict[str, Any]:  # fmt: skip
    """Energy used per day or month and per TOU band: the difference of the meter's registers
    between the last reading before each bucket (for the meter's first one, its first reading)
    and the last reading in it: indexed look-ups per bucket edge, whatever the number of
    readings."""
    if connection.execute(sa.select(meters.c.id).where(meters.c.id == meter_id)).first() is None:
        raise ApiError(404, f"no meter {meter_id}")
    starts = _bucket_starts(period, count, now, tz)
    columns = (readings.c.energy_wh, readings.c["values"])
    # a bucket's edges are energy readings: a status reading (credit, relay) between them carries
    # no register and would hide the day's consumption
    has_energy = readings.c.energy_wh.is_not(None)

    def last_before(moment: datetime) -> dict[str, Any] | None:
        row = connection.execute(
            sa.select(*columns).where(readings.c.meter_id == meter_id, has_energy,
                                      readings.c.ts < moment.timestamp())
            .order_by(readings.c.ts.desc()).limit(1)
        ).first()  # fmt: skip
        return None if row is None else _registers(row)

    def first_from(moment: datetime, end: datetime) -> dict[str, Any] | None:
        row = connection.execute(
            sa.select(*columns).where(readings.c.meter_id == meter_id, has_energy,
                                      readings.c.ts >= moment.timestamp(),
                                      readings.c.ts < end.timestamp())
            .order_by(readings.c.ts).limit(1)
        ).first()  # fmt: skip
        return None if row is None else _registers(row)

    edges = [last_before(start) for start in starts]
    buckets = []
    for index, start in enumerate(starts[:-1]):
        # the meter's first day counts from its first reading
        before = edges[index] or first_from(start, starts[index + 1])
        after = edges[index + 1]
        energy = bands = None
        if before is not None and after is not None:  # both energy readings (has_energy)
            energy = max(after["energy_wh"] - before["energy_wh"], 0)
            bands = {band: max(after["bands"][band] - wh, 0)
                     for band, wh in before["bands"].items() if band in after["bands"]}  # fmt: skip
        label = start.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")
        buckets.append({"start": start.timestamp(), "label": label, "energy_wh": energy,
                        "bands": bands})  # fmt: skip
    return {"meter_id": meter_id, "period": period, "tz": tz.key, "buckets": buckets}


@router.route("GET", "/api/v1/meters/{meter_id}/consumption", permission="read",
              tags=("field",),
              summary="Energy used per day or month, in total and per TOU band",
              query={"period": "day (the last 30 days) | month (the last 12)",
                     "count": "how many days or months (at most 366 / 60)",
                     "tz": "IANA zone the days start in (default UTC)"})  # fmt: skip
async def meter_consumption(request: Request) -> dict[str, Any]:
    period = request.query.get("period") or "day"
    if period not in CONSUMPTION_PERIODS:
        raise ApiError(400, f"period must be day or month, not {period!r}")
    asked = number(request, "count")
    count = CONSUMPTION_PERIODS[period] if asked is None else int(asked)
    if not 1 <= count <= (366 if period == "day" else 60):
        raise ApiError(400, f"count must be between 1 and {366 if period == 'day' else 60}")
    try:
        tz = zone(request.query.get("tz") or "UTC")
    except ReportError as exc:
        raise ApiError(400, str(exc)) from None
    view: dict[str, Any] = await run(request, thd_consumption, request.path_params["meter_id"],
                                     period, count, request.app.clock.seconds(), tz)  # fmt: skip
    return view


def _reading_view(row: Any) -> dict[str, Any]:
    return {"ts": row.ts, "meter_ts": row.meter_ts, "gateway_id": row.gateway_id,
            "energy_wh": row.energy_wh, "credit_wh": row.credit_wh,
            "values": json.loads(row.values)}  # fmt: skip


async def _queue(
    request: Request, kind: CommandType, args: dict[str, Any], action: str,
    note: dict[str, Any] | None = None,
) -> Response:  # fmt: skip
    """Queue a command for the meter of the path; ``note`` goes to the audit log only (the
    operator's reason is not sent to the gateway)."""
    meter_id = request.path_params["meter_id"]
    app = request.app
    now = app.clock.seconds()
    new = NewCommand(kind, meter_id, args, actor(request), expiry_s=app.config.commands.expiry_s)

    def thd(connection: sa.Connection) -> dict[str, Any]:
        if (
            connection.execute(sa.select(meters.c.id).where(meters.c.id == meter_id)).first()
            is None
        ):
            raise ApiError(404, f"no meter {meter_id}")
        command_id, created = thd_enqueue(connection, new, now)
        thd_audit(connection, now, actor(request), action, f"meter:{meter_id}",
                  {"command_id": command_id, **args, **(note or {})})  # fmt: skip
        view = thd_command(connection, command_id)
        assert view is not None
        return view | {"coalesced": not created}

    view = await run(request, thd)
    app.dispatcher.poke()
    return Response(202, view)


@router.route("POST", "/api/v1/meters/{meter_id}/relay", permission="relay", body=RelayBody,
              tags=("field",), summary="Connect or disconnect a meter's supply (signed command)")  # fmt: skip
async def relay(request: Request) -> Response:
    body: RelayBody = request.body
    return await _queue(request, CommandType.RELAY, {"action": body.action}, f"relay.{body.action}",
                        {"reason": body.reason} if body.reason else None)  # fmt: skip


@router.route("POST", "/api/v1/meters/{meter_id}/read", permission="commands", body=ReadBody,
              tags=("field",), summary="Read a meter now (on-demand read)")  # fmt: skip
async def read_now(request: Request) -> Response:
    args = {"groups": request.body.groups} if request.body.groups else {}
    return await _queue(request, CommandType.READ, args, "read")


@router.route("POST", "/api/v1/meters/{meter_id}/time-sync", permission="commands",
              tags=("field",), summary="Set the meter's clock from the gateway's")  # fmt: skip
async def time_sync(request: Request) -> Response:
    return await _queue(request, CommandType.TIME_SYNC, {}, "time_sync")


@router.route("GET", "/api/v1/commands", permission="read", tags=("commands",),
              summary="Commands, newest first",
              query={"meter_id": "for one meter", "state": "queued | sent | ... | applied",
                     "type": "token | relay | tou | read | ...", "vend_id": "of a vend"})  # fmt: skip
async def list_commands(request: Request) -> dict[str, Any]:
    page = request.page()
    query = sa.select(commands)
    for name in ("meter_id", "state", "type", "gateway_id"):
        if request.query.get(name):
            query = query.where(commands.c[name] == request.query[name])
    if request.query.get("vend_id"):
        query = query.where(commands.c.vend_id == int(number(request, "vend_id") or 0))

    return await listed(request, page, query, [commands.c.created_at.desc()], command_view)


@router.route("GET", "/api/v1/commands/{command_id}", permission="read", tags=("commands",),
              summary="A command with its full state history")  # fmt: skip
async def get_command(request: Request) -> dict[str, Any]:
    view = await run(request, thd_command, request.path_params["command_id"])
    if view is None:
        raise ApiError(404, f"no command {request.path_params['command_id']}")
    return view


@router.route("POST", "/api/v1/commands/{command_id}/cancel", permission="commands",
              tags=("commands",), summary="Cancel a command that has not been sent yet")  # fmt: skip
async def cancel_command(request: Request) -> dict[str, Any]:
    command_id = request.path_params["command_id"]
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> dict[str, Any] | None:
        if thd_command(connection, command_id) is None:
            raise ApiError(404, f"no command {command_id}")
        thd_cancel(connection, command_id, now, actor(request))
        thd_audit(connection, now, actor(request), "command.cancel", f"command:{command_id}")
        return thd_command(connection, command_id)

    view = await run(request, thd)
    assert view is not None
    return view


class ScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    group: str | None = Field(default=None, max_length=64)
    zone: str = Field(max_length=64)
    kind: str = Field(pattern="^(interval|daily|monthly)$")
    interval_minutes: int | None = None
    at: str | None = None
    day_of_month: int | None = None
    groups: list[str] = Field(default_factory=list, max_length=16)


@router.route("POST", "/api/v1/schedules", permission="meters", body=ScheduleBody,
              tags=("field",),
              summary="Add a read schedule for a meter group, in local time of an IANA zone")  # fmt: skip
async def add_schedule(request: Request) -> Response:
    body: ScheduleBody = request.body
    spec = body.model_dump(exclude={"name", "group"})
    try:
        schedule_from_spec(body.name, spec)
    except (ScheduleError, ValueError) as exc:
        raise ApiError(422, f"not a schedule: {exc}") from None
    now = request.app.clock.seconds()

    def thd(connection: sa.Connection) -> int:
        schedule_id = connection.execute(
            sa.insert(read_schedules)
            .values(name=body.name, group_name=body.group, spec=json.dumps(spec))
            .returning(read_schedules.c.id)
        ).scalar_one()
        thd_audit(connection, now, actor(request), "schedule.create", f"schedule:{body.name}",
                  body.model_dump())  # fmt: skip
        return int(schedule_id)

    return Response(201, {"id": await run(request, thd)} | body.model_dump())


@router.route("GET", "/api/v1/schedules", permission="read", tags=("field",),
              summary="Read schedules and when each last ran")  # fmt: skip
async def list_schedules(request: Request) -> dict[str, Any]:
    return await listed(request, request.page(), sa.select(read_schedules),
                        [read_schedules.c.id], _schedule_view)  # fmt: skip


def _schedule_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "group": row.group_name, "enabled": row.enabled,
            "last_window_at": row.last_window_at, **json.loads(row.spec)}  # fmt: skip
