"""What a finished command means beyond itself, applied in the same transaction as its status.

* a TOU command applied with the version the rollout asked for confirms that meter in the rollout;
* a key-change set applied moves the meter's key attributes in the store to the new ones (the next
  token is made with the new key) and marks the meter done in its campaign;
* a relay command applied keeps the meter's last known relay state.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from .commands import StatusOutcome
from .store.schema import key_campaign_meters, meters, tou_rollouts

__all__ = ["thd_command_finished"]

CAMPAIGN_FINAL = frozenset({"rejected", "failed", "expired"})


def thd_command_finished(connection: sa.Connection, outcome: StatusOutcome, now: float) -> None:
    rollout = sa.and_(tou_rollouts.c.command_id == outcome.command_id)
    if outcome.type == "tou":
        if outcome.state == "applied" and outcome.result.get("version") == outcome.args.get(
            "version"
        ):
            connection.execute(
                sa.update(tou_rollouts).where(rollout).values(state="confirmed", confirmed_at=now)
            )
            connection.execute(
                sa.update(meters)
                .where(meters.c.id == outcome.meter_id)
                .values(tou_version=outcome.args.get("version"))
            )
        elif outcome.state != "applied":
            connection.execute(sa.update(tou_rollouts).where(rollout).values(state=outcome.state))
    elif outcome.type == "token":
        campaign = sa.and_(key_campaign_meters.c.command_id == outcome.command_id)
        row = connection.execute(sa.select(key_campaign_meters).where(campaign)).first()
        if row is None:
            return
        if outcome.state == "applied":
            target: dict[str, Any] = json.loads(
                connection.execute(
                    sa.text("SELECT target FROM key_campaigns WHERE id = :id"),
                    {"id": row.campaign_id},
                ).scalar_one()
            )
            connection.execute(
                sa.update(meters).where(meters.c.id == outcome.meter_id).values(**target)
            )
            connection.execute(sa.update(key_campaign_meters).where(campaign).values(state="done"))
        elif outcome.state in CAMPAIGN_FINAL:
            # a set on its way (sent, received) leaves the row pending: that is what keeps the
            # meter out of another campaign and its sales held back until the set is applied
            connection.execute(
                sa.update(key_campaign_meters)
                .where(campaign)
                .values(state=outcome.state, detail=str(outcome.result.get("fallback", "")))
            )
    elif outcome.type == "relay" and outcome.state == "applied":
        state = outcome.result.get("relay_state")
        if isinstance(state, str):
            connection.execute(
                sa.update(meters).where(meters.c.id == outcome.meter_id).values(relay_state=state)
            )
