"""SMS notifications through an HTTP SMS gateway, with Twisted's ``Agent``.

Gateways differ only in where the number and the text go, so the request is a template: a JSON
document or form fields (and, for gateways that want it, the URL's query) in which ``{to}`` and
``{text}`` are replaced by the recipient and the message text. Any header or template value may be
a :class:`~headend.notify.model.Secret` (an API token): it is sent, but never logged, never shown
by ``repr`` and blanked out of any gateway reply quoted in a result's ``detail``.

Outcomes (``send`` never errbacks)::

    status in success_statuses (default 2xx)   ok; provider_id from the reply's JSON if configured
    408, 429, 5xx                              failed, retryable
    any other status (4xx, 3xx)                failed, not retryable
    refused, reset, DNS failure, timed out     failed, retryable

A request that times out after the gateway took it may still be delivered, so a retry can send
the SMS twice: delivery is at least once.

Text length (3GPP TS 23.038): a single SMS holds 160 characters of the GSM 7-bit default
alphabet (the extension characters ``^{}\\[~]|€`` and form feed take two each), or 70 UTF-16
units when any character is outside that alphabet (UCS-2). Longer text is cut to fit and ends
with ``...`` (GSM: the ellipsis character is not in the alphabet and would force UCS-2) or ``…``
(UCS-2); the result's ``detail`` says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IConsumer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from .model import DeliveryResult, Notification, Secret, SenderConfigError

__all__ = ["HttpSmsSender", "SmsText", "fit_sms_text"]

log = Logger()

# 3GPP TS 23.038 clause 6.2.1: the GSM 7-bit default alphabet, and its extension table
# (reached through the escape character, so each costs two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

BodyFormat = Literal["json", "form"]
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_FIELDS = ("to", "text")
_DETAIL_MAX = 200
_WORD_CUT_MAX = 15  # characters given up, at most, to end a cut text on a word boundary
_REPLY_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class SmsText:
    text: str
    encoding: Literal["gsm7", "ucs2"]
    length: int
    """In septets (GSM 7-bit) or UTF-16 units (UCS-2): what the limit counts."""
    truncated: bool
    original_length: int


def _gsm7_cost(c: str) -> int | None:
    if c in GSM7_BASIC:
        return 1
    if c in GSM7_EXTENSION:
        return 2
    return None


def fit_sms_text(text: str, max_septets: int = 160, max_ucs2_units: int = 70) -> SmsText:
    """Cut ``text`` to what one SMS (or ``max_*`` worth of a concatenated one) holds."""
    costs = [_gsm7_cost(c) for c in text]
    if all(cost is not None for cost in costs):
        gsm_costs = [cost or 0 for cost in costs]
        encoding: Literal["gsm7", "ucs2"] = "gsm7"
        limit, ellipsis = max_septets, "..."
    else:
        gsm_costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
        encoding = "ucs2"
        limit, ellipsis = max_ucs2_units, "…"
    total = sum(gsm_costs)
    if total <= limit:
        return SmsText(text, encoding, total, truncated=False, original_length=total)
    budget = limit - len(ellipsis)
    used = 0
    kept = 0
    for cost in gsm_costs:
        if used + cost > budget:
            break
        used += cost
        kept += 1
    cut = text[:kept]
    if kept < len(text) and not text[kept].isspace():
        # Mid-word: end at the last space instead, unless that throws away too much.
        space = cut.rfind(" ")
        if space >= len(cut) - _WORD_CUT_MAX:
            cut = cut[:space]
    cut = cut.rstrip()
    used = sum(gsm_costs[: len(cut)])
    return SmsText(
        cut + ellipsis, encoding, used + len(ellipsis), truncated=True, original_length=total
    )


Template = Mapping[str, Any]


class _ReplyCollector(Protocol):
    """Reads a reply body, keeping at most ``limit`` bytes of it.

    Not ``twisted.web.client.readBody``: that one emits a DeprecationWarning whenever the whole
    reply arrived before it was asked for (Twisted issue #8227), which small gateway replies do.
    """

    def __init__(self, limit: int) -> None:
        self.done: Deferred[bytes] = Deferred(self._on_cancel)
        self._chunks: list[bytes] = []
        self._room = limit

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._room > 0:
            self._chunks.append(data[: self._room])
            self._room -= len(self._chunks[-1])

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._chunks))
        else:
            self.done.errback(reason)

    def _on_cancel(self, _: Deferred[bytes]) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory, written at once (``FileBodyProducer`` would schedule
    its writes on the global reactor's cooperator)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:  # noqa: N802
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


def _timed_out(result: object, timeout_s: float) -> Failure:
    # A cancelled request fails with ResponseNeverReceived(CancelledError), not CancelledError,
    # so addTimeout cannot tell a timeout from other failures without this.
    return Failure(TimeoutError(f"timed out after {timeout_s:g} s"))


def _walk_strings(template: Any) -> list[str]:
    if isinstance(template, str):
        return [template]
    if isinstance(template, Mapping):
        return [s for value in template.values() for s in _walk_strings(value)]
    if isinstance(template, Sequence):
        return [s for value in template for s in _walk_strings(value)]
    return []


def _walk_secrets(template: Any) -> list[Secret]:
    if isinstance(template, Secret):
        return [template]
    if isinstance(template, Mapping):
        return [s for value in template.values() for s in _walk_secrets(value)]
    if isinstance(template, Sequence) and not isinstance(template, str):
        return [s for value in template for s in _walk_secrets(value)]
    return []


def _fill(template: Any, values: Mapping[str, str]) -> Any:
    """Replace {to} and {text} in every string of a JSON-like template, in one pass each."""
    if isinstance(template, Secret):
        return template.reveal()
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    if isinstance(template, Mapping):
        return {key: _fill(value, values) for key, value in template.items()}
    if isinstance(template, Sequence):
        return [_fill(value, values) for value in template]
    return template


class HttpSmsSender:
    """Sends SMS notifications through one HTTP gateway.

    ``body_template`` is a JSON document (``body_format="json"``) or flat form fields
    (``"form"``); ``None`` sends no body (a GET gateway that takes everything in the URL).
    ``{to}`` and ``{text}`` may appear in the URL (percent-encoded there) and in any string of
    the template, and must appear somewhere. ``provider_id_field`` is a dotted path into the
    reply's JSON (``"messages.0.id"``) for the gateway's message id. ``timeout_s`` bounds the
    whole exchange, connecting and reading the reply included. ``url`` may itself be a
    :class:`Secret` when the gateway takes its key in the URL; credential-looking query values
    of a plain URL (``api_key=``, ``token=``...) are redacted from results anyway. ``pool`` (an
    ``HTTPConnectionPool``; default: a connection per message) and ``agent`` (any ``IAgent``:
    a proxy, custom TLS) replace the defaults.
    """

    def __init__(
        self,
        reactor: Any,
        url: str | Secret,
        *,
        method: str = "POST",
        body_template: Template | None = None,
        body_format: BodyFormat = "json",
        headers: Mapping[str, str | Secret] | None = None,
        timeout_s: float = 15.0,
        success_statuses: Collection[int] = range(200, 300),
        max_septets: int = 160,
        max_ucs2_units: int = 70,
        provider_id_field: str | None = None,
        pool: HTTPConnectionPool | None = None,
        agent: Any = None,
    ) -> None:
        self._url = url if isinstance(url, Secret) else Secret(url)
        plain_url = self._url.reveal()
        parts = urlsplit(plain_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SenderConfigError("url", "must be an http:// or https:// URL with a host")
        method = method.upper()
        if method not in ("POST", "PUT", "GET"):
            raise SenderConfigError("method", "must be POST, PUT or GET")
        if body_format not in ("json", "form"):
            raise SenderConfigError("body_format", "must be 'json' or 'form'")
        if method == "GET" and body_template is not None:
            raise SenderConfigError("body_template", "a GET request carries no body")
        if body_format == "form" and body_template is not None:
            for key, value in body_template.items():
                if not isinstance(value, (str, Secret)):
                    raise SenderConfigError(
                        f"body_template.{key}", "form fields must be strings or secrets"
                    )
        strings = [plain_url, *_walk_strings(body_template)]
        names = {name for s in strings for name in _PLACEHOLDER.findall(s)}
        unknown = sorted(names - set(_FIELDS))
        if unknown:
            raise SenderConfigError(
                "body_template", f"unknown placeholder(s) {unknown}: only {{to}} and {{text}}"
            )
        missing = [name for name in _FIELDS if name not in names]
        if missing:
            raise SenderConfigError(
                "body_template", f"{{{missing[0]}}} appears nowhere in the url or template"
            )
        if timeout_s <= 0:
            raise SenderConfigError("timeout_s", "must be > 0")
        if max_septets < 10 or max_ucs2_units < 10:
            raise SenderConfigError("max_septets/max_ucs2_units", "must be >= 10")
        self._reactor = reactor
        self.method = method
        self._template = body_template
        self.body_format = body_format
        self._headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.success_statuses = frozenset(success_statuses)
        self.max_septets = max_septets
        self.max_ucs2_units = max_ucs2_units
        self.provider_id_field = provider_id_field
        self._pool = pool if pool is not None else HTTPConnectionPool(reactor, persistent=False)
        self._agent = agent or Agent(reactor, connectTimeout=timeout_s, pool=self._pool)
        secrets = [
            s.reveal()
            for s in (*_walk_secrets(list(self._headers.values())), *_walk_secrets(body_template))
        ]
        if isinstance(url, Secret):
            secrets.append(plain_url)
        secrets += _url_credentials(parts)
        self._secrets = _redaction_list(secrets)
        # Shown without user:password@, query or fragment: those are where URLs carry keys.
        port = f":{parts.port}" if parts.port else ""
        self._shown_url = (
            "<secret>"
            if isinstance(url, Secret)
            else f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
        )

    def __repr__(self) -> str:
        return (
            f"HttpSmsSender(url={self._shown_url!r}, method={self.method!r}, "
            f"body_format={self.body_format!r}, headers={sorted(self._headers)!r}, "
            f"timeout_s={self.timeout_s:g})"
        )

    def close(self) -> Deferred[None]:
        """Close any cached connection (call on shutdown)."""
        d: Deferred[None] = self._pool.closeCachedConnections()
        return d

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<secret>")
        return text

    def build_request(self, to: str, text: str) -> tuple[bytes, Headers, bytes | None]:
        """The URL, headers and body for one message (public so a gateway set-up can be checked)."""
        values = {"to": to, "text": text}
        url = _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), self._url.reveal())
        headers = Headers(
            {b"User-Agent": [b"amr-sts-headend"], b"Accept": [b"application/json, */*"]}
        )
        body: bytes | None = None
        if self._template is not None:
            filled = _fill(self._template, values)
            if self.body_format == "json":
                body = json.dumps(filled, ensure_ascii=False).encode("utf-8")
                headers.setRawHeaders(b"Content-Type", [b"application/json; charset=utf-8"])
            else:
                body = urlencode(filled).encode("ascii")
                headers.setRawHeaders(b"Content-Type", [b"application/x-www-form-urlencoded"])
        for name, value in self._headers.items():
            raw = value.reveal() if isinstance(value, Secret) else value
            headers.setRawHeaders(name.encode("latin-1"), [raw.encode("latin-1")])
        return url.encode("ascii"), headers, body

    def send(self, notification: Notification) -> Deferred[DeliveryResult]:
        return Deferred.fromCoroutine(self._send(notification))

    async def _exchange(
        self, url: bytes, headers: Headers, body: bytes | None
    ) -> tuple[int, bytes, bytes]:
        producer = _BytesProducer(body) if body is not None else None
        response: IResponse = await self._agent.request(
            self.method.encode("ascii"), url, headers, producer
        )
        collector = _ReplyCollector(_REPLY_MAX)
        response.deliverBody(collector)
        reply = await collector.done
        return response.code, response.phrase, reply

    async def _send(self, notification: Notification) -> DeliveryResult:
        if notification.channel != "sms":
            return DeliveryResult(ok=False, detail=f"not an SMS: {notification.channel}")
        fitted = fit_sms_text(notification.body, self.max_septets, self.max_ucs2_units)
        note = ""
        if fitted.truncated:
            unit = "GSM characters" if fitted.encoding == "gsm7" else "UCS-2 characters"
            note = f"; text truncated from {fitted.original_length} to {fitted.length} {unit}"
            log.info(
                "SMS for {alarm_key} truncated from {length} to {limit} {unit}",
                alarm_key=notification.alarm_key,
                length=fitted.original_length,
                limit=fitted.length,
                unit=unit,
            )
        try:
            url, headers, body = self.build_request(notification.recipient, fitted.text)
        except (UnicodeError, TypeError, ValueError) as e:
            return DeliveryResult(ok=False, detail=self._redact(f"cannot build the request: {e}"))
        exchange = Deferred.fromCoroutine(self._exchange(url, headers, body))
        exchange.addTimeout(self.timeout_s, self._reactor, onTimeoutCancel=_timed_out)
        try:
            status, phrase, reply = await exchange
        except TimeoutError:
            return DeliveryResult(
                ok=False, detail=f"timed out after {self.timeout_s:g} s{note}", retryable=True
            )
        except CancelledError:
            return DeliveryResult(ok=False, detail=f"cancelled{note}", retryable=True)
        except Exception as e:
            return DeliveryResult(
                ok=False, detail=self._redact(_describe_error(e)) + note, retryable=True
            )
        excerpt = self._redact(reply[:_DETAIL_MAX].decode("utf-8", "replace").strip())
        detail = f"HTTP {status} {phrase.decode('latin-1')}"
        if status in self.success_statuses:
            return DeliveryResult(
                ok=True, detail=detail + note, provider_id=self._provider_id(reply)
            )
        retryable = status >= 500 or status in (408, 429)
        return DeliveryResult(
            ok=False,
            detail=f"{detail}: {excerpt}{note}" if excerpt else detail + note,
            retryable=retryable,
        )

    def _provider_id(self, reply: bytes) -> str | None:
        if self.provider_id_field is None:
            return None
        try:
            value: Any = json.loads(reply)
        except ValueError:
            return None
        for step in self.provider_id_field.split("."):
            if isinstance(value, Mapping) and step in value:
                value = value[step]
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                return None
        return None if value is None or isinstance(value, (dict, list)) else str(value)


_CREDENTIAL_NAME = re.compile(r"key|token|secret|pass|pwd|auth|sig", re.IGNORECASE)


def _url_credentials(parts: SplitResult) -> list[str]:
    """What a plain-string URL carries that looks like a credential: a password, an api_key=..."""
    found = [parts.password] if parts.password else []
    found += [value for name, value in parse_qsl(parts.query) if _CREDENTIAL_NAME.search(name)]
    return found


def _redaction_list(secrets: list[str]) -> list[str]:
    """Each secret, and each long word of it: a gateway quoting a refused "Bearer <token>" header
    quotes the token alone. Longest first, so a whole secret is replaced before its parts."""
    pieces = set(secrets)
    pieces.update(word for s in secrets for word in s.split() if len(word) >= 8)
    pieces.discard("")
    return sorted(pieces, key=len, reverse=True)


def _describe_error(error: Exception) -> str:
    reasons = getattr(error, "reasons", None)  # ResponseFailed / RequestTransmissionFailed
    if reasons:
        inner = "; ".join(f"{type(r.value).__name__}: {r.value}" for r in reasons)
        return f"{type(error).__name__} ({inner})"
    return f"{type(error).__name__}: {error}"
