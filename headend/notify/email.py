"""E-mail notifications over SMTP (RFC 5321) with Twisted's ESMTP client.

One connection per message: alarms are rare enough that a held-open session would mostly idle,
and a fresh connection never inherits a broken one. The message itself is built by the standard
library (:class:`email.message.EmailMessage`): RFC 5322 headers with ``Date`` and ``Message-ID``,
a UTF-8 body (quoted-printable when it is not ASCII, since Twisted's client does not negotiate
8BITMIME), and RFC 2047 encoded subjects.

Outcomes, all returned as a :class:`DeliveryResult` (``send`` never errbacks)::

    2xx to DATA                               ok, detail = the server's reply, provider_id = Message-ID
    4xx (greeting, AUTH, MAIL, RCPT, DATA)    failed, retryable
    5xx                                       failed, not retryable (detail = the server's reply)
    refused, reset, timed out                 failed, retryable
    STARTTLS "required" but not offered,
    AUTH configured but not offered           failed, not retryable

The password is never logged, never put in ``detail`` and never shown by ``repr``; the client
keeps no transcript of the session (Twisted's would hold the AUTH exchange).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from io import BytesIO
from typing import Any, Literal, cast

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.mail.smtp import ESMTPSender, ESMTPSenderFactory, SMTPClientError

from .model import DeliveryResult, Notification, Secret, SenderConfigError

__all__ = ["SmtpSender", "build_message"]

StartTls = bool | Literal["required"]


def build_message(
    notification: Notification,
    *,
    sender_address: str,
    sender_name: str | None,
    date_s: float,
    message_id: str,
) -> EmailMessage:
    """The RFC 5322 message for a notification (``date_s`` from the caller's clock)."""
    message = EmailMessage()
    message["From"] = HeaderAddress(display_name=sender_name or "", addr_spec=sender_address)
    message["To"] = notification.recipient
    message["Subject"] = notification.subject
    message["Date"] = format_datetime(datetime.fromtimestamp(date_s, UTC))
    message["Message-ID"] = message_id
    # RFC 3834: an automatic message; vacation responders should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    if notification.body.isascii():
        message.set_content(notification.body, charset="utf-8")
    else:
        message.set_content(notification.body, charset="utf-8", cte="quoted-printable")
    return message


class _Client(ESMTPSender):
    # No transcript: Twisted's session log would hold the AUTH lines (the password, base64).
    debug = False

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:  # noqa: N802, N803
        # The reply to DATA (a queue id, often) is what the caller wants to keep; Twisted drops it.
        self.factory.final_reply = (code, resp)
        ESMTPSender.sentMail(self, code, resp, numOk, addresses, log)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _describe(error: SMTPClientError) -> str:
    """The server's reply (and each rejected recipient's), never the session log."""
    parts = [f"{error.code} {_text(error.resp)}" if error.code > 0 else _text(error.resp)]
    addresses = cast("list[tuple[bytes, int, bytes]] | None", error.addresses)
    for address, code, resp in addresses or ():
        if not 200 <= code < 300:
            parts.append(f"RCPT {_text(address)}: {code} {_text(resp)}")
    return "; ".join(parts)


class SmtpSender:
    """Sends e-mail notifications through one SMTP relay.

    ``starttls``: ``False`` never, ``True`` when the server offers it, ``"required"`` refuse to
    send without it (use this whenever a password is set and the relay is not on localhost).
    STARTTLS needs Twisted's TLS support (``twisted[tls]``); ``tls_options`` (an
    ``IOpenSSLClientConnectionCreator``, e.g. ``optionsForClientTLS(host, trustRoot=...)``)
    overrides the default verification against the system's CAs for ``host``.
    ``timeout_s`` bounds the whole exchange, connecting included.
    """

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        sender_address: str,
        *,
        username: str | None = None,
        password: str | Secret | None = None,
        starttls: StartTls = True,
        timeout_s: float = 30.0,
        sender_name: str | None = None,
        helo_domain: str | None = None,
        tls_options: object | None = None,
    ) -> None:
        if "@" not in sender_address or not sender_address.isascii():
            raise SenderConfigError("sender_address", "must be an ASCII e-mail address")
        if (username is None) != (password is None):
            raise SenderConfigError("username/password", "set both or neither")
        if starttls not in (True, False, "required"):
            raise SenderConfigError("starttls", "must be true, false or 'required'")
        if timeout_s <= 0:
            raise SenderConfigError("timeout_s", "must be > 0")
        self._reactor = reactor
        self.host = host
        self.port = port
        self.sender_address = sender_address
        self.sender_name = sender_name
        self.username = username
        self._password = Secret(password) if isinstance(password, str) else password
        self.starttls = starttls
        self.timeout_s = timeout_s
        self.helo_domain = helo_domain or sender_address.rpartition("@")[2]
        self._tls_options = tls_options
        if starttls and tls_options is None:
            # twisted[tls] is a dependency of the project: the import always works
            from twisted.internet.ssl import optionsForClientTLS

            self._tls_options = optionsForClientTLS(host)

    def __repr__(self) -> str:
        return (
            f"SmtpSender(host={self.host!r}, port={self.port}, "
            f"sender_address={self.sender_address!r}, username={self.username!r}, "
            f"password={'<secret>' if self._password is not None else None}, "
            f"starttls={self.starttls!r}, timeout_s={self.timeout_s:g})"
        )

    def send(self, notification: Notification) -> Deferred[DeliveryResult]:
        return Deferred.fromCoroutine(self._send(notification))

    async def _send(self, notification: Notification) -> DeliveryResult:
        if notification.channel != "email":
            return DeliveryResult(ok=False, detail=f"not an e-mail: {notification.channel}")
        if not notification.recipient.isascii():
            return DeliveryResult(ok=False, detail="non-ASCII addresses (SMTPUTF8) not supported")
        message_id = make_msgid(domain=self.helo_domain)
        try:
            data = build_message(
                notification,
                sender_address=self.sender_address,
                sender_name=self.sender_name,
                date_s=self._reactor.seconds(),
                message_id=message_id,
            ).as_bytes()
        except (ValueError, TypeError) as e:
            return DeliveryResult(ok=False, detail=f"cannot build the message: {e}")

        factory: ESMTPSenderFactory | None = None
        connector: Any = None

        def cancel(_: Deferred[Any]) -> None:
            if factory is None:
                return
            factory.sendFinished = True
            client = factory.currentProtocol
            if client is not None and client.transport is not None:
                client.setTimeout(None)
                client.transport.abortConnection()
            elif connector is not None:
                connector.disconnect()

        done: Deferred[Any] = Deferred(cancel)
        password = self._password.reveal().encode("utf-8") if self._password else None
        factory = ESMTPSenderFactory(
            self.username.encode("utf-8") if self.username is not None else None,
            password,
            self.sender_address,
            [notification.recipient.encode("ascii")],
            BytesIO(data),
            done,
            retries=0,  # retrying is the policy's business (send_with_retry)
            # One deadline for the whole exchange (addTimeout below), no per-reply idle timer:
            # that one would fire into a factory whose Deferred has already been cancelled.
            timeout=None,
            contextFactory=self._tls_options if self.starttls else None,
            heloFallback=True,
            requireAuthentication=self.username is not None,
            requireTransportSecurity=self.starttls == "required",
        )
        factory.protocol = _Client
        factory.noisy = False  # no "Starting factory" line per message
        factory.domain = self.helo_domain.encode("idna")
        connector = self._reactor.connectTCP(self.host, self.port, factory, timeout=self.timeout_s)
        done.addTimeout(self.timeout_s, self._reactor)
        try:
            await done
        except TimeoutError:
            return DeliveryResult(
                ok=False, detail=f"timed out after {self.timeout_s:g} s", retryable=True
            )
        except CancelledError:
            return DeliveryResult(ok=False, detail="cancelled", retryable=True)
        except SMTPClientError as e:
            return DeliveryResult(ok=False, detail=_describe(e), retryable=not 500 <= e.code < 600)
        except Exception as e:
            return DeliveryResult(ok=False, detail=f"{type(e).__name__}: {e}", retryable=True)
        reply: tuple[int, bytes] | None = getattr(factory, "final_reply", None)
        detail = f"{reply[0]} {_text(reply[1])}" if reply else "accepted"
        return DeliveryResult(ok=True, detail=detail, provider_id=message_id)
