"""HttpSmsSender: text fitting (3GPP TS 23.038), request templates, and a real HTTP gateway."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor

from headend.notify import (
    DeliveryResult,
    HttpSmsSender,
    Notification,
    Secret,
    SenderConfigError,
    fit_sms_text,
    send_with_retry,
)

from .servers import SmsGateway

TEMPLATE = {"to": "{to}", "text": "{text}", "from": "UTILITY", "options": {"ref": "n-{to}"}}


def sms(body: str = "Meter 0101: credit is low (3.2 kWh).", **overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "channel": "sms",
        "recipient": "+27821234567",
        "subject": "Low credit",
        "body": body,
        "alarm_key": "low-credit:0101",
        "created_s": 0.0,
    }
    fields.update(overrides)
    return Notification(**fields)


def gateway_sender(url: str, **kwargs: Any) -> HttpSmsSender:
    kwargs.setdefault("body_template", TEMPLATE)
    kwargs.setdefault("timeout_s", 10.0)
    return HttpSmsSender(reactor, url, **kwargs)


async def send(sender: HttpSmsSender, notification: Notification) -> DeliveryResult:
    result: DeliveryResult = await sender.send(notification).addTimeout(20, reactor)
    return result


# --- fitting the text ------------------------------------------------------------------------


def test_gsm_text_that_fits_is_untouched() -> None:
    fitted = fit_sms_text("x" * 160)
    assert (fitted.text, fitted.encoding, fitted.length, fitted.truncated) == (
        "x" * 160,
        "gsm7",
        160,
        False,
    )


def test_long_gsm_text_is_cut_with_three_dots() -> None:
    fitted = fit_sms_text("word " * 40)
    assert fitted.truncated and fitted.encoding == "gsm7"
    assert fitted.text.endswith("word...")  # trailing space dropped before the dots
    assert len(fitted.text) == fitted.length <= 160
    assert fitted.original_length == 200


def test_extension_characters_cost_two_septets() -> None:
    fitted = fit_sms_text("€" * 80)
    assert (fitted.length, fitted.truncated, fitted.encoding) == (160, False, "gsm7")
    fitted = fit_sms_text("€" * 81)
    assert fitted.truncated
    assert fitted.text == "€" * 78 + "..."
    assert fitted.length == 159


def test_text_outside_the_gsm_alphabet_is_ucs2_with_70_units() -> None:
    fitted = fit_sms_text("Кредит исчерпан. " * 10)
    assert fitted.encoding == "ucs2" and fitted.truncated
    assert fitted.text.endswith("…")
    assert fitted.length == len(fitted.text) <= 70


def test_astral_characters_count_two_ucs2_units_and_are_not_split() -> None:
    fitted = fit_sms_text("⚡" + "🔌" * 40)
    assert fitted.encoding == "ucs2"
    assert fitted.text == "⚡" + "🔌" * 34 + "…"
    assert fitted.length == 1 + 68 + 1


@given(st.text(max_size=400))
def test_fitted_text_always_fits(text: str) -> None:
    fitted = fit_sms_text(text, max_septets=160, max_ucs2_units=70)
    assert fitted.length <= (160 if fitted.encoding == "gsm7" else 70)
    assert fitted.truncated == (fitted.text != text)
    if fitted.truncated:
        assert text.startswith(fitted.text[: -3 if fitted.encoding == "gsm7" else -1])


# --- building the request --------------------------------------------------------------------


def test_json_template_is_filled_and_escaped() -> None:
    sender = gateway_sender("https://sms.example/v1/send", agent=object())
    url, headers, body = sender.build_request("+27821234567", 'He said "hi" {to}\n')
    assert url == b"https://sms.example/v1/send"
    assert headers.getRawHeaders(b"Content-Type") == [b"application/json; charset=utf-8"]
    import json

    assert json.loads(body or b"") == {
        "to": "+27821234567",
        "text": 'He said "hi" {to}\n',  # the text's own braces are not placeholders
        "from": "UTILITY",
        "options": {"ref": "n-+27821234567"},
    }


def test_form_template_and_url_placeholders_are_encoded() -> None:
    sender = HttpSmsSender(
        reactor,
        "http://gw.example/send?dest={to}",
        body_template={"msg": "{text}", "key": Secret("k-123")},
        body_format="form",
    )
    url, headers, body = sender.build_request("+27 82", "a&b=c ü")
    assert url == b"http://gw.example/send?dest=%2B27%2082"
    assert headers.getRawHeaders(b"Content-Type") == [b"application/x-www-form-urlencoded"]
    assert parse_qs((body or b"").decode()) == {"msg": ["a&b=c ü"], "key": ["k-123"]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"body_template": {"to": "{to}", "text": "{message}"}}, "unknown placeholder"),
        ({"body_template": {"to": "{to}"}}, r"\{text\} appears nowhere"),
        ({"method": "DELETE"}, "method"),
        ({"method": "GET"}, "a GET request carries no body"),
        ({"body_format": "xml"}, "body_format"),
        ({"body_format": "form", "body_template": {"x": {"to": "{to}"}}}, "form fields"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_config_errors_are_raised_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SenderConfigError, match=match):
        gateway_sender("http://gw.example/send", **kwargs)


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(SenderConfigError, match="url"):
        gateway_sender("ftp://gw.example/send")


# --- against a real HTTP gateway -------------------------------------------------------------

integration = pytest.mark.integration


@integration
@pytest_twisted.ensureDeferred
async def test_the_gateway_receives_what_the_template_says() -> None:
    gateway = SmsGateway(reactor)
    sender = gateway_sender(
        gateway.url,
        headers={"Authorization": Secret("Bearer tok-123"), "X-Tenant": "north"},
        provider_id_field="messages.0.id",
    )
    try:
        result = await send(sender, sms())
        assert result == DeliveryResult(ok=True, detail="HTTP 200 OK", provider_id="msg-1")
        [request] = gateway.requests
        assert (request.method, request.path) == ("POST", "/v1/sms")
        assert request.headers["authorization"] == "Bearer tok-123"
        assert request.headers["x-tenant"] == "north"
        assert request.headers["content-type"] == "application/json; charset=utf-8"
        assert request.json() == {
            "to": "+27821234567",
            "text": "Meter 0101: credit is low (3.2 kWh).",
            "from": "UTILITY",
            "options": {"ref": "n-+27821234567"},
        }
    finally:
        await sender.close().addTimeout(5, reactor)
        await gateway.close()


@integration
@pytest_twisted.ensureDeferred
async def test_a_truncated_text_is_sent_cut_and_the_result_says_so() -> None:
    gateway = SmsGateway(reactor)
    sender = gateway_sender(gateway.url)
    try:
        result = await send(sender, sms("x" * 200))
        assert result.ok
        assert result.detail == "HTTP 200 OK; text truncated from 200 to 160 GSM characters"
        assert gateway.requests[0].json()["text"] == "x" * 157 + "..."
    finally:
        await gateway.close()


@integration
@pytest_twisted.ensureDeferred
async def test_500_then_200_is_retried_and_succeeds_on_the_second_attempt() -> None:
    gateway = SmsGateway(reactor)
    gateway.replies = [(500, b'{"error": "busy"}')]
    sender = gateway_sender(gateway.url)
    try:
        result: DeliveryResult = await send_with_retry(
            reactor, sender, sms(), attempts=3, base_delay_s=0.05
        ).addTimeout(20, reactor)
        assert result.ok
        assert result.attempts == 2
        assert len(gateway.requests) == 2
        assert gateway.requests[0].body == gateway.requests[1].body
    finally:
        await gateway.close()


@integration
@pytest_twisted.ensureDeferred
async def test_400_is_a_permanent_failure_and_not_retried() -> None:
    gateway = SmsGateway(reactor)
    gateway.replies = [(400, b'{"error": "invalid number"}')]
    sender = gateway_sender(gateway.url)
    try:
        result: DeliveryResult = await send_with_retry(
            reactor, sender, sms(), attempts=3, base_delay_s=0.05
        ).addTimeout(20, reactor)
        assert not result.ok and not result.retryable
        assert result.attempts == 1
        assert result.detail == 'HTTP 400 Bad Request: {"error": "invalid number"}'
        assert len(gateway.requests) == 1
    finally:
        await gateway.close()


@integration
@pytest.mark.parametrize("status", [408, 429, 503])
@pytest_twisted.ensureDeferred
async def test_throttling_and_server_errors_are_retryable(status: int) -> None:
    gateway = SmsGateway(reactor)
    gateway.replies = [(status, b"")]
    try:
        result = await send(gateway_sender(gateway.url), sms())
        assert not result.ok and result.retryable
        assert result.detail.startswith(f"HTTP {status} ")
    finally:
        await gateway.close()


@integration
@pytest_twisted.ensureDeferred
async def test_success_statuses_are_configurable() -> None:
    gateway = SmsGateway(reactor)
    gateway.replies = [(202, b"queued")]
    try:
        only_200 = gateway_sender(gateway.url, success_statuses={200})
        result = await send(only_200, sms())
        assert not result.ok and not result.retryable
        assert result.detail == "HTTP 202 Accepted: queued"
    finally:
        await gateway.close()


@integration
@pytest_twisted.ensureDeferred
async def test_a_slow_gateway_times_out_as_retryable() -> None:
    gateway = SmsGateway(reactor)
    gateway.delay_s = 5.0
    try:
        result = await send(gateway_sender(gateway.url, timeout_s=0.3), sms())
        assert not result.ok and result.retryable
        assert result.detail == "timed out after 0.3 s"
    finally:
        await gateway.close()


@integration
@pytest_twisted.ensureDeferred
async def test_connection_refused_is_retryable() -> None:
    gateway = SmsGateway(reactor)
    url = gateway.url
    await gateway.close()
    result = await send(gateway_sender(url), sms())
    assert not result.ok and result.retryable
    assert "refused" in result.detail.lower()


@pytest_twisted.ensureDeferred
async def test_an_email_notification_is_not_sent_by_sms() -> None:
    email = sms(channel="email", recipient="a@example.net")
    result = await send(gateway_sender("http://127.0.0.1:1/x"), email)
    assert not result.ok and result.detail == "not an SMS: email"
