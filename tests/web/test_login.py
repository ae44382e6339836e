"""Logging in and out of the operator interface, as an operator at a desk does it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import RunningDemo, login, shot

pytestmark = pytest.mark.integration


def test_the_demo_login_opens_the_overview(page: Page, demo: RunningDemo) -> None:
    page.goto(demo.ui)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    shot(page, "login")
    login(page, demo)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    shot(page, "overview")


def test_a_wrong_password_is_refused_with_an_alert(page: Page, demo: RunningDemo) -> None:
    page.goto(demo.ui)
    page.get_by_label("Username").fill(demo.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid username or password")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()


def test_logging_out_returns_to_the_login_form(page: Page, demo: RunningDemo) -> None:
    login(page, demo)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
