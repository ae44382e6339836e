"""The tariff routes written for the operator interface's tariff pages, over the whole router: the
version history with each version's rollout, one version's body, the rollout meter by meter with
why a meter refused, the list filtered by kind, and refusals that name each field's problem.

The rollout is driven the way the field drives it: the dispatcher's claim (``thd_due``) sends the
``tou`` commands, and gateway statuses (``thd_apply_status`` and its follow-up) finish them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest_twisted
import sqlalchemy as sa

from headend.commands import thd_apply_status, thd_due
from headend.ingest import thd_follow_up
from headend.store.schema import commands, tariff_versions
from protocols.link import CommandState, CommandStatus
from tests.headend.seed import (  # noqa: F401 (fixtures)
    GATEWAY,
    START,
    Api,
    add_customer,
    add_meters,
    add_tariff,
    drn,
    fixture_api,
    fixture_db,
    fixture_issuer,
    fixture_logged,
    fixture_master,
    fixture_migrated,
    open_account,
)

M1, M2, M3 = drn(1), drn(2), drn(3)
TABLE = {"weekday": [[0, 3], [360, 2], [1020, 1], [1260, 2]], "weekend": [[0, 3], [480, 2]]}
CALENDAR: dict[str, Any] = {
    "name": "seasonal", "version": 1, "zone": "Africa/Johannesburg",
    "bands": ["peak", "standard", "offpeak"],
    "seasons": [{"name": "high", "start": "06-01", "end": "08-31"},
                {"name": "low", "start": "09-01", "end": "05-31"}],
    "week": ["weekday"] * 5 + ["saturday", "sunday"],
    "profiles": {"work": [["00:00", "offpeak"], ["07:00", "peak"], ["10:00", "standard"]],
                 "rest": [["00:00", "offpeak"], ["08:00", "standard"]]},
    "assignments": [{"season": s, "day_type": d, "profile": "work" if d == "weekday" else "rest"}
                    for s in ("high", "low") for d in ("weekday", "saturday", "sunday")],
}  # fmt: skip


def seed_tou(connection: sa.Connection) -> int:
    """Three meters with accounts on a step tariff and TOU tariff 'tou' (table form, version 1);
    one more account, closed, on the same TOU tariff (not counted, not pushed to)."""
    from headend.api.tariffs import thd_create_tariff

    add_meters(connection, M1, M2, M3, drn(9))
    step = add_tariff(connection)
    tou = int(thd_create_tariff(connection, "tou", "tou", TABLE, 0.0, "alice", START)["id"])
    for meter in (M1, M2, M3):
        open_account(connection, add_customer(connection, meter), meter, step, tou_tariff_id=tou)
    open_account(connection, add_customer(connection, "gone"), drn(9), step, tou_tariff_id=tou,
                 status="closed")  # fmt: skip
    return tou


def finish(connection: sa.Connection, outcomes: dict[str, tuple[CommandState, str, int]]) -> None:
    """Send every due command, then the gateway's final status for each meter named."""
    thd_due(connection, START + 1, 30.0, 3)
    for seq, (meter, (state, detail, version)) in enumerate(sorted(outcomes.items()), 1):
        command = connection.execute(
            sa.select(commands.c.id).where(commands.c.meter_id == meter, commands.c.type == "tou")
            .order_by(commands.c.created_at.desc())
        ).scalars().first()  # fmt: skip
        assert command is not None
        status = CommandStatus(GATEWAY, seq, START + 2, command, state, None, detail,
                               {"version": version} if state is CommandState.APPLIED else {})  # fmt: skip
        outcome = thd_apply_status(connection, status, START + 2, 3)
        assert outcome is not None
        thd_follow_up(connection, outcome, START + 2)


@pytest_twisted.ensureDeferred
async def test_versions_newest_first_with_who_when_and_each_rollout(api: Api) -> None:
    tou = api.app.db.run_sync(seed_tou)
    reply = await api.call("POST", f"/api/v1/tariffs/{tou}/push", {"activation_at": START})
    assert reply.status == 202 and reply.json["meters"] == 3  # the closed account is left out
    api.app.db.run_sync(finish, {M1: (CommandState.APPLIED, "ok", 1),
                                 M2: (CommandState.REJECTED, "no TOU over DL/T 645", 0)})  # fmt: skip
    changed = dict(TABLE, weekday=[[0, 3], [360, 2], [1080, 1], [1260, 2]])
    reply = await api.call("POST", f"/api/v1/tariffs/{tou}/versions", {"body": changed},
                           role="supervisor")  # fmt: skip
    assert reply.status == 201 and reply.json["current_version"] == 2

    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/versions", role="viewer")
    assert reply.status == 200, reply.body
    page = reply.json
    assert page["total"] == 2 and [v["version"] for v in page["items"]] == [2, 1]
    newest, first = page["items"]
    assert newest["current"] and not first["current"]
    assert newest["created_by"] == "supervisor-key" and first["created_by"] == "alice"
    assert first["created_at"] == START
    assert newest["rollout"] == {"meters": 0, "states": {}}
    assert first["rollout"] == {"meters": 3,
                                "states": {"confirmed": 1, "rejected": 1, "pending": 1}}  # fmt: skip

    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/versions?limit=1&offset=1")
    assert [v["version"] for v in reply.json["items"]] == [1] and reply.json["total"] == 2

    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/versions/1", role="viewer")
    assert reply.status == 200 and reply.json["body"] == TABLE and not reply.json["current"]
    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/versions/3")
    assert reply.status == 404 and "no version 3" in reply.message
    reply = await api.call("GET", "/api/v1/tariffs/99/versions")
    assert reply.status == 404


@pytest_twisted.ensureDeferred
async def test_the_rollout_meter_by_meter_says_why_a_meter_refused(api: Api) -> None:
    tou = api.app.db.run_sync(seed_tou)
    await api.call("POST", f"/api/v1/tariffs/{tou}/push", {"activation_at": START})
    api.app.db.run_sync(finish, {M1: (CommandState.APPLIED, "ok", 1),
                                 M2: (CommandState.REJECTED, "no TOU over DL/T 645", 0)})  # fmt: skip

    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/rollout/meters", role="viewer")
    assert reply.status == 200, reply.body
    rows = {row["meter_id"]: row for row in reply.json["items"]}
    assert reply.json["total"] == 3 and list(rows) == sorted(rows)
    assert rows[M1]["state"] == "confirmed" and rows[M1]["confirmed_at"] == START + 2
    assert rows[M2]["state"] == "rejected" and rows[M2]["detail"] == "no TOU over DL/T 645"
    assert rows[M3]["state"] == "pending" and rows[M3]["command_state"] == "sent"

    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/rollout/meters?state=rejected&version=1")
    assert [row["meter_id"] for row in reply.json["items"]] == [M2]
    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/rollout/meters?limit=1&offset=2")
    assert [row["meter_id"] for row in reply.json["items"]] == [M3]
    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/rollout/meters?state=received")
    assert reply.status == 200 and reply.json["items"] == []  # the gateway has it: on its way
    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/rollout/meters?state=lost")
    assert reply.status == 400 and "state" in reply.message
    reply = await api.call("GET", f"/api/v1/tariffs/{tou}/rollout/meters?version=7")
    assert reply.status == 404


@pytest_twisted.ensureDeferred
async def test_the_list_filters_by_kind_and_a_tariff_counts_its_accounts(api: Api) -> None:
    tou = api.app.db.run_sync(seed_tou)
    reply = await api.call("GET", "/api/v1/tariffs?kind=tou", role="viewer")
    assert [t["id"] for t in reply.json["items"]] == [tou] and reply.json["total"] == 1
    reply = await api.call("GET", "/api/v1/tariffs?kind=step")
    assert [t["kind"] for t in reply.json["items"]] == ["step"]
    reply = await api.call("GET", "/api/v1/tariffs?kind=flat")
    assert reply.status == 400 and "kind" in reply.message
    reply = await api.call("GET", f"/api/v1/tariffs/{tou}", role="viewer")
    assert reply.json["accounts"] == 3  # the closed one is not counted
    reply = await api.call("GET", "/api/v1/tariffs?kind=step")
    step = reply.json["items"][0]["id"]
    reply = await api.call("GET", f"/api/v1/tariffs/{step}")
    assert reply.json["accounts"] == 3


@pytest_twisted.ensureDeferred
async def test_a_step_body_is_refused_with_each_field_named(api: Api) -> None:
    body: dict[str, Any] = {"currency": "zar", "tax_rate": "fifteen", "fixed_charge_minor": 0,
            "blocks": [{"upper_kwh": 50, "price_minor_per_kwh": "145"},
                       {"upper_kwh": 20, "price_minor_per_kwh": "-1"},
                       {"upper_kwh": None, "price_minor_per_kwh": "cheap"}]}  # fmt: skip
    reply = await api.call("POST", "/api/v1/tariffs", {"name": "s", "kind": "step", "body": body})
    assert reply.status == 422, reply.body  # "fifteen" used to be a 500
    details = reply.json["error"]["details"]
    assert any(d.startswith("blocks[1].price_minor_per_kwh:") for d in details), details
    assert any(d.startswith("blocks[2].price_minor_per_kwh:") for d in details), details
    assert any(d.startswith("tax_rate:") for d in details), details

    body = dict(body, tax_rate="0.15", blocks=[body["blocks"][0],
                                               dict(body["blocks"][1], price_minor_per_kwh="9"),
                                               dict(body["blocks"][2], price_minor_per_kwh="9")])  # fmt: skip
    reply = await api.call("POST", "/api/v1/tariffs", {"name": "s", "kind": "step", "body": body})
    assert reply.status == 422
    details = reply.json["error"]["details"]
    assert any(d.startswith("currency:") for d in details), details
    assert any(d.startswith("blocks[1].upper_kwh:") and "50" in d for d in details), details

    body = dict(body, currency="ZAR", blocks=[body["blocks"][0], body["blocks"][2]])
    reply = await api.call("POST", "/api/v1/tariffs", {"name": "s", "kind": "step", "body": body})
    assert reply.status == 201, reply.body


@pytest_twisted.ensureDeferred
async def test_a_calendar_is_refused_when_any_season_cannot_become_a_meter_table(api: Api) -> None:
    # in the low season Saturday and Sunday differ: fine on 1 January 1970 (low season) before,
    # when only that date was checked; now the high season is checked too
    calendar = copy.deepcopy(CALENDAR)
    calendar["profiles"]["sunday"] = [["00:00", "offpeak"]]
    calendar["assignments"][2]["profile"] = "sunday"  # high season, sunday
    reply = await api.call("POST", "/api/v1/tariffs",
                           {"name": "c", "kind": "tou", "body": {"calendar": calendar}})  # fmt: skip
    assert reply.status == 422, reply.body
    details = reply.json["error"]["details"]
    assert any(d.startswith("weekend:") and "'high'" in d for d in details), details

    reply = await api.call("POST", "/api/v1/tariffs",
                           {"name": "c", "kind": "tou", "body": {"calendar": CALENDAR}})  # fmt: skip
    assert reply.status == 201, reply.body
    tou = reply.json["id"]
    broken = copy.deepcopy(CALENDAR)
    broken["seasons"][1]["end"] = "05-30"
    broken["profiles"]["work"][2][0] = "06:00"
    reply = await api.call("POST", f"/api/v1/tariffs/{tou}/versions",
                           {"body": {"calendar": broken}})  # fmt: skip
    assert reply.status == 422
    details = reply.json["error"]["details"]
    assert any(d.startswith("seasons: no season covers 05-31") for d in details), details
    assert any(d.startswith("profiles['work'][2]:") for d in details), details


@pytest_twisted.ensureDeferred
async def test_a_version_the_meters_cannot_take_is_refused_at_push_not_a_500(api: Api) -> None:
    reply = await api.call("POST", "/api/v1/tariffs",
                           {"name": "c", "kind": "tou", "body": {"calendar": CALENDAR}})  # fmt: skip
    tou = reply.json["id"]
    stored = copy.deepcopy(CALENDAR)  # stored before calendars were checked season by season
    stored["profiles"]["sunday"] = [["00:00", "offpeak"]]
    stored["assignments"][2]["profile"] = "sunday"

    def store(connection: sa.Connection) -> None:
        import json

        connection.execute(sa.update(tariff_versions).where(tariff_versions.c.tariff_id == tou)
                           .values(body=json.dumps({"calendar": stored})))  # fmt: skip

    api.app.db.run_sync(store)
    july = 1_785_542_400.0  # 2026-07-31 UTC: the high season
    reply = await api.call("POST", f"/api/v1/tariffs/{tou}/push",
                           {"activation_at": july, "meter_ids": [M1]})  # fmt: skip
    assert reply.status == 422, reply.body
    assert any("'high'" in d for d in reply.json["error"]["details"])
