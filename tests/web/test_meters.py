"""Meters and gateways in the operator interface, against the running demo: find a meter by its
customer and read its STS attributes and credit; disconnect and reconnect it and watch the meter
report its relay; a cashier is offered neither and refused both; a gateway's health per bus, its
meters and an on-demand read."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.api import Api, ApiFailure
from tests.support.browser import RunningDemo, login, shot

pytestmark = pytest.mark.integration

FIELD_MS = 60_000  # a command's round trip to a simulated meter, and the meter's next status
HEALTH_MS = 90_000  # a gateway reports its health every minute


def _shown(total: int) -> str:
    """The pager's count on the first page, "1-25 of 27" with an en dash as the pager writes it."""
    return f"1\u2013{min(total, 25)} of {total}"


def _relay_meter(demo: RunningDemo) -> dict[str, Any]:
    """A Modbus TCP meter (a fast bus) the other journeys are unlikely to pick: the one before
    the last, with its account and a reported credit and relay."""
    items = demo.api.get("/api/v1/meters?q=12000020&limit=100")["items"]
    meter_id = sorted(item["id"] for item in items)[-2]
    meter: dict[str, Any] = demo.api.get(f"/api/v1/meters/{meter_id}")
    return meter


def _open_meter(page: Page, demo: RunningDemo, meter_id: str) -> None:
    page.goto(f"{demo.ui}#/meters/{meter_id}")
    expect(page.get_by_role("heading", name=f"Meter {meter_id}", exact=True)).to_be_visible()


def test_a_meter_is_found_by_its_customer_and_shows_its_sts_attributes_and_credit(
    page: Page, demo: RunningDemo
) -> None:
    meter = _relay_meter(demo)
    customer = meter["account"]["customer_name"]
    login(page, demo)
    # a link from a gateway or the overview pre-fills the filters
    page.goto(f"{demo.ui}#/meters?gateway_id=gw-demo-1")
    expect(page.get_by_role("heading", name="Meters", exact=True)).to_be_visible()
    expect(page.get_by_label("Gateway")).to_have_value("gw-demo-1")
    total = demo.api.get("/api/v1/meters?gateway_id=gw-demo-1&limit=1")["total"]
    expect(page.get_by_text(_shown(total))).to_be_visible()
    shot(page, "meters")

    page.get_by_label("Gateway").fill("")
    page.get_by_label("Customer (name or id)").fill(customer)
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text(_shown(1))).to_be_visible()
    assert f"customer={customer.replace(' ', '+')}" in page.url  # the filter stays in the address
    row = page.get_by_role("row").filter(has_text=meter["id"])
    expect(row).to_contain_text(customer)
    row.get_by_role("link", name=meter["id"]).click()

    expect(page.get_by_role("heading", name=f"Meter {meter['id']}", exact=True)).to_be_visible()
    sts = page.get_by_role("region", name="STS key attributes")
    for label, value in (("Supply group code (SGC)", meter["sts"]["sgc"]),
                         ("Key revision", meter["sts"]["key_revision"]),
                         ("Base date", meter["sts"]["base_date"]), ("Algorithm", "STA")):  # fmt: skip
        expect(sts).to_contain_text(re.compile(rf"{re.escape(label)}\s*{value}"))
    expect(page.get_by_role("region", name="Customer")).to_contain_text(customer)
    expect(page.get_by_role("status", name="Remaining credit")).to_have_text(
        re.compile(r"^\d[\d,]*\.\d\d kWh$"), timeout=FIELD_MS
    )
    expect(page.get_by_role("img", name=re.compile("Energy used per day"))).to_be_visible()
    page.get_by_role("button", name="Month").click()
    expect(page.get_by_role("img", name=re.compile("Energy used per month"))).to_be_visible()
    expect(page.get_by_role("button", name="Month")).to_have_attribute("aria-pressed", "true")
    shot(page, "meter")


def _switch(page: Page, verb: str, reason: str) -> None:
    page.get_by_role("button", name=verb, exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"{verb} meter")
    dialog.get_by_label("Reason").fill(reason)
    dialog.get_by_role("button", name=verb, exact=True).click()
    expect(dialog).to_be_hidden()


def test_an_operator_disconnects_and_reconnects_a_meter(page: Page, demo: RunningDemo) -> None:
    meter = _relay_meter(demo)
    login(page, demo)
    _open_meter(page, demo, meter["id"])
    relay = page.get_by_role("status", name="Relay", exact=True)
    expect(relay).to_have_text(re.compile(r"^connected"), timeout=FIELD_MS)

    # the reason is required, and cancelling changes nothing
    page.get_by_role("button", name="Disconnect", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Disconnect", exact=True).click()
    expect(dialog.get_by_role("alert")).to_have_text("Reason is required")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    _switch(page, "Disconnect", "tampered seal, site visit booked")
    progress = page.locator(".command-progress")
    expect(progress).to_contain_text("Disconnect command:")
    expect(progress).to_contain_text("applied", timeout=FIELD_MS)
    expect(relay).to_have_text(re.compile(r"^disconnected"), timeout=FIELD_MS)
    expect(progress).to_contain_text("The meter reports its relay disconnected.")
    assert demo.api.get(f"/api/v1/meters/{meter['id']}")["relay_state"] == 1

    _switch(page, "Connect", "seal replaced")
    expect(relay).to_have_text(re.compile(r"^connected"), timeout=FIELD_MS)
    expect(progress).to_contain_text("The meter reports its relay connected.")

    # the commands, each with its full history on demand
    page.get_by_role("tab", name="Commands").click()
    row = page.get_by_role("row").filter(has_text="relay connect").first
    expect(row).to_contain_text("applied")
    row.get_by_text("History").click()
    for state in ("queued", "sent", "received", "applied"):
        expect(row).to_contain_text(state)
    expect(row).to_contain_text("relay state verified")


def test_a_cashier_is_neither_offered_nor_allowed_the_relay(page: Page, demo: RunningDemo) -> None:
    meter = _relay_meter(demo)
    username, password = demo.operator("cashier")
    login(page, demo, username, password)
    _open_meter(page, demo, meter["id"])
    expect(page.get_by_role("status", name="Relay", exact=True)).to_be_visible()
    expect(page.get_by_role("region", name="Credit and supply")).to_be_visible()
    for name in ("Disconnect", "Connect", "Read now"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)

    cashier = Api(demo.base).login(username, password)
    with pytest.raises(ApiFailure) as refused:
        cashier.post(f"/api/v1/meters/{meter['id']}/relay",
                     {"action": "disconnect", "reason": "not mine to do"})  # fmt: skip
    assert refused.value.status == 403
    relay_commands = demo.api.get(f"/api/v1/commands?meter_id={meter['id']}&type=relay")["items"]
    assert [c for c in relay_commands if c["created_by"] == username] == []


def test_the_gateways_health_per_bus_its_meters_and_an_on_demand_read(
    page: Page, demo: RunningDemo
) -> None:
    meter = _relay_meter(demo)
    login(page, demo)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Gateways").click()
    expect(page.get_by_role("heading", name="Gateways", exact=True)).to_be_visible()
    row = page.get_by_role("row").filter(has_text="gw-demo-1")
    expect(row).to_contain_text("online")
    for bus in ("rtu1:", "tcp1:", "plc1:"):  # the health arrives within a minute
        expect(row).to_contain_text(bus, timeout=HEALTH_MS)
    shot(page, "gateways")

    row.get_by_role("link", name="gw-demo-1").click()
    expect(page.get_by_role("heading", name="Gateway gw-demo-1", exact=True)).to_be_visible()
    for bus in ("rtu1", "tcp1", "plc1"):
        table = page.get_by_role("table", name=f"Bus {bus}")
        expect(table).to_contain_text("Utilisation")
        expect(table).to_contain_text("Timeouts")
    meters = page.get_by_role("table", name="The meters behind this gateway")
    expect(meters.get_by_role("link", name=meter["id"])).to_be_visible()
    total = demo.api.get("/api/v1/gateways/gw-demo-1")["meters"]
    expect(page.get_by_text(_shown(total))).to_be_visible()

    # one meter read now, then all of them
    meters.get_by_role("button", name=f"Read meter {meter['id']} now").click()
    expect(meters.get_by_role("row").filter(has_text=meter["id"])).to_contain_text(
        "Read: applied", timeout=FIELD_MS
    )
    page.get_by_role("button", name="Read all meters").click()
    expect(page.get_by_role("status").filter(has_text="Read asked of")).to_contain_text(
        f"Read asked of {total} meters"
    )
    reads = page.get_by_role("table", name=re.compile("Read commands"))
    expect(reads.get_by_role("row").filter(has_text="read")).not_to_have_count(0)
    shot(page, "gateway")
