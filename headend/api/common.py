"""What the domain routes share: running store work with errors mapped to HTTP answers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa

from ..commands import CommandError
from ..keystore import KeyStoreError
from ..pricing import PricingError
from ..vending import VendError
from .framework import ApiError, Page, Request, page_of

__all__ = ["actor", "count_and_page", "listed", "mapping", "number", "run"]

P = ParamSpec("P")
T = TypeVar("T")


async def run(request: Request, function: Callable[Concatenate[sa.Connection, P], T],
              *args: P.args, **kw: P.kwargs) -> T:  # fmt: skip
    """``function`` in the database thread; domain errors become 4xx answers with their message."""
    try:
        result: T = await request.app.db.run(function, *args, **kw)
    except VendError as exc:
        raise ApiError(exc.status, str(exc)) from None
    except PricingError as exc:
        raise ApiError(422, str(exc)) from None
    except CommandError as exc:
        raise ApiError(409, str(exc)) from None
    except KeyStoreError as exc:
        raise ApiError(409, str(exc)) from None
    except sa.exc.IntegrityError as exc:
        raise ApiError(409, f"conflicts with what is stored: {exc.orig}") from None
    except (OverflowError, sa.exc.DataError):
        # an id of 2**70 (SQLite cannot bind it, PostgreSQL refuses it), a text longer than its
        # column: the request's fault, whichever handler passed it on
        raise ApiError(422, "a value is out of range for what the head-end stores") from None
    return result


def actor(request: Request) -> str:
    return request.principal.name if request.principal is not None else "anonymous"


def count_and_page(connection: sa.Connection, query: sa.Select[Any], page: Page,
                   order: Any) -> tuple[list[Any], int]:  # fmt: skip
    """The rows of one page of ``query`` and the total it has (server-side, for large lists)."""
    total = connection.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
    rows = connection.execute(query.order_by(*order).limit(page.limit).offset(page.offset)).all()
    return list(rows), int(total or 0)


def mapping(row: Any) -> dict[str, Any]:
    """A row as the API shows it when no view is needed: its columns."""
    return dict(row._mapping)


async def listed(request: Request, page: Page, query: sa.Select[Any], order: Any,
                 view: Callable[[Any], Any] = mapping) -> dict[str, Any]:  # fmt: skip
    """One page of ``query`` (in ``order``) with its total, each row shown by ``view``."""

    def thd(connection: sa.Connection) -> tuple[list[Any], int]:
        rows, total = count_and_page(connection, query, page, order)
        return [view(row) for row in rows], total

    items, total = await run(request, thd)
    return page_of(items, total, page)


def number(request: Request, name: str) -> float | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be a number, not {text!r}") from None
    if not math.isfinite(value):  # "inf" and "nan" parse, and no query or JSON reply takes them
        raise ApiError(400, f"query parameter {name} must be a finite number, not {text!r}")
    return value
