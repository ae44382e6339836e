"""Key-change campaigns: move a group of meters to new STS key attributes, meter by meter.

The headline case is the TID roll-over: a meter on base date 1993 runs out of token identifiers
(minutes since the base date, 24 bits) in November 2024. A key change set whose target has base
date 2014 carries the roll-over bit (``protocols.sts.key_change_set`` sets it when the base date
moves forward); the meter clears its TID memory, moves to the 2014 base date and takes the new
key, revision and tariff index. Tokens made afterwards use the new key and a 2014 TID.

Theory of operation
-------------------
Creating a campaign, in one transaction:

1. the meters: a meter group's active meters, or a list; every meter must be active, behind a
   gateway (the set is pushed, and the push is what is tracked) and not in another campaign's
   change still on its way;
2. the target: base date (required) and any of key revision, supply group, tariff index, key type;
   what is not given stays as each meter has it. The target vending key must be in the key store,
   or nothing happens (409 naming the key). A base date never moves back, and moves one step at a
   time (one roll-over per key change, as the meter does it);
3. per meter, the key change set (2 tokens for a 64-bit key, 4 for 128-bit): made by the key store
   from the meter's current attributes and the target ones, stored in ``tokens`` (kind
   ``key_change``, ``set_index`` 1..n), and queued as ONE token command carrying the set in order:
   the concentrator enters them in order and stops at the first refusal. A meter already on the
   target is marked done without tokens.

The meter's row in ``key_campaign_meters`` follows its command: ``headend.followups`` marks it
``done`` and writes the target attributes to ``meters`` when the gateway reports the command
applied (so the next token is made with the new key), or ``rejected``/``failed``/``expired`` with
the gateway's answer. A command that ends without a gateway status (expired or failed at the
head-end, cancelled by an operator) leaves the row ``pending``; progress reads the command's state
then, so such a meter shows as expired/failed/cancelled and can be retried.

Retry re-queues the *same* tokens for the meters that failed or expired: a set has no TID, the
meter takes it whenever it still holds the old key. A meter whose identity reads already show the
target attributes (the set reached it but the status was lost) is marked done instead; one that
has the new key and gets the old set again refuses it harmlessly (CRC).

Vending during a campaign: a credit token sold between the set's queueing and its application is
made with the old key and is refused by a meter that has changed keys meanwhile. Sell before
starting a campaign, or reissue those tokens once the meter is done.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from protocols.link import CommandType
from protocols.sts import BaseDate

from .audit import thd_audit
from .commands import NewCommand, thd_enqueue
from .keystore import MeterKeys, TokenIssuer
from .store.schema import (
    commands,
    key_campaign_meters,
    key_campaigns,
    meter_groups,
    meters,
    tokens,
    vending_keys,
)
from .vending import meter_keys

__all__ = [
    "TARGET_FIELDS",
    "CampaignError",
    "thd_campaign",
    "thd_campaigns",
    "thd_create_campaign",
    "thd_retry_campaign",
]

# the meters columns a target may set (headend.followups writes them with update(meters))
TARGET_FIELDS = ("base_date", "key_revision", "sgc", "tariff_index", "key_type")
RANGES = {"key_revision": (1, 9), "sgc": (0, 999_999), "tariff_index": (0, 99),
          "key_type": (0, 3)}  # fmt: skip
STATES = ("pending", "done", "failed", "expired", "rejected")
IN_FLIGHT = ("queued", "sent", "received")
RETRYABLE = ("failed", "expired")
LISTED = 1000  # meters listed as not done in a campaign's view


class CampaignError(Exception):
    """A campaign that cannot be created or retried as asked; ``status`` for the API."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def _some(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _check_target(target: Mapping[str, int]) -> dict[str, int]:
    unknown = sorted(set(target) - set(TARGET_FIELDS))
    if unknown:
        raise CampaignError(f"target: unknown attributes {', '.join(unknown)}; "
                            f"one of {', '.join(TARGET_FIELDS)}", 422)  # fmt: skip
    for field, (low, high) in RANGES.items():
        if field in target and not low <= int(target[field]) <= high:
            raise CampaignError(f"target: {field} must be {low}..{high}, not {target[field]}", 422)
    if "base_date" not in target:
        raise CampaignError("target: base_date is required (1993, 2014 or 2035)", 422)
    if target["base_date"] not in {int(b) for b in BaseDate}:
        raise CampaignError(f"target: base_date must be 1993, 2014 or 2035, "
                            f"not {target['base_date']}", 422)  # fmt: skip
    return {name: int(value) for name, value in target.items()}


def _select_meters(connection: sa.Connection, group: str | None,
                   meter_ids: Sequence[str] | None) -> list[Any]:  # fmt: skip
    if (group is None) == (meter_ids is None):
        raise CampaignError("give a meter group or a list of meter ids", 422)
    if group is not None:
        if connection.execute(
            sa.select(meter_groups.c.name).where(meter_groups.c.name == group)
        ).first() is None:  # fmt: skip
            raise CampaignError(f"no meter group {group!r}", 404)
        rows = connection.execute(
            sa.select(meters).where(meters.c.group_name == group, meters.c.status == "active")
            .order_by(meters.c.id)
        ).all()  # fmt: skip
        if not rows:
            raise CampaignError(f"meter group {group!r} has no active meters")
        return list(rows)
    wanted = list(dict.fromkeys(meter_ids or ()))
    if not wanted:
        raise CampaignError("meter_ids is empty", 422)
    found = {row.id: row for row in connection.execute(
        sa.select(meters).where(meters.c.id.in_(wanted)))}  # fmt: skip
    missing = [m for m in wanted if m not in found]
    if missing:
        raise CampaignError(f"no such meters: {_some(missing)}", 404)
    inactive = [f"{m} ({found[m].status})" for m in wanted if found[m].status != "active"]
    if inactive:
        raise CampaignError(f"meters not in service: {_some(inactive)}")
    return [found[m] for m in wanted]


def _busy(connection: sa.Connection, meter_ids: list[str]) -> list[str]:
    """Meters whose key change in another campaign is still on its way."""
    rows = connection.execute(
        sa.select(key_campaign_meters.c.meter_id, key_campaigns.c.name)
        .join(key_campaigns, key_campaigns.c.id == key_campaign_meters.c.campaign_id)
        .join(commands, commands.c.id == key_campaign_meters.c.command_id)
        .where(key_campaign_meters.c.meter_id.in_(meter_ids),
               key_campaign_meters.c.state == "pending", commands.c.state.in_(IN_FLIGHT))
    ).all()  # fmt: skip
    return sorted(f"{row.meter_id} (campaign {row.name!r})" for row in rows)


def _check_vending_keys(connection: sa.Connection, targets: list[MeterKeys]) -> None:
    for sgc, key_revision, algorithm in sorted({(t.sgc, t.key_revision, t.algorithm)
                                                for t in targets}):  # fmt: skip
        present = connection.execute(
            sa.select(vending_keys.c.id).where(
                vending_keys.c.sgc == sgc, vending_keys.c.key_revision == key_revision,
                vending_keys.c.algorithm == algorithm)
        ).first()  # fmt: skip
        if present is None:
            raise CampaignError(
                f"the target vending key (supply group {sgc:06d}, key revision {key_revision}, "
                f"{algorithm}) is not in the key store: import it first (POST /api/v1/keys)"
            )


def _check_base_dates(rows: list[Any], base_date: int) -> None:
    back = [f"{r.id} ({r.base_date})" for r in rows if r.base_date > base_date]
    if back:
        raise CampaignError(f"a meter's base date cannot move back to {base_date}: {_some(back)}")
    leap = [f"{r.id} ({r.base_date})" for r in rows
            if r.base_date < base_date and BaseDate(r.base_date).successor != base_date]  # fmt: skip
    if leap:
        raise CampaignError(f"a key change rolls a meter's base date over one step at a time, "
                            f"not to {base_date}: {_some(leap)}")  # fmt: skip


def _moved(current: MeterKeys, target: Mapping[str, int]) -> MeterKeys:
    """``current`` with the target's attributes (the meter's drn and algorithm stay)."""
    return MeterKeys(
        drn=current.drn, sgc=target.get("sgc", current.sgc),
        tariff_index=target.get("tariff_index", current.tariff_index),
        key_revision=target.get("key_revision", current.key_revision),
        key_type=target.get("key_type", current.key_type),
        base_date=target.get("base_date", current.base_date), algorithm=current.algorithm,
    )  # fmt: skip


def _attributes(keys: MeterKeys) -> dict[str, Any]:
    return {name: getattr(keys, name) for name in (*TARGET_FIELDS, "algorithm")}


def thd_create_campaign(connection: sa.Connection, issuer: TokenIssuer, name: str,
                        target: Mapping[str, int], actor: str, now: float, *,
                        group: str | None = None, meter_ids: Sequence[str] | None = None,
                        expiry_s: float = 86400.0) -> dict[str, Any]:  # fmt: skip
    """Create a campaign and queue each meter's key change set (see the module's docstring)."""
    target = _check_target(target)
    if connection.execute(
        sa.select(key_campaigns.c.id).where(key_campaigns.c.name == name)
    ).first() is not None:  # fmt: skip
        raise CampaignError(f"a key campaign named {name!r} exists already")
    rows = _select_meters(connection, group, meter_ids)
    busy = _busy(connection, [r.id for r in rows])
    if busy:
        raise CampaignError(f"meters with a key change on its way already: {_some(busy)}")
    unreachable = [r.id for r in rows if r.gateway_id is None]
    if unreachable:
        raise CampaignError(f"meters behind no gateway (the set could not be pushed): "
                            f"{_some(unreachable)}")  # fmt: skip
    _check_base_dates(rows, target["base_date"])
    plans = [(row, meter_keys(row)) for row in rows]
    plans_new = [(row, current, _moved(current, target)) for row, current in plans]
    _check_vending_keys(connection, [new for _, current, new in plans_new if new != current])

    campaign_id = int(connection.execute(
        sa.insert(key_campaigns).values(
            name=name, group_name=group, target=json.dumps(target, sort_keys=True),
            state="running", created_at=now, created_by=actor,
        ).returning(key_campaigns.c.id)
    ).scalar_one())  # fmt: skip
    for row, current, new in plans_new:
        if new == current:
            connection.execute(sa.insert(key_campaign_meters).values(
                campaign_id=campaign_id, meter_id=row.id, state="done",
                detail="already on the target key attributes"))  # fmt: skip
            continue
        change_set = issuer.key_change(connection, current, new)
        for index, token in enumerate(change_set, start=1):
            connection.execute(sa.insert(tokens).values(
                meter_id=row.id, vend_id=None, kind="key_change",
                token_class=token.fields.token_class, subclass=token.fields.subclass, tid=0,
                amount=None, digits=token.digits, set_index=index, created_at=now,
                created_by=actor))  # fmt: skip
        command_id, _ = thd_enqueue(connection, NewCommand(
            CommandType.TOKEN, row.id, {"tokens": [t.digits for t in change_set]}, actor, None,
            expiry_s), now)  # fmt: skip
        connection.execute(sa.insert(key_campaign_meters).values(
            campaign_id=campaign_id, meter_id=row.id, command_id=command_id, state="pending"))  # fmt: skip
        thd_audit(connection, now, actor, "key_change.issue", f"meter:{row.id}",
                  {"campaign_id": campaign_id, "command_id": command_id,
                   "tokens": len(change_set), "from": _attributes(current),
                   "to": _attributes(new)})  # fmt: skip
    thd_audit(connection, now, actor, "key_campaign.create", f"key_campaign:{campaign_id}",
              {"name": name, "group": group, "target": target, "meters": len(rows)})  # fmt: skip
    return thd_campaign(connection, campaign_id)


def _effective(row: Any) -> str:
    """A campaign meter's state: its own, or, while pending, what its command came to when that
    ended without a gateway status (expired or failed at the head-end, cancelled)."""
    if row.state != "pending" or row.command_state is None:
        return str(row.state)
    if row.command_state in IN_FLIGHT or row.command_state == "applied":
        return "pending"
    if row.command_state == "superseded":
        return "cancelled"
    return str(row.command_state)


def _meter_rows(connection: sa.Connection, campaign_id: int) -> list[Any]:
    return list(connection.execute(
        sa.select(key_campaign_meters.c.meter_id, key_campaign_meters.c.state,
                  key_campaign_meters.c.detail, key_campaign_meters.c.command_id,
                  commands.c.state.label("command_state"), commands.c.code,
                  commands.c.detail.label("command_detail"), commands.c.attempts,
                  commands.c.args)
        .outerjoin(commands, commands.c.id == key_campaign_meters.c.command_id)
        .where(key_campaign_meters.c.campaign_id == campaign_id)
        .order_by(key_campaign_meters.c.meter_id)
    ).all())  # fmt: skip


def _view(connection: sa.Connection, campaign: Any, *, with_meters: bool) -> dict[str, Any]:
    rows = _meter_rows(connection, campaign.id)
    counts = dict.fromkeys(STATES, 0)
    not_done: list[dict[str, Any]] = []
    for row in rows:
        state = _effective(row)
        counts[state] = counts.get(state, 0) + 1
        if state != "done" and with_meters and len(not_done) < LISTED:
            not_done.append({
                "meter_id": row.meter_id, "state": state, "command_id": row.command_id,
                "command_state": row.command_state, "code": row.code, "attempts": row.attempts,
                "detail": row.command_detail or row.detail,
            })  # fmt: skip
    view = {
        "id": campaign.id, "name": campaign.name, "group": campaign.group_name,
        "target": json.loads(campaign.target),
        "state": "done" if rows and counts["done"] == len(rows) else campaign.state,
        "created_at": campaign.created_at, "created_by": campaign.created_by,
        "meters": len(rows), "states": counts,
    }  # fmt: skip
    if with_meters:
        view["not_done"] = not_done
    return view


def _campaign(connection: sa.Connection, campaign_id: int) -> Any:
    row = connection.execute(
        sa.select(key_campaigns).where(key_campaigns.c.id == campaign_id)
    ).first()
    if row is None:
        raise CampaignError(f"no key campaign {campaign_id}", 404)
    return row


def thd_campaign(connection: sa.Connection, campaign_id: int) -> dict[str, Any]:
    """A campaign's progress: meters by state, and the meters not done (the first 1000)."""
    return _view(connection, _campaign(connection, campaign_id), with_meters=True)


def thd_campaigns(connection: sa.Connection, limit: int,
                  offset: int) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """A page of campaigns, newest first, each with its meters by state."""
    total = connection.execute(sa.select(sa.func.count()).select_from(key_campaigns)).scalar_one()
    rows = connection.execute(
        sa.select(key_campaigns).order_by(key_campaigns.c.id.desc()).limit(limit).offset(offset)
    ).all()
    return [_view(connection, row, with_meters=False) for row in rows], int(total)


def thd_retry_campaign(connection: sa.Connection, campaign_id: int, actor: str, now: float, *,
                       expiry_s: float = 86400.0) -> dict[str, Any]:  # fmt: skip
    """Queue the same key change set again for each meter whose set failed or expired."""
    campaign = _campaign(connection, campaign_id)
    target = json.loads(campaign.target)
    requeued: list[str] = []
    reached: list[str] = []
    for row in _meter_rows(connection, campaign_id):
        if _effective(row) not in RETRYABLE:
            continue
        meter = connection.execute(sa.select(meters).where(meters.c.id == row.meter_id)).one()
        where = sa.and_(key_campaign_meters.c.campaign_id == campaign_id,
                        key_campaign_meters.c.meter_id == row.meter_id)  # fmt: skip
        if all(getattr(meter, name) == value for name, value in target.items()):
            connection.execute(sa.update(key_campaign_meters).where(where).values(
                state="done", detail="the meter reports the target key attributes"))  # fmt: skip
            reached.append(row.meter_id)
            continue
        if meter.status != "active" or meter.gateway_id is None:
            continue
        args = json.loads(row.args)
        command_id, _ = thd_enqueue(connection, NewCommand(
            CommandType.TOKEN, row.meter_id, {"tokens": list(args["tokens"])}, actor, None,
            expiry_s), now)  # fmt: skip
        connection.execute(sa.update(key_campaign_meters).where(where).values(
            command_id=command_id, state="pending",
            detail=f"retry of command {row.command_id}"))  # fmt: skip
        thd_audit(connection, now, actor, "key_change.retry", f"meter:{row.meter_id}",
                  {"campaign_id": campaign_id, "command_id": command_id,
                   "previous_command_id": row.command_id})  # fmt: skip
        requeued.append(row.meter_id)
    if requeued or reached:
        thd_audit(connection, now, actor, "key_campaign.retry", f"key_campaign:{campaign_id}",
                  {"requeued": len(requeued), "already_changed": len(reached)})  # fmt: skip
    return thd_campaign(connection, campaign_id) | {"requeued": requeued,
                                                    "already_changed": reached}  # fmt: skip
