"""Shared by the reports, life-cycle and key-campaign tests: a migrated SQLite file per test, a
sealed key store with two vending keys, seeding through the head-end's own ``thd_*`` functions, and
the whole head-end router served by a real twisted.web site.

Import the fixtures into a test module (``from tests.headend.seed import fixture_db  # noqa: F401``
provides the ``db`` fixture).
"""

from __future__ import annotations

import gc
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.logger import formatEvent, globalLogPublisher

from headend.api.app import build_router
from headend.api.framework import ApiResource, ApiSite, Router
from headend.api.tariffs import thd_create_tariff
from headend.config import ApiConfig, HeadendConfig, MeterDefaults
from headend.keystore import MeterKeys, SealedKeyStore, thd_add_vending_key
from headend.records import thd_ensure_meters, thd_touch_gateway
from headend.store import Database, make_engine, upgrade
from headend.store.schema import accounts, customers, meter_groups, meters
from protocols.sts import (
    BaseDate,
    Dkga,
    KeyType,
    MeterDecoder,
    MeterState,
    VendingKey,
    derive_decoder_key,
    luhn_check_digit,
)
from tests.headend.api.harness import MAX_BODY, TIMEOUT_S, Client, LogEvents, Reply

KEY1_HEX = "ABABABABABABABAB"
KEY2_HEX = "0123456789ABCDEF"
SGC = 123456
# 200 minor units per kWh, no tax, no fixed charge, no free basic electricity: 1000 buys 5 kWh
FLAT_TARIFF = {"currency": "ZAR", "blocks": [{"upper_kwh": None, "price_minor_per_kwh": "200"}]}
START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
GATEWAY = "gw-1"


def add_keys(connection: sa.Connection, master: bytes, now: float = START) -> None:
    """Vending keys for supply group 123456: revision 1 (ABAB...) and revision 2."""
    thd_add_vending_key(connection, master, "sgc123456-krn1", KEY1_HEX, SGC, 1, 2, "sta", 2, now)
    thd_add_vending_key(connection, master, "sgc123456-krn2", KEY2_HEX, SGC, 2, 2, "sta", 2, now)


def drn(number: int) -> str:
    """An 11-digit DRN with its Luhn check digit (what a meter id is)."""
    body = f"{number:010d}"
    return body + str(luhn_check_digit(body))


def add_meters(connection: sa.Connection, *meter_ids: str, gateway: str | None = GATEWAY,
               group: str | None = None, base_date: int = 1993, now: float = START,
               **attributes: Any) -> None:  # fmt: skip
    """Meters as their gateway registers them (``thd_ensure_meters``: supply group 123456, key
    revision 1, key type 2, STA), then the given attributes; ``gateway=None``: a meter the store
    knows but no gateway serves."""
    if (
        group is not None
        and connection.execute(
            sa.select(meter_groups.c.name).where(meter_groups.c.name == group)
        ).first()
        is None
    ):
        connection.execute(sa.insert(meter_groups).values(name=group))
    thd_touch_gateway(connection, gateway or "gone", now, online=gateway is not None)
    defaults = MeterDefaults(group=group)
    thd_ensure_meters(connection, gateway or "gone", set(meter_ids), defaults, now)
    values: dict[str, Any] = {"base_date": base_date, **attributes}
    if gateway is None:
        values["gateway_id"] = None
    connection.execute(sa.update(meters).where(meters.c.id.in_(meter_ids)).values(values))


def meter_decoder(meter_id: str, key_hex: str = KEY1_HEX, *, key_revision: int = 1,
                  base_date: int = 1993, tariff_index: int = 1, key_type: int = 2,
                  sgc: int = SGC) -> MeterDecoder:  # fmt: skip
    """The pure STS meter model (``protocols.sts``) holding the decoder key a meter with these
    attributes was given at the factory, derived from the vending key ``key_hex`` (DKGA02, STA)."""
    keys = MeterKeys(meter_id, sgc, tariff_index, key_revision, key_type, base_date, "sta")
    key = derive_decoder_key(VendingKey.from_hex(key_hex), keys.inputs(Dkga.parse(2)))
    return MeterDecoder(MeterState(key=key, key_type=KeyType(key_type),
                                   key_revision_number=key_revision, tariff_index=tariff_index,
                                   supply_group_code=sgc, base_date=BaseDate(base_date)))  # fmt: skip


def add_customer(connection: sa.Connection, name: str, now: float = START) -> int:
    return int(
        connection.execute(
            sa.insert(customers).values(name=name, created_at=now).returning(customers.c.id)
        ).scalar_one()
    )


def add_tariff(connection: sa.Connection, name: str = "flat", now: float = START) -> int:
    return int(thd_create_tariff(connection, name, "step", FLAT_TARIFF, 0.0, "admin", now)["id"])


def open_account(connection: sa.Connection, customer_id: int, meter_id: str, tariff_id: int,
                 now: float = START, **values: Any) -> int:  # fmt: skip
    """An account as ``POST /api/v1/accounts`` opens it."""
    return int(connection.execute(
        sa.insert(accounts)
        .values(customer_id=customer_id, meter_id=meter_id, tariff_id=tariff_id, opened_at=now,
                **values)
        .returning(accounts.c.id)
    ).scalar_one())  # fmt: skip


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True, name="logged")
def fixture_logged() -> Iterator[LogEvents]:
    """A test fails if Twisted logged an error it did not expect (as in tests/headend/api)."""
    events = LogEvents()
    globalLogPublisher.addObserver(events)
    try:
        yield events
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(events)
    errors = [formatEvent(e) for e in events.failures()]
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="session", name="migrated")
def fixture_migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database migrated with ``headend.store.migrate.upgrade``, copied for each test."""
    path = tmp_path_factory.mktemp("business") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(name="master")
def fixture_master() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(name="issuer")
def fixture_issuer(master: bytes) -> SealedKeyStore:
    return SealedKeyStore(master)


@pytest.fixture(name="db")
def fixture_db(tmp_path: Path, migrated: Path) -> Iterator[Database]:
    """A migrated SQLite file; ``db.run_sync(thd_fn, ...)`` runs one committed transaction."""
    path = tmp_path / "headend.db"
    shutil.copy(migrated, path)
    database = Database(reactor, f"sqlite:///{path}")
    try:
        yield database
    finally:
        database.stop()


class FakeDispatcher:
    """Counts pokes; the tests look at the queued commands in the store instead."""

    def __init__(self) -> None:
        self.pokes = 0

    def poke(self) -> None:
        self.pokes += 1


@dataclass
class App:
    db: Database
    clock: task.Clock
    router: Router
    config: HeadendConfig
    issuer: SealedKeyStore
    dispatcher: FakeDispatcher = field(default_factory=FakeDispatcher)


@dataclass
class Api:
    app: App
    client: Client
    keys: dict[str, str] = field(default_factory=dict)

    def key_for(self, role: str) -> str:
        from headend.auth import thd_create_api_key

        if role not in self.keys:
            _, self.keys[role] = self.app.db.run_sync(thd_create_api_key, f"{role}-key", role,
                                                      START)  # fmt: skip
        return self.keys[role]

    async def call(self, method: str, path: str, body: Any = None, *, role: str = "admin",
                   **kw: Any) -> Reply:  # fmt: skip
        return await self.client.call(method, path, body, api_key=self.key_for(role), **kw)


@pytest_twisted.async_yield_fixture(name="api")
async def fixture_api(db: Database, issuer: SealedKeyStore) -> AsyncIterator[Api]:
    """The head-end's whole router (``build_router``) on 127.0.0.1 over ``db``."""
    db.start()
    clock = task.Clock()
    clock.advance(START)
    config = HeadendConfig(api=ApiConfig(session_ttl_s=3600, max_page_size=100))
    app = App(db=db, clock=clock, router=build_router(), config=config, issuer=issuer)
    resource = ApiResource(app.router, app, max_body_bytes=MAX_BODY)
    site: Any = ApiSite(resource, max_body_bytes=MAX_BODY)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    client = Client(f"http://127.0.0.1:{address.port}")
    try:
        yield Api(app, client)
    finally:
        await client.pool.closeCachedConnections().addTimeout(TIMEOUT_S, reactor)
        await defer.maybeDeferred(port.stopListening).addTimeout(TIMEOUT_S, reactor)
