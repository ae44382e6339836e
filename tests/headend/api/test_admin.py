"""The admin routes over HTTP: login, sessions, operators, API keys, the audit log, OpenAPI."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.logger import formatEvent

from headend.api.framework import ApiResource, ApiSite
from headend.store.schema import audit_log, operators

from .harness import ADMIN_PASSWORD, START, TIMEOUT_S, Api, Client, LogEvents

CASHIER_PASSWORD = "cashier-password-1"


async def admin_token(api: Api) -> str:
    api.operator("root", "admin")
    return await api.login("root")


# -- logging in ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_login_returns_a_token_and_sets_a_strict_http_only_cookie(api: Api) -> None:
    api.operator("ann", "cashier", CASHIER_PASSWORD)
    reply = await api.call(
        "POST", "/api/v1/login", {"username": "ann", "password": CASHIER_PASSWORD}
    )
    assert reply.status == 200
    body = reply.json
    assert set(body) == {"token", "role", "name", "expires_at"}
    assert (body["role"], body["name"], body["expires_at"]) == ("cashier", "ann", START + 3600)
    cookie = reply.header("set-cookie")
    assert cookie is not None
    assert cookie.startswith(f"amr_session={body['token']};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=3600" in cookie
    me = await api.call("GET", "/api/v1/me", cookie=f"amr_session={body['token']}")
    assert me.json == {
        "name": "ann", "role": "cashier", "kind": "operator", "vending_point": "head-office",
        "permissions": ["customers", "read", "vend"],
    }  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_a_bad_login_is_401_with_one_message_for_every_cause(api: Api) -> None:
    api.operator("ann", "cashier", CASHIER_PASSWORD)
    api.operator("gone", "cashier", CASHIER_PASSWORD)
    token = await admin_token(api)
    await api.call("PATCH", "/api/v1/operators/2", {"active": False}, token=token)
    for username, password in (("ann", "wrong-password"), ("nobody", CASHIER_PASSWORD),
                               ("gone", CASHIER_PASSWORD)):  # fmt: skip
        reply = await api.call(
            "POST", "/api/v1/login", {"username": username, "password": password}
        )
        assert reply.status == 401
        assert reply.message == "invalid username or password"
        assert reply.header("set-cookie") is None
    failed = await api.call("GET", "/api/v1/audit?action=login_failed", token=token)
    assert [item["actor"] for item in failed.json["items"]] == ["gone", "nobody", "ann"]
    assert failed.json["items"][0]["detail"] == {"remote": "127.0.0.1"}


@pytest_twisted.ensureDeferred
async def test_a_session_expires_with_the_clock(api: Api) -> None:
    api.operator("ann", "viewer")
    token = await api.login("ann")
    assert (await api.call("GET", "/api/v1/me", token=token)).status == 200
    api.app.clock.advance(3599)
    assert (await api.call("GET", "/api/v1/me", token=token)).status == 200
    api.app.clock.advance(1)
    reply = await api.call("GET", "/api/v1/me", token=token)
    assert reply.status == 401 and reply.message == "invalid or expired credentials"


@pytest_twisted.ensureDeferred
async def test_logout_ends_the_session_at_once_and_clears_the_cookie(api: Api) -> None:
    api.operator("ann", "viewer")
    token = await api.login("ann")
    assert (await api.call("GET", "/api/v1/me", token=token)).status == 200  # now cached
    reply = await api.call("POST", "/api/v1/logout", cookie=f"amr_session={token}")
    assert reply.status == 204
    assert (reply.header("set-cookie") or "").startswith("amr_session=; Path=/; Max-Age=0")
    assert (await api.call("GET", "/api/v1/me", token=token)).status == 401
    assert (await api.call("POST", "/api/v1/logout")).status == 204  # anonymous: harmless


@pytest_twisted.ensureDeferred
async def test_roles_lists_every_role_and_permission(api: Api) -> None:
    reply = await api.call("GET", "/api/v1/roles", api_key=api.key_for("viewer"))
    roles = {role["name"]: role["permissions"] for role in reply.json["roles"]}
    assert list(roles) == ["admin", "supervisor", "cashier", "operator", "field_technician",
                           "viewer"]  # fmt: skip
    assert roles["field_technician"] == ["commands", "meters", "read"]
    assert len(reply.json["permissions"]) == 13 and "vend.cancel" in reply.json["permissions"]


# -- operators ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_list_and_filter_operators(api: Api) -> None:
    token = await admin_token(api)
    for name, role in (("ann", "cashier"), ("bob", "cashier"), ("cy", "operator")):
        reply = await api.call(
            "POST", "/api/v1/operators",
            {"username": name, "password": CASHIER_PASSWORD, "role": role,
             "vending_point": "kiosk-3"},
            token=token,
        )  # fmt: skip
        assert reply.status == 201, reply.body
        assert set(reply.json) == {"id", "username", "role", "vending_point", "active",
                                   "created_at"}  # fmt: skip
        assert (reply.json["username"], reply.json["role"], reply.json["active"]) == (
            name,
            role,
            True,
        )
    await api.call("PATCH", "/api/v1/operators/3", {"active": False}, token=token)
    listed = await api.call("GET", "/api/v1/operators?role=cashier", token=token)
    assert [o["username"] for o in listed.json["items"]] == ["ann", "bob"]
    listed = await api.call("GET", "/api/v1/operators?role=cashier&active=true", token=token)
    assert [o["username"] for o in listed.json["items"]] == ["ann"]
    listed = await api.call("GET", "/api/v1/operators?limit=2&offset=1", token=token)
    assert listed.json["total"] == 4 and (listed.json["limit"], listed.json["offset"]) == (2, 1)
    assert [o["username"] for o in listed.json["items"]] == ["ann", "bob"]
    assert b"password" not in listed.body and b"scrypt" not in listed.body
    bad = await api.call("GET", "/api/v1/operators?role=root", token=token)
    assert bad.status == 400 and "unknown role 'root'" in bad.message
    bad = await api.call("GET", "/api/v1/operators?active=maybe", token=token)
    assert bad.status == 400 and "active must be true or false" in bad.message


@pytest_twisted.ensureDeferred
async def test_operator_validation(api: Api) -> None:
    token = await admin_token(api)
    reply = await api.call(
        "POST", "/api/v1/operators",
        {"username": "has space", "password": "short", "role": "root", "colour": "blue"},
        token=token,
    )  # fmt: skip
    assert reply.status == 422
    details = reply.json["error"]["details"]
    assert sorted(d.split(":")[0] for d in details) == ["colour", "password", "role", "username"]
    assert any("at least 10 characters" in d for d in details)
    assert any("unknown role 'root'" in d and "field_technician" in d for d in details)
    assert all("short" not in d for d in details)  # the rejected password is not echoed
    reply = await api.call(
        "POST", "/api/v1/operators",
        {"username": "root", "password": CASHIER_PASSWORD, "role": "viewer"}, token=token,
    )  # fmt: skip
    assert reply.status == 409 and "root" in reply.message


@pytest_twisted.ensureDeferred
async def test_patch_an_operator(api: Api) -> None:
    token = await admin_token(api)
    ann_id = api.operator("ann", "cashier", CASHIER_PASSWORD)
    ann = await api.login("ann", CASHIER_PASSWORD)
    assert (await api.call("GET", "/api/v1/test/perm/relay", token=ann)).status == 403
    reply = await api.call(
        "PATCH", f"/api/v1/operators/{ann_id}", {"role": "operator"}, token=token
    )
    assert reply.status == 200 and reply.json["role"] == "operator"
    # the role change reaches the open session at once (this process's cache is cleared)
    assert (await api.call("GET", "/api/v1/test/perm/relay", token=ann)).status == 200
    reply = await api.call(
        "PATCH", f"/api/v1/operators/{ann_id}", {"password": "a brand new one"}, token=token
    )
    assert reply.status == 200
    assert (await api.call("GET", "/api/v1/me", token=ann)).status == 401  # sessions ended
    await api.login("ann", "a brand new one")
    for path, body, status in (
        ("/api/v1/operators/999", {"active": False}, 404),
        ("/api/v1/operators/abc", {"active": False}, 404),
        (f"/api/v1/operators/{ann_id}", {}, 400),
        (f"/api/v1/operators/{ann_id}", {"password": "short"}, 422),
    ):
        reply = await api.call("PATCH", path, body, token=token)
        assert reply.status == status, (path, body, reply.body)


@pytest_twisted.ensureDeferred
async def test_the_last_active_admin_cannot_be_removed(api: Api) -> None:
    token = await admin_token(api)
    for change in ({"active": False}, {"role": "viewer"}):
        reply = await api.call("PATCH", "/api/v1/operators/1", change, token=token)
        assert reply.status == 409 and "no active administrator" in reply.message
    second = api.operator("deputy", "admin")
    reply = await api.call("PATCH", "/api/v1/operators/1", {"role": "viewer"}, token=token)
    assert reply.status == 200
    deputy = await api.login("deputy")
    reply = await api.call("PATCH", f"/api/v1/operators/{second}", {"active": False}, token=deputy)
    assert reply.status == 409


@pytest_twisted.ensureDeferred
async def test_only_admins_manage_operators_and_keys(api: Api) -> None:
    key = api.key_for("supervisor")
    for method, path, body in (
        ("GET", "/api/v1/operators", None),
        ("POST", "/api/v1/operators", {"bad": "body"}),
        ("PATCH", "/api/v1/operators/1", {"active": False}),
        ("GET", "/api/v1/api-keys", None),
        ("POST", "/api/v1/api-keys", {"name": "x", "role": "admin"}),
        ("DELETE", "/api/v1/api-keys/1", None),
        ("GET", "/api/v1/audit", None),
    ):
        reply = await api.call(method, path, body, api_key=key)
        assert reply.status == 403 and "'admin'" in reply.message, (method, path)


# -- API keys -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_api_key_is_shown_once_works_and_stops_when_revoked(api: Api) -> None:
    token = await admin_token(api)
    reply = await api.call("POST", "/api/v1/api-keys", {"name": "billing", "role": "cashier"},
                           token=token)  # fmt: skip
    assert reply.status == 201
    key_id, key = reply.json["id"], reply.json["key"]
    assert key.startswith("amrk_")
    me = await api.call("GET", "/api/v1/me", api_key=key)
    assert (me.json["name"], me.json["kind"], me.json["role"]) == ("billing", "api_key", "cashier")
    assert (await api.call("GET", "/api/v1/test/perm/vend", token=key)).status == 200
    listed = await api.call("GET", "/api/v1/api-keys", token=token)
    assert listed.json["items"] == [
        {
            "id": key_id,
            "name": "billing",
            "role": "cashier",
            "created_at": START,
            "revoked_at": None,
        }
    ]
    assert key.encode() not in listed.body
    api.app.clock.advance(1)
    reply = await api.call("DELETE", f"/api/v1/api-keys/{key_id}", token=token)
    assert reply.status == 200 and reply.json["revoked_at"] == START + 1
    assert (await api.call("GET", "/api/v1/me", api_key=key)).status == 401  # at once, here
    listed = await api.call("GET", "/api/v1/api-keys?revoked=false", token=token)
    assert listed.json["total"] == 0
    assert (await api.call("DELETE", "/api/v1/api-keys/99", token=token)).status == 404
    bad = await api.call("POST", "/api/v1/api-keys", {"name": "x" * 49, "role": "boss"},
                         token=token)  # fmt: skip
    assert bad.status == 422
    assert sorted(d.split(":")[0] for d in bad.json["error"]["details"]) == ["name", "role"]


@pytest_twisted.ensureDeferred
async def test_another_process_sees_a_revocation_within_the_cache_ttl(api: Api) -> None:
    """The documented trade-off: a second head-end process caches a key for up to 5 s."""
    token = await admin_token(api)
    created = await api.call("POST", "/api/v1/api-keys", {"name": "k", "role": "viewer"},
                             token=token)  # fmt: skip
    key = created.json["key"]
    other = ApiResource(api.app.router, api.app)
    site: Any = ApiSite(other)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    client = Client(f"http://127.0.0.1:{address.port}")
    try:
        assert (await client.call("GET", "/api/v1/me", api_key=key)).status == 200
        await api.call("DELETE", f"/api/v1/api-keys/{created.json['id']}", token=token)
        assert (await api.call("GET", "/api/v1/me", api_key=key)).status == 401
        api.app.clock.advance(4.9)
        assert (await client.call("GET", "/api/v1/me", api_key=key)).status == 200  # cached
        api.app.clock.advance(0.1)
        assert (await client.call("GET", "/api/v1/me", api_key=key)).status == 401
    finally:
        await client.pool.closeCachedConnections().addTimeout(TIMEOUT_S, reactor)
        await defer.maybeDeferred(port.stopListening).addTimeout(TIMEOUT_S, reactor)


# -- the audit log ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_audit_log_records_admin_actions_without_secrets(
    api: Api, logged: LogEvents
) -> None:
    token = await admin_token(api)
    api.app.clock.advance(10)
    created = await api.call(
        "POST", "/api/v1/operators",
        {"username": "ann", "password": CASHIER_PASSWORD, "role": "cashier"}, token=token,
    )  # fmt: skip
    ann_id = created.json["id"]
    api.app.clock.advance(10)
    await api.call("PATCH", f"/api/v1/operators/{ann_id}",
                   {"password": "changed-password-2", "role": "viewer"}, token=token)  # fmt: skip
    api.app.clock.advance(10)
    key = await api.call("POST", "/api/v1/api-keys", {"name": "sync", "role": "admin"}, token=token)
    api.app.clock.advance(10)
    await api.call("DELETE", f"/api/v1/api-keys/{key.json['id']}", token=token)
    await api.call("POST", "/api/v1/login", {"username": "ann", "password": "not-her-password"})
    api.app.clock.advance(10)
    # an API key with the admin role acts under its own, marked name
    second = await api.call("POST", "/api/v1/api-keys", {"name": "ops", "role": "admin"},
                            token=token)  # fmt: skip
    await api.call("POST", "/api/v1/operators",
                   {"username": "bob", "password": CASHIER_PASSWORD, "role": "viewer"},
                   api_key=second.json["key"])  # fmt: skip

    reply = await api.call("GET", "/api/v1/audit", token=token)
    items = reply.json["items"]
    assert [(i["actor"], i["action"], i["target"]) for i in items] == [
        ("api-key:ops", "operator.create", "operator:3"),
        ("root", "api_key.create", "api_key:2"),
        ("ann", "login_failed", ""),
        ("root", "api_key.revoke", "api_key:1"),
        ("root", "api_key.create", "api_key:1"),
        ("root", "operator.update", f"operator:{ann_id}"),
        ("root", "operator.create", f"operator:{ann_id}"),
        ("root", "login", ""),
    ]
    assert items[5]["detail"] == {"password": "changed", "role": "viewer"}
    assert items[6]["detail"] == {"role": "cashier", "username": "ann",
                                  "vending_point": "head-office"}  # fmt: skip

    def actions(query: str) -> Any:
        return api.call("GET", f"/api/v1/audit?{query}", token=token)

    assert (await actions("actor=ann")).json["total"] == 1
    assert (await actions("target=api_key:1")).json["total"] == 2
    reply = await actions(f"since={START + 10}&until={START + 31}")
    assert [i["action"] for i in reply.json["items"]] == ["api_key.create", "operator.update",
                                                          "operator.create"]  # fmt: skip
    reply = await actions("limit=2&offset=1&action=api_key.create")
    assert reply.json["total"] == 2 and [i["target"] for i in reply.json["items"]] == ["api_key:1"]
    assert (await actions("since=yesterday")).status == 400

    # no password, hash, key or session token anywhere in the audit log, the API's answer or the log
    secrets = [ADMIN_PASSWORD, CASHIER_PASSWORD, "changed-password-2", "not-her-password",
               key.json["key"], second.json["key"], token]  # fmt: skip
    with api.app.db.engine.connect() as connection:
        stored = json.dumps([list(r) for r in connection.execute(sa.select(audit_log)).all()])
        hashes = connection.execute(sa.select(operators.c.password_hash)).scalars().all()
    everything = stored + reply.body.decode() + "\n".join(formatEvent(e) or "" for e in logged)
    everything += "\n".join(repr(e) for e in logged)
    for secret in [*secrets, *hashes]:
        assert secret not in everything
    assert not re.search(r"scrypt\$", everything)


# -- OpenAPI ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_openapi_document_describes_every_route(api: Api) -> None:
    reply = await api.call("GET", "/api/v1/openapi.json")
    assert reply.status == 200
    document = reply.json
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "AMR head-end" and document["info"]["version"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {"type": "http", "scheme": "bearer",
                                      "description": schemes["bearerToken"]["description"]}  # fmt: skip
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["sessionCookie"] == {"type": "apiKey", "in": "cookie", "name": "amr_session"}
    routes = api.app.router.routes
    described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert described == {(r.method, r.template) for r in routes}
    operation_ids = set()
    for route in routes:
        operation = document["paths"][route.template][route.method.lower()]
        assert operation["summary"] == route.summary
        assert operation["x-permission"] == route.permission
        assert operation["tags"] == list(route.tags)
        operation_ids.add(operation["operationId"])
        params = operation.get("parameters", [])
        path_params = [p["name"] for p in params if p["in"] == "path"]
        assert path_params == re.findall(r"\{(\w+)\}", route.template)
        assert {p["name"] for p in params if p["in"] == "query"} == set(route.query)
        if route.permission is None:
            assert operation["security"] == []
        else:
            assert {"401", "403"} <= set(operation["responses"])
            assert {"bearerToken": []} in operation["security"]
        if route.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{route.body.__name__}"
            assert "422" in operation["responses"]
    assert len(operation_ids) == len(routes)  # unique
    schemas = document["components"]["schemas"]
    assert {"LoginBody", "OperatorCreate", "OperatorUpdate", "ApiKeyCreate", "DummyBody",
            "Inner", "Error"} <= set(schemas)  # fmt: skip
    assert schemas["OperatorCreate"]["properties"]["password"]["minLength"] == 10
    # every reference resolves and nothing is left in pydantic's own $defs
    text = reply.body.decode()
    assert "$defs" not in text
    for ref in re.findall(r'"\$ref": ?"([^"]+)"', text):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    login = document["paths"]["/api/v1/login"]["post"]
    assert login["x-permission"] is None and "401" in login["responses"]
