"""Key management, as the key custodian uses it: the vending keys the head-end holds (never their
material), importing the next key revision, and a key-change campaign on two of the demo's meters
followed meter by meter until the simulated meters have taken the new key."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import RunningDemo, login, shot

pytestmark = pytest.mark.integration

KEY2_HEX = "0123456789ABCDEF"  # the next key revision of supply group 123456 (docs/headend.md 6.2)
FIELD_S = 60_000  # ms: the sets travel to the simulated meters and their status back


def _two_sts_meters(demo: RunningDemo) -> list[str]:
    """The two last STS meters (11-digit DRNs; the DL/T 645 meters cannot take a key change),
    the ones the other journeys are least likely to use."""
    items = demo.api.get("/api/v1/meters?limit=100")["items"]
    drns = sorted(m["id"] for m in items if re.fullmatch(r"\d{11}", m["id"]))
    return drns[-2:]


def test_a_key_change_campaign_shows_each_meters_progress(page: Page, demo: RunningDemo) -> None:
    meters = _two_sts_meters(demo)
    before = {m: demo.api.get(f"/api/v1/meters/{m}")["sts"]["key_revision"] for m in meters}
    assert before == dict.fromkeys(meters, 1)
    login(page, demo)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Key management").click()
    expect(page.get_by_role("heading", name="Key management", level=1)).to_be_visible()

    keys = page.get_by_role("table", name=re.compile("^Vending keys in the key store"))
    demo_key = keys.get_by_role("row").filter(has_text="demo-sgc123456-krn1")
    expect(demo_key.get_by_role("cell")).to_have_text(
        ["demo-sgc123456-krn1", "123456", "1", "2 DUTK", "STA", "02", re.compile(r"\d{4}")]
    )

    # the target key first: revision 2 of the same supply group
    page.get_by_text("Import a vending key").click()
    imported = page.get_by_role("form", name="Import a vending key")
    imported.get_by_label("Key name").fill("web-sgc123456-krn2")
    imported.get_by_label("Key (hex)").fill(KEY2_HEX)
    imported.get_by_label("Supply group code").fill("123456")
    imported.get_by_label("Key revision").fill("2")
    imported.get_by_role("button", name="Import key").click()
    expect(imported.get_by_role("status")).to_have_text(
        "Vending key web-sgc123456-krn2 imported and sealed."
    )
    expect(keys.get_by_role("row").filter(has_text="web-sgc123456-krn2")).to_contain_text("123456")
    expect(imported.get_by_label("Key (hex)")).to_have_value("")
    assert KEY2_HEX not in page.content()

    form = page.get_by_role("form", name="Start a key-change campaign")
    form.get_by_label("Campaign name").fill("krn2-web")
    form.get_by_label("Meters").select_option("list")
    form.get_by_label("Meter ids").fill("\n".join(meters))
    form.get_by_label("Base date").select_option("2014")
    form.get_by_label("Key revision").fill("2")
    form.get_by_role("button", name="Start campaign").click()
    dialog = page.get_by_role("dialog", name="Start the campaign krn2-web?")
    expect(dialog).to_contain_text("moving 2 meters to base date 2014, key revision 2")
    dialog.get_by_role("button", name="Start campaign").click()

    expect(page.get_by_role("heading", name="Campaign krn2-web")).to_be_visible()
    assert re.search(r"#/keys\?campaign=\d+$", page.url)
    bar = page.get_by_role("progressbar", name="Progress of krn2-web")
    expect(bar).to_have_attribute("aria-valuemax", "2")
    # pending while the sets travel, then done as each meter reports its set applied
    expect(bar).to_have_attribute("aria-valuetext", "2 of 2 meters done", timeout=FIELD_S)
    expect(page.get_by_text("2 of 2 meters done")).to_be_visible()
    rows = page.get_by_role("table", name="Every meter of the campaign, by meter id.")
    for meter in meters:
        row = rows.get_by_role("row").filter(has=page.get_by_role("link", name=meter))
        expect(row.get_by_role("cell")).to_contain_text([meter, "done", "applied"],
                                                        timeout=FIELD_S)  # fmt: skip
    expect(page.get_by_role("button", name=re.compile("^Retry"))).to_be_hidden()
    after = {m: demo.api.get(f"/api/v1/meters/{m}")["sts"] for m in meters}
    assert {(s["key_revision"], s["base_date"]) for s in after.values()} == {(2, 2014)}
    shot(page, "keys-campaign")

    page.get_by_role("link", name="All campaigns and keys").click()
    campaigns = page.get_by_role("table", name=re.compile("^Key-change campaigns, newest first"))
    listed = campaigns.get_by_role("row").filter(has_text="krn2-web")
    expect(listed).to_contain_text("2 of 2 meters done")
    expect(listed).to_contain_text("base date 2014, key revision 2")
    shot(page, "keys")


def test_a_campaign_the_meters_cannot_take_is_refused_in_the_form(
    page: Page, demo: RunningDemo
) -> None:
    login(page, demo)
    page.goto(demo.ui + "#/keys")
    form = page.get_by_role("form", name="Start a key-change campaign")
    form.get_by_label("Campaign name").fill("krn7-nowhere")
    form.get_by_label("Meter ids").fill(_two_sts_meters(demo)[0])
    form.get_by_label("Key revision").fill("7")
    form.get_by_role("button", name="Start campaign").click()
    page.get_by_role("dialog").get_by_role("button", name="Start campaign").click()
    expect(form.get_by_role("alert")).to_contain_text(
        "key revision 7, sta) is not in the key store: import it first"
    )
    form.get_by_label("Meter ids").fill("")
    form.get_by_role("button", name="Start campaign").click()
    expect(form.get_by_role("alert")).to_have_text("Give at least one meter id.")
    assert all(c["name"] != "krn7-nowhere"
               for c in demo.api.get("/api/v1/key-campaigns")["items"])  # fmt: skip
