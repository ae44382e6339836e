"""Logging in and out, who am I, roles, operators, API keys, the audit log and the OpenAPI document.

Every change an administrator makes is written to the audit log in the same transaction as the
change itself. Neither passwords, password hashes, session tokens nor API keys are ever returned
or recorded, with one exception: a new API key's text is in the response that creates it, once.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ..audit import thd_audit
from ..auth import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    DuplicateOperator,
    Principal,
    thd_create_api_key,
    thd_create_operator,
    thd_login,
    thd_logout,
    thd_revoke_api_key,
    thd_update_operator,
)
from ..store.schema import api_keys, audit_log, operators
from .framework import SESSION_COOKIE, ApiError, Page, Request, Response, Router, page_of

__all__ = ["MIN_PASSWORD_LENGTH", "router"]

router = Router()

MIN_PASSWORD_LENGTH = 10
_ADMIN = ("admin",)
_AUTH = ("auth",)

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
KeyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,48}$")]
VendingPoint = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_. -]{1,64}$")]
NewPassword = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _valid_role(role: str) -> str:
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


class LoginBody(_Body):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class OperatorCreate(_Body):
    username: Username
    password: NewPassword
    role: str
    vending_point: VendingPoint = "head-office"

    @field_validator("role")
    @classmethod
    def _role(cls, role: str) -> str:
        return _valid_role(role)


class OperatorUpdate(_Body):
    role: str | None = None
    active: bool | None = None
    password: NewPassword | None = None
    vending_point: VendingPoint | None = None

    @field_validator("role")
    @classmethod
    def _role(cls, role: str | None) -> str | None:
        return None if role is None else _valid_role(role)


class ApiKeyCreate(_Body):
    name: KeyName
    role: str

    @field_validator("role")
    @classmethod
    def _role(cls, role: str) -> str:
        return _valid_role(role)


def _now(request: Request) -> float:
    return float(request.app.clock.seconds())


def _session_ttl_s(request: Request) -> int:
    try:
        return int(request.app.config.api.session_ttl_s)
    except AttributeError:
        return 12 * 3600


def _int_id(request: Request, name: str) -> int:
    text = request.path_params[name]
    # isdecimal, not isdigit: int() refuses '¹'; 18 digits: ids are BIGINTs
    if not text.isdecimal() or len(text) > 18:
        raise ApiError(404, f"no such {name.removesuffix('_id').replace('_', ' ')}: {text}")
    return int(text)


def _session_cookie(token: str, max_age_s: int, secure: bool) -> str:
    cookie = f"{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict"
    return cookie + ("; Secure" if secure else "")


# -- sessions -----------------------------------------------------------------------------------


def _thd_login_audited(
    connection: sa.Connection, username: str, password: str, now: float, ttl_s: float,
    remote: str,
) -> tuple[str, Principal] | None:  # fmt: skip
    session = thd_login(connection, username, password, now, ttl_s)
    action = "login" if session is not None else "login_failed"
    thd_audit(connection, now, username, action, "", {"remote": remote})
    return session


@router.route(
    "POST", "/api/v1/login", permission=None, body=LoginBody, tags=_AUTH,
    summary="Log in: a session token (also set as the amr_session cookie)",
    responses={200: "logged in", 401: "wrong username or password"},
)  # fmt: skip
async def login(request: Request) -> Response:
    body: LoginBody = request.body
    now = _now(request)
    ttl_s = _session_ttl_s(request)
    session = await request.app.db.run(
        _thd_login_audited, body.username, body.password, now, ttl_s, request.remote
    )
    if session is None:
        raise ApiError(401, "invalid username or password")
    token, principal = session
    return Response(
        200,
        {"token": token, "role": principal.role, "name": principal.name, "expires_at": now + ttl_s},
        headers={"Set-Cookie": _session_cookie(token, ttl_s, request.secure)},
    )


def _thd_logout_audited(
    connection: sa.Connection, token: str, actor: str | None, now: float
) -> None:
    thd_logout(connection, token)
    if actor is not None:
        thd_audit(connection, now, actor, "logout")


@router.route(
    "POST", "/api/v1/logout", permission=None, tags=_AUTH,
    summary="End the session the request presents (and clear its cookie)",
    responses={204: "logged out"},
)  # fmt: skip
async def logout(request: Request) -> Response:
    principal = request.principal
    if request.token is not None and not request.token.startswith("amrk_"):
        actor = principal.actor if principal is not None else None
        await request.app.db.run(_thd_logout_audited, request.token, actor, _now(request))
        if request.auth_cache is not None:
            request.auth_cache.forget(request.token)
    return Response(204, headers={"Set-Cookie": _session_cookie("", 0, request.secure)})


@router.route("GET", "/api/v1/me", permission="read", tags=_AUTH,
              summary="Who the credentials belong to, and what they may do")  # fmt: skip
async def me(request: Request) -> dict[str, Any]:
    principal = request.require("read")
    return {
        "name": principal.name,
        "role": principal.role,
        "kind": principal.kind,
        "vending_point": principal.vending_point,
        "permissions": sorted(principal.permissions),
    }


@router.route("GET", "/api/v1/roles", permission="read", tags=_AUTH,
              summary="The roles and the permissions each holds")  # fmt: skip
async def roles(request: Request) -> dict[str, Any]:
    return {
        "roles": [
            {"name": role, "permissions": sorted(permissions)}
            for role, permissions in ROLE_PERMISSIONS.items()
        ],
        "permissions": dict(PERMISSIONS),
    }


@router.route("GET", "/api/v1/openapi.json", permission=None, tags=("meta",),
              summary="This API's OpenAPI 3.1 description")  # fmt: skip
async def openapi(request: Request) -> dict[str, Any]:
    try:
        release = version("amr-sts")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        release = "0"
    document: dict[str, Any] = request.app.router.openapi("AMR head-end", release)
    return document


# -- operators ----------------------------------------------------------------------------------


def _operator_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "username": row.username,
        "role": row.role,
        "vending_point": row.vending_point,
        "active": bool(row.active),
        "created_at": row.created_at,
    }


_OPERATOR_COLUMNS = (
    operators.c.id, operators.c.username, operators.c.role, operators.c.vending_point,
    operators.c.active, operators.c.created_at,
)  # fmt: skip


def _thd_list_operators(
    connection: sa.Connection, role: str | None, active: bool | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    conditions: list[sa.ColumnElement[bool]] = []
    if role is not None:
        conditions.append(operators.c.role == role)
    if active is not None:
        conditions.append(operators.c.active == active)
    total = connection.execute(
        sa.select(sa.func.count()).select_from(operators).where(*conditions)
    ).scalar_one()
    rows = connection.execute(
        sa.select(*_OPERATOR_COLUMNS)
        .where(*conditions)
        .order_by(operators.c.id)
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    return [_operator_json(row) for row in rows], int(total)


def _bool_param(request: Request, name: str) -> bool | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    if text.lower() in {"true", "1", "yes"}:
        return True
    if text.lower() in {"false", "0", "no"}:
        return False
    raise ApiError(400, f"{name} must be true or false, not {text!r}")


@router.route(
    "GET", "/api/v1/operators", permission="admin", tags=_ADMIN, summary="List operators",
    query={"role": "only this role", "active": "true or false", "limit": "page size",
           "offset": "items to skip"},
)  # fmt: skip
async def list_operators(request: Request) -> dict[str, Any]:
    page = request.page()
    role = request.query.get("role") or None
    if role is not None and role not in ROLE_PERMISSIONS:
        raise ApiError(400, f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    active = _bool_param(request, "active")
    items, total = await request.app.db.run(_thd_list_operators, role, active, page)
    return page_of(items, total, page)


def _thd_create_operator_audited(
    connection: sa.Connection, body: OperatorCreate, actor: str, now: float
) -> dict[str, Any]:
    operator_id = thd_create_operator(
        connection, body.username, body.password, body.role, body.vending_point, now
    )
    thd_audit(connection, now, actor, "operator.create", f"operator:{operator_id}",
              {"username": body.username, "role": body.role,
               "vending_point": body.vending_point})  # fmt: skip
    row = connection.execute(
        sa.select(*_OPERATOR_COLUMNS).where(operators.c.id == operator_id)
    ).one()
    return _operator_json(row)


@router.route(
    "POST", "/api/v1/operators", permission="admin", tags=_ADMIN, body=OperatorCreate,
    summary="Create an operator", responses={201: "created", 409: "the username is taken"},
)  # fmt: skip
async def create_operator(request: Request) -> Response:
    principal = request.require("admin")
    try:
        created = await request.app.db.run(
            _thd_create_operator_audited, request.body, principal.actor, _now(request)
        )
    except (DuplicateOperator, sa.exc.IntegrityError):
        raise ApiError(409, f"an operator named {request.body.username!r} exists already") from None
    return Response(201, created)


class _LastAdmin(Exception):
    pass


def _thd_update_operator_audited(
    connection: sa.Connection, operator_id: int, body: OperatorUpdate, actor: str, now: float
) -> dict[str, Any] | None:
    row = connection.execute(
        sa.select(operators.c.role, operators.c.active).where(operators.c.id == operator_id)
    ).first()
    if row is None:
        return None
    stays_admin = (body.role or row.role) == "admin" and (
        body.active if body.active is not None else bool(row.active)
    )
    if row.role == "admin" and row.active and not stays_admin:
        others = connection.execute(
            sa.select(sa.func.count())
            .select_from(operators)
            .where(operators.c.role == "admin", operators.c.active, operators.c.id != operator_id)
        ).scalar_one()
        if not others:
            raise _LastAdmin()
    changed = thd_update_operator(
        connection, operator_id, now, role=body.role, active=body.active, password=body.password,
        vending_point=body.vending_point,
    )  # fmt: skip
    if changed:
        thd_audit(connection, now, actor, "operator.update", f"operator:{operator_id}", changed)
    current = connection.execute(
        sa.select(*_OPERATOR_COLUMNS).where(operators.c.id == operator_id)
    ).one()
    return _operator_json(current)


@router.route(
    "PATCH", "/api/v1/operators/{operator_id}", permission="admin", tags=_ADMIN,
    body=OperatorUpdate, summary="Change an operator's role, active flag, vending point or password",
    responses={200: "the operator as it now is", 404: "no such operator",
               409: "it would leave no active administrator"},
)  # fmt: skip
async def update_operator(request: Request) -> dict[str, Any]:
    principal = request.require("admin")
    operator_id = _int_id(request, "operator_id")
    body: OperatorUpdate = request.body
    if body.model_dump(exclude_none=True) == {}:
        raise ApiError(400, "nothing to change: give role, active, vending_point or password")
    try:
        updated: dict[str, Any] | None = await request.app.db.run(
            _thd_update_operator_audited, operator_id, body, principal.actor, _now(request)
        )
    except _LastAdmin:
        raise ApiError(409, "that would leave no active administrator") from None
    if updated is None:
        raise ApiError(404, f"no such operator: {operator_id}")
    if request.auth_cache is not None:
        request.auth_cache.clear()  # sessions of this operator may be cached with the old role
    return updated


# -- API keys -----------------------------------------------------------------------------------


def _key_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


_KEY_COLUMNS = (
    api_keys.c.id, api_keys.c.name, api_keys.c.role, api_keys.c.created_at, api_keys.c.revoked_at,
)  # fmt: skip


def _thd_list_api_keys(
    connection: sa.Connection, revoked: bool | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    conditions: list[sa.ColumnElement[bool]] = []
    if revoked is True:
        conditions.append(api_keys.c.revoked_at.is_not(None))
    elif revoked is False:
        conditions.append(api_keys.c.revoked_at.is_(None))
    total = connection.execute(
        sa.select(sa.func.count()).select_from(api_keys).where(*conditions)
    ).scalar_one()
    rows = connection.execute(
        sa.select(*_KEY_COLUMNS)
        .where(*conditions)
        .order_by(api_keys.c.id)
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    return [_key_json(row) for row in rows], int(total)


@router.route(
    "GET", "/api/v1/api-keys", permission="admin", tags=_ADMIN,
    summary="List API keys (never their text)",
    query={"revoked": "true or false", "limit": "page size", "offset": "items to skip"},
)  # fmt: skip
async def list_api_keys(request: Request) -> dict[str, Any]:
    page = request.page()
    revoked = _bool_param(request, "revoked")
    items, total = await request.app.db.run(_thd_list_api_keys, revoked, page)
    return page_of(items, total, page)


def _thd_create_api_key_audited(
    connection: sa.Connection, body: ApiKeyCreate, actor: str, now: float
) -> dict[str, Any]:
    key_id, key_text = thd_create_api_key(connection, body.name, body.role, now)
    thd_audit(connection, now, actor, "api_key.create", f"api_key:{key_id}",
              {"name": body.name, "role": body.role})  # fmt: skip
    row = connection.execute(sa.select(*_KEY_COLUMNS).where(api_keys.c.id == key_id)).one()
    return {**_key_json(row), "key": key_text}


@router.route(
    "POST", "/api/v1/api-keys", permission="admin", tags=_ADMIN, body=ApiKeyCreate,
    summary="Create an API key; its text is in this response and nowhere else, ever",
    responses={201: "created"},
)  # fmt: skip
async def create_api_key(request: Request) -> Response:
    principal = request.require("admin")
    created = await request.app.db.run(
        _thd_create_api_key_audited, request.body, principal.actor, _now(request)
    )
    return Response(201, created)


def _thd_revoke_api_key_audited(
    connection: sa.Connection, key_id: int, actor: str, now: float
) -> dict[str, Any] | None:
    before = connection.execute(
        sa.select(api_keys.c.revoked_at).where(api_keys.c.id == key_id)
    ).first()
    if before is None or not thd_revoke_api_key(connection, key_id, now):
        return None
    if before.revoked_at is None:
        thd_audit(connection, now, actor, "api_key.revoke", f"api_key:{key_id}")
    row = connection.execute(sa.select(*_KEY_COLUMNS).where(api_keys.c.id == key_id)).one()
    return _key_json(row)


@router.route(
    "DELETE", "/api/v1/api-keys/{key_id}", permission="admin", tags=_ADMIN,
    summary="Revoke an API key (it stays listed, with revoked_at)",
    responses={200: "the key, revoked", 404: "no such key"},
)  # fmt: skip
async def revoke_api_key(request: Request) -> dict[str, Any]:
    principal = request.require("admin")
    key_id = _int_id(request, "key_id")
    revoked: dict[str, Any] | None = await request.app.db.run(
        _thd_revoke_api_key_audited, key_id, principal.actor, _now(request)
    )
    if revoked is None:
        raise ApiError(404, f"no such API key: {key_id}")
    if request.auth_cache is not None:
        request.auth_cache.clear()  # the cache is keyed by the key's text, which we do not have
    return revoked


# -- the audit log ------------------------------------------------------------------------------


def _float_param(request: Request, name: str) -> float | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a time in seconds since 1970, not {text!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be a finite number")
    return value


def _thd_audit_page(
    connection: sa.Connection, filters: dict[str, Any], page: Page
) -> tuple[list[dict[str, Any]], int]:
    conditions: list[sa.ColumnElement[bool]] = []
    for name in ("actor", "action", "target"):
        if filters.get(name) is not None:
            conditions.append(audit_log.c[name] == filters[name])
    if filters.get("since") is not None:
        conditions.append(audit_log.c.at >= filters["since"])
    if filters.get("until") is not None:
        conditions.append(audit_log.c.at < filters["until"])
    total = connection.execute(
        sa.select(sa.func.count()).select_from(audit_log).where(*conditions)
    ).scalar_one()
    rows = connection.execute(
        sa.select(audit_log)
        .where(*conditions)
        .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    items = [
        {"id": row.id, "at": row.at, "actor": row.actor, "action": row.action,
         "target": row.target, "detail": json.loads(row.detail or "{}")}
        for row in rows
    ]  # fmt: skip
    return items, int(total)


@router.route(
    "GET", "/api/v1/audit", permission="admin", tags=_ADMIN,
    summary="The audit log, newest first",
    query={"actor": "who acted (an operator, api-key:<name>, cli)",
           "action": "what they did (operator.create, login_failed, ...)",
           "target": "what it was done to (operator:7, meter:..., ...)",
           "since": "from this time (seconds since 1970, inclusive)",
           "until": "before this time (seconds since 1970, exclusive)",
           "limit": "page size", "offset": "items to skip"},
)  # fmt: skip
async def audit(request: Request) -> dict[str, Any]:
    page = request.page()
    filters = {
        "actor": request.query.get("actor") or None,
        "action": request.query.get("action") or None,
        "target": request.query.get("target") or None,
        "since": _float_param(request, "since"),
        "until": _float_param(request, "until"),
    }
    items, total = await request.app.db.run(_thd_audit_page, filters, page)
    return page_of(items, total, page)
