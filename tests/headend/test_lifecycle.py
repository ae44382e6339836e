"""Change of tenant and meter replacement, in the store and over HTTP.

The credit transferred to a replacement meter is checked the only way that counts: the token is
entered into the pure STS meter model holding the *new* meter's decoder key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import reactor

from headend.keystore import SealedKeyStore
from headend.lifecycle import LifecycleError, thd_change_tenant, thd_replace_meter
from headend.records import reading_rows, thd_store_readings
from headend.store import Database, upgrade
from headend.store.schema import accounts, audit_log, commands, meters, tokens, vends
from headend.vending import Seller, VendError, thd_vend
from protocols.link import Reading, ReadingBatch
from protocols.sts import CreditType, TokenResult
from tests.headend.seed import (  # noqa: F401 (fixtures)
    GATEWAY,
    KEY2_HEX,
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
    meter_decoder,
    open_account,
)
from tests.support.pg_fixture import postgres  # noqa: F401
from tests.support.postgres import Postgres

NOW = datetime(2024, 3, 15, 12, tzinfo=UTC).timestamp()
OLD, NEW, SPARE = drn(11), drn(12), drn(13)
CASHIER = Seller("carol", "head-office")
TECH = Seller("tom", "field")


def seed(connection: sa.Connection, master: bytes) -> dict[str, int]:
    """OLD (supply group 123456, key revision 1, base date 1993) on Alice's account, which owes 300
    and pays half of each purchase towards it; NEW (revision 2, base date 2014) and SPARE
    registered by the gateway and on no account; Bob, a customer without an account."""
    add_keys(connection, master)
    add_meters(connection, OLD, base_date=1993)
    add_meters(connection, NEW, SPARE, base_date=2014, key_revision=2)
    tariff = add_tariff(connection)
    alice = add_customer(connection, "Alice")
    account = open_account(connection, alice, OLD, tariff, debt_minor=300,
                           debt_recovery_share="0.5")  # fmt: skip
    return {"alice": alice, "bob": add_customer(connection, "Bob"), "account": account,
            "tariff": tariff}  # fmt: skip


@pytest.fixture
def ids(db: Database, master: bytes) -> dict[str, int]:
    seeded: dict[str, int] = db.run_sync(seed, master)
    return seeded


def _audit(connection: sa.Connection) -> list[tuple[str, str, dict[str, Any]]]:
    rows = connection.execute(
        sa.select(audit_log.c.action, audit_log.c.target, audit_log.c.detail)
        .order_by(audit_log.c.id)
    ).all()  # fmt: skip
    return [(r.action, r.target, json.loads(r.detail)) for r in rows]


def _account(connection: sa.Connection, account_id: int) -> Any:
    return connection.execute(sa.select(accounts).where(accounts.c.id == account_id)).one()


def _credit_readings(connection: sa.Connection, meter: str, *credits: tuple[float, str]) -> None:
    readings = tuple(Reading(meter, ts, {"credit_remaining": Decimal(kwh)}) for ts, kwh in credits)
    thd_store_readings(connection, reading_rows(ReadingBatch(GATEWAY, 1, NOW, readings)))


# -- change of tenant ---------------------------------------------------------------------------


def test_a_change_of_tenant_closes_the_account_and_opens_one_on_the_same_meter(
    db: Database, issuer: SealedKeyStore, ids: dict[str, int]
) -> None:
    def go(connection: sa.Connection) -> dict[str, Any]:
        # Alice buys for 1000: half of it, 500, capped at the 300 she owes, pays her debt; the
        # other 700 buys 3.5 kWh: her month is March 2024 with 3 500 Wh bought
        thd_vend(connection, issuer, CASHIER, NOW - 3600, meter_id=OLD, amount_minor=1000)
        _credit_readings(connection, OLD, (NOW - 600, "3.250"), (NOW - 60, "3.100"))
        return thd_change_tenant(connection, ids["account"], ids["bob"], "carol", NOW)

    view = db.run_sync(go)
    closed, opened = view["closed_account"], view["account"]
    assert closed["id"] == ids["account"] and closed["status"] == "closed"
    assert closed["closed_at"] == NOW and closed["customer_id"] == ids["alice"]
    assert closed["debt_minor"] == 0 and closed["debt_recovered_minor"] == 300
    assert closed["month"] == "2024-03" and closed["month_energy_wh"] == 3500
    assert opened["status"] == "open" and opened["customer_id"] == ids["bob"]
    assert opened["meter_id"] == OLD and opened["tariff_id"] == ids["tariff"]
    # Bob's month starts afresh (his first kWh are priced from the first block), no debt
    assert (opened["month"], opened["month_energy_wh"], opened["debt_minor"]) == ("", 0, 0)
    assert opened["debt_recovery_share"] == "0.5"  # the account's policy, kept
    assert view["meter_credit_wh"] == 3100  # the last credit the meter reported
    assert "stays with the meter" in view["note"] and "3100 Wh" in view["note"]

    # the next sale on the meter is Bob's
    sale = db.run_sync(thd_vend, issuer, CASHIER, NOW + 60, meter_id=OLD, amount_minor=400)
    assert sale["account_id"] == opened["id"] and sale["energy_wh"] == 2000
    actions = [(a, t) for a, t, _ in db.run_sync(_audit) if a.startswith("account")]
    assert actions == [("account.closed", f"account:{ids['account']}"),
                       ("account.open", f"account:{opened['id']}")]  # fmt: skip


def test_a_change_of_tenant_can_carry_a_debt_for_the_new_account(
    db: Database, ids: dict[str, int]
) -> None:
    view = db.run_sync(thd_change_tenant, ids["account"], ids["bob"], "carol", NOW, 1200, "0.25")
    assert view["account"]["debt_minor"] == 1200
    assert view["account"]["debt_recovery_share"] == "0.25"
    assert view["closed_account"]["debt_minor"] == 300  # Alice's debt stays Alice's
    assert view["meter_credit_wh"] is None and view["note"].endswith("keeps its debt of 300")


@pytest.mark.parametrize(
    ("account", "customer", "status", "message"),
    [
        (999, "bob", 404, "no account 999"),
        ("account", 999, 404, "no customer 999"),
        ("account", "alice", 409, "holds account"),
    ],
)
def test_a_change_of_tenant_is_refused(db: Database, ids: dict[str, int], account: Any,
                                       customer: Any, status: int, message: str) -> None:  # fmt: skip
    account_id = ids[account] if isinstance(account, str) else account
    customer_id = ids[customer] if isinstance(customer, str) else customer
    with pytest.raises(LifecycleError, match=message) as raised:
        db.run_sync(thd_change_tenant, account_id, customer_id, "carol", NOW)
    assert raised.value.status == status
    assert db.run_sync(_account, ids["account"]).status == "open"  # nothing changed


def test_a_closed_account_cannot_change_tenant(db: Database, ids: dict[str, int]) -> None:
    db.run_sync(thd_change_tenant, ids["account"], ids["bob"], "carol", NOW)
    with pytest.raises(LifecycleError, match="is closed already"):
        db.run_sync(thd_change_tenant, ids["account"], ids["alice"], "carol", NOW)


# -- meter replacement --------------------------------------------------------------------------


def _token_command(connection: sa.Connection, meter: str) -> Any:
    return connection.execute(
        sa.select(commands).where(commands.c.meter_id == meter, commands.c.type == "token")
    ).one()


def test_a_replaced_meters_credit_reaches_the_new_meter(db: Database, issuer: SealedKeyStore,
                                                        ids: dict[str, int]) -> None:  # fmt: skip
    def go(connection: sa.Connection) -> dict[str, Any]:
        thd_vend(connection, issuer, CASHIER, NOW - 3600, meter_id=OLD, amount_minor=1000)
        # the meter reported 9.000 kWh, then 4.567 kWh left: the last one counts
        _credit_readings(connection, OLD, (NOW - 900, "9.000"), (NOW - 300, "4.567"))
        return thd_replace_meter(connection, issuer, OLD, NEW, TECH, NOW)

    view = db.run_sync(go)
    assert view["transfer_credit_wh"] == 4567
    transfer = view["transfer"]
    # 4 567 Wh rounded down to 0.1 kWh units: 45 units, 4 500 Wh, at no price
    assert (transfer["amount_minor"], transfer["energy_wh"]) == (0, 4500)
    assert transfer["meter_id"] == NEW and transfer["account_id"] == ids["account"]
    assert transfer["receipt_no"].startswith("T")
    lines = transfer["receipt"]["lines"]
    assert [(line["description"], line["amount_minor"]) for line in lines] == [
        (f"credit transferred from meter {OLD}", 0)]  # fmt: skip

    def state(connection: sa.Connection) -> tuple[Any, ...]:
        old, new = (connection.execute(sa.select(meters).where(meters.c.id == m)).one()
                    for m in (OLD, NEW))  # fmt: skip
        return old, new, _account(connection, ids["account"]), _token_command(connection, NEW)

    old, new, account, command = db.run_sync(state)
    assert old.status == "replaced" and new.status == "active"
    assert account.meter_id == NEW and account.status == "open"
    # the month and the debt stay on the account: 1000 paid 300 of debt, bought 3.5 kWh
    assert (account.month, account.month_energy_wh, account.debt_minor) == ("2024-03", 3500, 0)
    # NEW keeps the key attributes it was registered with
    assert (new.key_revision, new.base_date) == (2, 2014)
    assert command.state == "queued" and command.vend_id == transfer["id"]
    digits = json.loads(command.args)["tokens"]
    assert digits == [transfer["tokens"][0].replace(" ", "")]

    # The proof: the new meter (key revision 2, base date 2014) accepts the token and shows 4.5 kWh
    meter = meter_decoder(NEW, KEY2_HEX, key_revision=2, base_date=2014)
    outcome = meter.enter(digits[0])
    assert outcome.result is TokenResult.ACCEPT
    assert meter.state.credit[CreditType.ELECTRICITY] == 45
    # ... and the old meter's key could not have read it
    assert meter_decoder(OLD).enter(digits[0]).result is TokenResult.CRC

    audit = [(a, t) for a, t, _ in db.run_sync(_audit)]
    assert audit[-3:] == [("meter.replaced", f"meter:{OLD}"),
                          ("account.meter_changed", f"account:{ids['account']}"),
                          ("vend.credit_transfer", f"meter:{NEW}")]  # fmt: skip

    # sales go to the new meter now; the old one is not sold to
    sale = db.run_sync(thd_vend, issuer, CASHIER, NOW + 60, meter_id=NEW, amount_minor=200)
    assert sale["account_id"] == ids["account"] and sale["energy_wh"] == 1000
    with pytest.raises(VendError, match=f"no open account for meter {OLD}"):
        db.run_sync(thd_vend, issuer, CASHIER, NOW + 120, meter_id=OLD, amount_minor=200)


@pytest.mark.parametrize(("credit_wh", "note"), [
    (0, None), (99, "99 Wh is less than a token's 0.1 kWh: nothing transferred")])  # fmt: skip
def test_no_token_when_there_is_no_whole_unit_to_transfer(
    db: Database, issuer: SealedKeyStore, ids: dict[str, int], credit_wh: int, note: str | None
) -> None:
    view = db.run_sync(thd_replace_meter, issuer, OLD, NEW, TECH, NOW,
                       transfer_credit_wh=credit_wh)  # fmt: skip
    assert view["transfer"] is None and view["transfer_credit_wh"] == credit_wh
    assert (note in view["notes"]) if note else len(view["notes"]) == 2
    assert db.run_sync(lambda c: c.execute(sa.select(sa.func.count()).select_from(vends))
                       .scalar_one()) == 0  # fmt: skip
    assert db.run_sync(lambda c: c.execute(sa.select(sa.func.count()).select_from(tokens))
                       .scalar_one()) == 0  # fmt: skip


def test_an_explicit_reading_beats_the_last_reported_credit(
    db: Database, issuer: SealedKeyStore, ids: dict[str, int]
) -> None:
    db.run_sync(_credit_readings, OLD, (NOW - 300, "4.567"))
    view = db.run_sync(thd_replace_meter, issuer, OLD, NEW, TECH, NOW, transfer_credit_wh=12345)
    assert view["transfer"]["energy_wh"] == 12300


def _take(connection: sa.Connection, meter: str, ids: dict[str, int]) -> None:
    open_account(connection, ids["bob"], meter, ids["tariff"])


@pytest.mark.parametrize(
    ("old", "new", "prepare", "status", "message"),
    [
        (OLD, drn(99), None, 404, "let its gateway register it first"),
        (drn(98), NEW, None, 404, f"no meter {drn(98)}"),
        (OLD, OLD, None, 422, "cannot replace itself"),
        (OLD, NEW, "new_taken", 409, f"meter {NEW} is on account"),
        (OLD, NEW, "new_replaced", 409, f"meter {NEW} is replaced"),
        (SPARE, NEW, None, 409, f"meter {SPARE} is on no open account"),
        (OLD, NEW, "old_replaced", 409, f"meter {OLD} is replaced"),
    ],
)
def test_a_replacement_is_refused(db: Database, issuer: SealedKeyStore, ids: dict[str, int],
                                  old: str, new: str, prepare: str | None, status: int,
                                  message: str) -> None:  # fmt: skip
    def setup(connection: sa.Connection) -> None:
        if prepare == "new_taken":
            _take(connection, NEW, ids)
        elif prepare == "new_replaced":
            connection.execute(sa.update(meters).where(meters.c.id == NEW).values(
                status="replaced"))  # fmt: skip
        elif prepare == "old_replaced":
            thd_replace_meter(connection, issuer, OLD, SPARE, TECH, NOW)

    db.run_sync(setup)
    before = db.run_sync(_audit)
    with pytest.raises(LifecycleError, match=message) as raised:
        db.run_sync(thd_replace_meter, issuer, old, new, TECH, NOW + 1)
    assert raised.value.status == status
    assert db.run_sync(_audit) == before  # the transaction left nothing behind


# -- over HTTP ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_change_of_tenant_over_http(api: Api, master: bytes) -> None:
    ids = api.app.db.run_sync(seed, master)
    path = f"/api/v1/accounts/{ids['account']}/change-tenant"
    reply = await api.call("POST", path, {"customer_id": ids["bob"]}, role="operator")
    assert reply.status == 403 and "'customers'" in reply.message
    reply = await api.call("POST", path, {"customer_id": ids["bob"], "debt_minor": -1},
                           role="cashier")  # fmt: skip
    assert reply.status == 422
    reply = await api.call("POST", path, {"customer_id": ids["bob"], "debt_minor": 250},
                           role="cashier")  # fmt: skip
    assert reply.status == 201, reply.body
    body = reply.json
    assert body["closed_account"]["status"] == "closed"
    assert body["account"]["customer_id"] == ids["bob"] and body["account"]["debt_minor"] == 250
    assert "stays with the meter" in body["note"]
    again = await api.call("POST", path, {"customer_id": ids["alice"]}, role="cashier")
    assert again.status == 409 and "closed already" in again.message
    reply = await api.call("GET", f"/api/v1/accounts/{body['account']['id']}")
    assert reply.json["meter_id"] == OLD and reply.json["status"] == "open"
    missing = await api.call("POST", "/api/v1/accounts/x/change-tenant", {"customer_id": 1})
    assert missing.status == 404


@pytest_twisted.ensureDeferred
async def test_meter_replacement_over_http(api: Api, master: bytes) -> None:
    ids = api.app.db.run_sync(seed, master)
    api.app.db.run_sync(_credit_readings, OLD, (NOW - 300, "2.049"))
    path = f"/api/v1/meters/{OLD}/replace"
    reply = await api.call("POST", path, {"new_meter_id": NEW}, role="cashier")
    assert reply.status == 403 and "'meters'" in reply.message
    reply = await api.call("POST", path, {"new_meter_id": NEW, "transfer_credit_wh": -5},
                           role="operator")  # fmt: skip
    assert reply.status == 422 and "transfer_credit_wh" in reply.json["error"]["details"][0]
    reply = await api.call("POST", path, {"new_meter_id": drn(77)}, role="operator")
    assert reply.status == 404 and "register" in reply.message

    reply = await api.call("POST", path, {"new_meter_id": NEW}, role="operator")
    assert reply.status == 200, reply.body
    body = reply.json
    assert body["old_meter_status"] == "replaced" and body["account"]["meter_id"] == NEW
    assert body["transfer"]["energy_wh"] == 2000  # 2.049 kWh: 20 units
    assert body["transfer"]["receipt"]["operator"] == "operator-key"
    assert api.app.dispatcher.pokes == 1
    vend = await api.call("GET", f"/api/v1/vends/{body['transfer']['id']}")
    assert vend.json["delivery"]["state"] == "queued"
    meter = (await api.call("GET", f"/api/v1/meters/{OLD}")).json
    assert meter["status"] == "replaced"
    again = await api.call("POST", path, {"new_meter_id": SPARE}, role="operator")
    assert again.status == 409 and "is replaced" in again.message
    assert ids["account"] == body["account"]["id"]


@pytest.mark.integration
def test_life_cycle_on_postgresql(postgres: Postgres, master: bytes) -> None:  # noqa: F811
    database = Database(reactor, postgres.create_database("lifecycle"))
    try:
        upgrade(database.engine)
        issuer = SealedKeyStore(master)
        ids = database.run_sync(seed, master)
        database.run_sync(_credit_readings, OLD, (NOW - 300, "4.567"))
        view = database.run_sync(thd_replace_meter, issuer, OLD, NEW, TECH, NOW)
        assert view["transfer"]["energy_wh"] == 4500
        meter = meter_decoder(NEW, KEY2_HEX, key_revision=2, base_date=2014)
        assert meter.enter(view["transfer"]["tokens"][0]).result is TokenResult.ACCEPT
        tenant = database.run_sync(thd_change_tenant, ids["account"], ids["bob"], "carol", NOW)
        assert tenant["account"]["meter_id"] == NEW and tenant["meter_credit_wh"] is None
    finally:
        database.stop()
