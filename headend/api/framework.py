"""A small REST framework on twisted.web: routes with permissions, pydantic bodies, JSON errors.

Theory of operation
-------------------
A :class:`Router` holds routes: a method, a path template (``/api/v1/meters/{meter_id}/relay``),
the permission the route needs (None: public), an optional pydantic model for the JSON body, and an
``async def handler(request)``. :class:`ApiResource` is one leaf resource serving a router. For
each request it:

1. matches the path (404 when nothing matches, 405 with ``Allow`` when only the method is wrong;
   a literal segment beats a ``{parameter}`` in the same place, so ``/meters/groups`` is not taken
   for meter "groups");
2. finds who is asking, from ``Authorization: Bearer <token>``, ``X-API-Key: <key>`` or the
   ``amr_session`` cookie (see :mod:`headend.auth`; resolved credentials are cached for 5 s, never
   past a session's expiry); no credentials on a protected route is 401,
   credentials that resolve to nobody are 401 too, except on a public route, which ignores them;
3. checks the route's permission (403 naming it) *before* reading the body, so a caller learns
   nothing about a route it may not use from the way its bad body is refused;
4. reads the body (413 over ``max_body_bytes``), requires JSON (415 for another content type,
   400 for bytes that are not JSON) and validates it with the route's model (422 listing every
   problem as ``field.path: message``);
5. awaits the handler and writes what it returns: a :class:`Response`, or any JSON-able value
   (status 200; ``None`` is 204 No Content).

An :class:`ApiError` raised anywhere becomes its status and message; any other exception is logged
and answered with a bare 500 that says nothing about its cause. A client that hangs up does not
cancel the handler (a sale in progress completes and is found by its idempotency key); its
response is dropped.

Every response is JSON in UTF-8 unless the handler says otherwise, and carries
``Cache-Control: no-store``: these are operators' and customers' data, not for shared caches.
:attr:`ApiResource.request_counts` counts responses per (route, status) for the metrics.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import io
import json
import re
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from ..auth import Principal, PrincipalCache, thd_resolve_token

__all__ = [
    "SESSION_COOKIE",
    "ApiError",
    "ApiResource",
    "ApiSite",
    "Handler",
    "Page",
    "Request",
    "Response",
    "Route",
    "Router",
    "page_of",
]

SESSION_COOKIE = "amr_session"
DEFAULT_PAGE_SIZE = 50
DEFAULT_MAX_PAGE_SIZE = 500

_REASONS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_failed", 429: "too_many_requests",
    500: "internal", 503: "unavailable",
}  # fmt: skip


class ApiError(Exception):
    """An answer other than success: ``{"error": {"status", "code", "message", "details"}}``."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None,
        details: list[str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _REASONS.get(status, "error")
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page_of(items: list[Any], total: int, page: Page) -> dict[str, Any]:
    """A page of a list, as every list endpoint returns it."""
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset}


@dataclass
class Request:
    """What a handler sees of an HTTP request."""

    method: str
    path: str
    path_params: dict[str, str]
    query: dict[str, str]  # single-valued: the first value of a repeated parameter
    body: Any  # the validated model instance, or None
    principal: Principal | None
    app: Any
    remote: str
    # beyond the contract: every value of each query parameter, the request's headers (lower-case
    # names), the credential it presented, whether it came over TLS, and the resource's principal
    # cache (for handlers that revoke credentials)
    query_all: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = field(default=None, repr=False)
    secure: bool = False
    auth_cache: PrincipalCache | None = field(default=None, repr=False)

    def page(self) -> Page:
        """``?limit=&offset=``: limit 1..max page size (default 50), 0 <= offset < 2**63."""
        maximum = _max_page_size(self.app)
        limit = _int_param(self.query, "limit", DEFAULT_PAGE_SIZE)
        offset = _int_param(self.query, "offset", 0)
        if not 1 <= limit <= maximum:
            raise ApiError(400, f"limit must be between 1 and {maximum}, not {limit}")
        if offset < 0:
            raise ApiError(400, f"offset must be 0 or more, not {offset}")
        if offset >= 2**63:  # an OFFSET past a 64-bit integer: no database takes it
            raise ApiError(400, f"offset must be below 2**63, not {offset}")
        return Page(limit, offset)

    def require(self, permission: str) -> Principal:
        """The principal, when it holds ``permission``; 401 when anonymous, 403 when not."""
        if self.principal is None:
            raise ApiError(401, "authentication required")
        if not self.principal.can(permission):
            raise ApiError(
                403,
                f"permission {permission!r} required; role {self.principal.role!r} lacks it",
            )
        return self.principal


def _max_page_size(app: Any) -> int:
    try:
        return int(app.config.api.max_page_size)
    except AttributeError:
        return DEFAULT_MAX_PAGE_SIZE


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {text!r}") from None


@dataclass
class Response:
    """A handler's answer when 200 with a JSON body is not what it means."""

    status: int = 200
    body: Any = None  # bytes/str for another content type, JSON-able otherwise
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Any]]

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    segments: tuple[str | None, ...]  # a literal segment, or None for a parameter
    params: tuple[str, ...]
    permission: str | None
    summary: str
    body: type[BaseModel] | None
    tags: tuple[str, ...]
    query: dict[str, str]
    responses: dict[int, str]
    handler: Handler

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        values: dict[str, str] = {}
        names = iter(self.params)
        for part, literal in zip(parts, self.segments, strict=True):
            if literal is None:
                value = urllib.parse.unquote(part, errors="strict")
                if not value:
                    return None
                values[next(names)] = value
            elif urllib.parse.unquote(part) != literal:
                return None
        return values

    def specificity(self) -> tuple[int, ...]:
        return tuple(1 if s is None else 0 for s in self.segments)


def _split(path: str) -> list[str]:
    return path.strip("/").split("/") if path.strip("/") else []


class Router:
    """Routes, registered with the :meth:`route` decorator; :meth:`include` merges routers."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self, method: str, path: str, *, permission: str | None, summary: str,
        body: type[BaseModel] | None = None, tags: tuple[str, ...] = (),
        query: dict[str, str] | None = None, responses: dict[int, str] | None = None,
    ) -> Callable[[Handler], Handler]:  # fmt: skip
        segments: list[str | None] = []
        params: list[str] = []
        for part in _split(path):
            found = _PARAM.match(part)
            if found:
                if found.group(1) in params:
                    raise ValueError(f"{path}: parameter {found.group(1)} appears twice")
                params.append(found.group(1))
                segments.append(None)
            elif "{" in part or "}" in part:
                raise ValueError(f"{path}: a parameter must be a whole segment, like {{name}}")
            else:
                segments.append(part)

        def register(handler: Handler) -> Handler:
            self._add(
                Route(
                    method=method.upper(), template=path, segments=tuple(segments),
                    params=tuple(params), permission=permission, summary=summary, body=body,
                    tags=tuple(tags), query=dict(query or {}), responses=dict(responses or {}),
                    handler=handler,
                )
            )  # fmt: skip
            return handler

        return register

    def _add(self, route: Route) -> None:
        for other in self.routes:
            if other.method == route.method and other.segments == route.segments:
                raise ValueError(f"{route.label} clashes with {other.label}")
        self.routes.append(route)

    def include(self, other: Router) -> None:
        for route in other.routes:
            self._add(route)

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for ``method`` and ``path``; :class:`ApiError` 404 or 405 otherwise."""
        parts = _split(path)
        matches: list[tuple[Route, dict[str, str]]] = []
        for route in self.routes:
            try:
                params = route.match(parts)
            except UnicodeDecodeError:
                raise ApiError(400, "the path is not valid UTF-8") from None
            if params is not None:
                matches.append((route, params))
        if not matches:
            raise ApiError(404, f"no such resource: {path}")
        wanted = [m for m in matches if m[0].method == method]
        if not wanted and method == "HEAD":
            wanted = [m for m in matches if m[0].method == "GET"]
        if not wanted:
            allow = sorted({m[0].method for m in matches})
            raise _MethodNotAllowed(method, path, allow)
        return min(wanted, key=lambda m: m[0].specificity())

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        """An OpenAPI 3.1 description of every route."""
        models = sorted(
            {r.body for r in self.routes if r.body is not None},
            key=lambda m: (m.__module__, m.__qualname__),
        )
        ref_of: dict[type[BaseModel], str] = {}
        schemas: dict[str, Any] = {}
        if models:
            key_map, top = models_json_schema(
                [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
            )
            schemas.update(top.get("$defs", {}))
            for model in models:
                ref_of[model] = key_map[(model, "validation")]["$ref"]
        schemas["Error"] = _ERROR_SCHEMA
        paths: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            paths.setdefault(route.template, {})[route.method.lower()] = _operation(
                route, ref_of.get(route.body) if route.body else None
            )
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearerToken": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "a session token from POST /api/v1/login, or an API key",
                    },
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                },
            },
            "tags": [{"name": t} for t in sorted({t for r in self.routes for t in r.tags})],
        }


class _MethodNotAllowed(ApiError):
    def __init__(self, method: str, path: str, allow: list[str]) -> None:
        super().__init__(405, f"{method} is not allowed on {path}; allowed: {', '.join(allow)}")
        self.allow = allow


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "string"}},
            },
        }
    },
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _operation(route: Route, body_ref: str | None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": _operation_id(route),
        "tags": list(route.tags),
    }
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.params
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "description": text,
         "schema": {"type": "string"}}
        for name, text in route.query.items()
    ]  # fmt: skip
    if parameters:
        operation["parameters"] = parameters
    if body_ref is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": body_ref}}},
        }
    responses: dict[str, Any] = {}
    documented = dict(route.responses)
    if not any(200 <= status < 300 for status in documented):
        documented[200] = "success"
    for status, text in sorted(documented.items()):
        responses[str(status)] = {"description": text} if status < 400 else _error_response(text)
    if route.permission is not None:
        responses.setdefault("401", _error_response("no credentials, or unknown ones"))
        responses.setdefault("403", _error_response(f"lacks permission {route.permission!r}"))
        operation["security"] = [{"bearerToken": []}, {"apiKey": []}, {"sessionCookie": []}]
    else:
        operation["security"] = []
    if body_ref is not None:
        responses.setdefault("422", _error_response("the body does not match its schema"))
    operation["responses"] = responses
    operation["x-permission"] = route.permission
    return operation


def _operation_id(route: Route) -> str:
    words = [route.method.lower()]
    for segment in route.segments:
        words.append("by" if segment is None else re.sub(r"[^A-Za-z0-9]+", "_", segment))
    return "_".join(w for w in words if w)


# -- serving ------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _dump(body: Any) -> bytes:
    return json.dumps(body, default=_json_default, ensure_ascii=False, allow_nan=False).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _validation_details(exc: ValidationError) -> list[str]:
    details = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "(body)"
        details.append(f"{location}: {error['msg']}")
    return details


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"the {what} is not valid UTF-8") from None


class _BoundedBody(io.BytesIO):
    """A request body kept in memory up to ``limit + 1`` bytes; the rest is dropped, so that the
    resource can tell "too large" without a client filling the memory or the disk."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: Any) -> int:
        room = self.limit + 1 - self.tell()
        if room > 0:
            super().write(bytes(data[:room]))
        return len(data)


class ApiSite(server.Site):
    """A Site whose request bodies are held in memory and cut at ``max_body_bytes + 1`` (the
    default Site spools large bodies to a temporary file, however large)."""

    def __init__(self, resource: Resource, *, max_body_bytes: int = 1_000_000, **kw: Any) -> None:
        super().__init__(resource, **kw)
        self.max_body_bytes = max_body_bytes

    def getContentFile(self, length: int | None) -> io.BytesIO:  # noqa: N802 (Twisted's name)
        return _BoundedBody(self.max_body_bytes)


class ApiResource(Resource):
    """Serves ``router`` for ``app`` (the object handlers reach as ``request.app``: ``db``,
    ``clock``, ``config``, services)."""

    isLeaf = True  # noqa: N815 - Twisted's name
    log = Logger()

    def __init__(
        self, router: Router, app: Any, *, max_body_bytes: int = 1_000_000, clock: Any = None,
        auth_cache_ttl_s: float = 5.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.router = router
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.clock = clock if clock is not None else app.clock
        self.auth_cache = PrincipalCache(self.clock, ttl_s=auth_cache_ttl_s)
        self.request_counts: Counter[tuple[str, int]] = Counter()
        self.in_flight = 0

    def render(self, request: server.Request) -> int:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        self.in_flight += 1
        done = Deferred.fromCoroutine(self._serve(request, gone))
        done.addErrback(self._unexpected, request, gone)
        return server.NOT_DONE_YET

    def _unexpected(self, failure: Failure, request: server.Request, gone: list[bool]) -> None:
        """Writing the response failed (a header a handler set that HTTP cannot carry, ...)."""
        self.log.failure("API response could not be written", failure)
        if gone or request.finished:
            return
        try:
            request.setResponseCode(500)
            request.finish()
        except Exception:
            self.log.failure("API response could not be finished")

    async def _serve(self, twisted_request: server.Request, gone: list[bool]) -> None:
        label = "unmatched"
        try:
            method = _decode(twisted_request.method, "method")
            path = _decode(twisted_request.path, "path")
            try:
                route, params = self.router.resolve(method, path)
                label = route.label
                response = await self._dispatch(twisted_request, route, params, method, path)
            except _MethodNotAllowed as exc:
                response = Response(exc.status, exc.body(), headers={"Allow": ", ".join(exc.allow)})
        except ApiError as exc:
            response = Response(exc.status, exc.body())
        except Exception:
            self.log.failure(
                "API {method} {path} failed",
                method=twisted_request.method.decode("latin-1"),
                path=twisted_request.path.decode("latin-1"),
            )
            response = Response(500, {"error": {"message": "internal error", "code": "internal"}})
        finally:
            self.in_flight -= 1
        self.request_counts[(label, response.status)] += 1
        if gone:
            return
        self._write(twisted_request, response)

    async def _dispatch(
        self, twisted_request: server.Request, route: Route, params: dict[str, str], method: str,
        path: str,
    ) -> Response:  # fmt: skip
        headers = {
            _decode(k, "header name").lower(): _decode(v[-1], "header")
            for k, v in twisted_request.requestHeaders.getAllRawHeaders()
        }
        token = _credential(twisted_request, headers)
        principal = await self._principal(token, public=route.permission is None)
        query_all: dict[str, list[str]] = {}
        for key, values in (twisted_request.args or {}).items():
            query_all[_decode(key, "query")] = [_decode(v, "query") for v in values]
        request = Request(
            method=method, path=path, path_params=params,
            query={k: v[0] for k, v in query_all.items() if v}, body=None, principal=principal,
            app=self.app, remote=_remote(twisted_request), query_all=query_all, headers=headers,
            token=token, secure=bool(twisted_request.isSecure()), auth_cache=self.auth_cache,
        )  # fmt: skip
        if route.permission is not None:
            request.require(route.permission)
        raw = self._read_body(twisted_request, headers)
        if route.body is not None:
            request.body = _parse_body(route.body, raw, headers.get("content-type", ""))
        result = await route.handler(request)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(204)
        return Response(200, result)

    async def _principal(self, token: str | None, *, public: bool) -> Principal | None:
        if token is None:
            return None
        principal = self.auth_cache.get(token)
        if principal is None:
            resolved = await self.app.db.run(thd_resolve_token, token, self.clock.seconds())
            if resolved is not None:
                principal, not_after = resolved
                self.auth_cache.put(token, principal, not_after)
        if principal is None and not public:
            raise ApiError(401, "invalid or expired credentials")
        return principal

    def _read_body(self, twisted_request: server.Request, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise ApiError(413, f"the body is larger than {self.max_body_bytes} bytes")
        content = twisted_request.content
        if content is None:
            return b""
        content.seek(0)
        raw: bytes = content.read(self.max_body_bytes + 1)
        if len(raw) > self.max_body_bytes:
            raise ApiError(413, f"the body is larger than {self.max_body_bytes} bytes")
        return raw

    def _write(self, twisted_request: server.Request, response: Response) -> None:
        if response.status == 204 or response.body is None:
            payload = b""
        elif isinstance(response.body, bytes):
            payload = response.body
        elif isinstance(response.body, str) and response.content_type != "application/json":
            payload = response.body.encode("utf-8")
        else:
            try:
                payload = _dump(response.body)
            except (TypeError, ValueError):
                self.log.failure("API response body is not JSON-serialisable")
                response = Response(
                    500, {"error": {"message": "internal error", "code": "internal"}}
                )
                payload = _dump(response.body)
        content_type = response.content_type
        if content_type.startswith(("application/json", "text/")) and "charset" not in content_type:
            content_type += "; charset=utf-8"
        twisted_request.setResponseCode(response.status)
        if payload or response.status != 204:
            twisted_request.setHeader(b"content-type", content_type.encode("latin-1"))
        twisted_request.setHeader(b"cache-control", b"no-store")
        twisted_request.setHeader(b"x-content-type-options", b"nosniff")
        for name, value in response.headers.items():
            twisted_request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        if payload:
            twisted_request.write(payload)
        twisted_request.finish()


def _credential(twisted_request: server.Request, headers: dict[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    cookie = twisted_request.getCookie(SESSION_COOKIE.encode("ascii"))
    if cookie:
        try:
            return bytes(cookie).decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


def _remote(twisted_request: server.Request) -> str:
    address = twisted_request.getClientAddress()
    return str(getattr(address, "host", address))


def _parse_body(model: type[BaseModel], raw: bytes, content_type: str) -> BaseModel:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not raw.strip():
        raise ApiError(400, "a JSON body is required")
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, f"the body must be application/json, not {media_type or 'untyped'}")
    text = _decode(raw, "body")
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise ApiError(
            422, "the body does not match its schema", details=_validation_details(exc)
        ) from None
