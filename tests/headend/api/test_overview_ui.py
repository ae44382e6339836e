"""The routes written for the operator interface's overview and meter page, over the whole router:
the overview's aggregates and a meter's consumption per day, month and TOU band. Every expected
figure is worked out by hand from the seeded data in the comments."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest_twisted
import sqlalchemy as sa

from headend.keystore import SealedKeyStore
from headend.records import reading_rows, thd_store_readings
from headend.store.schema import alarms, gateways
from headend.vending import Seller, thd_cancel_vend, thd_vend
from protocols.link import Reading, ReadingBatch
from tests.headend.seed import (  # noqa: F401 (fixtures)
    GATEWAY,
    START,
    Api,
    add_customer,
    add_keys,
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
HOUR = 3600.0


def _reading(meter: str, ts: float, total: str, *bands: str) -> Reading:
    values: dict[str, Any] = {"energy_import_total": Decimal(total)}
    for band, kwh in enumerate(bands, start=1):
        values[f"energy_import_t{band}"] = Decimal(kwh)
    return Reading(meter, ts, values)


def _alarm(meter: str, kind: str, severity: str, state: str, acked: bool = False) -> dict[str, Any]:
    return {"meter_id": meter, "gateway_id": GATEWAY, "kind": kind, "severity": severity,
            "state": state, "raised_at": START - HOUR, "acked_at": START if acked else None,
            "acked_by": "op" if acked else None}  # fmt: skip


def seed_fleet(connection: sa.Connection, master: bytes, issuer: SealedKeyStore) -> None:
    """gw-1 online with M1 and M2; gw-2 offline with M3. gw-1's buses: 100 + 100 requests, of
    which 3 timed out and 2 failed: 195/200 = 0.975 read. M1 read 10 min ago, M2 two hours ago:
    one meter reporting in the last hour. Alarms: critical open (not acked), minor open (acked),
    major cleared. Sales since START - 1 h: one vend of 1000 (5 kWh at the flat 200/kWh), one
    of 2000 cancelled; the first vend's token command is pending, the second's cancelled."""
    add_keys(connection, master)
    add_meters(connection, M1, M2)
    add_meters(connection, M3, gateway="gw-2")
    connection.execute(sa.update(gateways).where(gateways.c.id == "gw-2").values(online=False))
    health = {"bus.rtu1.requests": 100, "bus.rtu1.timeouts": 3, "bus.rtu1.failures": 0,
              "bus.tcp1.requests": 100, "bus.tcp1.timeouts": 0, "bus.tcp1.failures": 2,
              "bus.tcp1.utilisation": "0.5", "bus.tcp1.connected": True, "journal.entries": 7}  # fmt: skip
    connection.execute(sa.update(gateways).where(gateways.c.id == GATEWAY)
                       .values(health=json.dumps(health)))  # fmt: skip
    thd_store_readings(connection, reading_rows(ReadingBatch(GATEWAY, 1, START, (
        _reading(M1, START - 600, "10.0"), _reading(M2, START - 2 * HOUR, "20.0")))))  # fmt: skip
    connection.execute(sa.insert(alarms), [
        _alarm(M1, "tamper", "critical", "open"), _alarm(M2, "low_credit", "minor", "open", True),
        _alarm(M3, "power_fail", "major", "cleared")])  # fmt: skip
    tariff = add_tariff(connection)
    for meter in (M1, M2):
        open_account(connection, add_customer(connection, f"customer {meter}"), meter, tariff)
    seller = Seller("alice", "head-office")
    thd_vend(connection, issuer, seller, START - 1800, meter_id=M1, amount_minor=1000)
    sold = thd_vend(connection, issuer, seller, START - 1200, meter_id=M2, amount_minor=2000)
    thd_cancel_vend(connection, sold["id"], "alice", START - 1100, "wrong meter")
    # before the window: neither a sale nor a delivery of today
    thd_vend(connection, issuer, seller, START - 5 * HOUR, meter_id=M2, amount_minor=500)


@pytest_twisted.ensureDeferred
async def test_the_overview_counts_the_fleet_alarms_sales_and_deliveries(
    api: Api, master: bytes, issuer: SealedKeyStore
) -> None:
    api.app.db.run_sync(seed_fleet, master, issuer)
    reply = await api.call("GET", f"/api/v1/overview?since={START - HOUR}", role="viewer")
    assert reply.status == 200, reply.body
    view = reply.json
    assert view["gateways"] == {"online": 1, "offline": 1, "total": 2}
    assert view["meters"]["total"] == 3 and view["meters"]["reporting"] == 1
    assert view["reads"] == {"requests": 200, "failed": 5, "success_rate": 0.975}
    assert view["alarms"]["open"] == 2 and view["alarms"]["unacknowledged"] == 1
    assert view["alarms"]["by_severity"]["critical"] == 1
    assert view["alarms"]["by_severity"]["minor"] == 1
    assert view["alarms"]["by_severity"]["major"] == 0
    assert view["sales"] == {"vends": 1, "amount_minor": 1000, "energy_wh": 5000}
    assert view["deliveries"]["pending"] == 1 and view["deliveries"]["cancelled"] == 1
    assert view["deliveries"]["applied"] == 0 and view["deliveries"]["success_rate"] is None


@pytest_twisted.ensureDeferred
async def test_the_overview_refuses_a_since_that_is_not_a_number(api: Api) -> None:
    reply = await api.call("GET", "/api/v1/overview?since=today", role="viewer")
    assert reply.status == 400 and "since" in reply.message


JOBURG = ZoneInfo("Africa/Johannesburg")  # UTC+2, no DST


def _local(day: int, hour: int, month: int = 11) -> float:
    return datetime(2023, month, day, hour, tzinfo=JOBURG).timestamp()


def seed_consumption(connection: sa.Connection) -> None:
    """M1's registers (total, band 1, band 2), in Johannesburg time, with START = 2023-11-15
    00:13:20 local:

    ======================  ======  ======  ======
    when (local)            total   t1      t2
    ======================  ======  ======  ======
    10-20 12:00             50.0    30.0    20.0
    11-13 12:00             100.0   60.0    40.0
    11-13 23:00             104.0   62.5    41.5
    11-14 01:00             105.0   63.0    42.0    (01:00 local is 11-13 23:00 UTC)
    11-14 20:00             111.0   66.0    45.0
    ======================  ======  ======  ======

    Days: 11-13 counts from the last reading before it (10-20: 50.0) to 104.0: 54 kWh, t1 32.5,
    t2 21.5; 11-14: 104.0 -> 111.0 = 7 kWh, t1 3.5, t2 3.5; 11-15 (today): nothing yet.
    Months: October: its first reading to its last, 0; November: 50.0 -> 111.0 = 61 kWh.
    """
    rows = [
        _reading(M1, _local(20, 12, month=10), "50.0", "30.0", "20.0"),
        _reading(M1, _local(13, 12), "100.0", "60.0", "40.0"),
        _reading(M1, _local(13, 23), "104.0", "62.5", "41.5"),
        _reading(M1, _local(14, 1), "105.0", "63.0", "42.0"),
        _reading(M1, _local(14, 20), "111.0", "66.0", "45.0"),
    ]
    add_meters(connection, M1)
    thd_store_readings(connection, reading_rows(ReadingBatch(GATEWAY, 1, START, tuple(rows))))


@pytest_twisted.ensureDeferred
async def test_consumption_per_local_day_and_band(api: Api) -> None:
    api.app.db.run_sync(seed_consumption)
    reply = await api.call(
        "GET",
        f"/api/v1/meters/{M1}/consumption?period=day&count=3&tz=Africa/Johannesburg",
        role="viewer",
    )
    assert reply.status == 200, reply.body
    buckets = reply.json["buckets"]
    assert [b["label"] for b in buckets] == ["2023-11-13", "2023-11-14", "2023-11-15"]
    assert [b["energy_wh"] for b in buckets] == [54000, 7000, 0]
    assert buckets[0]["bands"] == {"1": 32500, "2": 21500}
    assert buckets[1]["bands"] == {"1": 3500, "2": 3500}
    assert buckets[0]["start"] == _local(13, 0)


@pytest_twisted.ensureDeferred
async def test_consumption_per_month(api: Api) -> None:
    api.app.db.run_sync(seed_consumption)
    reply = await api.call(
        "GET",
        f"/api/v1/meters/{M1}/consumption?period=month&count=2&tz=Africa/Johannesburg",
        role="viewer",
    )
    assert reply.status == 200, reply.body
    buckets = reply.json["buckets"]
    assert [(b["label"], b["energy_wh"]) for b in buckets] == [("2023-10", 0), ("2023-11", 61000)]


@pytest_twisted.ensureDeferred
async def test_consumption_refuses_what_it_cannot_answer(api: Api) -> None:
    api.app.db.run_sync(seed_consumption)
    for query, status, words in (
        ("period=week", 400, "period"),
        ("period=day&count=0", 400, "count"),
        ("period=month&count=61", 400, "count"),
        ("tz=Mars/Olympus", 400, "time zone"),
    ):
        reply = await api.call("GET", f"/api/v1/meters/{M1}/consumption?{query}", role="viewer")
        assert reply.status == status and words in reply.message, (query, reply.body)
    reply = await api.call("GET", f"/api/v1/meters/{drn(99)}/consumption", role="viewer")
    assert reply.status == 404
