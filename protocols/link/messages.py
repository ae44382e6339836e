"""Messages of the gateway <-> head-end contract, version 1: JSON, compact keys (GPRS is paid by
the byte), validated on the way in with a :class:`LinkError` that says what is wrong.

Uplink envelope (every uplink message)::

    {"v": 1, "gw": "gw-0042", "seq": 1234, "t": 1767225600.5, ...body}

``seq`` is one per-gateway counter over all uplink messages, so the head-end can drop duplicates and
see gaps; ``t`` is the gateway's clock (seconds since 1970, UTC). Bodies:

    readings     "r": [{"m": meter, "t": gateway time, "mt": meter clock or null, "v": {point: value}}]
    events       "e": [{"m": meter, "t": time, "k": kind, "s": "raised"|"cleared"|"event", "d": detail}]
    cmd/status   "id": cmd_id, "st": state, "c": meter result code or null, "d": detail, "res": {...}
    health       "h": {metric: value}
    state        "on": true|false, "ver": software version, "meters": [meter ids]   (no seq)

Downlink::

    cmd   {"v": 1, "id": cmd_id, "type": "token"|..., "m": meter, "na": not_after, "p": priority,
           "a": {arguments}, "sig": base64 Ed25519 signature}      (see protocols.link.signing)
    ack   {"v": 1, "ranges": [[first_seq, last_seq], ...]}

Decimal values travel as JSON numbers and come back as Decimal, exactly (readings carry at most 15
significant digits, which a JSON number holds without loss).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from .errors import LinkError
from .topics import Topic, validate_gateway_id

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Ack",
    "Command",
    "CommandState",
    "CommandStatus",
    "CommandType",
    "Event",
    "EventBatch",
    "EventState",
    "GatewayState",
    "Health",
    "Message",
    "Reading",
    "ReadingBatch",
    "decode_message",
    "encode_message",
]

VERSION = 1
MAX_PAYLOAD_BYTES = 256 * 1024
# a command's meter result code is stored as a 32-bit integer (a token result number, 0..255)
CODE_MIN, CODE_LIMIT = -(2**31), 2**31
ReadingValue = int | Decimal | float | str | bool | None


class CommandType(Enum):
    TOKEN = "token"  # args: {"tokens": ["20 digits", ...]}
    READ = "read"  # args: {"groups": [...]} or {}
    RELAY = "relay"  # args: {"action": "disconnect" | "connect"}
    TOU = "tou"  # args: the TOU table (version, activation, switch points)
    MAX_POWER = "max_power"  # args: {"watts": int}
    TIME_SYNC = "time_sync"  # args: {}
    REDISCOVER = "rediscover"  # args: {"bus": name} or {}

    @property
    def needs_signature(self) -> bool:
        """STS tokens authenticate themselves; every other command must be signed."""
        return self is not CommandType.TOKEN


class CommandState(Enum):
    RECEIVED = "received"
    QUEUED = "queued"
    SENT = "sent"
    APPLIED = "applied"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (CommandState.APPLIED, CommandState.REJECTED, CommandState.FAILED,
                        CommandState.EXPIRED)  # fmt: skip


class EventState(Enum):
    RAISED = "raised"
    CLEARED = "cleared"
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class Reading:
    meter: str
    time: float
    values: Mapping[str, ReadingValue]
    meter_time: float | None = None


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    gateway: str
    seq: int
    time: float
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class Event:
    meter: str
    time: float
    kind: str
    state: EventState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class EventBatch:
    gateway: str
    seq: int
    time: float
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class CommandStatus:
    gateway: str
    seq: int
    time: float
    cmd_id: str
    state: CommandState
    code: int | None = None
    detail: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Health:
    gateway: str
    seq: int
    time: float
    metrics: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class GatewayState:
    gateway: str
    time: float
    online: bool
    version: str = ""
    meters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    cmd_id: str
    type: CommandType
    meter: str | None
    not_after: float
    priority: int = 5
    args: Mapping[str, Any] = field(default_factory=dict)
    signature: str | None = None

    def signed_body(self) -> dict[str, Any]:
        """The fields the head-end's signature covers (everything but the signature)."""
        # not_after as a float: a signer that wrote 1767229200 and a verifier that parsed it
        # into 1767229200.0 must see the same canonical bytes
        return {"v": VERSION, "id": self.cmd_id, "type": self.type.value, "m": self.meter,
                "na": float(self.not_after), "p": self.priority, "a": dict(self.args)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Ack:
    ranges: tuple[tuple[int, int], ...]
    time: float | None = None  # the head-end's clock when it sent the ack (optional)

    def covers(self, seq: int) -> bool:
        return any(first <= seq <= last for first, last in self.ranges)


Message = ReadingBatch | EventBatch | CommandStatus | Health | GatewayState | Command | Ack

_TOPIC_OF: dict[type, Topic] = {
    ReadingBatch: Topic.READINGS,
    EventBatch: Topic.EVENTS,
    CommandStatus: Topic.COMMAND_STATUS,
    Health: Topic.HEALTH,
    GatewayState: Topic.STATE,
    Command: Topic.COMMAND,
    Ack: Topic.ACK,
}


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)  # exact for the <= 15 significant digits readings carry
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_message(message: Message) -> tuple[Topic, bytes]:
    """(topic, payload) of a message; the payload is compact UTF-8 JSON."""
    body: dict[str, Any]
    if isinstance(message, ReadingBatch | EventBatch | CommandStatus | Health):
        body = {"v": VERSION, "gw": message.gateway, "seq": message.seq, "t": message.time}
        if isinstance(message, ReadingBatch):
            body["r"] = [
                {"m": r.meter, "t": r.time, "mt": r.meter_time, "v": dict(r.values)}
                for r in message.readings
            ]
        elif isinstance(message, EventBatch):
            body["e"] = [
                {"m": e.meter, "t": e.time, "k": e.kind, "s": e.state.value, "d": e.detail}
                for e in message.events
            ]
        elif isinstance(message, CommandStatus):
            body.update(id=message.cmd_id, st=message.state.value, c=message.code, d=message.detail,
                        res=dict(message.result))  # fmt: skip
        else:
            body["h"] = dict(message.metrics)
    elif isinstance(message, GatewayState):
        body = {"v": VERSION, "gw": message.gateway, "t": message.time, "on": message.online,
                "ver": message.version, "meters": list(message.meters)}  # fmt: skip
    elif isinstance(message, Command):
        body = message.signed_body()
        if message.signature is not None:
            body["sig"] = message.signature
    else:
        body = {"v": VERSION, "ranges": [list(r) for r in message.ranges]}
        if message.time is not None:
            body["t"] = message.time
    if isinstance(message, Command):  # signed as it stands (protocols.link.signing)
        payload = json.dumps(body, separators=(",", ":"), default=_json_default).encode()
        return Topic.COMMAND, payload
    try:
        text = json.dumps(body, separators=(",", ":"), default=_json_default, allow_nan=False)
    except ValueError:
        # NaN or an infinity (a meter's f32 register can hold one): JSON has no such number and
        # the decoder refuses the whole message, so the value travels as null, "no number"
        text = json.dumps(_finite(body), separators=(",", ":"), default=_json_default)
    return _TOPIC_OF[type(message)], text.encode()


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite number replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() and math.isfinite(float(value)) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# -- decoding -------------------------------------------------------------------------------------


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in body:
        raise LinkError(f"{where}: missing field {name!r}")
    value = body[name]
    if isinstance(value, bool) and kind in (int, float, (int, float), (int, Decimal)):
        raise LinkError(f"{where}.{name}: must be a number, got {value!r}")
    if not isinstance(value, kind):
        raise LinkError(f"{where}.{name}: wrong type {type(value).__name__}")
    return value


def _time(body: Mapping[str, Any], name: str, where: str) -> float:
    value = _field(body, name, (int, Decimal), where)
    try:
        number = float(value)
    except OverflowError:  # an integer no double holds
        number = math.inf
    if not math.isfinite(number) or not 0 <= number < 1e11:
        raise LinkError(f"{where}.{name}: not a time in seconds since 1970: {value}")
    return number


def _seq(body: Mapping[str, Any], where: str) -> int:
    seq = _field(body, "seq", int, where)
    if not 0 <= seq < 2**63:
        raise LinkError(f"{where}.seq: out of range: {seq}")
    return int(seq)


def _text(body: Mapping[str, Any], name: str, where: str, limit: int = 256) -> str:
    value = _field(body, name, str, where)
    if len(value) > limit:
        raise LinkError(f"{where}.{name}: longer than {limit} characters")
    return _storable(str(value), f"{where}.{name}")


def _storable(text: str, where: str) -> str:
    """``text`` if a database can hold it: no NUL (PostgreSQL refuses it in text) and no lone
    surrogate (a JSON escape like \\ud800 that is not UTF-8, which no driver can encode)."""
    if "\x00" in text:
        raise LinkError(f"{where}: contains a NUL character")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise LinkError(f"{where}: not valid Unicode (a lone surrogate)") from None
    return text


def _detail(value: object) -> str:
    """Free text (a detail) as kept: the first 512 characters, with a NUL or a lone surrogate
    replaced by U+FFFD rather than the message refused."""
    text = str(value)[:512]
    if "\x00" in text or not text.isascii():
        text = (
            text.encode(errors="surrogatepass").decode(errors="replace").replace("\x00", "\ufffd")
        )
    return text


def _value(value: Any, where: str) -> ReadingValue:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        # 1e400 is a finite decimal but no double: it would be stored as Infinity
        if not value.is_finite() or not math.isfinite(float(value)):
            raise LinkError(f"{where}: not a finite number")
        return value
    raise LinkError(f"{where}: values are numbers, text, true/false or null")


def _envelope(body: Mapping[str, Any], topic: Topic) -> tuple[str, int, float]:
    where = topic.value
    gateway = validate_gateway_id(_field(body, "gw", str, where))
    return gateway, _seq(body, where), _time(body, "t", where)


def decode_message(topic: Topic, payload: bytes) -> Message:
    """The message a payload on ``topic`` carries; LinkError (with the field) when malformed."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise LinkError(f"{topic.value}: payload of {len(payload)} bytes is over the limit")
    try:
        body = json.loads(payload, parse_float=Decimal, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LinkError(f"{topic.value}: not JSON ({exc})") from None
    except RecursionError:
        raise LinkError(f"{topic.value}: nested too deeply to decode") from None
    if not isinstance(body, dict):
        raise LinkError(f"{topic.value}: a message is a JSON object")
    if body.get("v") != VERSION:
        raise LinkError(f"{topic.value}: unsupported contract version {body.get('v')!r}")
    where = topic.value
    if topic is Topic.READINGS:
        gateway, seq, time = _envelope(body, topic)
        readings = []
        for index, item in enumerate(_field(body, "r", list, where)):
            at = f"readings.r[{index}]"
            if not isinstance(item, dict):
                raise LinkError(f"{at}: must be an object")
            values = _field(item, "v", dict, at)
            meter_time = item.get("mt")
            readings.append(Reading(
                meter=_text(item, "m", at, 64),
                time=_time(item, "t", at),
                values={str(k): _value(v, f"{at}.v.{k}") for k, v in values.items()},
                meter_time=None if meter_time is None else _time(item, "mt", at),
            ))  # fmt: skip
        return ReadingBatch(gateway, seq, time, tuple(readings))
    if topic is Topic.EVENTS:
        gateway, seq, time = _envelope(body, topic)
        events = []
        for index, item in enumerate(_field(body, "e", list, where)):
            at = f"events.e[{index}]"
            if not isinstance(item, dict):
                raise LinkError(f"{at}: must be an object")
            try:
                state = EventState(_field(item, "s", str, at))
            except ValueError:
                raise LinkError(f"{at}.s: must be raised, cleared or event") from None
            events.append(Event(_text(item, "m", at, 64), _time(item, "t", at),
                                _text(item, "k", at, 64), state, _detail(item.get("d", ""))))  # fmt: skip
        return EventBatch(gateway, seq, time, tuple(events))
    if topic is Topic.COMMAND_STATUS:
        gateway, seq, time = _envelope(body, topic)
        try:
            command_state = CommandState(_field(body, "st", str, where))
        except ValueError:
            raise LinkError(f"{where}.st: unknown command state") from None
        code = body.get("c")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise LinkError(f"{where}.c: must be an integer or null")
        if code is not None and not CODE_MIN <= code < CODE_LIMIT:
            raise LinkError(f"{where}.c: out of range: {code}")
        result = body.get("res", {})
        if not isinstance(result, dict):
            raise LinkError(f"{where}.res: must be an object")
        return CommandStatus(gateway, seq, time, _text(body, "id", where, 64), command_state, code,
                             _detail(body.get("d", "")), result)  # fmt: skip
    if topic is Topic.HEALTH:
        gateway, seq, time = _envelope(body, topic)
        return Health(gateway, seq, time, _field(body, "h", dict, where))
    if topic is Topic.STATE:
        gateway = validate_gateway_id(_field(body, "gw", str, where))
        meters = _field(body, "meters", list, where) if "meters" in body else []
        if not all(isinstance(m, str) and len(m) <= 64 for m in meters):
            raise LinkError(f"{where}.meters: must be a list of meter ids (at most 64 characters)")
        for index, meter in enumerate(meters):
            _storable(meter, f"{where}.meters[{index}]")
        version = _text(body, "ver", where, 64) if "ver" in body else ""
        return GatewayState(gateway, _time(body, "t", where), bool(_field(body, "on", bool, where)),
                            version, tuple(meters))  # fmt: skip
    if topic is Topic.COMMAND:
        try:
            kind = CommandType(_field(body, "type", str, where))
        except ValueError:
            raise LinkError(f"{where}.type: unknown command type {body.get('type')!r}") from None
        meter = body.get("m")
        if meter is not None and not isinstance(meter, str):
            raise LinkError(f"{where}.m: must be a meter id or null")
        priority = _field(body, "p", int, where) if "p" in body else 5
        if not 0 <= priority <= 9:
            raise LinkError(f"{where}.p: priority is 0..9")
        args = _field(body, "a", dict, where) if "a" in body else {}
        signature = body.get("sig")
        if signature is not None and not isinstance(signature, str):
            raise LinkError(f"{where}.sig: must be base64 text")
        return Command(_text(body, "id", where, 64), kind, meter, _time(body, "na", where),
                       int(priority), args, signature)  # fmt: skip
    ranges = []
    for index, item in enumerate(_field(body, "ranges", list, where)):
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)
                or not 0 <= item[0] <= item[1] < 2**63):  # fmt: skip
            raise LinkError(f"ack.ranges[{index}]: must be [first, last] with first <= last")
        ranges.append((int(item[0]), int(item[1])))
    return Ack(tuple(ranges), _time(body, "t", "ack") if "t" in body else None)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not allowed")
