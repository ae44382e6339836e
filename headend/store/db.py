"""The head-end's database: one SQLAlchemy engine, run from a named thread pool (STYLE.md rule 11).

Functions that run in the pool are named ``thd_*``, take a ``Connection`` and return plain values.
:meth:`Database.run` wraps each one in its own transaction, so a caller that awaits it knows the
work is committed, which is what lets ingest acknowledge a gateway's message only after commit.

SQLite (the embedded default) gets one writer thread, WAL and ``synchronous=FULL``: an
acknowledged reading must survive a power cut, not only a crash. PostgreSQL gets as many threads as
the engine has connections.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

__all__ = ["Database", "make_engine"]

P = ParamSpec("P")
T = TypeVar("T")


def make_engine(url: str, pool_size: int = 8) -> sa.Engine:
    """An engine for ``url`` with the project's settings for SQLite or PostgreSQL."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)


class Database:
    """The engine plus its thread pool; ``await db.run(thd_fn, *args)`` runs in one transaction."""

    def __init__(self, reactor: Any, url: str, threads_: int | None = None) -> None:
        self.reactor = reactor
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        count = threads_ or (1 if self.dialect == "sqlite" else 8)
        self.pool = ThreadPool(minthreads=1, maxthreads=count, name="headend-db")
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.pool.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.pool.stop()
            self._started = False
        self.engine.dispose()

    async def run(
        self, function: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """``function(connection, *args)`` in a thread, inside one transaction, committed."""

        def in_transaction() -> T:
            with self.engine.begin() as connection:
                return function(connection, *args, **kw)

        result: T = await threads.deferToThreadPool(self.reactor, self.pool, in_transaction)
        return result

    def run_sync(
        self, function: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """The same, in the calling thread (command-line tools, tests)."""
        with self.engine.begin() as connection:
            return function(connection, *args, **kw)
