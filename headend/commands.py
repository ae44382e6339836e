"""The command queue: one persistent queue of everything the head-end asks a meter to do.

Theory of operation. A command is a row in ``commands`` with its history in ``command_history``.
Its head-end state moves through this table (``TRANSITIONS``); anything else is refused, so a late
or repeated status from a gateway can never move a command backwards::

    queued ----dispatch----> sent ----gateway: received|queued|sent----> received
      |  \\                    |  \\                                         |
      |   superseded          |   resent with the same cmd_id when the     |
      |   cancelled           |   gateway has not confirmed receipt within |
      |   expired             |   retry_s; failed after max_attempts       |
      v                       v                                            v
    applied | rejected | failed | expired        (the gateway's final status, with the meter's
                                                 STS result code for tokens)

* Per-meter order: a meter's next command is dispatched only when none of its earlier ones is in
  flight (sent or received), most urgent priority first (0 = most urgent), then oldest.
* Coalescing: a command identical to one still queued (same meter, type and arguments; tokens are
  never identical) is not queued again; the caller gets the existing one.
* Superseding: a relay, TOU or power-limit command replaces a queued command of the same type for
  the same meter (a disconnect after a pending reconnect): the older one ends ``superseded``.
* Retries: a gateway that reports ``failed`` (the meter did not answer) gets the command again as
  a new attempt, ``{id}~{n}`` on the wire because the gateway treats a repeated cmd_id as the same
  command. A token retry resends the *same* token; the meter's TID memory makes a repeat harmless,
  and a retry answered Used (10) means an earlier attempt reached the meter: applied.
* A token that cannot be delivered (failed after every attempt, or expired) is marked for the
  customer to type in: ``result.fallback = "keypad"``.

Everything here runs in the database thread (``thd_*``) except :class:`Dispatcher`, which claims
due rows, signs them (Ed25519, everything but tokens), publishes them and marks them sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import task
from twisted.logger import Logger

from protocols.link import (
    Command,
    CommandState,
    CommandStatus,
    CommandType,
    Topic,
    encode_message,
    gateway_topic,
    sign_command,
)

from .store.schema import command_history, commands, meters

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "CommandError",
    "Dispatcher",
    "NewCommand",
    "thd_apply_status",
    "thd_cancel",
    "thd_command",
    "thd_enqueue",
]

log = Logger()

QUEUED, SENT, RECEIVED = "queued", "sent", "received"
APPLIED, REJECTED, FAILED = "applied", "rejected", "failed"
EXPIRED, SUPERSEDED, CANCELLED = "expired", "superseded", "cancelled"
FINAL = frozenset({APPLIED, REJECTED, FAILED, EXPIRED, SUPERSEDED, CANCELLED})
IN_FLIGHT = (SENT, RECEIVED)

TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SENT, SUPERSEDED, CANCELLED, EXPIRED, FAILED}),
    SENT: frozenset({SENT, RECEIVED, APPLIED, REJECTED, FAILED, EXPIRED, QUEUED}),
    RECEIVED: frozenset({APPLIED, REJECTED, FAILED, EXPIRED, QUEUED}),
    **{state: frozenset() for state in FINAL},
}

# the gateway's states, as the head-end sees them
FROM_GATEWAY = {
    CommandState.RECEIVED: RECEIVED, CommandState.QUEUED: RECEIVED, CommandState.SENT: RECEIVED,
    CommandState.APPLIED: APPLIED, CommandState.REJECTED: REJECTED, CommandState.FAILED: FAILED,
    CommandState.EXPIRED: EXPIRED,
}  # fmt: skip

PRIORITY = {CommandType.TOKEN: 2, CommandType.RELAY: 3, CommandType.MAX_POWER: 4,
            CommandType.TIME_SYNC: 5, CommandType.TOU: 6, CommandType.READ: 7,
            CommandType.REDISCOVER: 8}  # fmt: skip
SUPERSEDABLE = frozenset({CommandType.RELAY, CommandType.TOU, CommandType.MAX_POWER})
STS_USED = 10


class CommandError(Exception):
    """A command that cannot be queued or changed; the message says why."""


@dataclass(frozen=True, slots=True)
class NewCommand:
    type: CommandType
    meter_id: str
    args: Mapping[str, Any] = field(default_factory=dict)
    created_by: str = "headend"
    vend_id: int | None = None
    expiry_s: float = 86400.0
    priority: int | None = None


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _history(connection: sa.Connection, command_id: str, state: str, at: float, source: str,
             code: int | None = None, detail: str = "") -> None:  # fmt: skip
    connection.execute(sa.insert(command_history).values(
        command_id=command_id, state=state, code=code, detail=detail, source=source, at=at))  # fmt: skip


def _move(connection: sa.Connection, row: Any, state: str, at: float, source: str,
          code: int | None = None, detail: str = "", **values: Any) -> bool:  # fmt: skip
    """Move a command to ``state`` if the table allows it; always record what the gateway said.

    Only from the state ``row`` was read in: another head-end may have moved the command since
    (dispatched what an operator is cancelling, applied what this one is expiring); the move is
    then judged again against the state it is in now."""
    while True:
        if state not in TRANSITIONS[row.state]:
            if source == "gateway":  # recorded for the operator, but it changes nothing
                _history(connection, row.id, state, at, source, code,
                         f"ignored in state {row.state}" + (f": {detail}" if detail else ""))  # fmt: skip
            return False
        moved = connection.execute(
            sa.update(commands).where(commands.c.id == row.id, commands.c.state == row.state)
            .values(state=state, updated_at=at, code=code if code is not None else row.code,
                    detail=detail, **values)
        ).rowcount  # fmt: skip
        if moved:
            _history(connection, row.id, state, at, source, code, detail)
            return True
        row = connection.execute(sa.select(commands).where(commands.c.id == row.id)).one()


def thd_enqueue(connection: sa.Connection, new: NewCommand, now: float,
                gateway_id: str | None = None) -> tuple[str, bool]:  # fmt: skip
    """Queue a command; (command id, created). An identical queued command is returned instead."""
    if gateway_id is None:
        gateway_id = connection.execute(
            sa.select(meters.c.gateway_id).where(meters.c.id == new.meter_id)
        ).scalar()
        if gateway_id is None:
            raise CommandError(f"meter {new.meter_id} is not known behind any gateway")
    args = dict(new.args)
    coalesce_key = None
    if new.type is not CommandType.TOKEN:
        coalesce_key = f"{new.type.value}:{new.meter_id}:{_json(args)}"[:128]
        same = connection.execute(
            sa.select(commands.c.id).where(
                commands.c.coalesce_key == coalesce_key, commands.c.state == QUEUED
            )
        ).scalar()
        if same is not None:
            return str(same), False
    if new.type in SUPERSEDABLE:
        older = connection.execute(
            sa.select(commands).where(
                commands.c.meter_id == new.meter_id,
                commands.c.type == new.type.value,
                commands.c.state == QUEUED,
            )
        ).all()
        for row in older:
            _move(connection, row, SUPERSEDED, now, "headend", detail="a newer command replaced it")
    command_id = uuid.uuid4().hex
    connection.execute(sa.insert(commands).values(
        id=command_id, meter_id=new.meter_id, gateway_id=gateway_id, type=new.type.value,
        args=_json(args), priority=new.priority if new.priority is not None else PRIORITY[new.type],
        state=QUEUED, vend_id=new.vend_id, coalesce_key=coalesce_key, attempts=0,
        created_at=now, updated_at=now, not_after=now + new.expiry_s, next_attempt_at=now,
        created_by=new.created_by,
    ))  # fmt: skip
    _history(connection, command_id, QUEUED, now, "headend", detail=f"by {new.created_by}")
    return command_id, True


def thd_cancel(connection: sa.Connection, command_id: str, now: float, actor: str) -> None:
    row = connection.execute(sa.select(commands).where(commands.c.id == command_id)).first()
    if row is None:
        raise CommandError(f"no command {command_id}")
    if not _move(connection, row, CANCELLED, now, "headend", detail=f"cancelled by {actor}"):
        state = connection.execute(sa.select(commands.c.state)
                                   .where(commands.c.id == command_id)).scalar()  # fmt: skip
        raise CommandError(f"command {command_id} is {state}: only a queued command can be "
                           "cancelled (a command already sent may reach the meter)")  # fmt: skip


def thd_command(connection: sa.Connection, command_id: str) -> dict[str, Any] | None:
    """A command with its full state history, as the API shows it."""
    row = connection.execute(sa.select(commands).where(commands.c.id == command_id)).first()
    if row is None:
        return None
    history = connection.execute(
        sa.select(command_history).where(command_history.c.command_id == command_id)
        .order_by(command_history.c.id)
    ).all()  # fmt: skip
    return command_view(row) | {"history": [
        {"state": h.state, "code": h.code, "detail": h.detail, "source": h.source, "at": h.at}
        for h in history
    ]}  # fmt: skip


def command_view(row: Any) -> dict[str, Any]:
    args = json.loads(row.args)
    if row.type == CommandType.TOKEN.value:  # the digits are shown by the vend, grouped
        args = {"tokens": len(args.get("tokens", []))}
    return {
        "id": row.id, "meter_id": row.meter_id, "gateway_id": row.gateway_id, "type": row.type,
        "args": args, "priority": row.priority, "state": row.state, "code": row.code,
        "detail": row.detail, "result": json.loads(row.result), "attempts": row.attempts,
        "created_at": row.created_at, "updated_at": row.updated_at, "not_after": row.not_after,
        "created_by": row.created_by, "vend_id": row.vend_id,
    }  # fmt: skip


def wire_id(command_id: str, attempt: int) -> str:
    return command_id if attempt <= 1 else f"{command_id}~{attempt}"


def command_id_of(wire: str) -> str:
    return wire.split("~", 1)[0]


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    """What a gateway status changed, for the caller's follow-up (TOU rollout, key campaigns)."""

    command_id: str
    type: str
    meter_id: str | None
    state: str
    args: Mapping[str, Any]
    result: Mapping[str, Any]


def thd_apply_status(connection: sa.Connection, status: CommandStatus, now: float,
                     max_attempts: int) -> StatusOutcome | None:  # fmt: skip
    """Apply one gateway status; None when it changed nothing (unknown or a stale status)."""
    command_id = command_id_of(status.cmd_id)
    row = connection.execute(sa.select(commands).where(commands.c.id == command_id)).first()
    if row is None:
        log.warn("Status {state} for unknown command {cmd_id} from {gateway}",
                 state=status.state.value, cmd_id=status.cmd_id, gateway=status.gateway)  # fmt: skip
        return None
    if wire_id(command_id, row.attempts) != status.cmd_id and status.state.final:
        _history(connection, command_id, FROM_GATEWAY[status.state], now, "gateway", status.code,
                 f"from an earlier attempt {status.cmd_id}: {status.detail}")  # fmt: skip
        if status.state is not CommandState.APPLIED:
            return None
    state = FROM_GATEWAY[status.state]
    code, detail = status.code, status.detail
    result = dict(json.loads(row.result)) | dict(status.result)
    if (row.type == CommandType.TOKEN.value and state == REJECTED and code == STS_USED
            and row.attempts > 1):  # fmt: skip
        state, detail = APPLIED, "Used on a retry: an earlier attempt reached the meter"
    if state == FAILED and _sends(connection, command_id) < max_attempts and row.not_after > now:
        # the meter did not answer: try again as a new attempt (the same token)
        _history(connection, command_id, FAILED, now, "gateway", code, detail)
        _move(connection, row, QUEUED, now, "headend", detail=f"retry after: {detail}",
              next_attempt_at=now)  # fmt: skip
        return None
    if state in (FAILED, EXPIRED):
        detail = _keypad_fallback(row, result, detail)
    if state == RECEIVED and row.state == RECEIVED:
        _history(connection, command_id, state, now, "gateway", code, status.state.value)
        return None
    if not _move(connection, row, state, now, "gateway", code, detail or status.state.value,
                 result=_json(result), next_attempt_at=None):  # fmt: skip
        return None
    return StatusOutcome(command_id, row.type, row.meter_id, state, json.loads(row.args), result)


def _keypad_fallback(row: Any, result: dict[str, Any], detail: str) -> str:
    """A token that will not reach its meter is offered for the customer to type in: marked in
    ``result``, and said in the detail (returned)."""
    if row.type != CommandType.TOKEN.value:
        return detail
    result["fallback"] = "keypad"
    return f"{detail}; give the token to the customer to type in".lstrip("; ")


@dataclass(frozen=True, slots=True)
class Due:
    id: str
    wire_id: str
    type: CommandType
    meter_id: str | None
    gateway_id: str
    priority: int
    not_after: float
    args: Mapping[str, Any]


def thd_due(connection: sa.Connection, now: float, retry_s: float, max_attempts: int,
            limit: int = 500) -> list[Due]:  # fmt: skip
    """Claim what should be published now, marking it sent in the same transaction.

    Expires what is past its ``not_after``; fails what was published ``max_attempts`` times
    without the gateway confirming receipt; resends (same cmd_id) what was sent ``retry_s`` ago
    unconfirmed; dispatches each meter's next queued command when nothing of that meter is in
    flight.
    On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so several head-ends never send one
    row twice.
    """
    postgres = connection.dialect.name == "postgresql"
    for row in connection.execute(
        sa.select(commands)
        .where(commands.c.state.in_((QUEUED, SENT, RECEIVED)), commands.c.not_after < now)
        .limit(limit)
    ).all():
        result = json.loads(row.result)
        detail = _keypad_fallback(row, result, "not applied before its not_after")
        _move(connection, row, EXPIRED, now, "headend", detail=detail, result=_json(result),
              next_attempt_at=None)  # fmt: skip
    due: list[Due] = []
    resend = sa.select(commands).where(commands.c.state == SENT,
                                       commands.c.next_attempt_at <= now).limit(limit)  # fmt: skip
    if postgres:
        resend = resend.with_for_update(skip_locked=True)
    for row in connection.execute(resend).all():
        sends = _sends(connection, row.id)
        if sends >= max_attempts:
            result = json.loads(row.result)
            detail = _keypad_fallback(
                row, result, f"the gateway did not confirm receipt after {sends} sends"
            )
            _move(connection, row, FAILED, now, "headend", detail=detail, result=_json(result),
                  next_attempt_at=None)  # fmt: skip
            continue
        # the same cmd_id again: ``attempts`` counts cmd_ids, which is how a status is matched
        connection.execute(sa.update(commands).where(commands.c.id == row.id).values(
            next_attempt_at=now + retry_s, updated_at=now))  # fmt: skip
        _history(connection, row.id, SENT, now, "headend",
                 detail=f"resent (send {sends + 1}): no receipt from the gateway")  # fmt: skip
        due.append(_due(row, row.attempts))
    busy = sa.select(commands.c.meter_id).where(commands.c.state.in_(IN_FLIGHT),
                                                commands.c.meter_id.is_not(None))  # fmt: skip
    queued = (
        sa.select(commands)
        .where(commands.c.state == QUEUED, commands.c.next_attempt_at <= now,
               commands.c.meter_id.not_in(busy))
        .order_by(commands.c.priority, commands.c.created_at)
        .limit(limit)
    )  # fmt: skip
    if postgres:
        queued = queued.with_for_update(skip_locked=True)
    taken: set[str | None] = set()
    for row in connection.execute(queued).all():
        if row.meter_id in taken:
            continue  # one command per meter in flight
        taken.add(row.meter_id)
        attempt = row.attempts + 1
        connection.execute(sa.update(commands).where(commands.c.id == row.id).values(
            state=SENT, attempts=attempt, next_attempt_at=now + retry_s, updated_at=now))  # fmt: skip
        _history(connection, row.id, SENT, now, "headend",
                 detail=f"published to {row.gateway_id} (attempt {attempt})")  # fmt: skip
        due.append(_due(row, attempt))
    return due


def _sends(connection: sa.Connection, command_id: str) -> int:
    """How many times the command was published, resends included (each left a ``sent`` row).

    Not ``attempts``: that counts the command's cmd_ids (``{id}~{n}``), and a resend keeps its
    cmd_id, so that the gateway takes it for the same command and its statuses still match."""
    return int(connection.execute(
        sa.select(sa.func.count()).select_from(command_history)
        .where(command_history.c.command_id == command_id, command_history.c.state == SENT,
               command_history.c.source == "headend")
    ).scalar_one())  # fmt: skip


def _due(row: Any, attempt: int) -> Due:
    return Due(row.id, wire_id(row.id, attempt), CommandType(row.type), row.meter_id,
               row.gateway_id, row.priority, row.not_after, json.loads(row.args))  # fmt: skip


class Dispatcher:
    """Publishes due commands every ``interval_s`` (and when poked), signed where they must be."""

    def __init__(self, db: Any, clock: Any, publish: Callable[[str, bytes], bool],
                 signing_key: Ed25519PrivateKey, retry_s: float, max_attempts: int,
                 interval_s: float = 1.0) -> None:  # fmt: skip
        self.db = db
        self.clock = clock
        self.publish = publish
        self.signing_key = signing_key
        self.retry_s = retry_s
        self.max_attempts = max_attempts
        self.published = 0
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = clock
        self.interval_s = interval_s
        self._running = False
        self._again = False

    def start(self) -> None:
        self._loop.start(self.interval_s, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def poke(self) -> None:
        """Dispatch now (a command was queued, or one finished and the meter's next may go)."""
        if self._running:
            self._again = True
            return
        self.clock.callLater(0, self._tick)

    async def _run(self) -> None:
        self._running = True
        try:
            while True:
                self._again = False
                due = await self.db.run(thd_due, self.clock.seconds(), self.retry_s,
                                        self.max_attempts)  # fmt: skip
                for item in due:
                    self._send(item)
                if not self._again:
                    return
        finally:
            self._running = False

    def _tick(self) -> Any:
        if self._running:
            self._again = True
            return None
        from twisted.internet import defer

        done = defer.ensureDeferred(self._run())
        done.addErrback(lambda failure: log.failure("Command dispatch failed", failure))
        return done

    def _send(self, item: Due) -> None:
        command = Command(item.wire_id, item.type, item.meter_id, item.not_after,
                          min(item.priority, 9), item.args)  # fmt: skip
        if item.type.needs_signature:
            command = sign_command(command, self.signing_key)
        _, payload = encode_message(command)
        if self.publish(gateway_topic(item.gateway_id, Topic.COMMAND), payload):
            self.published += 1
        else:  # not connected: the resend timer brings it back
            log.warn("Command {cmd_id} not published (MQTT down); resent later",
                     cmd_id=item.wire_id)  # fmt: skip
