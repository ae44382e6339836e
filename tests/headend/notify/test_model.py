"""Notifications validate themselves; secrets do not show themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headend.notify import InvalidNotification, Notification, Secret, SenderConfigError


def make(**overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "channel": "sms",
        "recipient": "+27821234567",
        "subject": "Tamper",
        "body": "Meter 0101: cover opened.\nCall us.",
        "alarm_key": "tamper:0101",
        "created_s": 1.0,
    }
    fields.update(overrides)
    return Notification(**fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"state": "maybe"}, "state"),
        ({"recipient": "  "}, "recipient"),
        ({"recipient": "+2782\n"}, "recipient"),
        ({"subject": "a\rb"}, "subject"),
        ({"alarm_key": ""}, "alarm_key"),
        ({"channel": "email", "recipient": "+27821234567"}, "recipient"),
    ],
)
def test_bad_notifications_are_refused_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidNotification) as raised:
        make(**overrides)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_a_body_may_have_several_lines_and_the_default_state_is_raised() -> None:
    note = make()
    assert note.state == "raised"
    assert note.dedupe_key == ("sms", "+27821234567", "tamper:0101")


def test_secret_shows_nothing_but_reveals_its_value() -> None:
    secret = Secret("hunter2")
    assert repr(secret) == str(secret) == f"{secret}" == "<secret>"
    assert repr({"password": secret}) == "{'password': <secret>}"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other")


def test_secret_from_file_drops_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("abc123\n")
    assert Secret.from_file(path).reveal() == "abc123"


def test_secret_from_a_missing_environment_variable_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AMR_TEST_SMS_TOKEN", raising=False)
    with pytest.raises(SenderConfigError, match="AMR_TEST_SMS_TOKEN"):
        Secret.from_env("AMR_TEST_SMS_TOKEN")
    monkeypatch.setenv("AMR_TEST_SMS_TOKEN", "t0k")
    assert Secret.from_env("AMR_TEST_SMS_TOKEN").reveal() == "t0k"
