"""The session-wide PostgreSQL server, for conftest files to import.

    from tests.support.pg_fixture import postgres  # noqa: F401

Tests get the running :class:`~tests.support.postgres.Postgres`: ``postgres.url`` for the
shared test database, ``postgres.create_database(name)`` for a fresh one. Tests that stop or
kill a server should start their own ``Postgres(tmp_path / "pg")`` instead of this one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .postgres import Postgres

__all__ = ["postgres"]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
