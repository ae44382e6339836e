"""The administration page, as the head-end's administrator uses it: operators (and what a cashier
made there can then see and call), the roles matrix, API keys shown once and refused once revoked,
the audit log and notification rules."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.api import Api, ApiFailure
from tests.support.browser import RunningDemo, login, shot

pytestmark = pytest.mark.integration


def _open(page: Page, demo: RunningDemo, tab: str) -> None:
    page.goto(f"{demo.ui}#/admin?tab={tab}")
    expect(page.get_by_role("heading", name="Administration", level=1)).to_be_visible()


def _refused(call: object, status: int) -> None:
    with pytest.raises(ApiFailure) as refused:
        call()  # type: ignore[operator]
    assert refused.value.status == status, refused.value.body


def test_an_admin_creates_a_cashier_who_sees_only_a_cashiers_pages(
    page: Page, demo: RunningDemo
) -> None:
    login(page, demo)
    _open(page, demo, "operators")
    form = page.get_by_role("form", name="New operator")
    form.get_by_label("Username").fill("till-nomsa")
    form.get_by_label("Password").fill("till-nomsa-password")
    form.get_by_label("Role").select_option("cashier")
    form.get_by_label("Vending point").fill("mall-kiosk-3")
    form.get_by_role("button", name="Create operator").click()
    expect(form.get_by_role("status")).to_have_text(
        "Operator till-nomsa created (cashier, mall-kiosk-3)."
    )
    row = page.get_by_role("row").filter(has_text="till-nomsa")
    expect(row.get_by_role("cell")).to_contain_text(
        ["till-nomsa", "cashier", "mall-kiosk-3", "active"]
    )
    shot(page, "admin-operators")

    page.get_by_role("button", name="Log out").click()
    login(page, demo, "till-nomsa", "till-nomsa-password")
    expect(page.get_by_text("till-nomsa (cashier)")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(
        ["Overview", "Meters", "Vend", "Alarms", "Tariffs", "Gateways"]
    )
    for hash_, title in (("#/admin", "Administration"), ("#/keys", "Key management")):
        page.goto(demo.ui + hash_)
        expect(page.get_by_role("heading", name=title)).to_be_visible()
        expect(page.get_by_role("alert")).to_have_text("Your role (cashier) may not use this page.")
        expect(page.get_by_role("tab")).to_have_count(0)
    # the tariffs are there to read, with nothing to create, save or push
    edits = re.compile(r"new|edit|create|save|version \d|push|add", re.I)
    page.goto(demo.ui + "#/tariffs")
    expect(page.get_by_role("heading", name="Tariffs", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="residential")).to_be_visible()
    expect(page.get_by_role("main").get_by_role("button", name=edits)).to_have_count(0)
    page.goto(demo.ui + "#/tariffs/1")
    expect(page.get_by_role("heading", name="Tariff residential", level=1)).to_be_visible()
    blocks = page.get_by_role("region", name="Blocks")
    expect(blocks.get_by_role("row").filter(has_text="1.45")).to_be_visible()
    expect(blocks.get_by_role("textbox")).to_have_count(0)  # read, not edited
    expect(page.get_by_role("main").get_by_role("button", name=edits)).to_have_count(0)

    cashier = Api(demo.base).login("till-nomsa", "till-nomsa-password")
    _refused(lambda: cashier.get("/api/v1/operators"), 403)
    _refused(lambda: cashier.get("/api/v1/key-campaigns"), 403)
    _refused(
        lambda: cashier.post("/api/v1/tariffs", {"name": "x", "kind": "step", "body": {}}), 403
    )


def test_an_admin_changes_an_operators_role_password_and_deactivates_them(
    page: Page, demo: RunningDemo
) -> None:
    made = demo.api.post("/api/v1/operators", {"username": "field-sipho",
                                               "password": "first-password-1", "role": "viewer"})  # fmt: skip
    login(page, demo)
    _open(page, demo, "operators")
    page.get_by_role("button", name="Manage field-sipho").click()
    panel = page.get_by_role("region", name="Operator field-sipho")
    expect(panel.get_by_role("heading", name="Operator field-sipho")).to_be_focused()
    panel.get_by_label("Role").select_option("field_technician")
    panel.get_by_role("button", name="Save role and vending point").click()
    expect(panel.get_by_role("status")).to_have_text("field-sipho: changes saved.")
    expect(page.get_by_role("row").filter(has_text="field-sipho")).to_contain_text(
        "field_technician"
    )

    panel.get_by_label("New password").fill("second-password-2")
    panel.get_by_role("button", name="Reset password").click()
    dialog = page.get_by_role("dialog", name="Reset field-sipho's password?")
    dialog.get_by_role("button", name="Reset password").click()
    expect(panel.get_by_role("status")).to_have_text(
        "field-sipho: password reset, their sessions ended."
    )
    assert Api(demo.base).login("field-sipho", "second-password-2").get("/api/v1/me")["role"] \
        == "field_technician"  # fmt: skip
    _refused(lambda: Api(demo.base).login("field-sipho", "first-password-1"), 401)

    panel.get_by_role("button", name="Deactivate field-sipho").click()
    page.get_by_role("dialog", name="Deactivate field-sipho?").get_by_role(
        "button", name="Deactivate"
    ).click()
    expect(panel.get_by_role("status")).to_have_text("field-sipho deactivated.")
    expect(page.get_by_role("row").filter(has_text="field-sipho")).to_contain_text("inactive")
    expect(panel.get_by_role("button", name="Activate field-sipho")).to_be_visible()
    _refused(lambda: Api(demo.base).login("field-sipho", "second-password-2"), 401)
    assert demo.api.get("/api/v1/operators?active=false")["items"][0]["id"] == made["id"]


def test_the_roles_tab_shows_which_role_holds_which_permission(
    page: Page, demo: RunningDemo
) -> None:
    login(page, demo)
    _open(page, demo, "operators")
    page.get_by_role("tab", name="Operators").focus()
    page.keyboard.press("ArrowRight")  # the tabs follow the arrow keys
    expect(page.get_by_role("tab", name="Roles")).to_have_attribute("aria-selected", "true")
    table = page.get_by_role("table", name="Which role holds which permission")
    expect(table.get_by_role("columnheader")).to_have_text(
        ["Permission", "admin", "supervisor", "cashier", "operator", "field_technician", "viewer"]
    )

    def holders(permission: str) -> list[str]:
        header = page.get_by_role("rowheader", name=re.compile(f"^{re.escape(permission)} "))
        return table.get_by_role("row").filter(has=header).get_by_role("cell").all_inner_texts()

    assert holders("vend") == ["yes", "yes", "yes", "no", "no", "no"]
    assert holders("keys") == ["yes", "no", "no", "no", "no", "no"]
    assert holders("admin") == ["yes", "no", "no", "no", "no", "no"]
    assert holders("read") == ["yes"] * 6
    shot(page, "admin-roles")


def test_an_api_key_is_shown_once_and_refused_once_revoked(page: Page, demo: RunningDemo) -> None:
    login(page, demo)
    _open(page, demo, "api-keys")
    form = page.get_by_role("form", name="New API key")
    form.get_by_label("Name").fill("billing-sync")
    form.get_by_label("Role").select_option("viewer")
    form.get_by_role("button", name="Create API key").click()
    once = page.get_by_role("alert").filter(has_text="API key billing-sync created (viewer)")
    expect(once).to_contain_text("Copy it now: this is the only time the key is shown.")
    expect(page.get_by_label("Key text")).to_be_focused()
    key = page.get_by_label("Key text").input_value()
    assert key.startswith("amrk_")
    assert Api(demo.base, key).get("/api/v1/me")["name"] == "billing-sync"
    row = page.get_by_role("row").filter(has_text="billing-sync")
    expect(row).to_contain_text("active")
    shot(page, "admin-api-keys")

    once.get_by_role("button", name="I have copied it: hide the key").click()
    expect(page.get_by_label("Key text")).to_have_count(0)
    page.reload()
    expect(row).to_be_visible()
    assert key not in page.content()

    row.get_by_role("button", name="Revoke billing-sync").click()
    dialog = page.get_by_role("dialog", name="Revoke the API key billing-sync?")
    expect(dialog).to_contain_text("Every request made with it is refused from now on.")
    dialog.get_by_role("button", name="Revoke").click()
    expect(
        page.get_by_role("status").filter(has_text="API key billing-sync revoked.")
    ).to_be_visible()
    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("button", name="Revoke billing-sync")).to_have_count(0)
    _refused(lambda: Api(demo.base, key).get("/api/v1/me"), 401)


def test_the_audit_log_shows_an_operators_creation_and_a_keys_revocation(
    page: Page, demo: RunningDemo
) -> None:
    made = demo.api.post("/api/v1/operators", {"username": "audit-olivia",
                                               "password": "audit-olivia-pw", "role": "cashier"})  # fmt: skip
    key = demo.api.post("/api/v1/api-keys", {"name": "audit-probe", "role": "viewer"})
    demo.api.call("DELETE", f"/api/v1/api-keys/{key['id']}")
    login(page, demo)
    _open(page, demo, "audit")
    filters = page.get_by_role("search")
    filters.get_by_label("Action").fill("operator.create")
    filters.get_by_role("button", name="Filter").click()
    created = page.get_by_role("row").filter(has_text=f"operator:{made['id']}")
    expect(created.get_by_role("cell")).to_contain_text(
        ["admin", "operator.create", f"operator:{made['id']}", "username: audit-olivia"]
    )
    expect(page.get_by_role("row").filter(has_text="api_key")).to_have_count(0)

    filters.get_by_label("Action").fill("")
    filters.get_by_label("Target").fill(f"api_key:{key['id']}")
    filters.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("row").filter(has_text="api_key.revoke")).to_contain_text(
        f"api_key:{key['id']}"
    )
    expect(page.get_by_role("row").filter(has_text="api_key.create")).to_contain_text(
        "name: audit-probe"
    )
    expect(page.get_by_text("1\u20132 of 2")).to_be_visible()  # an en dash
    assert key["key"] not in page.content()  # the key's text is never in the log

    filters.get_by_label("Target").fill("")
    filters.get_by_label("Actor").fill("admin")
    filters.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("row").filter(has_text="operator.create").first).to_be_visible()
    shot(page, "admin-audit")


def test_a_notification_rule_is_added_and_disabled(page: Page, demo: RunningDemo) -> None:
    login(page, demo)
    _open(page, demo, "rules")
    form = page.get_by_role("form", name="New rule")
    form.get_by_label("Alarm kind").fill("tamper")
    form.get_by_label("Channel").select_option("sms")
    form.get_by_label("Recipient").fill("+27825550199")
    form.get_by_role("button", name="Add rule").click()
    expect(form.get_by_role("status")).to_have_text(
        "Rule added: tamper alarms by sms to +27825550199."
    )
    row = page.get_by_role("row").filter(has_text="+27825550199")
    expect(row).to_contain_text("enabled")
    row.get_by_role("button", name=re.compile(r"^Disable rule \d+ \(tamper, sms")).click()
    expect(row).to_contain_text("disabled")
    expect(row.get_by_role("button", name=re.compile(r"^Enable rule"))).to_be_visible()
    rules = demo.api.get("/api/v1/notification-rules")["items"]
    assert [(r["kind"], r["recipient"], r["enabled"]) for r in rules
            if r["recipient"] == "+27825550199"] == [("tamper", "+27825550199", False)]  # fmt: skip
    shot(page, "admin-rules")
