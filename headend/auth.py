"""Who is asking, and may they: operators' passwords and sessions, API keys, roles and permissions.

Theory of operation
-------------------
An operator logs in with a username and a password; the password is checked against an scrypt hash
(``scrypt$n$r$p$salt_b64$hash_b64``) and the login opens a session: 32 random bytes (URL-safe
base64) handed to the client once. A machine client uses an API key (``amrk_<random>``) instead,
also shown once, when it is created. The store keeps only the SHA-256 of a session token or an API
key: a copy of the database lets nobody in. (SHA-256, not scrypt, is right for these: they are 256
random bits, not something a person chose, so there is nothing to guess.)

Each request's token resolves to a :class:`Principal` (name, role, kind, vending point); the role
maps to a set of permissions (:data:`ROLE_PERMISSIONS`) and every API route names the one permission
it needs. An inactive operator, an expired session and a revoked key resolve to nothing.

:class:`PrincipalCache` keeps resolved tokens for a few seconds so that a busy API client is not
hashed and looked up on every request. The price: in *another* head-end process, a revoked key, a
deactivated operator or a role change takes effect only when that process's cache entry expires
(``ttl_s``, 5 s by default). The process that makes the change clears its own cache at once.

Functions named ``thd_*`` run in the database's thread pool (STYLE.md rule 11): they take a
``Connection`` and return plain values.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from .store.schema import api_keys, operators, sessions

__all__ = [
    "API_KEY_PREFIX",
    "PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "AuthError",
    "DuplicateOperator",
    "Principal",
    "PrincipalCache",
    "UnknownRole",
    "allowed",
    "hash_password",
    "hash_token",
    "thd_create_api_key",
    "thd_create_operator",
    "thd_login",
    "thd_logout",
    "thd_principal_for_token",
    "thd_resolve_token",
    "thd_revoke_api_key",
    "thd_update_operator",
    "verify_password",
]

# -- permissions and roles ----------------------------------------------------------------------

PERMISSIONS: dict[str, str] = {
    "read": "read anything (every GET)",
    "vend": "sell credit and reprint receipts",
    "vend.cancel": "cancel a sale",
    "engineering": "issue engineering tokens (clear tamper, clear credit, power limit, ...)",
    "relay": "connect and disconnect a meter's relay",
    "commands": "on-demand reads, time sync, cancel commands",
    "tariffs": "create, version and push TOU and step tariffs",
    "keys": "vending keys and key-change campaigns",
    "alarms.ack": "acknowledge alarms",
    "customers": "customers, accounts and their life-cycle",
    "meters": "register and edit meters, groups and read schedules",
    "reports": "run reports",
    "admin": "operators, API keys, notification rules and the audit log",
}

_ALL = frozenset(PERMISSIONS)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": _ALL,
    "supervisor": _ALL - {"admin", "keys"},
    "cashier": frozenset({"read", "vend", "customers"}),
    "operator": frozenset(
        {"read", "relay", "commands", "alarms.ack", "engineering", "meters", "reports"}
    ),
    "field_technician": frozenset({"read", "commands", "meters"}),
    "viewer": frozenset({"read"}),
}

ROLES: tuple[str, ...] = tuple(ROLE_PERMISSIONS)


def allowed(role: str, permission: str) -> bool:
    """Whether ``role`` holds ``permission`` (an unknown role holds nothing)."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: an operator (logged in) or an API key."""

    name: str
    role: str
    kind: Literal["operator", "api_key"]
    vending_point: str = "head-office"

    def can(self, permission: str) -> bool:
        return allowed(self.role, permission)

    @property
    def actor(self) -> str:
        """The name the audit log records: an API key's name is marked so it cannot pass for an
        operator's username (``api-key:billing-sync``)."""
        return self.name if self.kind == "operator" else f"api-key:{self.name}"

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS.get(self.role, frozenset())


class AuthError(Exception):
    """A request to the auth functions that cannot be served."""


class UnknownRole(AuthError):
    def __init__(self, role: str) -> None:
        self.role = role
        super().__init__(f"unknown role {role!r}: must be one of {', '.join(ROLES)}")


class DuplicateOperator(AuthError):
    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"an operator named {username!r} exists already")


# -- passwords ----------------------------------------------------------------------------------

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# a stored hash names its own cost; one from a tampered row must not make us allocate gigabytes
_MAX_N = 2**20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
        maxmem=128 * r * (n + p + 2) + 1024 * 1024,
    )  # fmt: skip


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$16384$8$1$<salt b64>$<hash b64>``, a fresh 16-byte salt unless one is given."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, _HASH_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (compared in constant time); a malformed hash
    matches nothing."""
    try:
        scheme, n_text, r_text, p_text, salt_b64, hash_b64 = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
    except ValueError:
        return False
    if scheme != "scrypt" or not (1 < n <= _MAX_N and 0 < r <= 32 and 0 < p <= 16 and expected):
        return False
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except ValueError:  # n not a power of two, and the like
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that a wrong username costs as much time
    as a wrong password and the response time does not tell which usernames exist."""
    return hash_password(secrets.token_urlsafe(16))


# -- tokens -------------------------------------------------------------------------------------

API_KEY_PREFIX = "amrk_"


def hash_token(token: str) -> str:
    """What the store keeps of a session token or an API key: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLE_PERMISSIONS:
        raise UnknownRole(role)


def thd_create_operator(
    connection: sa.Connection, username: str, password: str, role: str, vending_point: str,
    now: float,
) -> int:  # fmt: skip
    """A new, active operator; its id. Raises :class:`UnknownRole`, :class:`DuplicateOperator`."""
    _check_role(role)
    taken = connection.execute(
        sa.select(operators.c.id).where(operators.c.username == username)
    ).first()
    if taken is not None:
        raise DuplicateOperator(username)
    result = connection.execute(
        sa.insert(operators).values(
            username=username, password_hash=hash_password(password), role=role,
            vending_point=vending_point, active=True, created_at=now,
        )
    )  # fmt: skip
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def thd_update_operator(
    connection: sa.Connection, operator_id: int, now: float, *, role: str | None = None,
    active: bool | None = None, password: str | None = None, vending_point: str | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """Change an operator; the fields that changed (a new password as ``"password": "changed"``),
    or None when there is no such operator. A deactivated operator or a new password ends the
    operator's sessions."""
    row = connection.execute(
        sa.select(operators.c.role, operators.c.active, operators.c.vending_point).where(
            operators.c.id == operator_id
        )
    ).first()
    if row is None:
        return None
    values: dict[str, Any] = {}
    changed: dict[str, Any] = {}
    if role is not None:
        _check_role(role)
        if role != row.role:
            values["role"] = changed["role"] = role
    if active is not None and active != bool(row.active):
        values["active"] = changed["active"] = active
    if vending_point is not None and vending_point != row.vending_point:
        values["vending_point"] = changed["vending_point"] = vending_point
    if password is not None:
        values["password_hash"] = hash_password(password)
        changed["password"] = "changed"
    if values:
        connection.execute(
            sa.update(operators).where(operators.c.id == operator_id).values(**values)
        )
    if password is not None or active is False:
        connection.execute(sa.delete(sessions).where(sessions.c.operator_id == operator_id))
    return changed


def thd_login(
    connection: sa.Connection, username: str, password: str, now: float, ttl_s: float
) -> tuple[str, Principal] | None:
    """A new session token and who it is for, or None for a wrong username or password or an
    inactive operator (the caller cannot tell which, and neither can a client)."""
    row = connection.execute(
        sa.select(
            operators.c.id, operators.c.password_hash, operators.c.role,
            operators.c.vending_point, operators.c.active,
        ).where(operators.c.username == username)
    ).first()  # fmt: skip
    if row is None:
        verify_password(password, _dummy_hash())
        return None
    if not verify_password(password, row.password_hash) or not row.active:
        return None
    connection.execute(sa.delete(sessions).where(sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(32)
    connection.execute(
        sa.insert(sessions).values(
            token_hash=hash_token(token), operator_id=row.id, created_at=now,
            expires_at=now + ttl_s,
        )
    )  # fmt: skip
    return token, Principal(username, row.role, "operator", row.vending_point)


def thd_logout(connection: sa.Connection, token: str) -> None:
    """End the session ``token`` opened (nothing happens for an unknown token)."""
    connection.execute(sa.delete(sessions).where(sessions.c.token_hash == hash_token(token)))


def thd_principal_for_token(connection: sa.Connection, token: str, now: float) -> Principal | None:
    """Who a session token or an API key acts for; None when it is unknown, expired, revoked or
    belongs to an inactive operator."""
    resolved = thd_resolve_token(connection, token, now)
    return None if resolved is None else resolved[0]


def thd_resolve_token(
    connection: sa.Connection, token: str, now: float
) -> tuple[Principal, float | None] | None:
    """:func:`thd_principal_for_token`, with the time the credential stops being valid (a
    session's expiry; None for an API key), so that a cache does not outlive a session."""
    digest = hash_token(token)
    if token.startswith(API_KEY_PREFIX):
        key = connection.execute(
            sa.select(api_keys.c.name, api_keys.c.role).where(
                api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)
            )
        ).first()
        return None if key is None else (Principal(key.name, key.role, "api_key"), None)
    row = connection.execute(
        sa.select(
            operators.c.username, operators.c.role, operators.c.vending_point,
            sessions.c.expires_at,
        )
        .select_from(sessions.join(operators, sessions.c.operator_id == operators.c.id))
        .where(sessions.c.token_hash == digest, sessions.c.expires_at > now, operators.c.active)
    ).first()  # fmt: skip
    if row is None:
        return None
    return Principal(row.username, row.role, "operator", row.vending_point), float(row.expires_at)


def thd_create_api_key(
    connection: sa.Connection, name: str, role: str, now: float
) -> tuple[int, str]:
    """A new API key: its id and its text, which exists nowhere else once the caller drops it."""
    _check_role(role)
    key_text = API_KEY_PREFIX + secrets.token_urlsafe(32)
    result = connection.execute(
        sa.insert(api_keys).values(
            name=name, key_hash=hash_token(key_text), role=role, created_at=now
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0]), key_text


def thd_revoke_api_key(connection: sa.Connection, key_id: int, now: float) -> bool:
    """Revoke a key; False when there is no such key. Revoking a revoked key keeps its first
    revocation time."""
    exists = connection.execute(sa.select(api_keys.c.id).where(api_keys.c.id == key_id)).first()
    if exists is None:
        return False
    connection.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return True


# -- the cache ----------------------------------------------------------------------------------


class PrincipalCache:
    """Resolved tokens, kept ``ttl_s`` seconds (by ``clock``), at most ``max_entries``.

    Only successful resolutions are kept; the key is the token's SHA-256, so the cache holds no
    usable credential either. Not thread-safe: the reactor thread uses it.
    """

    def __init__(self, clock: Any, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.clock = clock
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def get(self, token: str) -> Principal | None:
        digest = hash_token(token)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] <= self.clock.seconds():
            del self._entries[digest]
            return None
        return entry[1]

    def put(self, token: str, principal: Principal, not_after: float | None = None) -> None:
        """Keep ``principal`` for ``ttl_s``, or until ``not_after`` when that comes first."""
        expires = self.clock.seconds() + self.ttl_s
        if not_after is not None:
            expires = min(expires, not_after)
        if expires <= self.clock.seconds():
            return
        digest = hash_token(token)
        self._entries.pop(digest, None)
        self._entries[digest] = (expires, principal)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, token: str) -> None:
        self._entries.pop(hash_token(token), None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
