"""Reports: sales, token delivery, arrears, consumption and alarms, computed from the store.

Every ``thd_*`` here reads only (database thread, STYLE.md rule 11) and returns a plain dict, the
JSON the API answers with; :data:`CSV_COLUMNS` and :func:`csv_rows` turn the same dict into the rows
of the CSV export, so the two formats cannot disagree.

Windows are half-open, ``since <= t < until`` in epoch seconds (None: unbounded). Periods and
their boundaries:

* sales are keyed by the vend's ``created_at``, as a calendar day (``2024-03-31``) or month
  (``2024-03``) in ``tz`` (an IANA zone, UTC by default). The key is computed per row in Python,
  which is simple and right across DST; a database-side ``date_trunc`` can replace it when the
  volume asks for it. Cancelled vends are not sales: they are counted apart, as are credit
  transfers (a replaced meter's credit moved to its successor at no price, receipt numbers
  starting with :data:`headend.vending.TRANSFER_RECEIPT_PREFIX`);
* token delivery looks at token commands created in the window, in their state now;
* consumption is the rise of each meter's register between its first and last reading in the
  window (a register that went down, a reset, counts as 0); TOU bands come from the readings'
  ``energy_import_t1..t4`` values (kWh, as the meter reports them). For days whose readings
  retention dropped (``headend.retention``), the per-group report takes each day's first and last
  register from the daily totals instead; the per-band report has no bands for them;
* alarms are those raised in the window, in their state now.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from protocols.sts import TokenResult

from .store.schema import (
    accounts,
    alarms,
    commands,
    customers,
    meters,
    readings,
    readings_daily,
    vends,
)
from .vending import TRANSFER_RECEIPT_PREFIX

__all__ = [
    "CSV_COLUMNS",
    "ReportError",
    "band_registers",
    "csv_rows",
    "delivery_counts",
    "delivery_outcome",
    "delivery_success_rate",
    "thd_alarms",
    "thd_arrears",
    "thd_consumption",
    "thd_sales",
    "thd_token_delivery",
    "to_csv",
    "zone",
]

PERIODS = {"day": "%Y-%m-%d", "month": "%Y-%m"}
SALES_GROUPS = ("operator", "vending_point")
CONSUMPTION_BY = ("group", "band")
BANDS = (1, 2, 3, 4)
PENDING_STATES = ("queued", "sent", "received")
WITHDRAWN_STATES = ("cancelled", "superseded")


class ReportError(Exception):
    """A report that cannot be run as asked (a bad period, zone or window); 400 at the API."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; :class:`ReportError` naming it when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(
            f"tz: no such time zone {name!r} (an IANA name like Africa/Johannesburg)"
        ) from None


def _window(column: Any, since: float | None, until: float | None) -> list[Any]:
    if since is not None and until is not None and since > until:
        raise ReportError(f"since ({since}) is after until ({until})")
    where = []
    if since is not None:
        where.append(column >= since)
    if until is not None:
        where.append(column < until)
    return where


# -- sales --------------------------------------------------------------------------------------


def _sums() -> dict[str, int]:
    return {"count": 0, "amount_minor": 0, "energy_wh": 0}


def thd_sales(connection: sa.Connection, period: str = "day", since: float | None = None,
              until: float | None = None, group_by: str | None = None,
              tz: str = "UTC") -> dict[str, Any]:  # fmt: skip
    """Issued vends per period (and operator or vending point): count, money and energy."""
    if period not in PERIODS:
        raise ReportError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    if group_by is not None and group_by not in SALES_GROUPS:
        raise ReportError(f"group_by must be one of {', '.join(SALES_GROUPS)}, not {group_by!r}")
    where = _window(vends.c.created_at, since, until)
    local = zone(tz)
    key_format = PERIODS[period]
    group_column = vends.c[group_by] if group_by is not None else sa.literal("")
    rows: dict[tuple[str, str], dict[str, int]] = {}
    totals, cancelled = _sums(), _sums()
    transfers = {"count": 0, "energy_wh": 0}
    query = sa.select(
        vends.c.created_at, vends.c.status, vends.c.amount_minor, vends.c.energy_wh,
        vends.c.receipt_no, group_column.label("group"),
    ).where(*where)  # fmt: skip
    for vend in connection.execute(query):
        if vend.status != "cancelled" and vend.receipt_no.startswith(TRANSFER_RECEIPT_PREFIX):
            transfers["count"] += 1
            transfers["energy_wh"] += vend.energy_wh
            continue
        key = (datetime.fromtimestamp(vend.created_at, local).strftime(key_format), vend.group)
        row = rows.setdefault(key, _sums() | {"cancelled": 0})
        if vend.status == "cancelled":
            row["cancelled"] += 1
            target = cancelled
        else:
            row["count"] += 1
            row["amount_minor"] += vend.amount_minor
            row["energy_wh"] += vend.energy_wh
            target = totals
        target["count"] += 1
        target["amount_minor"] += vend.amount_minor
        target["energy_wh"] += vend.energy_wh
    items = []
    for (label, group), sums in sorted(rows.items()):
        item: dict[str, Any] = {"period": label}
        if group_by is not None:
            item[group_by] = group
        items.append(item | sums)
    return {
        "report": "sales", "period": period, "tz": tz, "group_by": group_by, "since": since,
        "until": until, "rows": items, "totals": totals, "cancelled": cancelled,
        "transfers": transfers,
    }  # fmt: skip


# -- token delivery -----------------------------------------------------------------------------


def delivery_counts() -> dict[str, int]:
    """Token commands by how their delivery stands: each state of :func:`delivery_outcome`, 0."""
    return {"applied": 0, "rejected": 0, "failed": 0, "expired": 0, "pending": 0, "cancelled": 0}


def delivery_outcome(state: str) -> str:
    """A token command's state as delivery counts it: on its way (queued, sent, received) is
    pending, withdrawn before it left (cancelled, superseded) is cancelled."""
    if state in PENDING_STATES:
        return "pending"
    if state in WITHDRAWN_STATES:
        return "cancelled"
    return state


def delivery_success_rate(counts: Mapping[str, int]) -> float | None:
    """applied / (applied + rejected + failed + expired); None before anything finished."""
    finished = counts["applied"] + counts["rejected"] + counts["failed"] + counts["expired"]
    return None if finished == 0 else round(counts["applied"] / finished, 4)


def thd_token_delivery(connection: sa.Connection, since: float | None = None,
                       until: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Token commands created in the window by state now; success rate; keypad fallbacks.

    The success rate is applied / (applied + rejected + failed + expired): commands still on
    their way, and those cancelled or superseded before they left, are neither success nor
    failure.
    """
    where = _window(commands.c.created_at, since, until)
    counts = delivery_counts()
    by_code: dict[int | None, int] = defaultdict(int)
    fallbacks = 0
    query = sa.select(commands.c.state, commands.c.code, commands.c.result).where(
        commands.c.type == "token", *where
    )
    for command in connection.execute(query):
        counts[delivery_outcome(command.state)] += 1
        if command.state == "rejected":
            by_code[command.code] += 1
        if json.loads(command.result or "{}").get("fallback") == "keypad":
            fallbacks += 1
    rejected = [
        {"code": code, "label": _result_label(code), "count": count}
        for code, count in sorted(by_code.items(), key=lambda item: (item[0] is None, item[0]))
    ]
    return {
        "report": "token-delivery", "since": since, "until": until,
        "commands": sum(counts.values()), "states": counts, "rejected_by_code": rejected,
        "success_rate": delivery_success_rate(counts),
        "keypad_fallbacks": fallbacks,
    }  # fmt: skip


def _result_label(code: int | None) -> str:
    if code is None:
        return "refused by the gateway"
    try:
        return TokenResult(code).label
    except ValueError:
        return f"code {code}"


# -- arrears ------------------------------------------------------------------------------------


def thd_arrears(connection: sa.Connection, limit: int | None = None,
                offset: int = 0) -> dict[str, Any]:  # fmt: skip
    """Accounts that owe (largest debt first, a page of them) and the totals over all accounts.

    ``debt_outstanding_minor`` is what the accounts in arrears owe now; ``debt_recovered_minor``
    is what every account (closed ones and those that have paid off included) has paid back.
    """
    owing = accounts.c.debt_minor > 0
    query = (
        sa.select(accounts.c.id.label("account_id"), accounts.c.customer_id,
                  customers.c.name.label("customer_name"), accounts.c.meter_id,
                  accounts.c.status, accounts.c.debt_minor, accounts.c.debt_recovered_minor,
                  accounts.c.debt_recovery_share)
        .join(customers, customers.c.id == accounts.c.customer_id)
        .where(owing)
        .order_by(accounts.c.debt_minor.desc(), accounts.c.id)
        .offset(offset)
    )  # fmt: skip
    if limit is not None:
        query = query.limit(limit)
    items = [dict(row._mapping) for row in connection.execute(query)]
    in_arrears, outstanding = connection.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(accounts.c.debt_minor), 0))
        .where(owing)
    ).one()  # fmt: skip
    recovered = connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(accounts.c.debt_recovered_minor), 0))
    ).scalar_one()
    return {
        "report": "arrears", "items": items, "total": int(in_arrears), "limit": limit,
        "offset": offset,
        "totals": {"accounts_in_arrears": int(in_arrears),
                   "debt_outstanding_minor": int(outstanding),
                   "debt_recovered_minor": int(recovered)},
    }  # fmt: skip


# -- consumption --------------------------------------------------------------------------------


def thd_consumption(connection: sa.Connection, since: float | None = None,
                    until: float | None = None, by: str = "group") -> dict[str, Any]:  # fmt: skip
    """Energy used in the window per meter group, or per TOU band, summed over meters."""
    if by not in CONSUMPTION_BY:
        raise ReportError(f"by must be one of {', '.join(CONSUMPTION_BY)}, not {by!r}")
    where = _window(readings.c.ts, since, until)
    rows = (
        _by_group(connection, where, since, until) if by == "group" else _by_band(connection, where)
    )
    return {"report": "consumption", "by": by, "since": since, "until": until, "rows": rows,
            "energy_wh": sum(row["energy_wh"] for row in rows)}  # fmt: skip


def _by_group(connection: sa.Connection, where: list[Any], since: float | None,
              until: float | None) -> list[dict[str, Any]]:  # fmt: skip
    # each meter's (group, first (ts, Wh), last (ts, Wh)) in the window: from its readings, then
    # widened by the daily totals of days whose readings are gone
    edges: dict[str, tuple[str | None, tuple[float, int], tuple[float, int]]] = {}
    bounds = (
        sa.select(readings.c.meter_id, sa.func.min(readings.c.ts).label("first_ts"),
                  sa.func.max(readings.c.ts).label("last_ts"))
        .where(readings.c.energy_wh.is_not(None), *where)
        .group_by(readings.c.meter_id)
        .subquery()
    )  # fmt: skip
    first, last = readings.alias("first"), readings.alias("last")
    query = (
        sa.select(bounds.c.meter_id, meters.c.group_name, bounds.c.first_ts,
                  first.c.energy_wh.label("first_wh"), bounds.c.last_ts,
                  last.c.energy_wh.label("last_wh"))
        .join(first, sa.and_(first.c.meter_id == bounds.c.meter_id,
                             first.c.ts == bounds.c.first_ts))
        .join(last, sa.and_(last.c.meter_id == bounds.c.meter_id, last.c.ts == bounds.c.last_ts))
        .outerjoin(meters, meters.c.id == bounds.c.meter_id)
    )  # fmt: skip
    for row in connection.execute(query):
        edges[row.meter_id] = (row.group_name, (row.first_ts, int(row.first_wh)),
                               (row.last_ts, int(row.last_wh)))  # fmt: skip
    for meter_id, group, day_first, day_last in _daily_edges(connection, since, until):
        known = edges.get(meter_id)
        if known is not None:
            day_first, day_last = min(day_first, known[1]), max(day_last, known[2])  # noqa: PLW2901
        edges[meter_id] = (group, day_first, day_last)
    groups: dict[str | None, dict[str, int]] = {}
    for group, (_, first_wh), (_, last_wh) in edges.values():
        sums = groups.setdefault(group, {"meters": 0, "energy_wh": 0})
        sums["meters"] += 1
        sums["energy_wh"] += max(last_wh - first_wh, 0)
    return [
        {"group": group} | sums
        for group, sums in sorted(groups.items(), key=lambda item: (item[0] is None, item[0]))
    ]


def _daily_edges(connection: sa.Connection, since: float | None, until: float | None
                 ) -> list[tuple[str, str | None, tuple[float, int], tuple[float, int]]]:  # fmt: skip
    """Per meter with daily totals in the window: its group, the first register of its first
    day there and the last of its last day (each day's within the window)."""
    daily = readings_daily

    def edge(ts: Any, wh: Any, pick: Any) -> dict[str, tuple[str | None, tuple[float, int]]]:
        days = (
            sa.select(daily.c.meter_id, pick(daily.c.day).label("day"))
            .where(wh.is_not(None), *_window(ts, since, until))
            .group_by(daily.c.meter_id)
            .subquery()
        )  # fmt: skip
        query = (
            sa.select(daily.c.meter_id, meters.c.group_name, ts, wh)
            .join(days, sa.and_(daily.c.meter_id == days.c.meter_id, daily.c.day == days.c.day))
            .outerjoin(meters, meters.c.id == daily.c.meter_id)
        )  # fmt: skip
        return {row[0]: (row[1], (row[2], int(row[3]))) for row in connection.execute(query)}

    firsts = edge(daily.c.first_ts, daily.c.first_energy_wh, sa.func.min)
    lasts = edge(daily.c.last_ts, daily.c.last_energy_wh, sa.func.max)
    return [(meter_id, group, first, lasts[meter_id][1])
            for meter_id, (group, first) in firsts.items() if meter_id in lasts]  # fmt: skip


def _kwh_as_wh(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return Decimal(str(value)) * 1000
    except InvalidOperation:
        return None


def band_registers(values: Mapping[str, Any]) -> dict[int, Decimal]:
    """The TOU band energy registers a reading carries (``energy_import_t1``..), in Wh."""
    registers = {}
    for band in BANDS:
        wh = _kwh_as_wh(values.get(f"energy_import_t{band}"))
        if wh is not None:
            registers[band] = wh
    return registers


def _by_band(connection: sa.Connection, where: list[Any]) -> list[dict[str, Any]]:
    first: dict[tuple[str, int], Decimal] = {}
    last: dict[tuple[str, int], Decimal] = {}
    query = (
        sa.select(readings.c.meter_id, readings.c["values"]).where(*where)
        .order_by(readings.c.meter_id, readings.c.ts)
    )  # fmt: skip
    for row in connection.execute(query):
        for band, wh in band_registers(json.loads(row.values)).items():
            first.setdefault((row.meter_id, band), wh)
            last[(row.meter_id, band)] = wh
    result = []
    for band in BANDS:
        keys = [key for key in first if key[1] == band]
        energy = sum((max(last[key] - first[key], Decimal(0)) for key in keys), Decimal(0))
        result.append({"band": band, "meters": len(keys), "energy_wh": int(energy)})
    return result


# -- alarms -------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return None if not values else round(sum(values) / len(values), 3)


class _AlarmSums:
    def __init__(self) -> None:
        self.raised = self.open = self.acknowledged = self.cleared = 0
        self.to_ack: list[float] = []
        self.to_clear: list[float] = []

    def add(self, alarm: Any) -> None:
        self.raised += 1
        self.open += alarm.state == "open"
        if alarm.acked_at is not None:
            self.acknowledged += 1
            self.to_ack.append(alarm.acked_at - alarm.raised_at)
        if alarm.cleared_at is not None:
            self.cleared += 1
            self.to_clear.append(alarm.cleared_at - alarm.raised_at)

    def view(self) -> dict[str, Any]:
        return {"raised": self.raised, "open": self.open, "acknowledged": self.acknowledged,
                "cleared": self.cleared, "mean_time_to_ack_s": _mean(self.to_ack),
                "mean_time_to_clear_s": _mean(self.to_clear)}  # fmt: skip


def thd_alarms(connection: sa.Connection, since: float | None = None,
               until: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Alarms raised in the window by kind and severity: still open, acknowledged, cleared, and
    the mean times from raising to acknowledgement and to clearing; plus every alarm open now."""
    where = _window(alarms.c.raised_at, since, until)
    totals = _AlarmSums()
    kinds: dict[tuple[str, str], _AlarmSums] = defaultdict(_AlarmSums)
    query = sa.select(alarms.c.kind, alarms.c.severity, alarms.c.state, alarms.c.raised_at,
                      alarms.c.acked_at, alarms.c.cleared_at).where(*where)  # fmt: skip
    for alarm in connection.execute(query):
        totals.add(alarm)
        kinds[(alarm.kind, alarm.severity)].add(alarm)
    open_now = connection.execute(
        sa.select(sa.func.count()).select_from(alarms).where(alarms.c.state == "open")
    ).scalar_one()
    return {
        "report": "alarms", "since": since, "until": until,
        "rows": [{"kind": kind, "severity": severity} | sums.view()
                 for (kind, severity), sums in sorted(kinds.items())],
        "totals": totals.view(), "open_now": int(open_now),
    }  # fmt: skip


# -- CSV ----------------------------------------------------------------------------------------

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "sales": ("period", "group", "count", "amount_minor", "energy_wh", "cancelled"),
    "token-delivery": ("metric", "code", "label", "value"),
    "arrears": ("account_id", "customer_id", "customer_name", "meter_id", "status", "debt_minor",
                "debt_recovered_minor", "debt_recovery_share"),
    "consumption": ("key", "meters", "energy_wh"),
    "alarms": ("kind", "severity", "raised", "open", "acknowledged", "cleared",
               "mean_time_to_ack_s", "mean_time_to_clear_s"),
}  # fmt: skip


def csv_rows(report: Mapping[str, Any]) -> tuple[tuple[str, ...], list[Mapping[str, Any]]]:
    """The header and the rows of ``report`` (a dict returned by one of the ``thd_*``) as CSV."""
    name = report["report"]
    columns = CSV_COLUMNS[name]
    if name == "sales":
        group_by = report["group_by"]
        if group_by is None:
            columns = tuple(c for c in columns if c != "group")
            return columns, list(report["rows"])
        columns = tuple(group_by if c == "group" else c for c in columns)
        return columns, list(report["rows"])
    if name == "token-delivery":
        rows: list[Mapping[str, Any]] = [
            {"metric": state, "value": count} for state, count in report["states"].items()
        ]
        rows += [{"metric": "rejected", "code": r["code"], "label": r["label"], "value": r["count"]}
                 for r in report["rejected_by_code"]]  # fmt: skip
        rows.append({"metric": "keypad_fallbacks", "value": report["keypad_fallbacks"]})
        rows.append({"metric": "success_rate", "value": report["success_rate"]})
        return columns, rows
    if name == "arrears":
        return columns, list(report["items"])
    if name == "consumption":
        return (report["by"], *columns[1:]), list(report["rows"])
    return columns, list(report["rows"])


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A cell as written: text that a spreadsheet would run as a formula is quoted with ``'``
    (a customer named ``=HYPERLINK(...)`` must not become a link in the utility's Excel)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def to_csv(columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """RFC 4180 CSV (CRLF line ends) with a header row."""
    out = io.StringIO()
    names = list(columns)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in names])
    return out.getvalue()
