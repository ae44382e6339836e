"""Fixtures: a migrated SQLite database per test and the API served on 127.0.0.1 (see harness)."""

from __future__ import annotations

import gc
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.logger import formatEvent, globalLogPublisher

from headend.api.framework import ApiResource, ApiSite
from headend.config import ApiConfig, HeadendConfig
from headend.store import Database, make_engine, upgrade

from .harness import MAX_BODY, START, TIMEOUT_S, Api, App, Client, LogEvents, make_router


@pytest.fixture(autouse=True)
def logged() -> Iterator[LogEvents]:
    """Every API test fails if Twisted logged an error it did not expect (an unhandled errback, a
    response that could not be written, a handler that failed)."""
    events = LogEvents()
    globalLogPublisher.addObserver(events)
    try:
        yield events
        gc.collect()  # an unhandled error in a Deferred is logged when the Deferred is collected
    finally:
        globalLogPublisher.removeObserver(events)
    errors = [formatEvent(e) for e in events.failures()]
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="session")
def schema_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database, copied for each test (migrating takes longer than a test)."""
    path = tmp_path_factory.mktemp("schema") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest_twisted.async_yield_fixture
async def api(tmp_path: Path, schema_template: Path) -> AsyncIterator[Api]:
    path = tmp_path / "headend.db"
    shutil.copy(schema_template, path)
    db = Database(reactor, f"sqlite:///{path}")
    db.start()
    clock = task.Clock()
    clock.advance(START)
    config = HeadendConfig(api=ApiConfig(session_ttl_s=3600, max_page_size=100))
    app = App(db=db, clock=clock, router=make_router(), config=config)
    resource = ApiResource(app.router, app, max_body_bytes=MAX_BODY)
    site: Any = ApiSite(resource, max_body_bytes=MAX_BODY)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    client = Client(f"http://127.0.0.1:{address.port}")
    try:
        yield Api(app, resource, client)
    finally:
        await client.pool.closeCachedConnections().addTimeout(TIMEOUT_S, reactor)
        await defer.maybeDeferred(port.stopListening).addTimeout(TIMEOUT_S, reactor)
        db.stop()


@pytest.fixture
def database(tmp_path: Path, schema_template: Path) -> Iterator[Database]:
    """A migrated database for ``run_sync`` (its thread pool is not started)."""
    path = tmp_path / "auth.db"
    shutil.copy(schema_template, path)
    db = Database(reactor, f"sqlite:///{path}")
    try:
        yield db
    finally:
        db.stop()
