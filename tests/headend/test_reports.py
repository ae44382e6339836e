"""Reports over seeded data; every expected figure is worked out by hand in the comments.

The data (seeded through the head-end's own functions: ``thd_vend``, ``thd_cancel_vend``,
``thd_transfer_credit``, ``thd_due``/``thd_apply_status``, ``thd_store_readings``,
``thd_apply_events``). The flat tariff sells at 200 minor units per kWh, no tax, no fixed charge:

=====  ==================  ===========  =======  ==========================================
vend   when (UTC)          who/where    meter    money -> energy
=====  ==================  ===========  =======  ==========================================
T1     2024-03-30 10:00    alice/HO     M1       1000 -> 5.0 kWh
T2     2024-03-30 23:30    alice/HO     M1       2000 -> 10.0 kWh (03-31 01:30 in Johannesburg)
T3     2024-03-31 12:00    bob/shop-7   M2       1000, half to a debt of 1000 -> 500 -> 2.5 kWh
T4     2024-04-01 08:00    bob/shop-7   M3       2000, a quarter (500) to a debt of 400: 400,
                                                 1600 -> 8.0 kWh
T5     2024-04-01 09:00    alice/HO     M1       3000 -> 15.0 kWh, then cancelled
T6     2024-04-01 10:00    alice/HO     M1       credit transfer of 1234 Wh -> 1.2 kWh, no price
=====  ==================  ===========  =======  ==========================================
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import reactor

from headend.commands import thd_apply_status, thd_due
from headend.keystore import SealedKeyStore
from headend.records import reading_rows, thd_apply_events, thd_store_readings
from headend.reports import (
    ReportError,
    thd_alarms,
    thd_arrears,
    thd_consumption,
    thd_sales,
    thd_token_delivery,
)
from headend.store import Database, upgrade
from headend.store.schema import alarms, commands, vends
from headend.vending import (
    Seller,
    thd_cancel_vend,
    thd_engineering_token,
    thd_transfer_credit,
    thd_vend,
)
from protocols.link import (
    CommandState,
    CommandStatus,
    Event,
    EventBatch,
    EventState,
    Reading,
    ReadingBatch,
)
from tests.headend.seed import (  # noqa: F401 (fixtures)
    GATEWAY,
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
from tests.support.pg_fixture import postgres  # noqa: F401
from tests.support.postgres import Postgres


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


T1, T2, T3 = utc(2024, 3, 30, 10), utc(2024, 3, 30, 23, 30), utc(2024, 3, 31, 12)
T4, T5, T6 = utc(2024, 4, 1, 8), utc(2024, 4, 1, 9), utc(2024, 4, 1, 10)
W0, W1 = utc(2024, 3, 1), utc(2024, 4, 1)
M1, M2, M3, M4 = drn(1), drn(2), drn(3), drn(4)
DAY = 86400.0
EXPIRY_S = 30 * DAY
ALICE, BOB = Seller("alice", "head-office"), Seller("bob", "shop-7")


def seed(connection: sa.Connection, issuer: SealedKeyStore, master: bytes) -> dict[str, Any]:
    add_keys(connection, master)
    add_meters(connection, M1, M2, group="north", base_date=2014)
    add_meters(connection, M3, group="south", base_date=2014)
    add_meters(connection, M4, base_date=2014)
    tariff = add_tariff(connection)
    ids: dict[str, Any] = {}
    ids["A"] = open_account(connection, add_customer(connection, "Alice Avenue"), M1, tariff)
    ids["B"] = open_account(connection, add_customer(connection, "Bongani Road"), M2, tariff,
                            debt_minor=1000, debt_recovery_share="0.5")  # fmt: skip
    ids["C"] = open_account(connection, add_customer(connection, "=cmd|' /C calc'!A0"), M3,
                            tariff, debt_minor=400, debt_recovery_share="0.25")  # fmt: skip
    ids["D"] = open_account(connection, add_customer(connection, "Dlamini Street"), M4, tariff,
                            debt_minor=700)  # fmt: skip

    def vend(seller: Seller, meter: str, amount: int, now: float) -> dict[str, Any]:
        return thd_vend(connection, issuer, seller, now, meter_id=meter, amount_minor=amount,
                        expiry_s=EXPIRY_S)  # fmt: skip

    ids["T1"] = vend(ALICE, M1, 1000, T1)
    ids["T2"] = vend(ALICE, M1, 2000, T2)
    ids["T3"] = vend(BOB, M2, 1000, T3)
    ids["T4"] = vend(BOB, M3, 2000, T4)
    ids["T5"] = vend(ALICE, M1, 3000, T5)
    thd_cancel_vend(connection, ids["T5"]["id"], "alice", T5 + 60, "wrong meter")
    ids["T6"] = thd_transfer_credit(connection, issuer, ALICE, ids["A"], M1, 1234, "M0", T6,
                                    expiry_s=EXPIRY_S)  # fmt: skip
    return ids


@pytest.fixture
def seeded(db: Database, issuer: SealedKeyStore, master: bytes) -> dict[str, Any]:
    ids: dict[str, Any] = db.run_sync(seed, issuer, master)
    return ids


def test_the_seeded_vends_are_what_the_table_says(db: Database, seeded: dict[str, Any]) -> None:
    """The figures the other tests add up, checked one by one."""
    got = {name: (seeded[name]["amount_minor"], seeded[name]["energy_wh"])
           for name in ("T1", "T2", "T3", "T4", "T5", "T6")}  # fmt: skip
    assert got == {"T1": (1000, 5000), "T2": (2000, 10000), "T3": (1000, 2500),
                   "T4": (2000, 8000), "T5": (3000, 15000), "T6": (0, 1200)}  # fmt: skip
    statuses = db.run_sync(lambda c: dict(c.execute(sa.select(vends.c.id, vends.c.status)).all()))
    assert statuses[seeded["T5"]["id"]] == "cancelled"


# -- sales --------------------------------------------------------------------------------------


def test_sales_per_utc_day(db: Database, seeded: dict[str, Any]) -> None:
    report = db.run_sync(thd_sales, "day")
    assert report["rows"] == [
        {"period": "2024-03-30", "count": 2, "amount_minor": 3000, "energy_wh": 15000,
         "cancelled": 0},  # T1 + T2
        {"period": "2024-03-31", "count": 1, "amount_minor": 1000, "energy_wh": 2500,
         "cancelled": 0},  # T3
        {"period": "2024-04-01", "count": 1, "amount_minor": 2000, "energy_wh": 8000,
         "cancelled": 1},  # T4; T5 cancelled; T6 is a transfer, not a sale
    ]  # fmt: skip
    assert report["totals"] == {"count": 4, "amount_minor": 6000, "energy_wh": 25500}
    assert report["cancelled"] == {"count": 1, "amount_minor": 3000, "energy_wh": 15000}
    assert report["transfers"] == {"count": 1, "energy_wh": 1200}


def test_sales_days_follow_the_time_zone(db: Database, seeded: dict[str, Any]) -> None:
    # T2 at 23:30 UTC is 01:30 the next day in Johannesburg (UTC+2)
    report = db.run_sync(thd_sales, "day", None, None, None, "Africa/Johannesburg")
    assert [(r["period"], r["count"], r["amount_minor"], r["energy_wh"]) for r in report["rows"]] \
        == [("2024-03-30", 1, 1000, 5000), ("2024-03-31", 2, 3000, 12500),
            ("2024-04-01", 1, 2000, 8000)]  # fmt: skip


def test_sales_per_month_and_operator(db: Database, seeded: dict[str, Any]) -> None:
    report = db.run_sync(thd_sales, "month", None, None, "operator")
    assert report["rows"] == [
        {"period": "2024-03", "operator": "alice", "count": 2, "amount_minor": 3000,
         "energy_wh": 15000, "cancelled": 0},
        {"period": "2024-03", "operator": "bob", "count": 1, "amount_minor": 1000,
         "energy_wh": 2500, "cancelled": 0},
        {"period": "2024-04", "operator": "alice", "count": 0, "amount_minor": 0,
         "energy_wh": 0, "cancelled": 1},
        {"period": "2024-04", "operator": "bob", "count": 1, "amount_minor": 2000,
         "energy_wh": 8000, "cancelled": 0},
    ]  # fmt: skip


def test_sales_per_vending_point_in_a_window(db: Database, seeded: dict[str, Any]) -> None:
    # [T2, T4): T2 (head-office) and T3 (shop-7) only
    report = db.run_sync(thd_sales, "month", T2, T4, "vending_point")
    assert [(r["vending_point"], r["count"], r["amount_minor"]) for r in report["rows"]] == [
        ("head-office", 1, 2000), ("shop-7", 1, 1000)]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("week",), "period must be one of day, month"),
        (("day", None, None, "customer"), "group_by must be one of operator, vending_point"),
        (("day", None, None, None, "Mars/Olympus"), "no such time zone 'Mars/Olympus'"),
        (("day", None, None, None, "../../etc/passwd"), "no such time zone"),
        (("day", 10.0, 5.0), "since (10.0) is after until (5.0)"),
    ],
)
def test_sales_refuses_what_it_cannot_do(db: Database, args: tuple[Any, ...],
                                         message: str) -> None:  # fmt: skip
    with pytest.raises(ReportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        db.run_sync(thd_sales, *args)


# -- token delivery -----------------------------------------------------------------------------


def _command_of(connection: sa.Connection, vend_id: int) -> str:
    return str(connection.execute(
        sa.select(commands.c.id).where(commands.c.vend_id == vend_id)).scalar_one())  # fmt: skip


def _status(command_id: str, state: CommandState, code: int | None = None) -> CommandStatus:
    return CommandStatus(GATEWAY, 1, T6, command_id, state, code)


def deliver(connection: sa.Connection, issuer: SealedKeyStore, ids: dict[str, Any]) -> None:
    """T1 applied, T2 rejected Used (10), T3 rejected CRC (13), T4 failed for good (one attempt
    allowed), T6's transfer sent and then expired, T5's cancelled; a clear-tamper token queued
    last (pending)."""
    now = T6 + 60
    thd_due(connection, now, 1e9, 5)  # M1: T1, M2: T3, M3: T4 sent
    t1, t2, t3, t4 = (_command_of(connection, ids[n]["id"]) for n in ("T1", "T2", "T3", "T4"))
    thd_apply_status(connection, _status(t1, CommandState.APPLIED, 1), now, 1)
    thd_apply_status(connection, _status(t3, CommandState.REJECTED, 13), now, 1)
    thd_apply_status(connection, _status(t4, CommandState.FAILED), now, 1)
    thd_due(connection, now + 1, 1e9, 5)  # M1: T2 sent
    thd_apply_status(connection, _status(t2, CommandState.REJECTED, 10), now + 1, 1)
    thd_due(connection, now + 2, 1e9, 5)  # M1: the transfer sent
    thd_due(connection, T6 + EXPIRY_S + 1, 1e9, 5)  # ... and expired, never confirmed
    thd_engineering_token(connection, issuer, M2, "clear_tamper", "tech", T6 + EXPIRY_S + 2)


def test_token_delivery_by_final_state(db: Database, issuer: SealedKeyStore,
                                       seeded: dict[str, Any]) -> None:  # fmt: skip
    db.run_sync(deliver, issuer, seeded)
    report = db.run_sync(thd_token_delivery)
    # 7 token commands: T1..T6 and the engineering token
    assert report["commands"] == 7
    assert report["states"] == {"applied": 1, "rejected": 2, "failed": 1, "expired": 1,
                                "pending": 1, "cancelled": 1}  # fmt: skip
    assert report["rejected_by_code"] == [
        {"code": 10, "label": "UsedError", "count": 1},
        {"code": 13, "label": "CRCError", "count": 1},
    ]
    assert report["success_rate"] == 0.2  # 1 applied of 5 finished (1 + 2 + 1 + 1)
    assert report["keypad_fallbacks"] == 2  # T4 failed, T6 expired


def test_token_delivery_in_a_window(db: Database, issuer: SealedKeyStore,
                                    seeded: dict[str, Any]) -> None:  # fmt: skip
    db.run_sync(deliver, issuer, seeded)
    # commands created in [T3, T6): T3 rejected, T4 failed, T5 cancelled
    report = db.run_sync(thd_token_delivery, T3, T6)
    assert report["states"] == {"applied": 0, "rejected": 1, "failed": 1, "expired": 0,
                                "pending": 0, "cancelled": 1}  # fmt: skip
    assert report["success_rate"] == 0.0 and report["keypad_fallbacks"] == 1
    empty = db.run_sync(thd_token_delivery, T6 + 10 * EXPIRY_S, None)
    assert empty["commands"] == 0 and empty["success_rate"] is None


# -- arrears ------------------------------------------------------------------------------------


def test_arrears(db: Database, seeded: dict[str, Any]) -> None:
    # B: 1000 owed, T3 recovered 500 -> 500 owed; C: 400 owed, T4 recovered all 400; D: 700 owed,
    # nothing bought; A never owed.
    report = db.run_sync(thd_arrears)
    assert [(r["account_id"], r["debt_minor"], r["debt_recovered_minor"]) for r in report["items"]] \
        == [(seeded["D"], 700, 0), (seeded["B"], 500, 500)]  # fmt: skip
    assert report["items"][0]["customer_name"] == "Dlamini Street"
    assert report["items"][0]["meter_id"] == M4
    assert report["totals"] == {"accounts_in_arrears": 2, "debt_outstanding_minor": 1200,
                                "debt_recovered_minor": 900}  # fmt: skip
    second = db.run_sync(thd_arrears, 1, 1)
    assert [r["account_id"] for r in second["items"]] == [seeded["B"]] and second["total"] == 2


# -- consumption --------------------------------------------------------------------------------


def _reading(meter: str, ts: float, total: str, *bands: str) -> Reading:
    values: dict[str, Any] = {"energy_import_total": Decimal(total)}
    for band, kwh in enumerate(bands, start=1):
        values[f"energy_import_t{band}"] = Decimal(kwh)
    return Reading(meter, ts, values)


def seed_readings(connection: sa.Connection) -> None:
    """Window [W0, W1) = March 2024. Readings outside it are there to be left out."""
    readings = (
        _reading(M1, W0 - 3600, "90.000", "50.000", "40.000"),  # before the window
        _reading(M1, W0 + 3600, "100.000", "60.000", "40.000"),
        _reading(M1, W0 + DAY, "105.500"),  # the energy group alone
        _reading(M1, W0 + 10 * DAY, "112.250", "67.250", "45.000"),
        _reading(M1, W1, "200.000", "150.000", "50.000"),  # until is exclusive
        _reading(M2, W0 + 7200, "50.000", "10.000", "20.000", "15.000", "5.000"),
        _reading(M2, W0 + 20 * DAY, "58.000", "12.000", "23.500", "16.000", "6.500"),
        _reading(M3, W0 + DAY, "10.000", "10.000"),
        _reading(M3, W0 + 2 * DAY, "13.333", "13.333"),
        _reading(M4, W0 + DAY, "7.000"),  # one reading: nothing used that can be seen
    )
    thd_store_readings(connection, reading_rows(ReadingBatch(GATEWAY, 1, W1, readings)))


def test_consumption_per_group(db: Database, seeded: dict[str, Any]) -> None:
    db.run_sync(seed_readings)
    report = db.run_sync(thd_consumption, W0, W1, "group")
    # M1 112.250 - 100.000 = 12 250 Wh; M2 58 - 50 = 8 000 Wh; M3 3 333 Wh; M4 0
    assert report["rows"] == [
        {"group": "north", "meters": 2, "energy_wh": 20250},
        {"group": "south", "meters": 1, "energy_wh": 3333},
        {"group": None, "meters": 1, "energy_wh": 0},
    ]
    assert report["energy_wh"] == 23583


def test_consumption_per_band(db: Database, seeded: dict[str, Any]) -> None:
    db.run_sync(seed_readings)
    report = db.run_sync(thd_consumption, W0, W1, "band")
    # t1: M1 7 250 + M2 2 000 + M3 3 333; t2: M1 5 000 + M2 3 500; t3: M2 1 000; t4: M2 1 500
    assert report["rows"] == [
        {"band": 1, "meters": 3, "energy_wh": 12583},
        {"band": 2, "meters": 2, "energy_wh": 8500},
        {"band": 3, "meters": 1, "energy_wh": 1000},
        {"band": 4, "meters": 1, "energy_wh": 1500},
    ]
    assert report["energy_wh"] == 23583  # the bands add up to the groups' total


def test_consumption_without_a_window_sees_every_reading(db: Database,
                                                         seeded: dict[str, Any]) -> None:  # fmt: skip
    db.run_sync(seed_readings)
    rows = db.run_sync(thd_consumption, None, None, "group")["rows"]
    # M1 from 90.000 to 200.000: 110 000 Wh
    assert rows[0] == {"group": "north", "meters": 2, "energy_wh": 110000 + 8000}
    with pytest.raises(ReportError, match="by must be one of group, band"):
        db.run_sync(thd_consumption, None, None, "meter")


# -- alarms -------------------------------------------------------------------------------------

SEVERITY = {"low_credit": "warning", "tamper": "critical", "credit_exhausted": "major"}


def seed_alarms(connection: sa.Connection) -> None:
    def event(meter: str, at: float, kind: str, state: EventState) -> Event:
        return Event(meter, at, kind, state)

    batch = EventBatch(GATEWAY, 2, W0 + 5000, (
        event(M2, W0 - 500, "credit_exhausted", EventState.RAISED),  # before the window
        event(M1, W0 + 100, "low_credit", EventState.RAISED),
        event(M2, W0 + 200, "low_credit", EventState.RAISED),
        event(M1, W0 + 1000, "tamper", EventState.RAISED),
        event(M1, W0 + 1100, "low_credit", EventState.CLEARED),  # 1000 s after raised
        event(M3, W0 + 2000, "tamper", EventState.RAISED),
        event(M1, W0 + 4600, "tamper", EventState.CLEARED),  # 3600 s after raised
    ))  # fmt: skip
    thd_apply_events(connection, batch, SEVERITY, W0 + 5000)
    for meter, acked_at in ((M1, W0 + 400), (M2, W0 + 300)):  # 300 s and 100 s after raised
        connection.execute(
            sa.update(alarms).where(alarms.c.meter_id == meter, alarms.c.kind == "low_credit")
            .values(acked_at=acked_at, acked_by="olivia"))  # fmt: skip


def test_alarms_report(db: Database) -> None:
    db.run_sync(seed_alarms)
    report = db.run_sync(thd_alarms, W0, W0 + DAY)
    assert report["rows"] == [
        {"kind": "low_credit", "severity": "warning", "raised": 2, "open": 1,
         "acknowledged": 2, "cleared": 1, "mean_time_to_ack_s": 200.0,
         "mean_time_to_clear_s": 1000.0},
        {"kind": "tamper", "severity": "critical", "raised": 2, "open": 1, "acknowledged": 0,
         "cleared": 1, "mean_time_to_ack_s": None, "mean_time_to_clear_s": 3600.0},
    ]  # fmt: skip
    assert report["totals"] == {"raised": 4, "open": 2, "acknowledged": 2, "cleared": 2,
                                "mean_time_to_ack_s": 200.0,
                                "mean_time_to_clear_s": 2300.0}  # fmt: skip
    assert report["open_now"] == 3  # M2 low credit, M3 tamper, and M2's older credit_exhausted


# -- through the API ----------------------------------------------------------------------------


def _csv(text: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.decode("utf-8"), newline="")))


@pytest_twisted.ensureDeferred
async def test_reports_over_http_as_json_and_csv(api: Api, issuer: SealedKeyStore,
                                                 master: bytes) -> None:  # fmt: skip
    ids = api.app.db.run_sync(seed, issuer, master)
    reply = await api.call("GET", "/api/v1/reports/sales?period=month&group_by=operator",
                           role="operator")  # fmt: skip
    assert reply.status == 200, reply.body
    assert reply.json["totals"] == {"count": 4, "amount_minor": 6000, "energy_wh": 25500}

    reply = await api.call("GET", f"/api/v1/reports/sales?format=csv&since={T1}&until={T4}"
                                  "&tz=Africa/Johannesburg")  # fmt: skip
    assert reply.status == 200
    assert reply.header("content-type") == "text/csv; charset=utf-8"
    assert reply.body.decode() == (
        "period,count,amount_minor,energy_wh,cancelled\r\n"
        "2024-03-30,1,1000,5000,0\r\n"
        "2024-03-31,2,3000,12500,0\r\n"
    )

    reply = await api.call("GET", "/api/v1/reports/arrears?format=csv")
    rows = _csv(reply.body)
    assert rows[0] == ["account_id", "customer_id", "customer_name", "meter_id", "status",
                       "debt_minor", "debt_recovered_minor", "debt_recovery_share"]  # fmt: skip
    assert [(r[0], r[5], r[6]) for r in rows[1:]] == [(str(ids["D"]), "700", "0"),
                                                      (str(ids["B"]), "500", "500")]  # fmt: skip

    reply = await api.call("GET", "/api/v1/reports/arrears?limit=1")
    assert [i["account_id"] for i in reply.json["items"]] == [ids["D"]]
    assert reply.json["total"] == 2 and reply.json["totals"]["debt_outstanding_minor"] == 1200


@pytest_twisted.ensureDeferred
async def test_csv_cells_cannot_become_spreadsheet_formulas(api: Api, issuer: SealedKeyStore,
                                                            master: bytes) -> None:  # fmt: skip
    def owe(connection: sa.Connection) -> None:
        seed(connection, issuer, master)
        connection.execute(sa.text("UPDATE accounts SET debt_minor = 50 WHERE customer_id = 3"))

    api.app.db.run_sync(owe)
    rows = _csv((await api.call("GET", "/api/v1/reports/arrears?format=csv")).body)
    names = [r[2] for r in rows[1:]]
    assert "'=cmd|' /C calc'!A0" in names


@pytest_twisted.ensureDeferred
async def test_token_delivery_consumption_and_alarms_over_http(api: Api, issuer: SealedKeyStore,
                                                               master: bytes) -> None:  # fmt: skip
    ids = api.app.db.run_sync(seed, issuer, master)
    api.app.db.run_sync(deliver, issuer, ids)
    api.app.db.run_sync(seed_readings)
    api.app.db.run_sync(seed_alarms)

    reply = await api.call("GET", "/api/v1/reports/token-delivery?format=csv")
    assert _csv(reply.body) == [
        ["metric", "code", "label", "value"],
        ["applied", "", "", "1"], ["rejected", "", "", "2"], ["failed", "", "", "1"],
        ["expired", "", "", "1"], ["pending", "", "", "1"], ["cancelled", "", "", "1"],
        ["rejected", "10", "UsedError", "1"], ["rejected", "13", "CRCError", "1"],
        ["keypad_fallbacks", "", "", "2"], ["success_rate", "", "", "0.2"],
    ]  # fmt: skip

    reply = await api.call("GET", f"/api/v1/reports/consumption?since={W0}&until={W1}&by=band"
                                  "&format=csv")  # fmt: skip
    assert _csv(reply.body) == [["band", "meters", "energy_wh"], ["1", "3", "12583"],
                                ["2", "2", "8500"], ["3", "1", "1000"], ["4", "1", "1500"]]  # fmt: skip
    reply = await api.call("GET", f"/api/v1/reports/consumption?since={W0}&until={W1}")
    assert reply.json["rows"][0] == {"group": "north", "meters": 2, "energy_wh": 20250}

    reply = await api.call("GET", f"/api/v1/reports/alarms?since={W0}&until={W0 + DAY}")
    assert reply.json["totals"]["mean_time_to_clear_s"] == 2300.0
    reply = await api.call("GET", f"/api/v1/reports/alarms?since={W0}&until={W0 + DAY}"
                                  "&format=csv")  # fmt: skip
    assert _csv(reply.body)[2] == ["tamper", "critical", "2", "1", "0", "1", "", "3600.0"]


@pytest_twisted.ensureDeferred
async def test_reports_need_the_reports_permission_and_good_parameters(api: Api) -> None:
    for path in ("sales", "token-delivery", "arrears", "consumption", "alarms"):
        reply = await api.call("GET", f"/api/v1/reports/{path}", role="cashier")
        assert reply.status == 403 and "'reports'" in reply.message
        assert (await api.call("GET", f"/api/v1/reports/{path}", role="operator")).status == 200
    for query, message in (
        ("sales?tz=Nowhere/Land", "no such time zone 'Nowhere/Land'"),
        ("sales?period=week", "period must be one of day, month"),
        ("sales?format=xlsx", "format must be one of json, csv"),
        ("consumption?since=yesterday", "since must be a number"),
        ("alarms?since=10&until=5", "since (10.0) is after until (5.0)"),
    ):
        reply = await api.call("GET", f"/api/v1/reports/{query}")
        assert reply.status == 400 and message in reply.message, reply.body


@pytest.mark.integration
def test_every_report_on_postgresql(postgres: Postgres, master: bytes) -> None:  # noqa: F811
    """The same figures from the production store (period keys, joins, JSON values, sums)."""
    database = Database(reactor, postgres.create_database("reports"))
    try:
        upgrade(database.engine)
        issuer = SealedKeyStore(master)
        ids = database.run_sync(seed, issuer, master)
        database.run_sync(deliver, issuer, ids)
        database.run_sync(seed_readings)
        database.run_sync(seed_alarms)
        sales = database.run_sync(thd_sales, "day", None, None, None, "Africa/Johannesburg")
        assert [(r["period"], r["count"], r["amount_minor"]) for r in sales["rows"]] == [
            ("2024-03-30", 1, 1000), ("2024-03-31", 2, 3000), ("2024-04-01", 1, 2000)]  # fmt: skip
        assert sales["cancelled"]["count"] == 1 and sales["transfers"]["energy_wh"] == 1200
        delivery = database.run_sync(thd_token_delivery)
        assert delivery["success_rate"] == 0.2 and delivery["keypad_fallbacks"] == 2
        totals = database.run_sync(thd_arrears)["totals"]
        assert (totals["debt_outstanding_minor"], totals["debt_recovered_minor"]) == (1200, 900)
        groups = database.run_sync(thd_consumption, W0, W1, "group")["rows"]
        assert [(r["group"], r["energy_wh"]) for r in groups] == [
            ("north", 20250), ("south", 3333), (None, 0)]  # fmt: skip
        bands = database.run_sync(thd_consumption, W0, W1, "band")["rows"]
        assert [r["energy_wh"] for r in bands] == [12583, 8500, 1000, 1500]
        alarm_totals = database.run_sync(thd_alarms, W0, W0 + DAY)["totals"]
        assert (alarm_totals["mean_time_to_ack_s"], alarm_totals["mean_time_to_clear_s"]) == (
            200.0, 2300.0)  # fmt: skip
    finally:
        database.stop()
