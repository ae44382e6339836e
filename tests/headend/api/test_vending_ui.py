"""What the operator interface's vend and alarm pages ask of the vending and customer routes: a quote
that prices a sale exactly as the sale will be priced and changes nothing, a customer search by
name or phone that shows each customer's accounts, and a cancelled vend that says who cancelled
it and why.

The whole head-end router over a migrated SQLite file (``tests.headend.seed``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest_twisted
import sqlalchemy as sa

from headend.api.tariffs import thd_create_tariff
from headend.store.schema import accounts, commands, customers, tokens, vends
from tests.headend.seed import (  # noqa: F401 (fixtures)
    START,
    Api,
    add_keys,
    add_meters,
    drn,
    fixture_api,
    fixture_db,
    fixture_issuer,
    fixture_logged,
    fixture_master,
    fixture_migrated,
    open_account,
)

ALICE_1, ALICE_2, BOB_1, GONE = (drn(n) for n in (11, 12, 13, 14))

# every line a receipt can have: free basic electricity, a monthly fixed charge, two blocks, tax
TARIFF = {
    "currency": "ZAR",
    "blocks": [{"upper_kwh": 50, "price_minor_per_kwh": "145"},
               {"upper_kwh": None, "price_minor_per_kwh": "185"}],
    "fixed_charge_minor": 1000, "tax_rate": "0.15", "fbe_kwh": 20,
}  # fmt: skip


def seed(connection: sa.Connection, master: bytes) -> dict[str, int]:
    """Alice (two meters, one with a debt recovered at 25 %), Bob (one meter), Carol (whose only
    account is closed); vending keys for the meters' supply group."""
    add_keys(connection, master)
    add_meters(connection, ALICE_1, ALICE_2, BOB_1, GONE)
    tariff = int(thd_create_tariff(connection, "homes", "step", TARIFF, 0.0, "admin", START)["id"])
    ids: dict[str, int] = {}
    for name, phone in (("Alice Dube", "+27821110001"), ("Bob Nkosi", "0831110002"),
                        ("Carol Mokoena", "+27821110003")):  # fmt: skip
        ids[name] = int(connection.execute(
            sa.insert(customers).values(name=name, phone=phone, created_at=START)
            .returning(customers.c.id)
        ).scalar_one())  # fmt: skip
    ids["alice_1"] = open_account(connection, ids["Alice Dube"], ALICE_1, tariff,
                                  debt_minor=2000, debt_recovery_share="0.25")  # fmt: skip
    ids["alice_2"] = open_account(connection, ids["Alice Dube"], ALICE_2, tariff)
    ids["bob"] = open_account(connection, ids["Bob Nkosi"], BOB_1, tariff, status="suspended")
    open_account(connection, ids["Carol Mokoena"], GONE, tariff, status="closed")
    return ids


def _state(connection: sa.Connection) -> dict[str, Any]:
    """Everything a sale changes: the accounts, and the count of vends, tokens and commands."""

    def count(table: sa.Table) -> int:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    rows = connection.execute(sa.select(accounts).order_by(accounts.c.id)).all()
    return {"accounts": [dict(row._mapping) for row in rows], "vends": count(vends),
            "tokens": count(tokens), "commands": count(commands)}  # fmt: skip


def _breakdown(view: dict[str, Any]) -> dict[str, Any]:
    names = ("lines", "total_minor", "tax_minor", "change_minor", "energy_wh", "fbe_wh",
             "debt_remaining_minor", "currency", "tendered_minor", "meter", "account", "notes")  # fmt: skip
    return {name: view[name] for name in names}


@pytest_twisted.ensureDeferred
async def test_a_quote_prices_the_sale_the_vend_then_makes(api: Api, master: bytes) -> None:
    ids = api.app.db.run_sync(seed, master)
    before = api.app.db.run_sync(_state)
    sale = {"meter_id": ALICE_1, "amount_minor": 10_000}

    quoted = await api.call("POST", "/api/v1/vends/quote", sale, role="cashier")
    assert quoted.status == 200, quoted.body
    quote = quoted.json
    # the cashier sees every part of the price before taking the money
    kinds = [line["kind"] for line in quote["lines"]]
    assert kinds == ["debt", "fixed_charge", "fbe", "energy"], quote["lines"]
    assert quote["quote"] is True and "token" not in quote and "receipt_no" not in quote
    assert quote["account"] == ids["alice_1"] and quote["currency"] == "ZAR"
    assert quote["fbe_wh"] == 20_000 and quote["debt_remaining_minor"] < 2000
    assert quote["total_minor"] + quote["change_minor"] == 10_000
    # quoting sold nothing: no vend, no token, no command, the account as it was
    assert api.app.db.run_sync(_state) == before

    sold = await api.call("POST", "/api/v1/vends", sale | {"idempotency_key": "k-1"},
                          role="cashier")  # fmt: skip
    assert sold.status == 201, sold.body
    assert _breakdown(sold.json["receipt"]) == _breakdown(quote)
    assert sold.json["amount_minor"] == quote["total_minor"]
    assert len(sold.json["tokens"][0].replace(" ", "")) == 20


@pytest_twisted.ensureDeferred
async def test_quoting_twice_changes_nothing_and_gives_the_same(api: Api, master: bytes) -> None:
    api.app.db.run_sync(seed, master)
    before = api.app.db.run_sync(_state)
    sale = {"account_id": api.app.db.run_sync(seed_ids_of, ALICE_2), "energy_wh": 30_000}
    first = await api.call("POST", "/api/v1/vends/quote", sale)
    second = await api.call("POST", "/api/v1/vends/quote", sale)
    assert first.status == second.status == 200, first.body
    assert first.json == second.json
    # 30 kWh bought, the month's 20 kWh free on top, and this month's fixed charge
    assert first.json["energy_wh"] == 50_000 and first.json["fbe_wh"] == 20_000
    assert [line["kind"] for line in first.json["lines"]] == ["fixed_charge", "fbe", "energy"]
    assert api.app.db.run_sync(_state) == before


def seed_ids_of(connection: sa.Connection, meter_id: str) -> int:
    return int(connection.execute(
        sa.select(accounts.c.id).where(accounts.c.meter_id == meter_id)
    ).scalar_one())  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_a_quote_is_refused_like_the_sale_would_be(api: Api, master: bytes) -> None:
    api.app.db.run_sync(seed, master)
    # a viewer may not sell, so may not price a sale either
    refused = await api.call("POST", "/api/v1/vends/quote",
                             {"meter_id": ALICE_1, "amount_minor": 500}, role="viewer")  # fmt: skip
    assert refused.status == 403
    # Bob's account is suspended: the cashier learns it at the quote, before taking money
    suspended = await api.call("POST", "/api/v1/vends/quote",
                               {"meter_id": BOB_1, "amount_minor": 500})  # fmt: skip
    assert suspended.status == 409 and "suspended" in suspended.json["error"]["message"]
    unknown = await api.call("POST", "/api/v1/vends/quote", {"meter_id": GONE, "amount_minor": 500})
    assert unknown.status == 404
    both = await api.call("POST", "/api/v1/vends/quote",
                          {"meter_id": ALICE_1, "amount_minor": 500, "energy_wh": 1000})  # fmt: skip
    assert both.status == 422
    # a quote is not a sale: it takes no idempotency key and delivers nothing
    extra = await api.call("POST", "/api/v1/vends/quote",
                           {"meter_id": ALICE_1, "amount_minor": 500, "deliver": False})  # fmt: skip
    assert extra.status == 422


async def _customers(api: Api, q: str, role: str = "cashier") -> list[str]:
    reply = await api.call("GET", f"/api/v1/customers?{urlencode({'q': q})}", role=role)
    assert reply.status == 200, reply.body
    return [item["name"] for item in reply.json["items"]]


@pytest_twisted.ensureDeferred
async def test_customers_are_found_by_name_or_phone_with_their_accounts(
    api: Api, master: bytes
) -> None:
    ids = api.app.db.run_sync(seed, master)
    assert await _customers(api, "Alice") == ["Alice Dube"]
    assert await _customers(api, "Bob N") == ["Bob Nkosi"]
    # a phone number with or without its +, or a prefix of it
    assert await _customers(api, "+2782111") == ["Alice Dube", "Carol Mokoena"]
    assert await _customers(api, "27821110003") == ["Carol Mokoena"]
    assert await _customers(api, "083 111") == ["Bob Nkosi"]
    assert await _customers(api, "%") == []  # a LIKE wildcard is a character like any other
    assert await _customers(api, "") == ["Alice Dube", "Bob Nkosi", "Carol Mokoena"]

    page = (await api.call("GET", "/api/v1/customers?limit=2")).json
    assert page["total"] == 3 and len(page["items"]) == 2
    alice, bob = page["items"]
    assert [(a["id"], a["meter_id"], a["status"], a["debt_minor"]) for a in alice["accounts"]] == [
        (ids["alice_1"], ALICE_1, "open", 2000), (ids["alice_2"], ALICE_2, "open", 0)]  # fmt: skip
    assert [a["status"] for a in bob["accounts"]] == ["suspended"]
    carol = (await api.call("GET", "/api/v1/customers?q=Carol")).json["items"][0]
    assert carol["accounts"] == []  # her only account is closed


@pytest_twisted.ensureDeferred
async def test_a_cancelled_vend_says_who_cancelled_it_and_why(api: Api, master: bytes) -> None:
    api.app.db.run_sync(seed, master)
    sold = await api.call("POST", "/api/v1/vends",
                          {"meter_id": ALICE_2, "amount_minor": 2000, "deliver": False})  # fmt: skip
    assert sold.status == 201, sold.body
    vend_id = sold.json["id"]
    shown = (await api.call("GET", f"/api/v1/vends/{vend_id}")).json
    assert shown["status"] == "issued" and shown["cancelled"] is None

    refused = await api.call("POST", f"/api/v1/vends/{vend_id}/cancel",
                             {"reason": "wrong meter"}, role="cashier")  # fmt: skip
    assert refused.status == 403  # a cashier sells but may not cancel

    api.app.clock.advance(30)
    cancelled = await api.call("POST", f"/api/v1/vends/{vend_id}/cancel",
                               {"reason": "wrong meter number"}, role="supervisor")  # fmt: skip
    assert cancelled.status == 200, cancelled.body
    expected = {"at": START + 30, "by": "supervisor-key", "reason": "wrong meter number"}
    assert cancelled.json["status"] == "cancelled"
    assert cancelled.json["cancelled"] == expected
    assert (await api.call("GET", f"/api/v1/vends/{vend_id}", role="viewer")).json[
        "cancelled"] == expected  # fmt: skip
