"""The test PostgreSQL server itself: reachable through SQLAlchemy, COPY works, and a killed
server comes back with every committed row (crash recovery on the same data folder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tests.support.pg_fixture import postgres  # noqa: F401
from tests.support.postgres import Postgres

pytestmark = pytest.mark.integration

# Nothing may hang the suite: bounded connects and statements.
CONNECT_ARGS = {"connect_timeout": 5, "options": "-c statement_timeout=30000"}


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url, connect_args=CONNECT_ARGS)


def copy_rows(conn: sa.Connection, rows: list[tuple[int, str]]) -> None:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with raw.cursor() as cursor, cursor.copy("COPY t (a, b) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Postgres]:
    server = Postgres(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


def test_sqlalchemy_and_copy(postgres: Postgres) -> None:  # noqa: F811
    assert postgres.url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/amr_test"
    engine = engine_for(postgres.create_database("support_copy"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL)"))
            copy_rows(conn, [(i, f"row {i}") for i in range(1000)])
        with engine.connect() as conn:
            count, first, last = conn.execute(
                sa.text("SELECT count(*), min(b), max(a) FROM t")
            ).one()
            version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
            max_connections = conn.execute(sa.text("SHOW max_connections")).scalar_one()
    finally:
        engine.dispose()
    assert (count, first, last) == (1000, "row 0", 999)
    assert int(version) >= 150000
    assert int(max_connections) >= 100
    with pytest.raises(ValueError, match="already exists"):
        postgres.create_database("support_copy")


def test_killed_server_keeps_committed_rows(own_server: Postgres) -> None:
    engine = engine_for(own_server.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL)"))
            copy_rows(conn, [(i, "before") for i in range(500)])
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (500, 'last commit')"))
        uncommitted = engine.connect()
        uncommitted.execute(sa.text("INSERT INTO t VALUES (501, 'never committed')"))

        own_server.stop(kill=True)
        uncommitted.invalidate()
        uncommitted.close()
        engine.dispose()  # pooled connections died with the server
        own_server.start()  # same folder, same port: crash recovery

        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*), max(a) FROM t")).one()
    finally:
        engine.dispose()
    assert tuple(rows) == (501, 500)
    log = own_server.log.read_text(errors="replace")
    assert "not properly shut down" in log or "automatic recovery" in log
