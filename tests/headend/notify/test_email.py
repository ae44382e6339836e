"""SmtpSender against a real ESMTP server (twisted.mail's server side) on 127.0.0.1."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from headend.notify import DeliveryResult, Notification, SenderConfigError, SmtpSender
from headend.notify.email import build_message

from .servers import Silent, SmtpServer

SENDER = "alarms@utility.example"


def alarm(recipient: str = "customer@example.net", **overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "channel": "email",
        "recipient": recipient,
        "subject": "Low credit on meter 01012345678",
        "body": "Your meter has 12.5 kWh left.\nPlease buy a token soon.",
        "alarm_key": "low-credit:01012345678",
        "created_s": 1_767_225_600.0,
    }
    fields.update(overrides)
    return Notification(**fields)


def sender(port: int, **kwargs: Any) -> SmtpSender:
    kwargs.setdefault("starttls", False)
    kwargs.setdefault("timeout_s", 10.0)
    return SmtpSender(reactor, "127.0.0.1", port, SENDER, **kwargs)


async def send(smtp: SmtpSender, notification: Notification) -> DeliveryResult:
    result: DeliveryResult = await smtp.send(notification).addTimeout(20, reactor)
    return result


# --- the message itself (no network) ---------------------------------------------------------


def _parse(message: EmailMessage) -> EmailMessage:
    return message_from_bytes(message.as_bytes(), policy=policy.default)


def test_message_has_rfc5322_headers_from_the_callers_clock() -> None:
    message = _parse(
        build_message(
            alarm(),
            sender_address=SENDER,
            sender_name="Utility Alarms",
            date_s=Clock().seconds() + 1_767_225_600.0,
            message_id="<abc@utility.example>",
        )
    )
    assert message["From"] == "Utility Alarms <alarms@utility.example>"
    assert message["To"] == "customer@example.net"
    assert message["Subject"] == "Low credit on meter 01012345678"
    assert message["Date"] == "Thu, 01 Jan 2026 00:00:00 +0000"
    assert message["Message-ID"] == "<abc@utility.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "Your meter has 12.5 kWh left.\nPlease buy a token soon.\n"


def test_non_ascii_text_travels_as_7bit_utf8() -> None:
    message = build_message(
        alarm(subject="Crédit épuisé — compteur 42", body="Plus de crédit: achetez un jeton ⚡"),
        sender_address=SENDER,
        sender_name=None,
        date_s=0.0,
        message_id="<x@y>",
    )
    raw = message.as_bytes()
    assert raw.isascii(), "no 8BITMIME negotiation: the wire form must be 7-bit"
    parsed = _parse(message)
    assert parsed["Subject"] == "Crédit épuisé — compteur 42"
    assert parsed.get_content() == "Plus de crédit: achetez un jeton ⚡\n"


def test_line_breaks_in_headers_are_refused_when_building_the_notification() -> None:
    with pytest.raises(ValueError, match="subject"):
        alarm(subject="hello\r\nBcc: everyone@example.net")


def test_config_errors_are_raised_at_construction() -> None:
    with pytest.raises(SenderConfigError, match="username/password"):
        sender(25, username="relay")
    with pytest.raises(SenderConfigError, match="sender_address"):
        SmtpSender(reactor, "127.0.0.1", 25, "not-an-address", starttls=False)
    with pytest.raises(SenderConfigError, match="starttls"):
        sender(25, starttls="sometimes")


# --- against the real server -----------------------------------------------------------------

integration = pytest.mark.integration


@integration
@pytest_twisted.ensureDeferred
async def test_delivers_a_message_the_server_can_read() -> None:
    server = SmtpServer(reactor)
    try:
        result = await send(sender(server.port, sender_name="Utility Alarms"), alarm())
        assert result.ok, result.detail
        assert result.detail == "250 Delivery in progress"
        assert result.attempts == 1
        [mail] = server.messages
        assert mail.mail_from == SENDER
        assert mail.rcpt_to == ["customer@example.net"]
        message = mail.message
        assert message["To"] == "customer@example.net"
        assert message["Subject"] == "Low credit on meter 01012345678"
        assert message["Message-ID"] == result.provider_id
        assert message.get_content() == "Your meter has 12.5 kWh left.\nPlease buy a token soon.\n"
    finally:
        await server.close()


@integration
@pytest_twisted.ensureDeferred
async def test_a_body_line_starting_with_a_dot_survives() -> None:
    server = SmtpServer(reactor)
    try:
        result = await send(sender(server.port), alarm(body=".\n..two\nend"))
        assert result.ok, result.detail
        assert server.messages[0].message.get_content() == ".\n..two\nend\n"
    finally:
        await server.close()


@integration
@pytest.mark.parametrize("mechanism", [b"PLAIN", b"LOGIN"])
@pytest_twisted.ensureDeferred
async def test_logs_in_when_credentials_are_set(mechanism: bytes) -> None:
    server = SmtpServer(reactor, users={"relay": b"s3cret-pw"}, mechanisms=(mechanism,))
    try:
        result = await send(sender(server.port, username="relay", password="s3cret-pw"), alarm())
        assert result.ok, result.detail
        assert server.logins == [b"relay"]
        assert [m.login for m in server.messages] == [b"relay"]
    finally:
        await server.close()


@integration
@pytest_twisted.ensureDeferred
async def test_a_wrong_password_is_a_permanent_failure() -> None:
    server = SmtpServer(reactor, users={"relay": b"s3cret-pw"})
    try:
        result = await send(sender(server.port, username="relay", password="wrong"), alarm())
        assert not result.ok
        assert not result.retryable
        assert "535" in result.detail
        assert server.messages == []
    finally:
        await server.close()


@integration
@pytest_twisted.ensureDeferred
async def test_a_server_that_wants_a_login_refuses_an_anonymous_sender() -> None:
    server = SmtpServer(reactor, users={"relay": b"s3cret-pw"})
    try:
        result = await send(sender(server.port), alarm())
        assert not result.ok
        assert result.detail.startswith("550 ")
        assert "Unauthenticated senders not allowed" in result.detail
        assert not result.retryable
    finally:
        await server.close()


@integration
@pytest_twisted.ensureDeferred
async def test_credentials_for_a_server_without_auth_are_not_dropped_silently() -> None:
    server = SmtpServer(reactor)
    try:
        result = await send(sender(server.port, username="relay", password="pw"), alarm())
        assert not result.ok
        assert "Authentication" in result.detail
        assert server.messages == []
    finally:
        await server.close()


@integration
@pytest_twisted.ensureDeferred
async def test_a_550_rejection_is_reported_with_the_servers_reply() -> None:
    reply = "5.1.1 <gone@example.net>: Recipient address rejected: User unknown"
    server = SmtpServer(reactor, reject={"gone@example.net": (550, reply)})
    try:
        result = await send(sender(server.port), alarm("gone@example.net"))
        assert not result.ok
        assert not result.retryable
        assert result.detail.startswith("550 ")
        assert f"RCPT gone@example.net: 550 {reply}" in result.detail
        assert server.messages == []
    finally:
        await server.close()


@integration
@pytest_twisted.ensureDeferred
async def test_a_4xx_rejection_is_retryable() -> None:
    server = SmtpServer(reactor, reject={"full@example.net": (452, "4.2.2 Mailbox full")})
    try:
        result = await send(sender(server.port), alarm("full@example.net"))
        assert not result.ok
        assert result.retryable
        assert "452 4.2.2 Mailbox full" in result.detail
    finally:
        await server.close()


@integration
@pytest_twisted.ensureDeferred
async def test_connection_refused_is_a_retryable_failure_not_an_errback() -> None:
    server = SmtpServer(reactor)
    port = server.port
    await server.close()
    result = await send(sender(port), alarm())
    assert not result.ok
    assert result.retryable
    assert "refused" in result.detail.lower()


@integration
@pytest_twisted.ensureDeferred
async def test_a_silent_server_times_out() -> None:
    silent = Silent(reactor)
    try:
        result = await send(sender(silent.port, timeout_s=0.3), alarm())
        assert not result.ok
        assert result.retryable
        assert "timed out" in result.detail.lower() or "timeout" in result.detail.lower()
    finally:
        await silent.close()


@integration
@pytest_twisted.ensureDeferred
async def test_starttls_required_refuses_a_server_without_it() -> None:
    server = SmtpServer(reactor)
    # Any TLS options object will do: the server never offers STARTTLS, so it is never used.
    smtp = sender(server.port, starttls="required", tls_options=object())
    try:
        result = await send(smtp, alarm())
        assert not result.ok
        assert not result.retryable
        assert "TLS" in result.detail
        assert server.messages == []
    finally:
        await server.close()


@pytest_twisted.ensureDeferred
async def test_an_sms_notification_is_not_sent_by_email() -> None:
    result = await send(
        sender(1),
        Notification("sms", "+27821234567", "s", "b", "k", 0.0),
    )
    assert not result.ok
    assert "not an e-mail" in result.detail
