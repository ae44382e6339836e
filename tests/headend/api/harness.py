"""The test harness: the API served by a real twisted.web site over a real SQLite database, and
an HTTP client (twisted.web.client.Agent).

The application object is the smallest the framework and the admin routes need: ``db``, ``clock``
(a ``task.Clock``, so that session expiry is tested without waiting), ``router`` and ``config``.
The test router is the admin router plus one route per permission and a few that exercise the
framework (a body, a failing handler, a page, a CSV answer).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Protocol
from twisted.logger import ILogObserver, LogLevel
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from headend.api import admin
from headend.api.framework import ApiError, ApiResource, Request, Response, Router
from headend.auth import PERMISSIONS, thd_create_api_key, thd_create_operator
from headend.config import HeadendConfig
from headend.store import Database

TIMEOUT_S = 20
START = 1_700_000_000.0
MAX_BODY = 10_000
ADMIN_PASSWORD = "admin-password-123"


class Inner(BaseModel):
    when: float
    tags: list[str] = []


class DummyBody(BaseModel):
    name: str = Field(min_length=3)
    count: int = Field(ge=0)
    inner: Inner


def make_router() -> Router:
    router = Router()
    router.include(admin.router)
    for permission in PERMISSIONS:

        @router.route("GET", f"/api/v1/test/perm/{permission}", permission=permission,
                      summary=f"needs {permission}", tags=("test",))  # fmt: skip
        async def needs(request: Request) -> dict[str, Any]:
            assert request.principal is not None
            return {"ok": True, "name": request.principal.name}

    @router.route("POST", "/api/v1/test/body", permission="vend", body=DummyBody,
                  summary="echo a body", tags=("test",), responses={201: "echoed"})  # fmt: skip
    async def echo(request: Request) -> Response:
        body: DummyBody = request.body
        return Response(201, body)

    @router.route("GET", "/api/v1/test/boom", permission="read", summary="fails")
    async def boom(request: Request) -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @router.route("GET", "/api/v1/test/teapot", permission="read", summary="an ApiError")
    async def teapot(request: Request) -> None:
        raise ApiError(409, "already brewing", details=["pot: full"])

    @router.route("GET", "/api/v1/test/page", permission="read", summary="a page",
                  query={"limit": "page size", "offset": "skip"})  # fmt: skip
    async def paged(request: Request) -> dict[str, Any]:
        page = request.page()
        return {"limit": page.limit, "offset": page.offset, "query": request.query}

    @router.route("GET", "/api/v1/test/items/{item_id}", permission="read", summary="an item")
    async def item(request: Request) -> dict[str, Any]:
        return {"item": request.path_params["item_id"]}

    @router.route("GET", "/api/v1/test/items/special", permission="read", summary="literal")
    async def special(request: Request) -> dict[str, Any]:
        return {"special": True}

    @router.route("DELETE", "/api/v1/test/items/{item_id}", permission="admin", summary="gone")
    async def delete_item(request: Request) -> None:
        return None

    @router.route("GET", "/api/v1/test/csv", permission="reports", summary="CSV")
    async def csv(request: Request) -> Response:
        return Response(200, "a,b\r\n1,é\r\n", content_type="text/csv")

    @router.route("GET", "/api/v1/test/wait", permission=None, summary="waits for the test")
    async def wait(request: Request) -> dict[str, Any]:
        await request.app.gate
        return {"waited": True}

    return router


@dataclass
class App:
    db: Database
    clock: task.Clock
    router: Router
    config: HeadendConfig
    gate: defer.Deferred[None] | None = None


class _Collect(Protocol):
    """A response body (``readBody`` warns about the client's transport proxy, and warnings fail
    the tests)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]  # noqa: N802
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


@dataclass
class Reply:
    status: int
    headers: Headers
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return None if not values else str(values[-1])

    @property
    def message(self) -> str:
        return str(self.json["error"]["message"])


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None,
        api_key: str | None = None, cookie: str | None = None, raw: bytes | None = None,
        producer: IBodyProducer | None = None, content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:  # fmt: skip
        sent = Headers()
        for name, value in (headers or {}).items():
            sent.addRawHeader(name, value)
        if token is not None:
            sent.addRawHeader("Authorization", f"Bearer {token}")
        if api_key is not None:
            sent.addRawHeader("X-API-Key", api_key)
        if cookie is not None:
            sent.addRawHeader("Cookie", cookie)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            producer = FileBodyProducer(io.BytesIO(data))
        if producer is not None:
            sent.addRawHeader("Content-Type", content_type)
        response = await self.agent.request(
            method.encode(), (self.base + path).encode(), sent, producer
        ).addTimeout(TIMEOUT_S, reactor)
        collector = _Collect()
        response.deliverBody(collector)
        content = await collector.done.addTimeout(TIMEOUT_S, reactor)
        return Reply(response.code, response.headers, content)


@dataclass
class Api:
    app: App
    resource: ApiResource
    client: Client

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.client.call(method, path, body, **kw)

    def key_for(self, role: str, name: str | None = None) -> str:
        _, key = self.app.db.run_sync(thd_create_api_key, name or f"{role}-key", role, START)
        return key

    def operator(self, username: str, role: str, password: str = ADMIN_PASSWORD) -> int:
        operator_id: int = self.app.db.run_sync(
            thd_create_operator, username, password, role, "head-office", START
        )
        return operator_id

    async def login(self, username: str, password: str = ADMIN_PASSWORD) -> str:
        reply = await self.call(
            "POST", "/api/v1/login", {"username": username, "password": password}
        )
        assert reply.status == 200, reply.body
        token: str = reply.json["token"]
        return token


@implementer(ILogObserver)
class LogEvents(list[dict[str, Any]]):
    """The log events emitted during a test; a test that expects a failure logged claims it."""

    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)

    def failures(self) -> list[dict[str, Any]]:
        return [
            e for e in self
            if "log_failure" in e or e.get("log_level") in (LogLevel.error, LogLevel.critical)
        ]  # fmt: skip

    def claim_failures(self) -> list[dict[str, Any]]:
        claimed = self.failures()
        for event in claimed:
            self.remove(event)
        return claimed
