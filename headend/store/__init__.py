"""The head-end's store: tables, the database and its thread pool, and Alembic migrations."""

from __future__ import annotations

from .db import Database, make_engine
from .migrate import current_revision, upgrade

__all__ = ["Database", "current_revision", "make_engine", "upgrade"]
