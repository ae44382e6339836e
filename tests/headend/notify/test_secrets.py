"""Passwords and API tokens never show: not in repr(), not in any log event, not in a result."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted
from twisted.internet import reactor

from headend.notify import (
    DeliveryResult,
    Dispatcher,
    FlapSuppressor,
    HttpSmsSender,
    Notification,
    Retrying,
    Secret,
    Sender,
    SmtpSender,
)
from headend.notify.model import Channel

from .conftest import LogEvents
from .servers import SmsGateway, SmtpServer

PASSWORD = "pw-Zq81-never-shown"
TOKEN = "tok-7f3a9c-never-shown"
URL_KEY = "key-55e1-never-shown"


def _forms(secret: str, user: str = "relay") -> list[str]:
    """The secret as is, and as SMTP AUTH would carry it (base64 alone, PLAIN's user\\0pass)."""
    plain = f"\0{user}\0{secret}".encode()
    return [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(plain).decode(),
        base64.b64encode(user.encode() + plain).decode(),
    ]


def _assert_absent(text: str, secret: str) -> None:
    for form in _forms(secret):
        assert form not in text


def dispatcher(channel: Channel, sender: Sender) -> Dispatcher:
    return Dispatcher(reactor, {channel: sender}, FlapSuppressor(), retrying=Retrying(attempts=1))


def test_repr_of_the_senders_hides_secrets() -> None:
    smtp = SmtpSender(
        reactor,
        "smtp.example",
        587,
        "a@b.example",
        username="relay",
        password=PASSWORD,
        starttls=False,
    )
    sms = HttpSmsSender(
        reactor,
        f"http://user:{URL_KEY}@gw.example/send?api_key={URL_KEY}&to={{to}}",
        body_template={"text": "{text}", "token": Secret(TOKEN)},
        headers={"Authorization": Secret(f"Bearer {TOKEN}")},
    )
    for text in (
        repr(smtp),
        str(smtp),
        repr(sms),
        str(sms),
        repr(Secret(TOKEN)),
        f"{Secret(TOKEN)}",
    ):
        assert PASSWORD not in text and TOKEN not in text and URL_KEY not in text
    assert "password=<secret>" in repr(smtp)
    assert repr(sms).startswith("HttpSmsSender(url='http://gw.example/send'")
    assert "Authorization" in repr(sms)


@pytest.mark.integration
@pytest.mark.parametrize("mechanism", [b"PLAIN", b"LOGIN"])
@pytest_twisted.ensureDeferred
async def test_smtp_password_is_in_no_log_event(mechanism: bytes, log_events: LogEvents) -> None:
    server = SmtpServer(reactor, users={"relay": PASSWORD.encode()}, mechanisms=(mechanism,))
    try:
        good = SmtpSender(
            reactor,
            "127.0.0.1",
            server.port,
            "alarms@utility.example",
            username="relay",
            password=PASSWORD,
            starttls=False,
        )
        bad = SmtpSender(
            reactor,
            "127.0.0.1",
            server.port,
            "alarms@utility.example",
            username="relay",
            password=PASSWORD + "-wrong",
            starttls=False,
        )
        note = Notification("email", "c@example.net", "Tamper", "Tamper!", "tamper:1", 0.0)
        ok: DeliveryResult = await dispatcher("email", good).notify(note).addTimeout(20, reactor)
        failed: DeliveryResult = await dispatcher("email", bad).notify(note).addTimeout(20, reactor)
        assert ok.ok and not failed.ok and "535" in failed.detail
        assert server.logins == [b"relay"]
    finally:
        await server.close()
    text = log_events.text()
    assert "Sent email to c@example.net" in text and "Failed email" in text  # the capture works
    _assert_absent(text, PASSWORD)
    _assert_absent(failed.detail, PASSWORD)


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_sms_token_is_in_no_log_event_or_result(log_events: LogEvents) -> None:
    gateway = SmsGateway(reactor)
    # A gateway that quotes the credentials it refused, as some do.
    gateway.replies = [(401, f'{{"error": "bad token {TOKEN} / key {URL_KEY}"}}'.encode())]
    sender = HttpSmsSender(
        reactor,
        f"{gateway.url}?api_key={URL_KEY}",
        body_template={"to": "{to}", "text": "{text}"},
        headers={"Authorization": Secret(f"Bearer {TOKEN}")},
        timeout_s=10.0,
    )
    try:
        note = Notification("sms", "+27821234567", "Tamper", "Tamper!", "tamper:1", 0.0)
        result: DeliveryResult = (
            await dispatcher("sms", sender).notify(note).addTimeout(20, reactor)
        )
        assert gateway.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert gateway.requests[0].path.endswith(f"api_key={URL_KEY}")
    finally:
        await gateway.close()
    assert not result.ok
    assert result.detail == 'HTTP 401 Unauthorized: {"error": "bad token <secret> / key <secret>"}'
    text = log_events.text()
    assert "Failed sms to +27821234567" in text
    for secret in (TOKEN, URL_KEY):
        assert secret not in text
