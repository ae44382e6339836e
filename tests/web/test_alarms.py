"""Alarms in the operator interface, against the running demo: a meter whose credit is cleared by an
engineering token reports low credit, the alarm appears in the live list (the address pre-filters
it), an operator acknowledges it with a comment and the list shows who did and what they said;
the notification history of an alarm is a tab away; a viewer is offered neither acknowledgement
nor selling, and the API refuses both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.api import Api, ApiFailure
from tests.support.browser import RunningDemo, login, shot

pytestmark = pytest.mark.integration

ALARM_S = 60  # a token reaches a simulated meter in seconds, a status read as fast


@pytest.fixture(scope="module")
def low_credit(demo: RunningDemo) -> Iterator[list[dict[str, Any]]]:
    """Two Modbus RTU meters (none of the other journeys' meters) with their credit cleared by an
    engineering token, and the low-credit alarm each then raises."""
    items = demo.api.get("/api/v1/meters?q=12000010&limit=100")["items"]
    meters = sorted(m["id"] for m in items)[-2:]
    commands = [demo.api.post(f"/api/v1/meters/{meter_id}/engineering",
                              {"kind": "clear_credit"})["command_id"] for meter_id in meters]  # fmt: skip
    deadline = time.monotonic() + ALARM_S
    for meter_id, command_id in zip(meters, commands, strict=True):
        while (state := demo.api.get(f"/api/v1/commands/{command_id}")["state"]) != "applied":
            assert time.monotonic() < deadline, f"clear credit on {meter_id}: still {state}"
            time.sleep(0.5)
        # the meter's status read now rather than at the gateway's next round (every 30 s)
        demo.api.post(f"/api/v1/meters/{meter_id}/read", {"groups": ["status"]})
    alarms: list[dict[str, Any]] = []
    for meter_id in meters:
        while not (found := demo.api.get(
            f"/api/v1/alarms?meter_id={meter_id}&kind=low_credit&state=open")["items"]):  # fmt: skip
            assert time.monotonic() < deadline, f"meter {meter_id} raised no low-credit alarm"
            time.sleep(1)
        alarms.append(found[0])
    yield alarms


def test_an_operator_acknowledges_an_alarm_with_a_comment(
    page: Page, demo: RunningDemo, low_credit: list[dict[str, Any]]
) -> None:
    alarm = low_credit[0]
    meter_id = alarm["meter_id"]
    login(page, demo)
    page.goto(f"{demo.ui}#/alarms?state=open&kind=low_credit&meter_id={meter_id}")
    expect(page.get_by_label("State")).to_have_value("open")
    expect(page.get_by_label("Kind")).to_have_value("low_credit")
    expect(page.get_by_role("searchbox", name="Meter")).to_have_value(meter_id)
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.get_by_role("cell")).to_contain_text(
        [meter_id, "low credit", "warning", "open", "not yet"], timeout=10_000
    )

    rows.get_by_role("button", name="Acknowledge").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Meter {meter_id}")
    dialog.get_by_role("button", name="Acknowledge").click()
    expect(dialog.get_by_role("alert")).to_have_text("Comment is required")
    dialog.get_by_label("Comment").fill("Customer phoned: buying credit this afternoon")
    dialog.get_by_role("button", name="Acknowledge").click()
    acked = rows.get_by_role("cell").nth(5)
    expect(acked).to_contain_text(f"by {demo.username}")
    expect(acked).to_contain_text("Customer phoned: buying credit this afternoon")
    expect(rows.get_by_role("button", name="Acknowledge")).to_have_count(0)
    stored = demo.api.get(f"/api/v1/alarms?meter_id={meter_id}&kind=low_credit")["items"][0]
    assert (stored["acked_by"], stored["ack_comment"]) == (
        demo.username, "Customer phoned: buying credit this afternoon")  # fmt: skip

    # the live list keeps the filters and the page it is on while it refreshes (every 5 s)
    page.wait_for_timeout(5500)
    expect(rows).to_have_count(1)
    expect(page.get_by_role("searchbox", name="Meter")).to_have_value(meter_id)

    # the whole open list, for the screenshot: one acknowledged, one waiting
    page.get_by_role("searchbox", name="Meter").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("row").filter(has_text=low_credit[1]["meter_id"])).to_be_visible()
    shot(page, "alarms")

    # its notifications, a tab away, filtered by the alarm
    rows.filter(has_text=meter_id).get_by_role("button", name="Notifications").click()
    expect(page.get_by_role("tab", name="Notification history")).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.get_by_label("Alarm number")).to_have_value(str(alarm["id"]))
    expect(page).to_have_url(f"{demo.ui}#/alarms?alarm_id={alarm['id']}&tab=notifications")
    total = demo.api.get(f"/api/v1/notifications?alarm_id={alarm['id']}&limit=1")["total"]
    if total:
        expect(page.locator(".pager .count")).to_contain_text(f"of {total}")
    else:  # the demo configures no e-mail or SMS channel, so nothing is sent
        expect(page.locator("tbody")).to_contain_text("No notifications.")
    shot(page, "notifications")


def test_a_viewer_is_offered_neither_acknowledgement_nor_selling(
    page: Page, demo: RunningDemo, low_credit: list[dict[str, Any]]
) -> None:
    waiting = low_credit[1]
    username, password = demo.operator("viewer")
    login(page, demo, username, password)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Alarms")).to_be_visible()
    expect(nav.get_by_role("link", name="Vend")).to_have_count(0)

    page.goto(f"{demo.ui}#/alarms?meter_id={waiting['meter_id']}&acked=false")
    row = page.locator("tbody tr")
    expect(row.get_by_role("cell")).to_contain_text([waiting["meter_id"], "low credit"])
    expect(row).to_contain_text("not yet")
    expect(row.get_by_role("button", name="Notifications")).to_be_visible()
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    viewer = Api(demo.base).login(username, password)
    with pytest.raises(ApiFailure) as refused:
        viewer.post(f"/api/v1/alarms/{waiting['id']}/ack", {"comment": "seen"})
    assert refused.value.status == 403

    page.goto(f"{demo.ui}#/vend")
    expect(page.get_by_role("alert")).to_have_text("Your role (viewer) may not use this page.")
    with pytest.raises(ApiFailure) as refused:
        viewer.post("/api/v1/vends/quote", {"meter_id": waiting["meter_id"], "amount_minor": 500})
    assert refused.value.status == 403
