"""The append-only audit log: who did what to money, relays, tariffs and keys, and when.

Each record is written in the same transaction as the change it describes, so there is no change
without its record and no record of a change that rolled back. The table refuses UPDATE and DELETE
(a trigger, see the migrations). Details never hold key material or passwords.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from .store.schema import audit_log

__all__ = ["thd_audit"]


def thd_audit(connection: sa.Connection, at: float, actor: str, action: str, target: str = "",
              detail: dict[str, Any] | None = None) -> None:  # fmt: skip
    connection.execute(sa.insert(audit_log).values(
        at=at, actor=actor, action=action, target=target,
        detail=json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), default=str),
    ))  # fmt: skip
