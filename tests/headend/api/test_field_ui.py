"""What the operator interface's meter and gateway pages ask of the field routes: the meters list
filtered by customer (each row with its customer and open alarm kinds), a meter's customer name
and the relay state its last relay command read back, the reason of a relay command in the audit
log, and an on-demand read of every meter behind a gateway.

The whole head-end router over a migrated SQLite file (``tests.headend.seed``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest_twisted
import sqlalchemy as sa

from headend.commands import NewCommand, thd_enqueue
from headend.records import reading_rows, thd_store_readings
from headend.store.schema import alarms, audit_log, commands
from protocols.link import CommandType, Reading, ReadingBatch
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

ALICE_1, ALICE_2, BOB_1, NOBODY, ELSEWHERE, OLD = (drn(n) for n in (1, 2, 3, 4, 5, 6))


def seed(connection: sa.Connection) -> dict[str, int]:
    """Alice (two meters), Bob (one), Alicia (a closed account on OLD), a meter on no account and
    one behind another gateway; a tamper alarm open on ALICE_2, one cleared on BOB_1."""
    add_meters(connection, ALICE_1, ALICE_2, BOB_1, NOBODY, OLD)
    add_meters(connection, ELSEWHERE, gateway="gw-2")
    connection.execute(sa.text("UPDATE meters SET status = 'replaced' WHERE id = :id"),
                       {"id": OLD})  # fmt: skip
    tariff = add_tariff(connection)
    ids = {name: add_customer(connection, name) for name in ("Alice Dube", "Bob Nkosi", "Alicia")}
    open_account(connection, ids["Alice Dube"], ALICE_1, tariff)
    open_account(connection, ids["Alice Dube"], ALICE_2, tariff)
    open_account(connection, ids["Bob Nkosi"], BOB_1, tariff)
    open_account(connection, ids["Alicia"], OLD, tariff, status="closed")
    for meter, state in ((ALICE_2, "open"), (ALICE_2, "open"), (BOB_1, "cleared")):
        connection.execute(sa.insert(alarms).values(
            meter_id=meter, gateway_id=GATEWAY, kind="tamper", severity="critical", state=state,
            raised_at=START))  # fmt: skip
    connection.execute(sa.insert(alarms).values(
        meter_id=ALICE_2, gateway_id=GATEWAY, kind="low_credit", severity="warning", state="open",
        raised_at=START))  # fmt: skip
    return ids


async def _ids(api: Api, query: str, role: str = "admin") -> list[str]:
    reply = await api.call("GET", f"/api/v1/meters?{query}", role=role)
    assert reply.status == 200, reply.body
    return [item["id"] for item in reply.json["items"]]


@pytest_twisted.ensureDeferred
async def test_meters_are_found_by_customer_name_or_id(api: Api) -> None:
    ids = api.app.db.run_sync(seed)
    assert await _ids(api, "customer=Alice") == [ALICE_1, ALICE_2]
    assert await _ids(api, "customer=Ali") == [ALICE_1, ALICE_2]  # Alicia's account is closed
    assert await _ids(api, f"customer={ids['Bob Nkosi']}", role="viewer") == [BOB_1]
    assert await _ids(api, "customer=Carol") == []
    assert await _ids(api, "customer=%25") == []  # a LIKE wildcard is a character like any other
    assert await _ids(api, "customer=Alice&alarm=tamper") == [ALICE_2]
    assert await _ids(api, "customer=Bob&alarm=tamper") == []  # Bob's tamper alarm is cleared
    assert await _ids(api, "customer=99999999999999999999") == []  # no id that long: no error
    page = (await api.call("GET", "/api/v1/meters?customer=Alice&limit=1&offset=1")).json
    assert [m["id"] for m in page["items"]] == [ALICE_2] and page["total"] == 2


@pytest_twisted.ensureDeferred
async def test_each_listed_meter_names_its_customer_and_open_alarm_kinds(api: Api) -> None:
    ids = api.app.db.run_sync(seed)
    items = {m["id"]: m for m in (await api.call("GET", "/api/v1/meters")).json["items"]}
    assert items[ALICE_2]["customer"] == {"id": ids["Alice Dube"], "name": "Alice Dube"}
    assert items[ALICE_2]["open_alarm_kinds"] == ["low_credit", "tamper"]
    assert items[BOB_1]["open_alarm_kinds"] == []
    assert items[NOBODY]["customer"] is None
    assert items[OLD]["customer"] is None  # only a closed account
    meter = (await api.call("GET", f"/api/v1/meters/{ALICE_1}")).json
    assert meter["account"]["customer_name"] == "Alice Dube"


def _reading(connection: sa.Connection, ts: float, relay: int) -> None:
    values: dict[str, Decimal | int] = {"credit_remaining": Decimal("12.5"), "relay_state": relay}
    batch = ReadingBatch(GATEWAY, 1, ts, (Reading(BOB_1, ts, values),))
    thd_store_readings(connection, reading_rows(batch))


def _switched(connection: sa.Connection, at: float, relay: int) -> None:
    """A disconnect the gateway applied at ``at``, reading the relay back as ``relay``."""
    command_id, _ = thd_enqueue(connection, NewCommand(CommandType.RELAY, BOB_1,
                                                       {"action": "disconnect"}), at)  # fmt: skip
    connection.execute(sa.update(commands).where(commands.c.id == command_id).values(
        state="applied", updated_at=at, result=json.dumps({"relay_state": relay})))  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_the_relay_state_is_the_latest_the_meter_reported(api: Api) -> None:
    api.app.db.run_sync(seed)

    async def relay() -> tuple[Any, Any]:
        meter = (await api.call("GET", f"/api/v1/meters/{BOB_1}")).json
        return meter["relay_state"], meter["relay_state_at"]

    assert await relay() == (None, None)
    api.app.db.run_sync(_reading, START - 60, 0)
    assert await relay() == (0, START - 60)
    # the relay command's read-back, newer than the reading, is what the meter said last
    api.app.db.run_sync(_switched, START - 30, 1)
    assert await relay() == (1, START - 30)
    # a reading after it wins again
    api.app.db.run_sync(_reading, START - 10, 0)
    assert await relay() == (0, START - 10)


@pytest_twisted.ensureDeferred
async def test_a_relay_command_keeps_its_reason_in_the_audit_log(api: Api) -> None:
    api.app.db.run_sync(seed)
    reply = await api.call("POST", f"/api/v1/meters/{BOB_1}/relay",
                           {"action": "disconnect", "reason": "unsafe wiring"})  # fmt: skip
    assert reply.status == 202 and reply.json["args"] == {"action": "disconnect"}
    refused = await api.call("POST", f"/api/v1/meters/{BOB_1}/relay",
                             {"action": "connect", "reason": "x"}, role="cashier")  # fmt: skip
    assert refused.status == 403

    def logged(connection: sa.Connection) -> list[dict[str, Any]]:
        rows = connection.execute(sa.select(audit_log).where(
            audit_log.c.action.like("relay.%"))).all()  # fmt: skip
        return [json.loads(row.detail) for row in rows]

    assert api.app.db.run_sync(logged) == [
        {"action": "disconnect", "command_id": reply.json["id"], "reason": "unsafe wiring"}
    ]


@pytest_twisted.ensureDeferred
async def test_a_gateway_read_queues_one_read_per_active_meter_behind_it(api: Api) -> None:
    api.app.db.run_sync(seed)
    path = f"/api/v1/gateways/{GATEWAY}/read"
    refused = await api.call("POST", path, {}, role="cashier")
    assert refused.status == 403 and "commands" in refused.message
    reply = await api.call("POST", path, {"groups": ["energy"]}, role="field_technician")
    assert reply.status == 202, reply.body
    # OLD is replaced, ELSEWHERE is behind gw-2
    assert reply.json == {"gateway_id": GATEWAY, "meters": 4, "queued": 4, "coalesced": 0}
    assert api.app.dispatcher.pokes == 1
    listed = (await api.call("GET", f"/api/v1/commands?gateway_id={GATEWAY}&type=read")).json
    assert sorted(c["meter_id"] for c in listed["items"]) == [ALICE_1, ALICE_2, BOB_1, NOBODY]
    assert {json.dumps(c["args"]) for c in listed["items"]} == {'{"groups": ["energy"]}'}
    # asked again before they went out: the queued reads stand for it
    again = await api.call("POST", path, {"groups": ["energy"]})
    assert again.json == {"gateway_id": GATEWAY, "meters": 4, "queued": 0, "coalesced": 4}
    missing = await api.call("POST", "/api/v1/gateways/gw-nowhere/read", {})
    assert missing.status == 404 and "gw-nowhere" in missing.message


def _registers(connection: sa.Connection) -> None:
    """BOB_1 in UTC: energy readings at 00:10 (10.0 kWh: t1 6.0, t2 4.0) and 12:00 (13.5 kWh: t1
    8.0, t2 5.5) of START's day, each followed by a status reading (credit and relay, no register),
    as a real gateway sends them: the day used 3.5 kWh, t1 2.0, t2 1.5."""
    day = START - START % 86400
    energy = ((day + 600, "10.0", "6.0", "4.0"), (day + 43200, "13.5", "8.0", "5.5"))
    rows: list[Reading] = []
    for ts, total, t1, t2 in energy:
        rows.append(Reading(BOB_1, ts, {"energy_import_total": Decimal(total),
                                        "energy_import_t1": Decimal(t1),
                                        "energy_import_t2": Decimal(t2)}))  # fmt: skip
        rows.append(Reading(BOB_1, ts + 30, {"credit_remaining": Decimal("9.0"), "relay_state": 0}))
    thd_store_readings(connection, reading_rows(ReadingBatch(GATEWAY, 1, START, tuple(rows))))


@pytest_twisted.ensureDeferred
async def test_status_readings_between_energy_readings_do_not_hide_consumption(api: Api) -> None:
    api.app.db.run_sync(seed)
    api.app.db.run_sync(_registers)
    reply = await api.call("GET", f"/api/v1/meters/{BOB_1}/consumption?period=day&count=1")
    assert reply.status == 200, reply.body
    [today] = reply.json["buckets"]
    assert today["energy_wh"] == 3500 and today["bands"] == {"1": 2000, "2": 1500}
