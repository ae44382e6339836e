"""Selling credit in the operator interface, against the running demo: a cashier finds the customer,
sees the tariff breakdown, issues the token (a double click sells once), reads the token in groups
of four on a printable receipt and watches it reach the meter, whose credit goes up; a reprint
shows the same token; a sale whose token was never sent is cancelled with a reason, by a role that
may cancel (a cashier is not offered it, and the API refuses it)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.api import Api, ApiFailure
from tests.support.browser import RunningDemo, login, shot

pytestmark = pytest.mark.integration

FIELD_MS = 60_000  # a token's way to a simulated meter and back, with the TOU pushes of other tests
TOKEN = re.compile(r"^\d{4} \d{4} \d{4} \d{4} \d{4}$")


def _rtu_meter(demo: RunningDemo, index: int) -> dict[str, Any]:
    """A meter on the demo's Modbus RTU bus (the other journeys use the TCP bus's last meters)."""
    items = demo.api.get("/api/v1/meters?q=12000010&limit=100")["items"]
    meter: dict[str, Any] = demo.api.get(f"/api/v1/meters/{sorted(m['id'] for m in items)[index]}")
    assert meter["account"], meter
    return meter


def _credit(demo: RunningDemo, meter_id: str) -> float:
    """The credit the meter reported last (waiting for its first status reading if need be)."""
    deadline = time.monotonic() + 40
    while (credit := demo.api.get(f"/api/v1/meters/{meter_id}")["credit_wh"]) is None:
        assert time.monotonic() < deadline, f"meter {meter_id} reported no credit"
        time.sleep(2)
    return float(credit)


def _as(demo: RunningDemo, role: str) -> tuple[tuple[str, str], Api]:
    username, password = demo.operator(role)
    return (username, password), Api(demo.base).login(username, password)


def _count_print_calls(page: Page) -> None:
    """window.print() opens a dialog a headless browser cannot show: count the calls instead."""
    page.add_init_script("window.print = () => { window.printed = (window.printed || 0) + 1; };")


def test_a_cashier_sells_credit_and_watches_the_token_reach_the_meter(
    page: Page, demo: RunningDemo
) -> None:
    meter = _rtu_meter(demo, 2)
    customer = meter["account"]["customer_name"]
    (username, password), _ = _as(demo, "cashier")
    credit_before = _credit(demo, meter["id"])
    sold_before = demo.api.get(f"/api/v1/vends?meter_id={meter['id']}&limit=1")["total"]
    _count_print_calls(page)
    login(page, demo, username, password)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Vend").click()
    expect(page.get_by_role("heading", name="Vend", level=1)).to_be_visible()
    page.get_by_label("Meter number, customer name or phone").fill(customer)
    page.get_by_role("button", name="Find").click()
    match = page.get_by_role("row").filter(has_text=meter["id"])
    expect(match).to_contain_text(customer)
    match.get_by_role("button", name=f"Select meter {meter['id']}").click()
    expect(page.get_by_text("Selling to")).to_be_visible()

    page.get_by_label("Amount (ZAR)").fill("25")
    page.get_by_role("button", name="Show breakdown").click()
    breakdown = page.get_by_role("table", name="Tariff breakdown")
    expect(breakdown).to_be_visible()
    # the page shows what the tariff makes of 25.00, to the cent, before anything is sold
    quote = demo.api.post("/api/v1/vends/quote", {"meter_id": meter["id"], "amount_minor": 2500})
    total = f"ZAR {quote['total_minor'] / 100:.2f}"
    expect(breakdown.locator("tfoot")).to_contain_text(total)
    expect(breakdown.locator("tbody tr")).to_have_count(len(quote["lines"]))
    expect(page.get_by_role("status").filter(has_text="Take")).to_contain_text(
        f"Take {total} and give ZAR {quote['change_minor'] / 100:.2f} change"
    )
    shot(page, "vend")

    page.get_by_role("button", name="Issue token").dblclick()
    expect(page).to_have_url(re.compile(r"#/vends/\d+$"))
    token = page.locator(".token")
    expect(token).to_have_text(TOKEN)
    digits = token.inner_text()
    receipt = page.locator(".receipt")
    expect(receipt).to_contain_text(digits)
    expect(receipt).to_contain_text(total)
    expect(receipt).to_contain_text(meter["id"])
    delivery = page.locator(".delivery")
    expect(delivery).to_contain_text("Applied: the meter accepted the token", timeout=FIELD_MS)
    # a cashier may not cancel, and by now the token is in the meter anyway
    expect(page.get_by_role("button", name="Cancel vend")).to_have_count(0)
    shot(page, "vend-token")

    # the double click sold once
    assert demo.api.get(f"/api/v1/vends?meter_id={meter['id']}&limit=1")["total"] == sold_before + 1
    # and the meter reports more credit than before (asked now, not at the gateway's next round)
    demo.api.post(f"/api/v1/meters/{meter['id']}/read", {"groups": ["status"]})
    deadline = time.monotonic() + FIELD_MS / 1000
    while (credit := _credit(demo, meter["id"])) <= credit_before:
        assert time.monotonic() < deadline, f"credit still {credit} Wh, was {credit_before} Wh"
        time.sleep(2)

    page.get_by_role("button", name="Print receipt").click()
    page.get_by_role("button", name="Reprint").click()
    expect(receipt).to_contain_text("REPRINT")
    expect(page.locator(".receipt-token")).to_have_text(digits)  # the same token, never a new one
    expect(token).to_have_text(digits)
    assert page.evaluate("window.printed") == 2


def test_a_sale_not_yet_sent_is_cancelled_with_a_reason(page: Page, demo: RunningDemo) -> None:
    meter = _rtu_meter(demo, 3)
    # sold at the counter for the keypad: no remote delivery, so nothing has left the head-end
    vend = demo.api.post("/api/v1/vends",
                         {"meter_id": meter["id"], "amount_minor": 1500, "deliver": False})  # fmt: skip
    (username, password), cashier = _as(demo, "cashier")

    login(page, demo, username, password)
    page.goto(f"{demo.ui}#/vends/{vend['id']}")
    expect(page.locator(".token")).to_have_text(TOKEN)
    expect(page.locator(".delivery")).to_contain_text(
        "give the token to the customer to type in on the meter's keypad"
    )
    expect(page.get_by_role("button", name="Reprint")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel vend")).to_have_count(0)  # not a cashier's
    with pytest.raises(ApiFailure) as refused:
        cashier.post(f"/api/v1/vends/{vend['id']}/cancel", {"reason": "wrong meter"})
    assert refused.value.status == 403

    page.get_by_role("button", name="Log out").click()
    login(page, demo)
    page.goto(f"{demo.ui}#/vends/{vend['id']}")
    page.get_by_role("button", name="Cancel vend").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"meter {meter['id']} is reversed")
    dialog.get_by_role("button", name="Cancel vend").click()
    expect(dialog.get_by_role("alert")).to_have_text("Reason is required")
    dialog.get_by_label("Reason").fill("wrong meter number")
    dialog.get_by_role("button", name="Cancel vend").click()
    expect(page.locator(".cancelled-note")).to_contain_text(
        f"by {demo.username}: wrong meter number"
    )
    expect(page.locator(".receipt")).to_contain_text("CANCELLED")
    expect(page.get_by_role("button", name="Cancel vend")).to_be_hidden()
    shown = demo.api.get(f"/api/v1/vends/{vend['id']}")
    assert shown["status"] == "cancelled" and shown["cancelled"]["reason"] == "wrong meter number"

    # and the list of recent sales on the vend page says so
    page.goto(f"{demo.ui}#/vend")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=vend["receipt_no"]))
    expect(row).to_contain_text("cancelled")
