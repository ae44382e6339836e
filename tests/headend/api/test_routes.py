"""The head-end's real routes: every role is refused what its permissions do not cover, anonymous
callers are refused everything but login and the OpenAPI document, and malformed requests get a
4xx that says what is wrong.

The router is the one ``amr headend`` serves (``headend.api.app.build_router``); refusals happen
before any handler runs, so no gateway or key store is needed.
"""

from __future__ import annotations

import re

import pytest
import pytest_twisted

from headend.api.app import build_router
from headend.auth import ROLE_PERMISSIONS, ROLES, allowed

from .harness import Api

ROUTER = build_router()
PROTECTED = [route for route in ROUTER.routes if route.permission is not None]


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", template)


@pytest.fixture
def production(api: Api) -> Api:
    api.app.router = ROUTER
    api.resource.router = ROUTER
    return api


def test_every_route_needs_a_known_permission() -> None:
    known = set().union(*ROLE_PERMISSIONS.values())
    assert PROTECTED, "no protected routes"
    for route in PROTECTED:
        assert route.permission in known, route.label
    public = {route.label for route in ROUTER.routes if route.permission is None}
    assert public <= {"POST /api/v1/login", "POST /api/v1/logout", "GET /api/v1/openapi.json"}


@pytest.mark.reliability("security", "in process, every router route refuses each role's API "
                         "key with 403 where the role lacks the route's permission")  # fmt: skip
@pytest.mark.parametrize("role", sorted(ROLES))
@pytest_twisted.ensureDeferred
async def test_each_role_is_refused_what_it_may_not_do(production: Api, role: str) -> None:
    key = production.key_for(role)
    refused = 0
    for route in PROTECTED:
        assert route.permission is not None
        if allowed(role, route.permission):
            continue
        reply = await production.call(route.method, _path(route.template), {}, api_key=key)
        assert reply.status == 403, (role, route.label, reply.status, reply.body)
        assert route.permission in reply.message, (role, route.label, reply.message)
        refused += 1
    # the cashier may vend but not disconnect; the viewer may only read
    if role == "cashier":
        assert not allowed(role, "relay") and allowed(role, "vend")
    if role == "viewer":
        assert refused == len([r for r in PROTECTED if r.permission != "read"])
    if role == "admin":
        assert refused == 0


@pytest.mark.reliability("security", "in process, every protected router route refuses an "
                         "anonymous caller with 401")  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_anonymous_callers_are_refused(production: Api) -> None:
    for route in PROTECTED:
        reply = await production.call(route.method, _path(route.template), {})
        assert reply.status == 401, (route.label, reply.status)


@pytest_twisted.ensureDeferred
async def test_malformed_requests_get_a_clear_4xx(production: Api) -> None:
    key = production.key_for("admin")
    reply = await production.call("POST", "/api/v1/vends", raw=b"{not json", api_key=key)
    assert reply.status == 400 and "JSON" in reply.message
    reply = await production.call("POST", "/api/v1/vends", {"meter_id": "1", "amount_minor": -5,
                                                            "extra": 1}, api_key=key)  # fmt: skip
    assert reply.status == 422
    details = " ".join(reply.json["error"].get("details", []))
    assert "amount_minor" in details and "extra" in details
    reply = await production.call("POST", "/api/v1/vends", {"meter_id": "1"}, api_key=key)
    assert reply.status == 422 and "amount_minor or energy_wh" in str(reply.json)
    reply = await production.call("POST", "/api/v1/meters/1/relay", {"action": "explode"},
                                  api_key=key)  # fmt: skip
    assert reply.status == 422 and "action" in str(reply.json)
    reply = await production.call("POST", "/api/v1/tariffs", {"name": "t", "kind": "tou",
                                                              "body": {"weekday": [[0, 9]]}},
                                  api_key=key)  # fmt: skip
    assert reply.status == 422 and "weekday" in str(reply.json)
    reply = await production.call("GET", "/api/v1/meters?limit=0", api_key=key)
    assert reply.status == 400 and "limit" in reply.message
    reply = await production.call("GET", "/api/v1/vends/abc", api_key=key)
    assert reply.status == 404 and "abc" in reply.message
