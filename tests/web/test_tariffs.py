"""The tariff pages, as a tariff officer and a cashier use them: the list, a new step tariff edited
block by block, the demo's TOU tariff edited on its calendar and pushed to the meters with the
rollout watched to the end, and a cashier who sees the tariffs but no control to change them.

The demo's TOU tariff (``tou-standard``) is a bare meter table: weekday band 3 from 00:00, band 2
from 06:00, band 1 from 17:00, band 2 from 21:00. Every demo meter has an open account on it, so a
push reaches all of them; the Modbus meters confirm the table, and the DL/T 645 meters behind the
PLC module refuse it (this gateway writes no TOU tables over DL/T 645), which the rollout shows
with the reason.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.api import Api, ApiFailure
from tests.support.browser import RunningDemo, login, shot

pytestmark = pytest.mark.integration

ROLLOUT_S = 90  # the simulated meters answer a TOU table within seconds
TO = "\u2013"  # the en dash the page puts between two times


def test_the_list_and_a_new_step_tariff_edited_block_by_block(
    page: Page, demo: RunningDemo
) -> None:
    login(page, demo)
    page.get_by_role("link", name="Tariffs").click()
    expect(page.get_by_role("heading", name="Tariffs", level=1)).to_be_visible()
    table = page.get_by_role("table", name="Tariffs and their current versions")
    expect(table.get_by_role("row", name=re.compile("residential"))).to_contain_text(
        "ZAR 1.45 / 1.85 / 2.40 per kWh in 3 blocks, VAT 15 %"
    )
    expect(table.get_by_role("row", name=re.compile("tou-standard"))).to_contain_text("TOU")
    shot(page, "tariffs")

    # a price that is not a number: the API's refusal is shown beside the field
    page.get_by_role("textbox", name="Name").first.fill("web-night-saver")
    price = page.get_by_label("Price per kWh (before tax)")
    price.fill("cheap")
    page.get_by_role("button", name="Create step tariff").click()
    expect(page.get_by_role("alert")).to_contain_text("price_minor_per_kwh: must be a number")
    expect(price).to_have_attribute("aria-invalid", "true")
    price.fill("1.60")
    page.get_by_role("button", name="Create step tariff").click()
    expect(page.get_by_role("heading", name="Tariff web-night-saver")).to_be_visible()

    # a first block of 50 kWh at 1.20 before the open one, and a fixed charge
    page.get_by_role("button", name="Add block").click()
    page.keyboard.type("50")  # the new block's upper bound has the focus
    page.get_by_label("Price per kWh (ZAR, before tax)").first.fill("1.20")
    page.get_by_label("Fixed charge a month (ZAR, before tax)").fill("25")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_text("Saved as version 2.")).to_be_visible()
    expect(page.get_by_role("definition").filter(has_text="per kWh")).to_have_text(
        "ZAR 1.20 / 1.60 per kWh in 2 blocks, VAT 15 %, free 0 kWh a month"
    )
    shot(page, "tariff-step")
    page.get_by_role("tab", name="Versions").click()
    versions = page.get_by_role("table", name="Every version of this tariff, newest first")
    expect(versions.get_by_role("row")).to_have_count(3)  # the header and two versions
    expect(versions.get_by_role("row").nth(1)).to_contain_text("Version 2 current")

    tariff = next(t for t in demo.api.get("/api/v1/tariffs?kind=step")["items"]
                  if t["name"] == "web-night-saver")  # fmt: skip
    assert tariff["body"]["blocks"] == [
        {"upper_kwh": 50, "price_minor_per_kwh": "120"},
        {"upper_kwh": None, "price_minor_per_kwh": "160"},
    ]
    assert tariff["body"]["fixed_charge_minor"] == 2500 and tariff["body"]["tax_rate"] == "0.15"


def test_edit_a_tou_tariff_and_push_it(page: Page, demo: RunningDemo) -> None:
    login(page, demo)
    page.get_by_role("link", name="Tariffs").click()
    page.get_by_role("link", name="tou-standard").click()
    expect(page.get_by_role("heading", name="Tariff tou-standard")).to_be_visible()
    weekday = page.get_by_role("group", name=re.compile(r"all year · weekday"))
    expect(weekday.get_by_role("img")).to_have_attribute(
        "aria-label", re.compile(f"06:00{TO}17:00 band 2, 17:00{TO}21:00 band 1")
    )

    page.get_by_label("Band 1 name").fill("peak")
    page.get_by_label("Band 1 name").press("Tab")
    # peak to start at 18:00 instead of 17:00; typed as 05:00 first, which the API refuses
    start = weekday.get_by_label("Switch 3 starts at")
    start.fill("05:00")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "switch points must start in increasing order, 05:00 comes after 06:00"
    )
    expect(start).to_have_attribute("aria-invalid", "true")
    start.fill("18:00")
    expect(weekday.get_by_role("img")).to_have_attribute(
        "aria-label", re.compile(f"06:00{TO}18:00 band 2, 18:00{TO}21:00 peak")
    )
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_text("Saved as version 2.")).to_be_visible()
    weekday = page.get_by_role("group", name=re.compile(r"all year · weekday"))
    expect(weekday.get_by_role("img")).to_have_attribute(
        "aria-label",
        f"all year · weekday: 00:00{TO}06:00 band 3, 06:00{TO}18:00 band 2, "
        f"18:00{TO}21:00 peak, 21:00{TO}24:00 band 2",
    )
    expect(page.get_by_role("button", name="Save as version 3")).to_be_visible()
    shot(page, "tariff-tou-editor")

    page.get_by_role("tab", name="Versions").click()
    versions = page.get_by_role("table", name="Every version of this tariff, newest first")
    expect(versions.get_by_role("row").nth(1)).to_contain_text("Version 2 current")
    expect(versions.get_by_role("row").nth(2)).to_contain_text("Version 1")
    expect(page.get_by_text(f"1{TO}2 of 2")).to_be_visible()

    page.get_by_role("tab", name="Push and rollout").click()
    affected = int(re.search(r"By default to the (\d+) meters",  # type: ignore[union-attr]
                             page.get_by_text("By default to the").inner_text()).group(1))  # fmt: skip
    meters = demo.api.get("/api/v1/meters?limit=100")["items"]
    assert affected == len(meters)  # every demo meter has an account on tou-standard
    dlt645 = [m["id"] for m in meters if len(m["id"]) == 12]  # addresses, not 11-digit DRNs
    assert dlt645

    page.get_by_role("button", name="Push version 2").click()
    dialog = page.get_by_role("dialog", name="Push version 2?")
    expect(dialog).to_contain_text(f"the {affected} meters of open accounts on tou-standard")
    dialog.get_by_role("button", name="Push").click()
    summary = page.locator(".rollout-summary")
    expect(summary).to_contain_text(f"Version 2 pushed to {affected} meters")
    expect(summary).to_contain_text(" 0 pending", timeout=ROLLOUT_S * 1000)
    confirmed = affected - len(dlt645)
    expect(summary).to_have_text(
        f"Version 2 pushed to {affected} meters: {confirmed} confirmed, 0 pending, "
        f"{len(dlt645)} rejected, failed or expired."
    )
    expect(page.locator(".tile", has_text="Confirmed")).to_contain_text(str(confirmed))
    shot(page, "tariff-rollout")

    page.get_by_label("Rollout state").select_option("rejected")
    rows = page.get_by_role("table", name="The rollout meter by meter").get_by_role("row")
    expect(rows).to_have_count(1 + len(dlt645))
    for meter_id in dlt645:
        expect(rows.filter(has_text=meter_id)).to_contain_text("not written over DL/T 645")
    modbus = next(m["id"] for m in meters if len(m["id"]) == 11)
    assert demo.api.get(f"/api/v1/meters/{modbus}")["tou_version"] == 2


def test_a_cashier_sees_no_edit_or_push_controls(page: Page, demo: RunningDemo) -> None:
    username, password = demo.operator("cashier")
    login(page, demo, username, password)
    page.get_by_role("link", name="Tariffs").click()
    expect(page.get_by_role("link", name="tou-standard")).to_be_visible()
    expect(page.get_by_role("button", name="Create step tariff")).to_have_count(0)
    expect(page.get_by_role("button", name="Create TOU tariff")).to_have_count(0)

    page.get_by_role("link", name="tou-standard").click()
    expect(page.get_by_role("group", name=re.compile("weekday")).get_by_role("img")).to_be_visible()
    expect(page.get_by_role("textbox")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Save as version"))).to_have_count(0)
    expect(page.get_by_role("button", name="Add switch point")).to_have_count(0)
    page.get_by_role("tab", name="Push and rollout").click()
    expect(page.locator(".rollout-summary")).to_contain_text("Version")
    expect(page.get_by_role("button", name=re.compile("Push"))).to_have_count(0)

    # and the API refuses what the page does not offer
    cashier = Api(demo.base).login(username, password)
    tariff = demo.api.get("/api/v1/tariffs?kind=tou")["items"][0]
    for path, body in ((f"/api/v1/tariffs/{tariff['id']}/versions", {"body": tariff["body"]}),
                       (f"/api/v1/tariffs/{tariff['id']}/push", {"activation_at": 0})):  # fmt: skip
        with pytest.raises(ApiFailure) as refused:
            cashier.post(path, body)
        assert refused.value.status == 403 and "tariffs" in str(refused.value.body)
