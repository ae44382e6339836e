"""Tariff routes: step tariffs for vending, TOU tables pushed to meters and tracked per meter.

A tariff has versions; a new version becomes current at once for vending (step tariffs). A TOU
version is pushed with ``POST /tariffs/{id}/push``: one ``tou`` command per meter with the table
and its activation time, and a rollout row per meter that turns ``confirmed`` when the meter reads
back the new version (see ``headend.followups``).

A refused body names each problem with its path (``blocks[1].upper_kwh: ...``, ``seasons[0].start:
...``, ``profiles['weekday'][2]: ...``) in the error's ``details``, so an editor can show each one
beside its field.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols.link import CommandType

from ..audit import thd_audit
from ..calendar import CalendarError, Season, TouCalendar, meter_table
from ..commands import NewCommand, thd_enqueue
from ..pricing import Block, PricingError
from ..store.schema import accounts, commands, meters, tariff_versions, tariffs, tou_rollouts
from ..vending import step_tariff_from
from .common import actor, count_and_page, run
from .framework import ApiError, Request, Response, Router, page_of

__all__ = ["router"]

router = Router()
MAX_SWITCH_POINTS = 8
# a rollout row is pending until its command moves; received (the gateway has it) on the way to
# confirmed (the meter read the version back) or a final state of the command
ROLLOUT_STATES = ("pending", "received", "confirmed", "rejected", "failed", "expired")


class TariffBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    kind: str = Field(pattern="^(step|tou)$")
    body: dict[str, Any]
    activation_at: float = 0.0


class VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: dict[str, Any]
    activation_at: float = 0.0


class PushBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = None  # default: the current version
    activation_at: float = Field(ge=0)
    meter_ids: list[str] | None = Field(default=None, max_length=100_000)
    group: str | None = None

    @model_validator(mode="after")
    def _target(self) -> PushBody:
        if self.meter_ids is not None and self.group is not None:
            raise ValueError("give meter_ids or group, not both")
        return self


def calendar_from_json(body: dict[str, Any]) -> TouCalendar:
    """A :class:`TouCalendar` from its JSON form (a TOU tariff body's ``calendar``)::

    {"name", "version", "zone", "bands": [...], "seasons": [{"name", "start": "MM-DD", "end"}],
     "week": [7 day types, Monday first], "profiles": {name: [["HH:MM", band], ...]},
     "assignments": [{"season", "day_type", "profile"}], "special_days": {"MM-DD": day_type}}
    """
    try:
        return TouCalendar(
            name=body["name"], version=int(body.get("version", 1)), zone=body["zone"],
            bands=tuple(body["bands"]),
            seasons=tuple(Season(s["name"], s["start"], s["end"]) for s in body["seasons"]),
            week=tuple(body["week"]),
            profiles={name: tuple((str(p[0]), str(p[1])) for p in points)
                      for name, points in body["profiles"].items()},
            assignments={(a["season"], a["day_type"]): a["profile"] for a in body["assignments"]},
            special_days=dict(body.get("special_days", {})),
        )  # fmt: skip
    except CalendarError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CalendarError([f"calendar: {exc!r}"]) from None


def meter_tables(body: dict[str, Any], activation_at: float) -> dict[str, Any]:
    """The weekday/weekend switch points a meter takes, from a TOU body (a table or a calendar,
    whose profiles on the local date of the activation are the ones sent)."""
    if "calendar" not in body:
        return {"weekday": body["weekday"], "weekend": body["weekend"]}
    calendar = calendar_from_json(body["calendar"])
    local = datetime.fromtimestamp(activation_at, UTC).astimezone(calendar.tz).date()
    return meter_table(calendar, local)


def meter_table_problems(calendar: TouCalendar) -> list[str]:
    """What keeps any season of a calendar from becoming a meter's table (each season is checked,
    not only the one in force today, so that a later push cannot fail)."""
    problems: list[str] = []
    for season in calendar.seasons:
        month, day = (int(part) for part in season.start.split("-"))
        try:
            meter_table(calendar, date(2000, month, day))
        except CalendarError as exc:
            problems += [p for p in exc.problems if p not in problems]
    return problems


def step_problems(body: dict[str, Any]) -> list[str]:
    """Every problem of a step tariff body, each with its path (``blocks[1].upper_kwh: ...``)."""
    problems: list[str] = []
    raw_blocks = body.get("blocks")
    if not isinstance(raw_blocks, list):
        problems.append("blocks: a list of {upper_kwh, price_minor_per_kwh} is needed")
        raw_blocks = []
    for index, raw in enumerate(raw_blocks):
        path = f"blocks[{index}]"
        if not isinstance(raw, dict) or "price_minor_per_kwh" not in raw:
            problems.append(f"{path}.price_minor_per_kwh: a price per kWh is needed")
            continue
        try:
            Block(raw.get("upper_kwh"), Decimal(str(raw["price_minor_per_kwh"])))
        except InvalidOperation:
            price = raw["price_minor_per_kwh"]
            problems.append(f"{path}.price_minor_per_kwh: must be a number, got {price!r}")
        except PricingError as exc:
            problems += [f"{path}.{line.strip()}" for line in str(exc).splitlines()[1:]]
    for name in ("fixed_charge_minor", "fbe_kwh", "tax_rate"):
        value = body.get(name, 0)
        try:
            Decimal(str(value)) if name == "tax_rate" else int(value)
        except (ValueError, TypeError, InvalidOperation):
            problems.append(f"{name}: must be a number, got {value!r}")
    if problems:
        return problems
    try:
        step_tariff_from(body)  # what vending will do with it
    except PricingError as exc:
        lines = str(exc).splitlines()
        problems += [line.strip() for line in lines[1:]] or lines
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        problems.append(f"{exc.args[0] if isinstance(exc, KeyError) else exc}: missing or invalid")
    return problems


def validate_body(kind: str, body: dict[str, Any]) -> None:
    """Refuse a tariff body vending or the meters could not use, with every reason and its path."""
    if kind == "step":
        problems = step_problems(body)
        if problems:
            raise ApiError(422, "not a step tariff", details=problems)
        return
    if "calendar" in body:
        try:
            calendar = calendar_from_json(body["calendar"])
        except CalendarError as exc:
            problems = list(exc.problems)
        else:
            problems = meter_table_problems(calendar)
        if problems:
            raise ApiError(422, "not a TOU calendar the meters can take", details=problems)
        return
    problems = []
    for day in ("weekday", "weekend"):
        points = body.get(day)
        if not isinstance(points, list) or not 1 <= len(points) <= MAX_SWITCH_POINTS:
            problems.append(f"body.{day}: 1..{MAX_SWITCH_POINTS} switch points [minute, band]")
            continue
        previous = -1
        for index, point in enumerate(points):
            if (not isinstance(point, list) or len(point) != 2
                    or not all(isinstance(x, int) for x in point)
                    or not previous < point[0] < 1440 or not 1 <= point[1] <= 4):  # fmt: skip
                problems.append(f"body.{day}[{index}]: [minute 0..1439 ascending, band 1..4]")
                break
            previous = point[0]
    if problems:
        raise ApiError(422, "not a TOU table", details=problems)


def _view(row: Any, version: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "kind": row.kind,
            "current_version": row.current_version,
            "body": None if version is None else json.loads(version.body),
            "activation_at": None if version is None else version.activation_at}  # fmt: skip


def thd_tariff(connection: sa.Connection, tariff_id: int) -> dict[str, Any]:
    row = connection.execute(sa.select(tariffs).where(tariffs.c.id == tariff_id)).first()
    if row is None:
        raise ApiError(404, f"no tariff {tariff_id}")
    version = connection.execute(
        sa.select(tariff_versions).where(tariff_versions.c.tariff_id == tariff_id,
                                         tariff_versions.c.version == row.current_version)
    ).first()  # fmt: skip
    return _view(row, version)


def thd_create_tariff(connection: sa.Connection, name: str, kind: str, body: dict[str, Any],
                      activation_at: float, who: str, now: float) -> dict[str, Any]:  # fmt: skip
    tariff_id = int(connection.execute(
        sa.insert(tariffs).values(name=name, kind=kind, current_version=1).returning(tariffs.c.id)
    ).scalar_one())  # fmt: skip
    connection.execute(sa.insert(tariff_versions).values(
        tariff_id=tariff_id, version=1, body=json.dumps(body), activation_at=activation_at,
        created_at=now, created_by=who))  # fmt: skip
    thd_audit(connection, now, who, "tariff.create", f"tariff:{tariff_id}",
              {"name": name, "kind": kind, "body": body})  # fmt: skip
    return thd_tariff(connection, tariff_id)


def _tariff_id(request: Request) -> int:
    try:
        return int(request.path_params["tariff_id"])
    except ValueError:
        raise ApiError(404, f"no tariff {request.path_params['tariff_id']!r}") from None


@router.route("POST", "/api/v1/tariffs", permission="tariffs", body=TariffBody,
              tags=("tariffs",), summary="Create a step or TOU tariff (version 1)")  # fmt: skip
async def create_tariff(request: Request) -> Response:
    body: TariffBody = request.body
    validate_body(body.kind, body.body)
    view = await run(request, thd_create_tariff, body.name, body.kind, body.body,
                     body.activation_at, actor(request), request.app.clock.seconds())  # fmt: skip
    return Response(201, view)


@router.route("GET", "/api/v1/tariffs", permission="read", tags=("tariffs",),
              summary="Tariffs with their current version",
              query={"kind": "step | tou"})  # fmt: skip
async def list_tariffs(request: Request) -> dict[str, Any]:
    page = request.page()
    query = sa.select(tariffs.c.id)
    kind = request.query.get("kind")
    if kind:
        if kind not in ("step", "tou"):
            raise ApiError(400, f"kind must be step or tou, not {kind!r}")
        query = query.where(tariffs.c.kind == kind)

    def thd(connection: sa.Connection) -> tuple[list[dict[str, Any]], int]:
        rows, total = count_and_page(connection, query, page, [tariffs.c.id])
        return [thd_tariff(connection, row.id) for row in rows], total

    items, total = await run(request, thd)
    return page_of(items, total, page)


def thd_accounts_on(connection: sa.Connection, tariff_id: int, kind: str) -> int:
    """Accounts not closed on this tariff: for a TOU tariff, the meters a push reaches by default."""
    column = accounts.c.tou_tariff_id if kind == "tou" else accounts.c.tariff_id
    query = sa.select(sa.func.count()).where(column == tariff_id, accounts.c.status != "closed")
    if kind == "tou":
        query = query.where(accounts.c.meter_id.is_not(None))
    return int(connection.execute(query).scalar() or 0)


@router.route("GET", "/api/v1/tariffs/{tariff_id}", permission="read", tags=("tariffs",),
              summary="A tariff and its current version")  # fmt: skip
async def get_tariff(request: Request) -> dict[str, Any]:
    def thd(connection: sa.Connection) -> dict[str, Any]:
        view = thd_tariff(connection, _tariff_id(request))
        view["accounts"] = thd_accounts_on(connection, view["id"], view["kind"])
        return view

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("GET", "/api/v1/tariffs/{tariff_id}/versions", permission="read",
              tags=("tariffs",), summary="A tariff's versions, newest first, with their rollouts",
              query={"limit": "page size", "offset": "items to skip"})  # fmt: skip
async def list_versions(request: Request) -> dict[str, Any]:
    tariff_id = _tariff_id(request)
    page = request.page()

    def thd(connection: sa.Connection) -> tuple[list[dict[str, Any]], int]:
        row = connection.execute(sa.select(tariffs).where(tariffs.c.id == tariff_id)).first()
        if row is None:
            raise ApiError(404, f"no tariff {tariff_id}")
        query = sa.select(tariff_versions.c.id, tariff_versions.c.version,
                          tariff_versions.c.activation_at, tariff_versions.c.created_at,
                          tariff_versions.c.created_by).where(
            tariff_versions.c.tariff_id == tariff_id)  # fmt: skip
        rows, total = count_and_page(connection, query, page, [tariff_versions.c.version.desc()])
        states: dict[int, dict[str, int]] = {r.id: {} for r in rows}
        if rows:
            counted = connection.execute(
                sa.select(tou_rollouts.c.tariff_version_id, tou_rollouts.c.state, sa.func.count())
                .where(tou_rollouts.c.tariff_version_id.in_(list(states)))
                .group_by(tou_rollouts.c.tariff_version_id, tou_rollouts.c.state)
            ).all()  # fmt: skip
            for version_id, state, count in counted:
                states[version_id][state] = int(count)
        items = [{"version": r.version, "current": r.version == row.current_version,
                  "activation_at": r.activation_at, "created_at": r.created_at,
                  "created_by": r.created_by,
                  "rollout": {"meters": sum(states[r.id].values()), "states": states[r.id]}}
                 for r in rows]  # fmt: skip
        return items, total

    items, total = await run(request, thd)
    return page_of(items, total, page)


@router.route("GET", "/api/v1/tariffs/{tariff_id}/versions/{version}", permission="read",
              tags=("tariffs",), summary="One version of a tariff, with its body")  # fmt: skip
async def get_version(request: Request) -> dict[str, Any]:
    tariff_id = _tariff_id(request)
    text = request.path_params["version"]
    if not text.isdecimal():  # not isdigit: int() refuses '¹'
        raise ApiError(404, f"tariff {tariff_id} has no version {text!r}")

    def thd(connection: sa.Connection) -> dict[str, Any]:
        row = connection.execute(sa.select(tariffs).where(tariffs.c.id == tariff_id)).first()
        version = connection.execute(
            sa.select(tariff_versions).where(tariff_versions.c.tariff_id == tariff_id,
                                             tariff_versions.c.version == int(text))
        ).first()  # fmt: skip
        if row is None or version is None:
            raise ApiError(404, f"tariff {tariff_id} has no version {text}")
        return {"tariff_id": tariff_id, "name": row.name, "kind": row.kind,
                "version": version.version, "current": version.version == row.current_version,
                "body": json.loads(version.body), "activation_at": version.activation_at,
                "created_at": version.created_at, "created_by": version.created_by}  # fmt: skip

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("POST", "/api/v1/tariffs/{tariff_id}/versions", permission="tariffs",
              body=VersionBody, tags=("tariffs",),
              summary="Add a version; it becomes the current one")  # fmt: skip
async def add_version(request: Request) -> Response:
    tariff_id = _tariff_id(request)
    body: VersionBody = request.body
    now = request.app.clock.seconds()
    who = actor(request)

    def thd(connection: sa.Connection) -> dict[str, Any]:
        row = connection.execute(sa.select(tariffs).where(tariffs.c.id == tariff_id)).first()
        if row is None:
            raise ApiError(404, f"no tariff {tariff_id}")
        validate_body(row.kind, body.body)
        version = row.current_version + 1
        connection.execute(sa.insert(tariff_versions).values(
            tariff_id=tariff_id, version=version, body=json.dumps(body.body),
            activation_at=body.activation_at, created_at=now, created_by=who))  # fmt: skip
        connection.execute(
            sa.update(tariffs).where(tariffs.c.id == tariff_id).values(current_version=version)
        )
        thd_audit(connection, now, who, "tariff.version", f"tariff:{tariff_id}",
                  {"version": version, "body": body.body})  # fmt: skip
        return thd_tariff(connection, tariff_id)

    return Response(201, await run(request, thd))


@router.route("POST", "/api/v1/tariffs/{tariff_id}/push", permission="tariffs", body=PushBody,
              tags=("tariffs",),
              summary="Push a TOU version to meters (its accounts' meters, a group, or a list)")  # fmt: skip
async def push(request: Request) -> Response:
    tariff_id = _tariff_id(request)
    body: PushBody = request.body
    app = request.app
    now = app.clock.seconds()
    who = actor(request)

    def thd(connection: sa.Connection) -> dict[str, Any]:
        row = connection.execute(sa.select(tariffs).where(tariffs.c.id == tariff_id)).first()
        if row is None or row.kind != "tou":
            raise ApiError(404 if row is None else 409, f"tariff {tariff_id} is not a TOU tariff")
        number = body.version or row.current_version
        version = connection.execute(
            sa.select(tariff_versions).where(tariff_versions.c.tariff_id == tariff_id,
                                             tariff_versions.c.version == number)
        ).first()  # fmt: skip
        if version is None:
            raise ApiError(404, f"tariff {tariff_id} has no version {number}")
        if body.meter_ids is not None:
            targets = body.meter_ids
        elif body.group is not None:
            targets = list(connection.execute(
                sa.select(meters.c.id).where(meters.c.group_name == body.group)).scalars())  # fmt: skip
        else:
            targets = list(connection.execute(
                sa.select(accounts.c.meter_id).where(accounts.c.tou_tariff_id == tariff_id,
                                                     accounts.c.status != "closed")).scalars())  # fmt: skip
        try:
            table = meter_tables(json.loads(version.body), body.activation_at)
        except CalendarError as exc:
            raise ApiError(422, f"version {number} cannot be made into a meter's table",
                           details=list(exc.problems)) from None  # fmt: skip
        args = {"version": number, "activation": int(body.activation_at),
                "weekday": table["weekday"], "weekend": table["weekend"]}  # fmt: skip
        for meter_id in targets:
            new = NewCommand(CommandType.TOU, meter_id, args, who,
                             expiry_s=app.config.commands.expiry_s)  # fmt: skip
            command_id, _ = thd_enqueue(connection, new, now)
            connection.execute(sa.delete(tou_rollouts).where(
                tou_rollouts.c.tariff_version_id == version.id,
                tou_rollouts.c.meter_id == meter_id))  # fmt: skip
            connection.execute(sa.insert(tou_rollouts).values(
                tariff_version_id=version.id, meter_id=meter_id, command_id=command_id))  # fmt: skip
        thd_audit(connection, now, who, "tariff.push", f"tariff:{tariff_id}",
                  {"version": number, "meters": len(targets), "activation": args["activation"]})  # fmt: skip
        return thd_rollout(connection, tariff_id, number)

    view = await run(request, thd)
    app.dispatcher.poke()
    return Response(202, view)


def thd_rollout(connection: sa.Connection, tariff_id: int, version: int) -> dict[str, Any]:
    version_id = connection.execute(
        sa.select(tariff_versions.c.id).where(tariff_versions.c.tariff_id == tariff_id,
                                              tariff_versions.c.version == version)
    ).scalar()  # fmt: skip
    if version_id is None:
        raise ApiError(404, f"tariff {tariff_id} has no version {version}")
    rows = connection.execute(
        sa.select(tou_rollouts).where(tou_rollouts.c.tariff_version_id == version_id)
        .order_by(tou_rollouts.c.meter_id)
    ).all()  # fmt: skip
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return {"tariff_id": tariff_id, "version": version, "meters": len(rows), "states": counts,
            "pending": [r.meter_id for r in rows if r.state == "pending"][:1000]}  # fmt: skip


@router.route("GET", "/api/v1/tariffs/{tariff_id}/rollout", permission="read", tags=("tariffs",),
              summary="How far a TOU version has reached: meters by state",
              query={"version": "default: the current version"})  # fmt: skip
async def rollout(request: Request) -> dict[str, Any]:
    tariff_id = _tariff_id(request)
    text = request.query.get("version")

    def thd(connection: sa.Connection) -> dict[str, Any]:
        version = (
            int(text)
            if text and text.isdecimal()
            else thd_tariff(connection, tariff_id)["current_version"]
        )
        return thd_rollout(connection, tariff_id, version)

    view: dict[str, Any] = await run(request, thd)
    return view


@router.route("GET", "/api/v1/tariffs/{tariff_id}/rollout/meters", permission="read",
              tags=("tariffs",),
              summary="A TOU version's rollout meter by meter, with each command's state",
              query={"version": "default: the current version", "state": " | ".join(ROLLOUT_STATES),
                     "limit": "page size", "offset": "items to skip"})  # fmt: skip
async def rollout_meters(request: Request) -> dict[str, Any]:
    tariff_id = _tariff_id(request)
    page = request.page()
    text = request.query.get("version")
    state = request.query.get("state")
    if text and not text.isdecimal():
        raise ApiError(400, f"version must be a number, not {text!r}")
    if state and state not in ROLLOUT_STATES:
        raise ApiError(400, f"state must be one of {', '.join(ROLLOUT_STATES)}, not {state!r}")

    def thd(connection: sa.Connection) -> tuple[list[dict[str, Any]], int]:
        number = int(text) if text else thd_tariff(connection, tariff_id)["current_version"]
        version_id = connection.execute(
            sa.select(tariff_versions.c.id).where(tariff_versions.c.tariff_id == tariff_id,
                                                  tariff_versions.c.version == number)
        ).scalar()  # fmt: skip
        if version_id is None:
            raise ApiError(404, f"tariff {tariff_id} has no version {number}")
        query = (
            sa.select(tou_rollouts.c.meter_id, tou_rollouts.c.state, tou_rollouts.c.command_id,
                      tou_rollouts.c.confirmed_at, commands.c.state.label("command_state"),
                      commands.c.detail, commands.c.updated_at)
            .select_from(tou_rollouts.outerjoin(commands,
                                                commands.c.id == tou_rollouts.c.command_id))
            .where(tou_rollouts.c.tariff_version_id == version_id)
        )  # fmt: skip
        if state:
            query = query.where(tou_rollouts.c.state == state)
        rows, total = count_and_page(connection, query, page, [tou_rollouts.c.meter_id])
        return [dict(row._mapping) for row in rows], total

    items, total = await run(request, thd)
    return page_of(items, total, page)
