"""No role does more than its permissions allow, on every route a running head-end serves.

A real ``amr headend`` (SQLite, a real Mosquitto) is started; its first administrator comes from
``amr user add``, and the administrator creates, through the API, an operator and an API key for
every role. The routes come from the head-end's own OpenAPI document (``x-permission`` per
operation), so a new route is covered as soon as it is served. Every route is then called as
every role, once with the operator's login session and once with the role's API key: a role
without the route's permission gets 403 naming it (never a 2xx, which would be an escalation,
nor a 5xx), a role with it gets past the check (no 401/403) and no 5xx either; a call without
credentials, or with a credential the head-end never issued, gets 401.

tests/headend/api/test_routes.py makes the same refusals in process, with API keys, against the
router; this test adds the served document, operators' sessions, the permitted side and the real
daemon's wiring.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from headend.api.app import build_router
from headend.auth import PERMISSIONS, ROLE_PERMISSIONS, ROLES, allowed
from tests.support.gateway import add_admin, start_headend, stop
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-" + secrets.token_urlsafe(12)
MISSING_ID = "999999"  # no such row: a permitted call reaches its handler and changes nothing
PUBLIC = {"POST /api/v1/login", "POST /api/v1/logout", "GET /api/v1/openapi.json"}


@dataclass
class Reply:
    status: int
    body: Any


@dataclass
class Headend:
    host: str
    port: int
    sessions: dict[str, str] = field(default_factory=dict)  # role -> session token
    keys: dict[str, str] = field(default_factory=dict)  # role -> API key

    def call(self, method: str, path: str, token: str | None = None,
             body: Any = None) -> Reply:  # fmt: skip
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return Reply(response.status, decoded)


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    permission: str | None
    has_body: bool

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def path(self) -> str:
        return re.sub(r"\{[^}]+\}", MISSING_ID, self.template)


@pytest.fixture(scope="module")
def headend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Headend]:
    folder = tmp_path_factory.mktemp("roles")
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    processes = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AMR_MASTER_KEY", secrets.token_hex(32))
        env.setenv("AMR_TEST_PASSWORD", ADMIN_PASSWORD)
        try:
            config = {
                "database": {"url": f"sqlite:///{folder}/headend.db"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port},
                "keys": {"signing_key_file": str(folder / "signing.pem")},
                "api": {"host": "127.0.0.1", "port": 0},
            }
            path = folder / "headend.yaml"
            path.write_text(yaml.safe_dump(config))
            add_admin(path)
            process, base = start_headend(path, [])
            processes.append(process)
            served = Headend("127.0.0.1", int(base.rsplit(":", 1)[1]))
            admin = served.call("POST", "/api/v1/login",
                                body={"username": "admin", "password": ADMIN_PASSWORD})  # fmt: skip
            assert admin.status == 200, admin.body
            token = admin.body["token"]
            for role in ROLES:
                password = f"{role}-" + secrets.token_urlsafe(12)
                created = served.call("POST", "/api/v1/operators", token,
                                      {"username": f"op-{role}", "password": password,
                                       "role": role})  # fmt: skip
                assert created.status in (200, 201), created.body
                login = served.call("POST", "/api/v1/login",
                                    body={"username": f"op-{role}", "password": password})  # fmt: skip
                assert login.status == 200, login.body
                served.sessions[role] = login.body["token"]
                key = served.call("POST", "/api/v1/api-keys", token,
                                  {"name": f"key-{role}", "role": role})  # fmt: skip
                assert key.status in (200, 201), key.body
                served.keys[role] = key.body["key"]
            yield served
        finally:
            for process in processes:
                stop(process)
            broker.stop()


@pytest.fixture(scope="module")
def operations(headend: Headend) -> list[Operation]:
    """Every operation of the served OpenAPI document."""
    document = headend.call("GET", "/api/v1/openapi.json")
    assert document.status == 200
    found = []
    for template, methods in document.body["paths"].items():
        for method, operation in methods.items():
            found.append(Operation(method.upper(), template, operation["x-permission"],
                                   "requestBody" in operation))  # fmt: skip
    return found


def test_the_document_lists_every_route_the_router_serves(operations: list[Operation]) -> None:
    served = {(route.method, route.template, route.permission) for route in build_router().routes}
    listed = {(op.method, op.template, op.permission) for op in operations}
    assert listed == served
    assert {op.label for op in operations if op.permission is None} == PUBLIC
    assert {op.permission for op in operations} - {None} <= set(PERMISSIONS)


@pytest.mark.reliability("security", "every served route as every role, by session and by API "
                         "key: 403 without the route's permission, never 2xx or 5xx; no 401/403 "
                         "or 5xx with it")  # fmt: skip
@pytest.mark.parametrize("credential", ["session", "api_key"])
def test_every_role_is_held_to_its_permissions_on_every_route(
    headend: Headend, operations: list[Operation], credential: str,
    reliability: dict[str, object],
) -> None:  # fmt: skip
    tokens = headend.sessions if credential == "session" else headend.keys
    problems: list[str] = []
    refused = passed = 0
    for op in operations:
        if op.permission is None:
            continue
        for role in ROLES:
            reply = headend.call(op.method, op.path, tokens[role], {} if op.has_body else None)
            where = f"{role} {op.label} -> {reply.status} {reply.body}"
            if allowed(role, op.permission):
                passed += 1
                if reply.status in (401, 403) or reply.status >= 500:
                    problems.append(f"permitted but refused or failed: {where}")
            else:
                refused += 1
                message = reply.body.get("error", {}).get("message", "") if isinstance(
                    reply.body, dict) else ""  # fmt: skip
                if reply.status != 403 or repr(op.permission) not in message:
                    problems.append(f"not refused with 403 naming {op.permission!r}: {where}")
    assert not problems, "\n".join(problems)
    # the table is not trivially satisfied: both sides were exercised for every role but admin
    for role in ROLES:
        denied = [op for op in operations if op.permission and not allowed(role, op.permission)]
        assert bool(denied) == (ROLE_PERMISSIONS[role] != frozenset(PERMISSIONS)), role
    reliability["calls_refused"] = refused
    reliability["calls_permitted"] = passed
    reliability["escalations"] = 0


@pytest.mark.reliability("security", "every protected route refuses a call without "
                         "credentials, or with a made-up token or API key, with 401")  # fmt: skip
def test_every_protected_route_refuses_unauthenticated_calls(
    headend: Headend, operations: list[Operation], reliability: dict[str, object]
) -> None:
    forged = ["not-a-session-" + secrets.token_urlsafe(32), "amrk_" + secrets.token_urlsafe(32)]
    problems = []
    calls = 0
    for op in operations:
        if op.permission is None:
            continue
        for token in [None, *forged]:
            reply = headend.call(op.method, op.path, token, {} if op.has_body else None)
            calls += 1
            if reply.status != 401:
                problems.append(f"{op.label} with {token and token[:5]!r} -> {reply.status}")
    assert not problems, "\n".join(problems)
    assert headend.call("GET", "/api/v1/openapi.json").status == 200  # public stays public
    reliability["calls_refused"] = calls


def test_each_operator_is_the_role_it_was_given(headend: Headend) -> None:
    """The sessions the table uses are the roles' own: /me reports each role's permissions."""
    for role in ROLES:
        for token in (headend.sessions[role], headend.keys[role]):
            me = headend.call("GET", "/api/v1/me", token)
            assert me.status == 200, me.body
            assert me.body["role"] == role
            assert set(me.body["permissions"]) == set(ROLE_PERMISSIONS[role])
