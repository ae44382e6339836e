"""Commands from the head-end: checked, deduplicated, executed with priority, every state journaled.

Theory of operation::

    payload on cmd --decode--> malformed: "rejected" (when it has an id) and counted
        repeated cmd_id ........................ ignored (the same command; its statuses stand)
        not_after passed ....................... "expired"
        not a token and no valid signature ..... "rejected: ... not signed / does not verify"
        unknown meter .......................... "rejected: no such meter on this gateway"
    "received" -> "queued" -> (bus actor, COMMAND priority) "sent" -> "applied" | "rejected" | "failed"
        token: written, the meter's result read back: Accept -> applied, else rejected with the
               STS result code (Used, Old, CRC ...), so the head-end can report it
        relay: commanded, relay_state read back: as expected -> applied, else failed
        read: the meter's groups read now and recorded as readings

Statuses are journaled (command results are the last thing the quota evicts) and published.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twisted.internet import defer
from twisted.logger import Logger

from protocols.link import (
    Command,
    CommandState,
    CommandStatus,
    CommandType,
    LinkError,
    SignatureError,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    verify_command,
)
from protocols.modbus import Value
from protocols.sts import TokenResult

from .journal import EntryKind
from .modbus_driver import (
    ModbusMeter,
    push_token,
    read_points,
    switch_relay,
    write_point,
    write_tou,
)
from .modbus_master import TransactionError
from .polling import BusPoller
from .uplink import Journal

__all__ = ["CommandProcessor"]

log = Logger()

Outcome = tuple[CommandState, int | None, str, dict[str, Any]]
ACCEPTED_RESULTS = {int(TokenResult.ACCEPT), int(TokenResult.FIRST_KCT_ENTERED),
                    int(TokenResult.SECOND_KCT_ENTERED)}  # fmt: skip


class CommandProcessor:
    def __init__(self, journal: Journal, gateway_id: str, clock: Any,
                 find_meter: Callable[[str], tuple[BusPoller, ModbusMeter] | None],
                 public_key: Ed25519PublicKey | None, on_appended: Callable[[], None]) -> None:  # fmt: skip
        self.journal = journal
        self.gateway_id = gateway_id
        self.clock = clock
        self.find_meter = find_meter
        self.public_key = public_key
        self.on_appended = on_appended
        self.seen: set[str] = set()
        self.malformed = 0
        self.rejected = 0
        self._topic = gateway_topic(gateway_id, Topic.COMMAND_STATUS)

    def status(self, cmd_id: str, state: CommandState, code: int | None = None, detail: str = "",
               result: dict[str, Any] | None = None) -> defer.Deferred[None]:  # fmt: skip
        now = self.clock.seconds()

        def build(seq: int) -> bytes:
            status = CommandStatus(
                self.gateway_id, seq, now, cmd_id, state, code, detail, result or {}
            )
            return encode_message(status)[1]

        async def append() -> None:
            await self.journal.append(EntryKind.COMMAND_STATUS, self._topic, build, now)
            self.on_appended()

        done = defer.ensureDeferred(append())
        done.addErrback(lambda failure: log.failure("Journaling a command status failed", failure))
        return done

    def receive(self, payload: bytes) -> defer.Deferred[None]:
        """Handle one payload from the cmd topic; never raises."""
        try:
            command = decode_message(Topic.COMMAND, payload)
        except LinkError as exc:
            self.malformed += 1
            cmd_id = _loose_id(payload)
            log.warn("Malformed command {cmd_id}: {error}", cmd_id=cmd_id, error=str(exc))
            if cmd_id and cmd_id not in self.seen:
                self.seen.add(cmd_id)
                return self.status(
                    cmd_id, CommandState.REJECTED, detail=f"malformed command: {exc}"
                )
            return defer.succeed(None)
        assert isinstance(command, Command)
        if command.cmd_id in self.seen:
            return defer.succeed(None)
        self.seen.add(command.cmd_id)
        return defer.ensureDeferred(self._handle(command))

    async def _handle(self, command: Command) -> None:
        cmd_id = command.cmd_id
        await self.status(cmd_id, CommandState.RECEIVED)
        if command.not_after < self.clock.seconds():
            await self.status(cmd_id, CommandState.EXPIRED, detail="not_after has passed")
            return
        if command.type.needs_signature:
            if self.public_key is None:
                await self._reject(cmd_id, "this gateway has no head-end public key configured")
                return
            try:
                verify_command(command, self.public_key)
            except SignatureError as exc:
                await self._reject(cmd_id, str(exc))
                return
        found = self.find_meter(command.meter or "")
        if found is None:
            await self._reject(cmd_id, f"no meter {command.meter!r} on this gateway")
            return
        poller, meter = found
        await self.status(cmd_id, CommandState.QUEUED)

        async def work() -> Outcome:
            if command.not_after < self.clock.seconds():
                return CommandState.EXPIRED, None, "not_after passed while queued", {}
            await self.status(cmd_id, CommandState.SENT)
            return await self._execute(command, poller, meter)

        try:
            state, code, detail, result = await poller.submit_command(meter, work)
        except TransactionError as exc:
            await self.status(cmd_id, CommandState.FAILED, detail=str(exc))
            return
        except (LinkError, ValueError, KeyError) as exc:
            await self._reject(cmd_id, f"invalid arguments: {exc}")
            return
        await self.status(cmd_id, state, code, detail, result)

    async def _reject(self, cmd_id: str, reason: str) -> None:
        self.rejected += 1
        await self.status(cmd_id, CommandState.REJECTED, detail=reason)

    async def _execute(self, command: Command, poller: BusPoller, meter: ModbusMeter) -> Outcome:
        master = poller.master
        if command.type is CommandType.TOKEN:
            tokens = command.args.get("tokens")
            if (
                not isinstance(tokens, list)
                or not tokens
                or not all(isinstance(t, str) for t in tokens)
            ):
                raise ValueError("a token command carries {'tokens': ['20 digits', ...]}")
            last = None
            for token in tokens:
                digits = "".join(ch for ch in token if ch.isdigit())
                if len(digits) != 20:
                    raise ValueError(f"a token has 20 digits, got {len(digits)}")
                last = await push_token(master, meter, digits)
                if last.result_code not in ACCEPTED_RESULTS:
                    break
            assert last is not None
            result = {
                "credit": str(last.credit),
                "token_count": last.token_count,
                "tid": last.last_tid,
            }
            label = _result_label(last.result_code)
            if last.result_code == int(TokenResult.ACCEPT):
                return CommandState.APPLIED, last.result_code, label, result
            if last.result_code in ACCEPTED_RESULTS:
                return CommandState.APPLIED, last.result_code, label, result
            return CommandState.REJECTED, last.result_code, label, result
        if command.type is CommandType.RELAY:
            action = command.args.get("action")
            if action not in ("connect", "disconnect"):
                raise ValueError("relay action is connect or disconnect")
            read_back = await switch_relay(master, meter, action == "connect")
            ok = read_back["relay_state"] == read_back["expected"]
            state = CommandState.APPLIED if ok else CommandState.FAILED
            detail = "relay state verified" if ok else "relay state did not change"
            return state, None, detail, {"relay_state": read_back["relay_state"]}
        if command.type is CommandType.READ:
            groups = command.args.get("groups") or list(poller.groups)
            points = [p for g in groups for p in meter.profile.group(str(g)) if p.access.readable]
            values: dict[str, Value] = await read_points(master, meter, points)
            poller.record(meter, values)
            return CommandState.APPLIED, None, f"{len(values)} values read", {}
        if command.type is CommandType.MAX_POWER:
            watts = command.args.get("watts")
            if not isinstance(watts, int) or watts < 0:
                raise ValueError("max_power carries {'watts': integer >= 0}")
            await write_point(master, meter, "max_power_limit", watts)
            check = await read_points(master, meter, [meter.profile.point("max_power_limit")])
            ok = check["max_power_limit"] == watts
            return (
                (CommandState.APPLIED if ok else CommandState.FAILED),
                None,
                "",
                {"watts": check["max_power_limit"]},
            )
        if command.type is CommandType.TIME_SYNC:
            now = int(self.clock.seconds())
            await write_point(master, meter, "clock_set", now)
            check = await read_points(master, meter, [meter.profile.point("meter_clock")])
            drift = abs(int(check["meter_clock"]) - now)
            state = CommandState.APPLIED if drift <= 5 else CommandState.FAILED
            return (
                state,
                None,
                f"meter clock within {drift} s",
                {"meter_clock": check["meter_clock"]},
            )
        if command.type is CommandType.TOU:
            args = command.args
            version, activation = args.get("version"), args.get("activation", 0)
            if not isinstance(version, int) or not isinstance(activation, int):
                raise ValueError("a TOU command carries integer 'version' and 'activation'")
            held = await write_tou(master, meter, version, activation,
                                   list(args.get("weekday", [])), list(args.get("weekend", [])))  # fmt: skip
            if held["version"] != version:
                return CommandState.FAILED, None, "the meter did not keep the table", dict(held)
            active = held["active_version"] == version
            detail = "in force" if active else "accepted, pending until its activation time"
            return CommandState.APPLIED, None, detail, dict(held)
        values = await read_points(master, meter, meter.profile.group("identity"))  # REDISCOVER
        return CommandState.APPLIED, None, "identity read", {"drn": str(values.get("drn", ""))}


def _result_label(code: int) -> str:
    try:
        return TokenResult(code).label
    except ValueError:
        return f"result {code}"


def _loose_id(payload: bytes) -> str | None:
    """The cmd_id of a payload too broken to decode, if it has a usable one."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    cmd_id = body.get("id") if isinstance(body, dict) else None
    return cmd_id if isinstance(cmd_id, str) and 0 < len(cmd_id) <= 64 else None
