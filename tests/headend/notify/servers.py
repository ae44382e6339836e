"""Real servers for the senders to talk to, in-process on 127.0.0.1: an ESMTP server built from
twisted.mail's server side (with AUTH through a twisted.cred portal) and an HTTP SMS gateway
(twisted.web). Both record what they received; ``close()`` stops listening and waits until every
connection is gone, so a test leaves no socket behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, protocol, task
from twisted.internet.interfaces import IListeningPort
from twisted.mail import smtp
from twisted.mail._cred import LOGINCredentials, PLAINCredentials
from twisted.protocols.policies import WrappingFactory
from twisted.web import resource, server
from zope.interface import implementer

__all__ = ["GatewayRequest", "ReceivedMail", "Silent", "SmsGateway", "SmtpServer"]


class _Listener:
    """A port whose connections are tracked, to be closed for good in teardown."""

    def __init__(self, reactor: Any, factory: Any) -> None:
        self._reactor = reactor
        self._wrapper = WrappingFactory(factory)
        self._port: IListeningPort = reactor.listenTCP(0, self._wrapper, interface="127.0.0.1")
        self.port: int = self._port.getHost().port

    @property
    def open_connections(self) -> int:
        return len(self._wrapper.protocols)

    async def close(self, grace_s: float = 2.0) -> None:
        await defer.maybeDeferred(self._port.stopListening).addTimeout(5, self._reactor)
        waited = 0.0
        while self._wrapper.protocols:
            if waited >= grace_s:
                for wrapper in list(self._wrapper.protocols):
                    wrapper.transport.abortConnection()
            await task.deferLater(self._reactor, 0.02, lambda: None).addTimeout(5, self._reactor)
            waited += 0.02
            assert waited < grace_s + 5, "connections did not close"


class Silent:
    """A server that accepts connections and never says a word (for timeouts)."""

    def __init__(self, reactor: Any) -> None:
        self._listener = _Listener(reactor, protocol.Factory.forProtocol(protocol.Protocol))
        self.port = self._listener.port

    async def close(self) -> None:
        await self._listener.close(grace_s=0.0)


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_to: list[str]
    login: bytes | None
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, inbox: list[ReceivedMail], envelope: ReceivedMail) -> None:
        self._inbox = inbox
        self._envelope = envelope
        self._lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        self._lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:  # noqa: N802
        self._envelope.raw = b"\n".join(self._lines) + b"\n"
        self._inbox.append(self._envelope)
        return defer.succeed(None)

    def connectionLost(self) -> None:  # noqa: N802
        self._lines = []


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, server: SmtpServer, login: bytes | None) -> None:
        self._server = server
        self._login = login
        self._from = ""

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:  # noqa: N802
        return b"Received: from test-client by test-smtp-server"

    def validateFrom(self, helo: Any, origin: smtp.Address) -> smtp.Address:  # noqa: N802
        self._from = str(origin)
        return origin

    def validateTo(self, user: smtp.User) -> Any:  # noqa: N802
        address = str(user.dest)
        if address in self._server.reject:
            code, text = self._server.reject[address]
            raise smtp.SMTPBadRcpt(user.dest, code, text)
        envelope = ReceivedMail(self._from, [address], self._login, b"")
        return lambda: _Message(self._server.messages, envelope)


@implementer(IRealm)
class _Realm:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    def requestAvatar(  # noqa: N802
        self, avatar_id: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> Any:
        assert isinstance(avatar_id, bytes)
        self._server.logins.append(avatar_id)
        if smtp.IMessageDelivery in interfaces:
            return smtp.IMessageDelivery, _Delivery(self._server, avatar_id), lambda: None
        raise NotImplementedError(interfaces)


class _SmtpFactory(protocol.ServerFactory):
    noisy = False

    def __init__(self, server: SmtpServer, challengers: dict[bytes, Any], portal: Any) -> None:
        self._server = server
        self._challengers = challengers
        self._portal = portal

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        p: Any = smtp.ESMTP(self._challengers if self._portal is not None else {})
        p.factory = self
        p.host = b"test-smtp-server"
        p.portal = self._portal
        if self._portal is None:
            p.delivery = _Delivery(self._server, None)
        return p


class SmtpServer:
    """An ESMTP server that keeps what it is sent.

    ``users`` turns on AUTH (``mechanisms``: PLAIN and/or LOGIN) and refuses mail from anyone who
    has not logged in; ``reject`` maps a recipient to the (code, text) its RCPT gets.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        users: dict[str, bytes] | None = None,
        mechanisms: tuple[bytes, ...] = (b"PLAIN", b"LOGIN"),
        reject: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        self.messages: list[ReceivedMail] = []
        self.logins: list[bytes] = []
        self.reject = reject or {}
        challengers = {
            name: {b"PLAIN": PLAINCredentials, b"LOGIN": LOGINCredentials}[name]
            for name in mechanisms
        }
        portal = (
            Portal(_Realm(self), [InMemoryUsernamePasswordDatabaseDontUse(**users)])
            if users
            else None
        )
        self._listener = _Listener(reactor, _SmtpFactory(self, challengers, portal))
        self.port = self._listener.port

    async def close(self) -> None:
        await self._listener.close()


@dataclass
class GatewayRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _GatewayResource(resource.Resource):
    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, reactor: Any, gateway: SmsGateway) -> None:
        resource.Resource.__init__(self)
        self._reactor = reactor
        self._gateway = gateway

    def render(self, request: server.Request) -> bytes | int:
        self._gateway.requests.append(
            GatewayRequest(
                method=request.method.decode(),
                path=request.uri.decode(),
                headers={
                    name.decode().lower(): b", ".join(values).decode()
                    for name, values in request.requestHeaders.getAllRawHeaders()
                },
                body=request.content.read() if request.content is not None else b"",
            )
        )
        status, body = (
            self._gateway.replies.pop(0)
            if self._gateway.replies
            else (200, b'{"messages": [{"id": "msg-1"}]}')
        )
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        if self._gateway.delay_s == 0:
            return body

        def finish() -> None:
            request.write(body)
            request.finish()

        call = self._reactor.callLater(self._gateway.delay_s, finish)
        request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)
        return server.NOT_DONE_YET


class _QuietSite(server.Site):
    def __init__(self, root: resource.Resource) -> None:
        server.Site.__init__(self, root)

    def log(self, request: Any) -> None:
        """No access log: a test server's log lines are not the sender's."""


class SmsGateway:
    """An HTTP server playing an SMS gateway: records requests, answers from ``replies`` in turn
    (then 200 with a message id); ``delay_s`` holds every answer back that long."""

    def __init__(self, reactor: Any) -> None:
        self.requests: list[GatewayRequest] = []
        self.replies: list[tuple[int, bytes]] = []
        self.delay_s = 0.0
        site = _QuietSite(_GatewayResource(reactor, self))
        site.noisy = False
        self._listener = _Listener(reactor, site)
        self.port = self._listener.port
        self.url = f"http://127.0.0.1:{self.port}/v1/sms"

    async def close(self) -> None:
        await self._listener.close()
