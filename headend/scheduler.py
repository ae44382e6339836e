"""Read schedules: per meter group, in an IANA time zone, correct across DST, with catch-up.

One head-end process schedules at a time: the one holding the ``scheduler`` lease (a row in
``leases`` with an expiry, renewed every tick; another process takes it over when it expires).
Each tick, for each enabled schedule, the windows due since the schedule last ran
(``headend.schedule.missed_windows``, which knows DST) are turned into on-demand ``read`` commands
for the group's meters. After an outage only the newest ``max_catch_up`` windows are caught up:
meters hold registers, not history, so one read after a gap is what the missed windows can still
give; identical reads still queued for a meter are coalesced by the command queue.

The gateways keep polling on their own clocks meanwhile (their configured poll groups), so a
head-end outage never stops the readings; schedules add the reads the utility wants at fixed local
times (midnight registers for billing, say).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from protocols.link import CommandType

from .commands import NewCommand, thd_enqueue
from .schedule import ReadSchedule, ScheduleKind, missed_windows
from .store.schema import leases, meters, read_schedules

__all__ = ["Scheduler", "schedule_from_spec", "thd_hold_lease", "thd_run_schedules"]

log = Logger()
LEASE = "scheduler"


def schedule_from_spec(name: str, spec: dict[str, Any]) -> ReadSchedule:
    return ReadSchedule(name, spec["zone"], ScheduleKind(spec["kind"]),
                        interval_minutes=spec.get("interval_minutes"), at=spec.get("at"),
                        day_of_month=spec.get("day_of_month"))  # fmt: skip


def thd_hold_lease(connection: sa.Connection, holder: str, now: float, ttl_s: float,
                   name: str = LEASE) -> bool:  # fmt: skip
    """Take or renew the lease ``name`` (the scheduler's by default); True when ``holder`` has it
    until ``now + ttl_s``."""
    taken = connection.execute(
        sa.update(leases)
        .where(leases.c.name == name, sa.or_(leases.c.holder == holder, leases.c.expires_at < now))
        .values(holder=holder, expires_at=now + ttl_s)
    ).rowcount
    if taken:
        return True
    if connection.execute(sa.select(leases.c.name).where(leases.c.name == name)).first():
        return False
    try:
        with connection.begin_nested():
            connection.execute(sa.insert(leases).values(name=name, holder=holder,
                                                        expires_at=now + ttl_s))  # fmt: skip
    except sa.exc.IntegrityError:
        return False  # another process inserted it first
    return True


def thd_run_schedules(connection: sa.Connection, now: float, max_catch_up: int,
                      expiry_s: float) -> dict[str, int]:  # fmt: skip
    """Queue the reads due; {schedule name: windows run}."""
    ran: dict[str, int] = {}
    moment = datetime.fromtimestamp(now, UTC)
    # Locked (in id order): a head-end whose tick stalled past its lease may run this at the
    # moment the lease's new holder does; the second waits for the first's commit and finds the
    # windows run.
    for row in connection.execute(
        sa.select(read_schedules)
        .where(read_schedules.c.enabled.is_(True))
        .order_by(read_schedules.c.id)
        .with_for_update()
    ).all():
        spec = json.loads(row.spec)
        if row.last_window_at is None:  # a new schedule starts now; it has missed nothing
            connection.execute(sa.update(read_schedules).where(read_schedules.c.id == row.id)
                               .values(last_window_at=now))  # fmt: skip
            continue
        schedule = schedule_from_spec(row.name, spec)
        due = missed_windows(schedule, datetime.fromtimestamp(row.last_window_at, UTC), moment,
                             max_catch_up)  # fmt: skip
        if not due:
            continue
        query = sa.select(meters.c.id).where(meters.c.status == "active",
                                             meters.c.gateway_id.is_not(None))  # fmt: skip
        if row.group_name:
            query = query.where(meters.c.group_name == row.group_name)
        args = {"groups": spec.get("groups", [])} if spec.get("groups") else {}
        for meter_id in connection.execute(query).scalars():
            thd_enqueue(connection, NewCommand(CommandType.READ, meter_id, args,
                                               f"schedule:{row.name}", expiry_s=expiry_s), now)  # fmt: skip
        connection.execute(sa.update(read_schedules).where(read_schedules.c.id == row.id)
                           .values(last_window_at=due[-1].timestamp()))  # fmt: skip
        ran[row.name] = len(due)
    return ran


class Scheduler(service.Service):
    def __init__(self, app: Any) -> None:
        self.app = app
        config = app.config.scheduler
        self.tick_s = config.tick_s
        self.max_catch_up = config.max_catch_up
        self.leader = False
        self.windows_run = 0
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = app.clock

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        self._loop.start(self.tick_s, now=True)

    def stopService(self) -> Any:  # noqa: N802 - Twisted's name
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> defer.Deferred[None]:
        done = defer.ensureDeferred(self._run())
        done.addErrback(lambda f: log.failure("Scheduler tick failed", f))
        return done

    async def _run(self) -> None:
        app = self.app
        now = app.clock.seconds()
        leader = await app.db.run(thd_hold_lease, app.config.node_id, now, 3 * self.tick_s)
        if leader != self.leader:
            log.info("{node} {what} the scheduler", node=app.config.node_id,
                     what="is now" if leader else "is no longer")  # fmt: skip
            self.leader = leader
        if not leader:
            return
        ran = await app.db.run(thd_run_schedules, now, self.max_catch_up,
                               app.config.commands.expiry_s)  # fmt: skip
        if ran:
            self.windows_run += sum(ran.values())
            app.dispatcher.poke()
