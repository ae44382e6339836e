"""Routes written for the interface's key management and administration pages, over the whole
router: a key-change campaign's meters page by page with their states, a campaign that names a
meter without an STS DRN refused with 409 (not a 500), and notification rules changed and
disabled (a disabled rule tells nobody)."""

from __future__ import annotations

from typing import Any

import pytest_twisted
import sqlalchemy as sa

from headend.commands import thd_due
from headend.notifier import thd_recipients
from headend.records import RaisedAlarm
from headend.store.schema import audit_log, key_campaign_meters
from protocols.link import CommandState
from tests.headend.seed import (  # noqa: F401 (fixtures)
    START,
    Api,
    add_meters,
    fixture_api,
    fixture_db,
    fixture_issuer,
    fixture_logged,
    fixture_master,
    fixture_migrated,
)
from tests.headend.test_campaigns import R1, R2, R3, R4, R5, R6, ROLLOVER, report, seed

DLT645_ADDRESS = "000000000103"  # a DL/T 645 meter's address: no STS DRN, no decoder key


def _audit(api: Api, action: str) -> list[Any]:
    return list(api.app.db.run_sync(lambda c: c.execute(
        sa.select(audit_log).where(audit_log.c.action == action)).all()))  # fmt: skip


async def _campaign_with_every_outcome(api: Api, master: bytes) -> int:
    """Group "town" moved to revision 2: R4 there already (done at once), R1 applied, R2 failed,
    R6 rejected (13, CRC), R3 and R5 expired at the head-end."""
    api.app.db.run_sync(seed, master)
    reply = await api.call("POST", "/api/v1/key-campaigns",
                           {"name": "rollover", "group": "town", "target": ROLLOVER})  # fmt: skip
    assert reply.status == 201, reply.body
    api.app.db.run_sync(thd_due, START + 1, 1e9, 5)  # published
    api.app.db.run_sync(report, R1, CommandState.APPLIED, 1)
    api.app.db.run_sync(report, R2, CommandState.FAILED)
    api.app.db.run_sync(report, R6, CommandState.REJECTED, 13)
    api.app.db.run_sync(thd_due, START + 10 * 86400, 1e9, 5)  # R3 and R5 never confirmed
    return int(reply.json["id"])


@pytest_twisted.ensureDeferred
async def test_a_campaigns_meters_are_paged_with_their_states(api: Api, master: bytes) -> None:
    campaign = await _campaign_with_every_outcome(api, master)
    path = f"/api/v1/key-campaigns/{campaign}/meters"
    reply = await api.call("GET", path)
    assert reply.status == 200, reply.body
    page = reply.json
    assert page["total"] == 6
    states = {m["meter_id"]: m["state"] for m in page["items"]}
    assert states == {R1: "done", R2: "failed", R3: "expired", R4: "done", R5: "expired",
                      R6: "rejected"}  # fmt: skip
    assert [m["meter_id"] for m in page["items"]] == sorted(states)
    by_id = {m["meter_id"]: m for m in page["items"]}
    assert by_id[R4]["command_id"] is None
    assert by_id[R4]["detail"] == "already on the target key attributes"
    assert (by_id[R6]["command_state"], by_id[R6]["code"]) == ("rejected", 13)
    assert by_id[R1]["command_state"] == "applied"
    # the same states as the campaign's own counts
    view = (await api.call("GET", f"/api/v1/key-campaigns/{campaign}")).json
    assert view["states"] == {"pending": 0, "done": 2, "failed": 1, "expired": 2, "rejected": 1}

    expired = (await api.call("GET", path + "?state=expired&limit=1&offset=1")).json
    assert expired["total"] == 2 and [m["meter_id"] for m in expired["items"]] == [R5]
    assert (await api.call("GET", path + "?state=done")).json["total"] == 2

    # a retry puts the failed and expired meters back on their way: pending again
    assert (await api.call("POST", f"/api/v1/key-campaigns/{campaign}/retry")).status == 200
    pending = (await api.call("GET", path + "?state=pending")).json
    assert [m["meter_id"] for m in pending["items"]] == [R2, R3, R5]
    assert {m["command_state"] for m in pending["items"]} == {"queued"}


@pytest_twisted.ensureDeferred
async def test_the_meters_on_their_way_agree_with_the_campaigns_counts(
    api: Api, master: bytes
) -> None:
    api.app.db.run_sync(seed, master)
    reply = await api.call("POST", "/api/v1/key-campaigns",
                           {"name": "rollover", "group": "town", "target": ROLLOVER})  # fmt: skip
    campaign = reply.json["id"]
    api.app.db.run_sync(thd_due, START + 1, 1e9, 5)
    api.app.db.run_sync(report, R1, CommandState.RECEIVED)  # the gateway has R1's set
    api.app.db.run_sync(report, R2, CommandState.APPLIED, 1)
    view = (await api.call("GET", f"/api/v1/key-campaigns/{campaign}")).json
    path = f"/api/v1/key-campaigns/{campaign}/meters?state="
    for state in ("pending", "received", "done"):
        reply = await api.call("GET", path + state)
        assert reply.status == 200, reply.body
        assert reply.json["total"] == view["states"].get(state, 0), state
    assert view["states"]["done"] == 2  # R2, and R4 there already
    on_its_way = (await api.call("GET", path + "pending")).json["total"] + (
        await api.call("GET", path + "received")
    ).json["total"]
    assert on_its_way == 4  # R1, R3, R5, R6


@pytest_twisted.ensureDeferred
async def test_a_campaigns_meters_refuse_what_they_cannot_show(api: Api, master: bytes) -> None:
    campaign = await _campaign_with_every_outcome(api, master)
    path = f"/api/v1/key-campaigns/{campaign}/meters"
    reply = await api.call("GET", path + "?state=lost")
    assert reply.status == 400 and "state must be one of" in reply.message
    assert (await api.call("GET", "/api/v1/key-campaigns/999/meters")).status == 404
    assert (await api.call("GET", "/api/v1/key-campaigns/x/meters")).status == 404
    reply = await api.call("GET", path, role="supervisor")
    assert reply.status == 403 and "'keys'" in reply.message


@pytest_twisted.ensureDeferred
async def test_a_campaign_naming_a_meter_without_a_drn_is_refused(api: Api, master: bytes) -> None:
    api.app.db.run_sync(seed, master)
    api.app.db.run_sync(lambda c: add_meters(c, DLT645_ADDRESS))
    body = {"name": "mixed", "meter_ids": [R1, DLT645_ADDRESS], "target": ROLLOVER}
    reply = await api.call("POST", "/api/v1/key-campaigns", body)
    assert reply.status == 409, reply.body
    assert "cannot take an STS key change set" in reply.message
    assert DLT645_ADDRESS in reply.message
    # nothing was stored: R1 can still be moved on its own
    rows = api.app.db.run_sync(lambda c: c.execute(sa.select(key_campaign_meters)).all())
    assert rows == []
    reply = await api.call("POST", "/api/v1/key-campaigns", body | {"meter_ids": [R1]})
    assert reply.status == 201, reply.body


def _alarm(kind: str) -> RaisedAlarm:
    return RaisedAlarm(1, R1, "gw-1", kind, "critical", "", START)


@pytest_twisted.ensureDeferred
async def test_a_notification_rule_is_changed_and_disabled(api: Api, master: bytes) -> None:
    api.app.db.run_sync(seed, master)
    reply = await api.call("POST", "/api/v1/notification-rules",
                           {"kind": "tamper", "channel": "sms", "recipient": "+27825550199"})  # fmt: skip
    assert reply.status == 201
    rule = reply.json["id"]

    def told(kind: str) -> list[tuple[str, str]]:
        found, _ = api.app.db.run_sync(thd_recipients, _alarm(kind), 7, START)
        return list(found)

    assert told("tamper") == [("sms", "+27825550199")]
    reply = await api.call("PATCH", f"/api/v1/notification-rules/{rule}",
                           {"kind": "cover_open", "recipient": "ops@example.org",
                            "channel": "email"})  # fmt: skip
    assert reply.status == 200, reply.body
    assert reply.json == {"id": rule, "kind": "cover_open", "channel": "email",
                          "recipient": "ops@example.org", "enabled": True}  # fmt: skip
    assert told("tamper") == [] and told("cover_open") == [("email", "ops@example.org")]

    reply = await api.call("PATCH", f"/api/v1/notification-rules/{rule}", {"enabled": False})
    assert reply.status == 200 and reply.json["enabled"] is False
    assert told("cover_open") == []
    listed = (await api.call("GET", "/api/v1/notification-rules")).json["items"]
    assert [(r["id"], r["enabled"]) for r in listed] == [(rule, False)]
    reply = await api.call("PATCH", f"/api/v1/notification-rules/{rule}", {"enabled": True})
    assert reply.json["enabled"] is True and told("cover_open") == [("email", "ops@example.org")]

    audited = _audit(api, "notification_rule.update")
    assert [(r.actor, r.target) for r in audited] == [("admin-key", f"rule:{rule}")] * 3
    assert '"enabled":false' in audited[1].detail


@pytest_twisted.ensureDeferred
async def test_a_notification_rule_change_is_checked(api: Api) -> None:
    reply = await api.call("POST", "/api/v1/notification-rules",
                           {"kind": "*", "channel": "sms", "recipient": "customer"})  # fmt: skip
    path = f"/api/v1/notification-rules/{reply.json['id']}"
    reply = await api.call("PATCH", path, {"enabled": False}, role="supervisor")
    assert reply.status == 403 and "'admin'" in reply.message
    reply = await api.call("PATCH", path, {})
    assert reply.status == 400 and "nothing to change" in reply.message
    reply = await api.call("PATCH", path, {"channel": "fax"})
    assert reply.status == 422
    reply = await api.call("PATCH", path, {"priority": 1})
    assert reply.status == 422
    assert (await api.call("PATCH", "/api/v1/notification-rules/99", {"enabled": False})).status \
        == 404  # fmt: skip
    assert (await api.call("PATCH", "/api/v1/notification-rules/x", {"enabled": False})).status \
        == 404  # fmt: skip
    assert _audit(api, "notification_rule.update") == []
