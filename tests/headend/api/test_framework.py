"""The REST framework over real HTTP: routing, authentication, permissions, bodies, errors, pages."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.logger import formatEvent
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from headend.api.framework import ApiError, Page, Request, Router, page_of
from headend.auth import PERMISSIONS, ROLE_PERMISSIONS, Principal

from .harness import MAX_BODY, TIMEOUT_S, Api, LogEvents

ROLES = sorted(ROLE_PERMISSIONS)
GOOD_BODY = {"name": "abc", "count": 1, "inner": {"when": 1.5}}


# -- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest_twisted.ensureDeferred
async def test_every_role_gets_exactly_its_permissions(api: Api, role: str) -> None:
    key = api.key_for(role)
    for permission in PERMISSIONS:
        reply = await api.call("GET", f"/api/v1/test/perm/{permission}", api_key=key)
        if permission in ROLE_PERMISSIONS[role]:
            assert reply.status == 200, (role, permission, reply.body)
            assert reply.json == {"ok": True, "name": f"{role}-key"}
        else:
            assert reply.status == 403, (role, permission, reply.body)
            assert reply.json["error"]["code"] == "forbidden"
            assert repr(permission) in reply.message and role in reply.message


@pytest.mark.parametrize("permission", sorted(PERMISSIONS))
@pytest_twisted.ensureDeferred
async def test_anonymous_is_401_on_every_protected_route(api: Api, permission: str) -> None:
    reply = await api.call("GET", f"/api/v1/test/perm/{permission}")
    assert reply.status == 401
    assert reply.json == {
        "error": {"status": 401, "code": "unauthorized", "message": "authentication required"}
    }


@pytest_twisted.ensureDeferred
async def test_unknown_credentials_are_401_except_on_public_routes(api: Api) -> None:
    for credentials in ({"token": "nonsense"}, {"api_key": "amrk_nonsense"},
                        {"cookie": "amr_session=nonsense"}):  # fmt: skip
        reply = await api.call("GET", "/api/v1/test/perm/read", **credentials)
        assert reply.status == 401 and reply.message == "invalid or expired credentials"
    # a public route ignores a bad token: a stale cookie must not lock anyone out of logging in
    reply = await api.call("GET", "/api/v1/openapi.json", token="nonsense")
    assert reply.status == 200


@pytest_twisted.ensureDeferred
async def test_credentials_in_each_place_are_accepted(api: Api) -> None:
    key = api.key_for("viewer")
    for credentials in ({"token": key}, {"api_key": key}, {"cookie": f"amr_session={key}"}):
        reply = await api.call("GET", "/api/v1/test/perm/read", **credentials)
        assert reply.status == 200, credentials


@pytest_twisted.ensureDeferred
async def test_permission_is_checked_before_the_body(api: Api) -> None:
    key = api.key_for("viewer")  # viewer lacks "vend"
    reply = await api.call("POST", "/api/v1/test/body", raw=b"{not json", api_key=key)
    assert reply.status == 403 and "'vend'" in reply.message
    reply = await api.call("POST", "/api/v1/test/body", raw=b"{not json")
    assert reply.status == 401


# -- bodies -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_valid_body_reaches_the_handler_as_its_model(api: Api) -> None:
    reply = await api.call("POST", "/api/v1/test/body", GOOD_BODY, api_key=api.key_for("cashier"))
    assert reply.status == 201
    assert reply.json == {"name": "abc", "count": 1, "inner": {"when": 1.5, "tags": []}}
    assert reply.header("content-type") == "application/json; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_malformed_json_is_400(api: Api) -> None:
    key = api.key_for("cashier")
    for raw in (b"{not json", b'{"name": NaN}', b"\xff\xfe"):
        reply = await api.call("POST", "/api/v1/test/body", raw=raw, api_key=key)
        assert reply.status == 400, raw
        assert reply.json["error"]["code"] == "bad_request"
    reply = await api.call("POST", "/api/v1/test/body", raw=b"", api_key=key)
    assert reply.status == 400 and reply.message == "a JSON body is required"


@pytest_twisted.ensureDeferred
async def test_a_body_that_is_not_json_by_content_type_is_415(api: Api) -> None:
    reply = await api.call(
        "POST", "/api/v1/test/body", raw=json.dumps(GOOD_BODY).encode(),
        content_type="text/plain", api_key=api.key_for("cashier"),
    )  # fmt: skip
    assert reply.status == 415 and "text/plain" in reply.message


@pytest_twisted.ensureDeferred
async def test_schema_errors_are_422_naming_every_field(api: Api) -> None:
    body = {"name": "ab", "count": -1, "inner": {"when": "soon", "tags": [1]}, "extra": 0}
    reply = await api.call("POST", "/api/v1/test/body", body, api_key=api.key_for("cashier"))
    assert reply.status == 422
    error = reply.json["error"]
    assert error["code"] == "validation_failed"
    fields = sorted(detail.split(":")[0] for detail in error["details"])
    assert fields == ["count", "inner.tags.0", "inner.when", "name"]
    assert any("at least 3 characters" in d for d in error["details"])
    reply = await api.call("POST", "/api/v1/test/body", [1, 2], api_key=api.key_for("cashier"))
    assert reply.status == 422 and reply.json["error"]["details"][0].startswith("(body): ")


class _Chunks:
    """A body of unknown length, sent chunked: the server cannot refuse it by Content-Length."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.length = UNKNOWN_LENGTH

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802
        for _ in range(self.size // 1000):
            consumer.write(b" " * 1000)
        return defer.succeed(None)

    def stopProducing(self) -> None:  # noqa: N802
        pass

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass


@pytest_twisted.ensureDeferred
async def test_a_huge_body_is_413(api: Api) -> None:
    key = api.key_for("cashier")
    big = json.dumps({**GOOD_BODY, "name": "x" * (MAX_BODY * 3)}).encode()
    reply = await api.call("POST", "/api/v1/test/body", raw=big, api_key=key)
    assert reply.status == 413 and str(MAX_BODY) in reply.message
    producer = implementer(IBodyProducer)(_Chunks)(MAX_BODY * 5)
    reply = await api.call("POST", "/api/v1/test/body", producer=producer, api_key=key)
    assert reply.status == 413
    body = api.resource.request_counts
    assert body[("POST /api/v1/test/body", 413)] == 2


# -- routing ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_unknown_route_is_404_and_wrong_method_405_with_allow(api: Api) -> None:
    key = api.key_for("admin")
    reply = await api.call("GET", "/api/v1/nothing-here", api_key=key)
    assert reply.status == 404 and reply.json["error"]["code"] == "not_found"
    reply = await api.call("PUT", "/api/v1/test/items/7", api_key=key)
    assert reply.status == 405
    assert reply.header("allow") == "DELETE, GET"
    assert "PUT" in reply.message
    assert api.resource.request_counts[("unmatched", 404)] == 1


@pytest_twisted.ensureDeferred
async def test_path_parameters_are_decoded_and_literals_win(api: Api) -> None:
    key = api.key_for("admin")
    reply = await api.call("GET", "/api/v1/test/items/a%20b%2Fc", api_key=key)
    assert reply.json == {"item": "a b/c"}
    reply = await api.call("GET", "/api/v1/test/items/special", api_key=key)
    assert reply.json == {"special": True}
    reply = await api.call("DELETE", "/api/v1/test/items/special", api_key=key)
    assert reply.status == 204 and reply.body == b""


def test_routes_that_clash_are_refused() -> None:
    router = Router()

    async def handler(request: Request) -> None:
        return None

    router.route("GET", "/a/{x}", permission=None, summary="")(handler)
    with pytest.raises(ValueError, match="clashes"):
        router.route("GET", "/a/{y}", permission=None, summary="")(handler)
    with pytest.raises(ValueError, match="whole segment"):
        router.route("GET", "/a/b{x}", permission=None, summary="")(handler)


# -- errors -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_failing_handler_is_a_bare_500_and_is_logged(api: Api, logged: LogEvents) -> None:
    reply = await api.call("GET", "/api/v1/test/boom", api_key=api.key_for("viewer"))
    assert reply.status == 500
    assert reply.json == {"error": {"message": "internal error", "code": "internal"}}
    assert b"hunter2" not in reply.body and b"secret" not in reply.body
    failures = logged.claim_failures()
    assert len(failures) == 1 and "hunter2" in str(failures[0]["log_failure"].value)
    assert "GET /api/v1/test/boom failed" in formatEvent(failures[0])


@pytest_twisted.ensureDeferred
async def test_api_error_carries_status_code_and_details(api: Api) -> None:
    reply = await api.call("GET", "/api/v1/test/teapot", api_key=api.key_for("viewer"))
    assert reply.status == 409
    assert reply.json == {
        "error": {"status": 409, "code": "conflict", "message": "already brewing",
                  "details": ["pot: full"]}
    }  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_every_response_is_no_store(api: Api) -> None:
    key = api.key_for("viewer")
    for path in ("/api/v1/test/perm/read", "/api/v1/nothing", "/api/v1/test/perm/admin"):
        reply = await api.call("GET", path, api_key=key)
        assert reply.header("cache-control") == "no-store", path
    reply = await api.call("GET", "/api/v1/test/perm/read")
    assert reply.header("cache-control") == "no-store"


@pytest_twisted.ensureDeferred
async def test_a_non_json_response_keeps_its_content_type(api: Api) -> None:
    reply = await api.call("GET", "/api/v1/test/csv", api_key=api.key_for("supervisor"))
    assert reply.status == 200
    assert reply.header("content-type") == "text/csv; charset=utf-8"
    assert reply.body == "a,b\r\n1,é\r\n".encode()


@pytest_twisted.ensureDeferred
async def test_requests_are_counted_per_route_and_status(api: Api) -> None:
    key = api.key_for("viewer")
    for _ in range(3):
        await api.call("GET", "/api/v1/test/perm/read", api_key=key)
    await api.call("GET", "/api/v1/test/perm/vend", api_key=key)
    counts = api.resource.request_counts
    assert counts[("GET /api/v1/test/perm/read", 200)] == 3
    assert counts[("GET /api/v1/test/perm/vend", 403)] == 1


class _HangUp(protocol.Protocol):
    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        self.transport.write(b"GET /api/v1/test/wait HTTP/1.1\r\nHost: x\r\n\r\n")


@pytest_twisted.ensureDeferred
async def test_a_client_that_hangs_up_gets_nothing_written(api: Api) -> None:
    api.app.gate = defer.Deferred()
    port = api.client.base.rsplit(":", 1)[1]
    connected = protocol.ClientCreator(reactor, _HangUp).connectTCP("127.0.0.1", int(port))
    client = await connected.addTimeout(TIMEOUT_S, reactor)
    while api.resource.in_flight == 0:  # the request has reached the handler
        await _sleep(0.01)
    assert client.transport is not None
    client.transport.loseConnection()
    await _sleep(0.1)  # the server notices the hang-up
    api.app.gate.callback(None)
    while api.resource.in_flight:
        await _sleep(0.01)
    assert api.resource.request_counts[("GET /api/v1/test/wait", 200)] == 1
    # and the server still serves
    reply = await api.call("GET", "/api/v1/openapi.json")
    assert reply.status == 200


async def _sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None).addTimeout(TIMEOUT_S, reactor)


# -- pages --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be between 1 and 100, not 0"),
        ("limit=100000", "limit must be between 1 and 100, not 100000"),
        ("offset=-1", "offset must be 0 or more, not -1"),
        ("offset=" + "9" * 20, "offset must be below 2**63, not " + "9" * 20),  # was a 500
        ("limit=ten", "limit must be an integer, not 'ten'"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_page_parameters_are_400(api: Api, query: str, message: str) -> None:
    reply = await api.call("GET", f"/api/v1/test/page?{query}", api_key=api.key_for("viewer"))
    assert reply.status == 400
    assert reply.message == message


@pytest_twisted.ensureDeferred
async def test_page_defaults_and_limits(api: Api) -> None:
    key = api.key_for("viewer")
    reply = await api.call("GET", "/api/v1/test/page", api_key=key)
    assert reply.json == {"limit": 50, "offset": 0, "query": {}}
    reply = await api.call("GET", "/api/v1/test/page?limit=100&offset=7&x=1&x=2", api_key=key)
    assert reply.json == {"limit": 100, "offset": 7,
                          "query": {"limit": "100", "offset": "7", "x": "1"}}  # fmt: skip


def test_page_of_and_page_without_config() -> None:
    assert page_of([1], 9, Page(1, 3)) == {"items": [1], "total": 9, "limit": 1, "offset": 3}
    request = Request("GET", "/", {}, {"limit": "500"}, None, None, object(), "127.0.0.1")
    assert request.page() == Page(500, 0)
    request.query["limit"] = "501"
    with pytest.raises(ApiError, match="between 1 and 500"):
        request.page()


def test_require() -> None:
    request = Request("GET", "/", {}, {}, None, None, object(), "127.0.0.1")
    with pytest.raises(ApiError) as anonymous:
        request.require("read")
    assert anonymous.value.status == 401
    request.principal = Principal("bob", "cashier", "operator")
    assert request.require("vend") is request.principal
    with pytest.raises(ApiError) as forbidden:
        request.require("relay")
    assert forbidden.value.status == 403 and "'relay'" in forbidden.value.message
