"""headend.auth: password hashes, sessions, API keys, roles, the principal cache."""

from __future__ import annotations

import base64
import hashlib

import pytest
import sqlalchemy as sa
from twisted.internet import task

from headend.auth import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    DuplicateOperator,
    Principal,
    PrincipalCache,
    UnknownRole,
    allowed,
    hash_password,
    hash_token,
    thd_create_api_key,
    thd_create_operator,
    thd_login,
    thd_logout,
    thd_principal_for_token,
    thd_revoke_api_key,
    thd_update_operator,
    verify_password,
)
from headend.cli import user as user_cli
from headend.store import Database
from headend.store.schema import api_keys, operators, sessions

NOW = 1_700_000_000.0
PASSWORD = "a good long password"

# -- passwords ----------------------------------------------------------------------------------


def test_a_hash_verifies_its_password_and_no_other() -> None:
    stored = hash_password(PASSWORD)
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + " ", stored)
    assert not verify_password("", stored)


def test_the_hash_format_and_a_fresh_salt_each_time() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password(PASSWORD, second)


def test_the_hash_is_scrypt_of_the_password_and_salt() -> None:
    salt = bytes(range(16))
    expected = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    assert hash_password(PASSWORD, salt).endswith("$" + base64.b64encode(expected).decode())


def test_verify_reads_the_cost_from_the_stored_hash() -> None:
    # RFC 7914 section 12, the second test vector: scrypt("password", "NaCl", N=1024, r=8, p=16)
    digest = bytes.fromhex(
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
    )
    stored = (
        f"scrypt$1024$8$16${base64.b64encode(b'NaCl').decode()}${base64.b64encode(digest).decode()}"
    )
    assert verify_password("password", stored)
    assert not verify_password("Password", stored)


@pytest.mark.parametrize(
    "stored",
    ["", "plain", "bcrypt$16384$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!!!$AAAA",
     "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA", "scrypt$16384$8$1$AAAA$",
     "scrypt$1073741824$8$1$AAAA$AAAA"],
)  # fmt: skip
def test_a_malformed_or_absurd_hash_matches_nothing(stored: str) -> None:
    assert not verify_password("anything", stored)


# -- roles --------------------------------------------------------------------------------------


def test_the_role_table() -> None:
    assert ROLES == ("admin", "supervisor", "cashier", "operator", "field_technician", "viewer")
    assert ROLE_PERMISSIONS["admin"] == set(PERMISSIONS)
    assert ROLE_PERMISSIONS["supervisor"] == set(PERMISSIONS) - {"admin", "keys"}
    assert ROLE_PERMISSIONS["cashier"] == {"read", "vend", "customers"}
    assert ROLE_PERMISSIONS["operator"] == {
        "read", "relay", "commands", "alarms.ack", "engineering", "meters", "reports",
    }  # fmt: skip
    assert ROLE_PERMISSIONS["field_technician"] == {"read", "commands", "meters"}
    assert ROLE_PERMISSIONS["viewer"] == {"read"}
    assert len(PERMISSIONS) == 13
    assert allowed("cashier", "vend") and not allowed("cashier", "vend.cancel")
    assert not allowed("root", "read")  # an unknown role holds nothing
    assert user_cli.ROLES == ROLES  # the CLI spells them out to stay light


def test_principal() -> None:
    cashier = Principal("ann", "cashier", "operator", "kiosk-3")
    assert cashier.can("vend") and not cashier.can("relay")
    assert cashier.actor == "ann"
    assert Principal("sync", "viewer", "api_key").actor == "api-key:sync"
    assert Principal("x", "viewer", "api_key").vending_point == "head-office"


# -- operators and sessions ---------------------------------------------------------------------


def test_login_opens_a_session_stored_only_as_its_hash(database: Database) -> None:
    operator_id = database.run_sync(thd_create_operator, "ann", PASSWORD, "cashier", "kiosk-3", NOW)
    session = database.run_sync(thd_login, "ann", PASSWORD, NOW, 60)
    assert session is not None
    token, principal = session
    assert principal == Principal("ann", "cashier", "operator", "kiosk-3")
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(sessions)).all()
        stored_hash = connection.execute(sa.select(operators.c.password_hash)).scalar_one()
    assert [(r.token_hash, r.operator_id, r.expires_at) for r in rows] == [
        (hashlib.sha256(token.encode()).hexdigest(), operator_id, NOW + 60)
    ]
    assert PASSWORD not in stored_hash and verify_password(PASSWORD, stored_hash)
    assert database.run_sync(thd_principal_for_token, token, NOW + 59) == principal


def test_wrong_password_unknown_user_and_inactive_operator_cannot_log_in(
    database: Database,
) -> None:
    operator_id = database.run_sync(thd_create_operator, "ann", PASSWORD, "viewer", "hq", NOW)
    assert database.run_sync(thd_login, "ann", PASSWORD + "x", NOW, 60) is None
    assert database.run_sync(thd_login, "bob", PASSWORD, NOW, 60) is None
    session = database.run_sync(thd_login, "ann", PASSWORD, NOW, 60)
    assert session is not None
    database.run_sync(thd_update_operator, operator_id, NOW, active=False)
    assert database.run_sync(thd_login, "ann", PASSWORD, NOW, 60) is None
    assert database.run_sync(thd_principal_for_token, session[0], NOW) is None


def test_a_session_expires_and_logout_ends_it(database: Database) -> None:
    database.run_sync(thd_create_operator, "ann", PASSWORD, "viewer", "hq", NOW)
    first = database.run_sync(thd_login, "ann", PASSWORD, NOW, 60)
    second = database.run_sync(thd_login, "ann", PASSWORD, NOW, 600)
    assert first is not None and second is not None
    assert database.run_sync(thd_principal_for_token, first[0], NOW + 60) is None  # expired
    assert database.run_sync(thd_principal_for_token, second[0], NOW + 60) is not None
    database.run_sync(thd_logout, second[0])
    assert database.run_sync(thd_principal_for_token, second[0], NOW + 60) is None
    database.run_sync(thd_logout, "never-issued")  # harmless


def test_a_new_password_ends_the_sessions_and_a_role_change_applies(database: Database) -> None:
    operator_id = database.run_sync(thd_create_operator, "ann", PASSWORD, "viewer", "hq", NOW)
    session = database.run_sync(thd_login, "ann", PASSWORD, NOW, 600)
    assert session is not None
    changed = database.run_sync(thd_update_operator, operator_id, NOW, role="operator")
    assert changed == {"role": "operator"}
    principal = database.run_sync(thd_principal_for_token, session[0], NOW)
    assert principal is not None and principal.role == "operator"
    changed = database.run_sync(thd_update_operator, operator_id, NOW, password="another one!")
    assert changed == {"password": "changed"}
    assert database.run_sync(thd_principal_for_token, session[0], NOW) is None
    assert database.run_sync(thd_login, "ann", PASSWORD, NOW, 60) is None
    assert database.run_sync(thd_login, "ann", "another one!", NOW, 60) is not None
    assert database.run_sync(thd_update_operator, 999, NOW, role="viewer") is None


def test_create_operator_refuses_unknown_roles_and_taken_names(database: Database) -> None:
    with pytest.raises(UnknownRole, match="must be one of admin, supervisor"):
        database.run_sync(thd_create_operator, "ann", PASSWORD, "root", "hq", NOW)
    database.run_sync(thd_create_operator, "ann", PASSWORD, "viewer", "hq", NOW)
    with pytest.raises(DuplicateOperator):
        database.run_sync(thd_create_operator, "ann", PASSWORD, "admin", "hq", NOW)


# -- API keys -----------------------------------------------------------------------------------


def test_an_api_key_is_stored_as_its_hash_and_revocation_ends_it(database: Database) -> None:
    key_id, key = database.run_sync(thd_create_api_key, "billing", "cashier", NOW)
    assert key.startswith("amrk_") and len(key) > 40
    with database.engine.connect() as connection:
        stored = connection.execute(sa.select(api_keys)).one()
    assert stored.key_hash == hash_token(key) and key not in stored.key_hash
    principal = database.run_sync(thd_principal_for_token, key, NOW)
    assert principal == Principal("billing", "cashier", "api_key")
    assert database.run_sync(thd_principal_for_token, key + "x", NOW) is None
    assert database.run_sync(thd_revoke_api_key, key_id, NOW + 5)
    assert database.run_sync(thd_principal_for_token, key, NOW + 6) is None
    assert database.run_sync(thd_revoke_api_key, key_id, NOW + 9)  # again: keeps the first time
    with database.engine.connect() as connection:
        assert connection.execute(sa.select(api_keys.c.revoked_at)).scalar_one() == NOW + 5
    assert not database.run_sync(thd_revoke_api_key, 999, NOW)
    with pytest.raises(UnknownRole):
        database.run_sync(thd_create_api_key, "x", "superuser", NOW)


# -- the cache ----------------------------------------------------------------------------------


def test_the_cache_forgets_after_its_ttl_and_holds_no_token() -> None:
    clock = task.Clock()
    cache = PrincipalCache(clock, ttl_s=5, max_entries=2)
    ann, bob = Principal("ann", "viewer", "operator"), Principal("bob", "admin", "api_key")
    cache.put("token-a", ann)
    assert cache.get("token-a") == ann and cache.get("token-b") is None
    clock.advance(4.9)
    assert cache.get("token-a") == ann
    clock.advance(0.1)
    assert cache.get("token-a") is None and len(cache) == 0
    cache.put("token-a", ann)
    cache.put("token-b", bob)
    cache.put("token-c", bob)
    assert len(cache) == 2 and cache.get("token-a") is None  # the oldest went first
    cache.forget("token-b")
    assert cache.get("token-b") is None and cache.get("token-c") == bob
    assert "token-c" not in repr(cache._entries)
    cache.clear()
    assert len(cache) == 0
    cache.put("session", ann, not_after=clock.seconds() + 1)  # never past a session's expiry
    clock.advance(1)
    assert cache.get("session") is None
    off = PrincipalCache(clock, ttl_s=0)
    off.put("token-a", ann)
    assert off.get("token-a") is None
