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
Every refusal is counted in the health metrics: ``commands.rejected`` (any rejection),
``commands.signature_refused`` (unsigned or forged), ``commands.expired`` and
``commands.repeated`` (a cmd_id seen before: a QoS 1 duplicate or a replay).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
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

from .access import CommandUnsupported, MeterAccess
from .journal import EntryKind
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
                 find_meter: Callable[[str], tuple[BusPoller, MeterAccess] | None],
                 public_key: Ed25519PublicKey | None, on_appended: Callable[[], None],
                 headend_now: Callable[[], float] | None = None) -> None:  # fmt: skip
        self.journal = journal
        # not_after is the head-end's time: judge it on the head-end's clock (learnt from acks),
        # so a gateway clock hours out neither refuses fresh commands nor runs stale ones
        self.headend_now = headend_now or clock.seconds
        self.gateway_id = gateway_id
        self.clock = clock
        self.find_meter = find_meter
        self.public_key = public_key
        self.on_appended = on_appended
        self.seen: set[str] = set()
        self.malformed = 0
        self.rejected = 0
        # refusals an operator watches for: forged or unsigned commands, stale ones, replays
        self.signature_refused = 0
        self.expired = 0
        self.repeated = 0
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
        log.info("Command {cmd_id} ({kind}) for {meter}", cmd_id=command.cmd_id,
                 kind=command.type.value, meter=command.meter)  # fmt: skip
        if command.cmd_id in self.seen:
            self.repeated += 1
            return defer.succeed(None)
        self.seen.add(command.cmd_id)
        return defer.ensureDeferred(self._handle_once(command))

    async def _handle_once(self, command: Command) -> None:
        # the journal remembers command ids across restarts: a repeated cmd_id is the same command
        if not await self.journal.first_sight(command.cmd_id, self.clock.seconds()):
            self.repeated += 1
            return
        await self._handle(command)

    async def _handle(self, command: Command) -> None:
        cmd_id = command.cmd_id
        await self.status(cmd_id, CommandState.RECEIVED)
        if command.not_after < self.headend_now():
            self.expired += 1
            await self.status(cmd_id, CommandState.EXPIRED, detail="not_after has passed")
            return
        if command.type.needs_signature:
            if self.public_key is None:
                self.signature_refused += 1
                await self._reject(cmd_id, "this gateway has no head-end public key configured")
                return
            try:
                verify_command(command, self.public_key)
            except SignatureError as exc:
                self.signature_refused += 1
                await self._reject(cmd_id, str(exc))
                return
        found = self.find_meter(command.meter or "")
        if found is None:
            await self._reject(cmd_id, f"no meter {command.meter!r} on this gateway")
            return
        poller, meter = found
        await self.status(cmd_id, CommandState.QUEUED)

        async def work() -> Outcome:
            if command.not_after < self.headend_now():
                self.expired += 1
                return CommandState.EXPIRED, None, "not_after passed while queued", {}
            if not meter.verified:  # never act on a meter whose identity is not confirmed
                await meter.verify_identity()
            await self.status(cmd_id, CommandState.SENT)
            return await self._execute(command, poller, meter)

        try:
            state, code, detail, result = await poller.submit_command(meter, work)
        except TransactionError as exc:
            await self.status(cmd_id, CommandState.FAILED, detail=str(exc))
            return
        except CommandUnsupported as exc:
            await self._reject(cmd_id, str(exc))
            return
        except (LinkError, ValueError, KeyError, TypeError) as exc:
            # TypeError: an argument of the wrong kind ({"groups": 5}), signed or not
            await self._reject(cmd_id, f"invalid arguments: {exc}")
            return
        await self.status(cmd_id, state, code, detail, result)

    async def _reject(self, cmd_id: str, reason: str) -> None:
        self.rejected += 1
        log.warn("Command {cmd_id} refused: {reason}", cmd_id=cmd_id, reason=reason)
        await self.status(cmd_id, CommandState.REJECTED, detail=reason)

    async def _execute(self, command: Command, poller: BusPoller, meter: MeterAccess) -> Outcome:
        args = command.args
        if command.type is CommandType.TOKEN:
            tokens = args.get("tokens")
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
                last = await meter.push_token(digits)
                if last.result_code not in ACCEPTED_RESULTS:
                    break
            assert last is not None
            result = {
                "credit": str(last.credit),
                "token_count": last.token_count,
                "tid": last.last_tid,
            }
            state = (
                CommandState.APPLIED
                if last.result_code in ACCEPTED_RESULTS
                else CommandState.REJECTED
            )
            return state, last.result_code, _result_label(last.result_code), result
        if command.type is CommandType.RELAY:
            action = args.get("action")
            if action not in ("connect", "disconnect"):
                raise ValueError("relay action is connect or disconnect")
            read_back = await meter.switch_relay(action == "connect", args)
            ok = read_back["relay_state"] == read_back["expected"]
            state = CommandState.APPLIED if ok else CommandState.FAILED
            detail = "relay state verified" if ok else "relay state did not change"
            return state, None, detail, {"relay_state": read_back["relay_state"]}
        if command.type is CommandType.READ:
            groups = args.get("groups") or [g for g in poller.groups if g in meter.groups()]
            values: dict[str, Value] = {}
            for group in groups:
                values.update(await meter.read_group(str(group)))
            poller.record(meter, values)
            return CommandState.APPLIED, None, f"{len(values)} values read", {}
        if command.type is CommandType.MAX_POWER:
            watts = args.get("watts")
            if not isinstance(watts, int) or watts < 0:
                raise ValueError("max_power carries {'watts': integer >= 0}")
            limit = await meter.set_max_power(watts)
            state = CommandState.APPLIED if limit == watts else CommandState.FAILED
            return state, None, "", {"watts": limit}
        if command.type is CommandType.TIME_SYNC:
            now = int(self.clock.seconds())
            meter_clock = await meter.set_clock(now)
            drift = abs(int(meter_clock) - now) if isinstance(meter_clock, int | Decimal) else None
            if drift is None:
                return CommandState.APPLIED, None, "time sync sent (no clock read back)", {}
            state = CommandState.APPLIED if drift <= 5 else CommandState.FAILED
            return state, None, f"meter clock within {drift} s", {"meter_clock": meter_clock}
        if command.type is CommandType.TOU:
            version, activation = args.get("version"), args.get("activation", 0)
            if not isinstance(version, int) or not isinstance(activation, int):
                raise ValueError("a TOU command carries integer 'version' and 'activation'")
            tou = await meter.write_tou(version, activation, list(args.get("weekday", [])),
                                         list(args.get("weekend", [])))  # fmt: skip
            if tou["version"] != version:
                return CommandState.FAILED, None, "the meter did not keep the table", dict(tou)
            active = tou["active_version"] == version
            detail = "in force" if active else "accepted, pending until its activation time"
            return CommandState.APPLIED, None, detail, dict(tou)
        await meter.identify()  # REDISCOVER
        return CommandState.APPLIED, None, "identity read", {"meter": meter.meter_id}


def _result_label(code: int) -> str:
    try:
        return TokenResult(code).label
    except ValueError:
        return f"result {code}"


def _loose_id(payload: bytes) -> str | None:
    """The cmd_id of a payload too broken to decode, if it has a usable one."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    cmd_id = body.get("id") if isinstance(body, dict) else None
    # printable: no NUL or lone surrogate, which the head-end (and its store) would refuse
    usable = isinstance(cmd_id, str) and 0 < len(cmd_id) <= 64 and cmd_id.isprintable()
    return cmd_id if usable else None
