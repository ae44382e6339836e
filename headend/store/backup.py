"""``amr db backup`` / ``amr db restore``: every table to one gzip file of JSON lines, and back.

Portable between SQLite and PostgreSQL (a site can move from the embedded store to a server), and
checked on the way back: the backup names its schema revision and restore refuses a database
that is not empty or not at that revision. For a large PostgreSQL store use ``pg_dump``.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .migrate import current_revision
from .schema import metadata

__all__ = ["BackupError", "backup", "restore"]

FORMAT = "amr-headend-backup/1"
APPEND_ONLY = ("tokens", "audit_log")


class BackupError(Exception):
    pass


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, date):  # readings_daily.day
        return {"date": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, dict) and set(value) == {"date"}:
        return date.fromisoformat(value["date"])
    return value


def backup(engine: sa.Engine, path: Path) -> int:
    """Write every table (in dependency order) in one consistent read; the rows written."""
    count = 0
    with engine.connect() as connection, connection.begin(), gzip.open(path, "wt") as out:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        header = {"format": FORMAT, "revision": current_revision_of(connection)}
        out.write(json.dumps(header) + "\n")
        for table in metadata.sorted_tables:
            for row in connection.execute(sa.select(table)).mappings():
                out.write(
                    json.dumps({"t": table.name, "r": {k: _encode(v) for k, v in row.items()}})
                    + "\n"
                )
                count += 1
    return count


def current_revision_of(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def restore(engine: sa.Engine, path: Path, batch: int = 1000) -> int:
    """Load a backup into an empty database at the backup's revision; the rows loaded."""
    with gzip.open(path, "rt") as source:
        header = json.loads(source.readline() or "{}")
        if header.get("format") != FORMAT:
            raise BackupError(f"{path} is not a head-end backup")
        if current_revision(engine) != header["revision"]:
            raise BackupError(
                f"the database is at revision {current_revision(engine)}, the backup at "
                f"{header['revision']}: run amr db upgrade on an empty database first"
            )
        tables = {t.name: t for t in metadata.sorted_tables}
        count = 0
        with engine.begin() as connection:
            for table in tables.values():
                if connection.execute(sa.select(sa.func.count()).select_from(table)).scalar():
                    raise BackupError(
                        f"table {table.name} is not empty: restore needs an empty database"
                    )
            pending: dict[str, list[dict[str, Any]]] = {}
            for line in source:
                item = json.loads(line)
                pending.setdefault(item["t"], []).append(
                    {k: _decode(v) for k, v in item["r"].items()}
                )
                if len(pending[item["t"]]) >= batch:
                    count += _flush(connection, tables, pending)
            count += _flush(connection, tables, pending)
            if connection.dialect.name == "postgresql":
                for table in tables.values():
                    if "id" in table.c and isinstance(table.c.id.type, sa.Integer | sa.BigInteger):
                        connection.exec_driver_sql(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                        )
    return count


def _flush(connection: sa.Connection, tables: dict[str, sa.Table],
           pending: dict[str, list[dict[str, Any]]]) -> int:  # fmt: skip
    count = 0
    for name in [t for t in tables if t in pending]:
        rows = pending.pop(name)
        if rows:
            connection.execute(sa.insert(tables[name]), rows)
            count += len(rows)
    return count
