"""What a gateway (or anyone who can publish on its topics) may send the head-end: valid messages,
and messages that break the contract (docs/mqtt-contract.md), each with the rule it breaks.

A bad message is built from a valid one by one mutation the contract forbids: bytes that are not
JSON, a field missing, of the wrong type or out of range, text a store cannot hold (NUL, a lone
surrogate), nesting no parser follows, a payload over the limit, a gateway id that is not the
topic's. The verdict "bad" comes from the contract's rules as written here, never from the
decoder under test. Valid messages include the edges the contract allows (``seq`` 0, values far
beyond a 64-bit integer, a time just under 1e11), and duplicates: an exact resend, and other
content under a ``seq`` already used.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from protocols.link import (
    CommandState,
    CommandStatus,
    Event,
    EventBatch,
    EventState,
    GatewayState,
    Health,
    Message,
    Reading,
    ReadingBatch,
    Topic,
    encode_message,
    gateway_topic,
)

__all__ = [
    "GATEWAY",
    "T0",
    "RandomPicker",
    "Sent",
    "bad_message",
    "conversation",
    "corrupt",
    "good_message",
]

T = TypeVar("T")

GATEWAY = "gw-bad"
OTHER_GATEWAY = "gw-other"
T0 = 1_767_225_600.0
METERS = ("47000000001", "47000000002", "47000000003", "compteur-é-ü", "m" * 64)
PLACEHOLDER = "\u2603placeholder\u2603"
DEEP_ARRAY = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000
HUGE_INT = "1" + "0" * 400  # a JSON integer no double holds

BAD_SEQ = ["-1", str(2**63), str(2**70), '"5"', "1.5", "true", "null", "NaN", "1e400"]
BAD_TIME = ["-1", "100000000000", "1e11", '"now"', "null", "true", "NaN", "Infinity",
            "-Infinity", "1e400", HUGE_INT]  # fmt: skip
BAD_METER_TIME = [t for t in BAD_TIME if t != "null"]  # a reading's "mt" may be null
BAD_GATEWAY = ['""', '"gw/x"', '"gw+"', json.dumps("g" * 65), "7", "null",
               json.dumps(OTHER_GATEWAY), '"gw\\u0000"']  # fmt: skip
BAD_ID = ["7", "null", "[]", json.dumps("m" * 65), '"a\\u0000b"', '"\\ud800"', '"x\\udfff"']
BAD_VALUE = ["[1]", '{"a":1}', "NaN", "Infinity", "-Infinity", "1e400", "-1e400", DEEP_ARRAY]
BAD_VERSION = ["2", "0", '"1"', "null", "[1]"]
BAD_LIST = ["{}", '"x"', "null", "1"]
BAD_OBJECT = ["[]", '"x"', "null", "1", DEEP_ARRAY]

ENVELOPE = ("v", "gw", "seq", "t")
REQUIRED = {
    Topic.READINGS: (*ENVELOPE, "r"),
    Topic.EVENTS: (*ENVELOPE, "e"),
    Topic.COMMAND_STATUS: (*ENVELOPE, "id", "st"),
    Topic.HEALTH: (*ENVELOPE, "h"),
    Topic.STATE: ("v", "gw", "t", "on"),
}
UPLINK = tuple(REQUIRED)


@dataclass(frozen=True)
class Sent:
    """One MQTT message: its topic and payload, whether the contract allows it, and why not."""

    topic: str
    payload: bytes
    good: bool
    why: str = ""
    message: Message | None = None  # the message a good one carries

    @property
    def seq(self) -> int | None:
        return getattr(self.message, "seq", None) if self.good else None

    @property
    def journaled(self) -> bool:
        return isinstance(self.message, ReadingBatch | EventBatch | CommandStatus)


def _sent(message: Message) -> Sent:
    topic, payload = encode_message(message)
    return Sent(gateway_topic(GATEWAY, topic), payload, True, message=message)


# -- valid messages ------------------------------------------------------------------------------

plain_values = st.dictionaries(
    st.sampled_from(["energy_import_total", "credit_remaining", "relay_state", "voltage", "note",
                     "serial", "ok", "sts_tariff_index", "sts_supply_group_code"]),
    st.one_of(
        st.decimals(Decimal("-1e9"), Decimal("1e9"), places=2),
        st.integers(-(2**70), 2**70),  # integers beyond 64 bits are values like any other
        st.sampled_from([Decimal("1e16"), Decimal("-9.5e15"), 2**64]),  # kWh no BIGINT of Wh holds
        st.text(max_size=12),
        st.booleans(),
        st.none(),
    ),
    max_size=5,
)  # fmt: skip


@st.composite
def good_message(draw: st.DrawFn, seq: int, topic: Topic | None = None) -> Sent:
    """A valid message of ``topic`` (any uplink topic when None) with ``seq``; its readings and
    events have times unique to ``seq``, so that a stored row tells which message it came from."""
    topic = topic or draw(st.sampled_from(UPLINK))
    at = T0 + seq * 100
    sent_at = draw(st.sampled_from([at, 0.0, 1e11 - 1]))  # the envelope's edges are valid
    if topic is Topic.READINGS:
        count = draw(st.integers(0, 3))
        # reading times at the contract's edges too (0 <= t < 1e11), still unique to the seq
        edge = draw(st.sampled_from([at, at, at, seq * 10.0, 1e11 - 10 - seq * 10]))
        readings = tuple(
            Reading(draw(st.sampled_from(METERS)), edge + index, draw(plain_values),
                    draw(st.one_of(st.none(), st.just(at - 1.5))))
            for index in range(count)
        )  # fmt: skip
        return _sent(ReadingBatch(GATEWAY, seq, sent_at, readings))
    if topic is Topic.EVENTS:
        count = draw(st.integers(0, 2))
        events = tuple(
            Event(draw(st.sampled_from(METERS)), at + index,
                  draw(st.sampled_from(["tamper", "low_credit", "power_fail"])),
                  draw(st.sampled_from(list(EventState))), draw(st.text(max_size=20)))
            for index in range(count)
        )  # fmt: skip
        return _sent(EventBatch(GATEWAY, seq, sent_at, events))
    if topic is Topic.COMMAND_STATUS:
        state = draw(st.sampled_from(list(CommandState)))
        code = draw(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)))
        return _sent(CommandStatus(GATEWAY, seq, sent_at, draw(st.sampled_from(["cmd-1", "cmd-2"])),
                                   state, code, draw(st.text(max_size=20)),
                                   {"credit": "12.5", "n": 2**70}))  # fmt: skip
    if topic is Topic.HEALTH:
        return _sent(Health(GATEWAY, 0, sent_at, {"uptime_s": seq, "journal": {"entries": 3},
                                                  "rate": Decimal("0.25")}))  # fmt: skip
    meters = tuple(sorted(set(draw(st.lists(st.sampled_from(METERS), max_size=3)))))
    return _sent(GatewayState(GATEWAY, sent_at, draw(st.booleans()), "1.2.3", meters))


# -- bad messages --------------------------------------------------------------------------------


def _with(body: dict[str, Any], path: tuple[str | int, ...], raw: str | None) -> bytes:
    """``body`` as JSON with the value at ``path`` replaced by the raw JSON text ``raw`` (or
    removed when None)."""
    copy = json.loads(json.dumps(body))
    target: Any = copy
    for part in path[:-1]:
        target = target[part]
    if raw is None:
        del target[path[-1]]
        return json.dumps(copy).encode()
    target[path[-1]] = PLACEHOLDER
    return json.dumps(copy).replace(json.dumps(PLACEHOLDER), raw).encode()


def _field_rules(
    topic: Topic, body: dict[str, Any]
) -> list[tuple[tuple[str | int, ...], list[str]]]:
    """(path, raw JSON values the contract forbids there), for the fields ``body`` has."""
    rules: list[tuple[tuple[str | int, ...], list[str]]] = [
        (("v",), BAD_VERSION), (("gw",), BAD_GATEWAY), (("t",), BAD_TIME),
    ]  # fmt: skip
    if "seq" in body:
        rules.append((("seq",), BAD_SEQ))
    if topic is Topic.READINGS:
        rules.append((("r",), BAD_LIST))
        for index, reading in enumerate(body["r"]):
            at: tuple[str | int, ...] = ("r", index)
            rules += [(at, BAD_OBJECT), ((*at, "m"), BAD_ID), ((*at, "t"), BAD_TIME),
                      ((*at, "mt"), BAD_METER_TIME), ((*at, "v"), BAD_OBJECT)]  # fmt: skip
            rules += [((*at, "v", name), BAD_VALUE) for name in reading["v"]]
    elif topic is Topic.EVENTS:
        rules.append((("e",), BAD_LIST))
        for index in range(len(body["e"])):
            at = ("e", index)
            rules += [(at, BAD_OBJECT), ((*at, "m"), BAD_ID), ((*at, "t"), BAD_TIME),
                      ((*at, "k"), BAD_ID), ((*at, "s"), ['"exploded"', "1", "null"])]  # fmt: skip
    elif topic is Topic.COMMAND_STATUS:
        rules += [(("id",), BAD_ID), (("st",), ['"maybe"', "1", "null"]),
                  (("c",), ['"1"', "1.5", "true", str(2**31), str(-(2**31) - 1), str(2**70)]),
                  (("res",), BAD_OBJECT)]  # fmt: skip
    elif topic is Topic.HEALTH:
        rules.append((("h",), BAD_OBJECT))
    elif topic is Topic.STATE:
        rules += [(("on",), ['"yes"', "1", "null"]),
                  (("meters",), ['"x"', "[1]", "[null]", json.dumps(["m" * 65]), '["a\\u0000"]',
                                 '["\\ud800"]', "{}"]),
                  (("ver",), ["7", json.dumps("v" * 65), '"\\u0000"', "[1]"])]  # fmt: skip
    return rules


class Picker(Protocol):
    """Where a mutation's choices come from: Hypothesis (to shrink) or a seeded Random."""

    def choice(self, options: Sequence[T]) -> T: ...

    def integer(self, low: int, high: int) -> int: ...

    def blob(self, max_size: int) -> bytes: ...


class DrawPicker:
    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def blob(self, max_size: int) -> bytes:
        return self.draw(st.binary(min_size=1, max_size=max_size))


class RandomPicker:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choice(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def blob(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(1, max_size))


@st.composite
def bad_message(draw: st.DrawFn, seq: int) -> Sent:
    """A message the contract refuses, made from a valid one (its ``seq`` is ``seq``)."""
    return corrupt(draw(good_message(seq)), DrawPicker(draw))


def corrupt(good: Sent, pick: Picker) -> Sent:
    """``good`` with one thing the contract forbids (on its own topic, or on a wrong one)."""
    topic_name, payload = good.topic, good.payload
    topic = next(t for t in UPLINK if topic_name.endswith("/" + t.value))
    body: dict[str, Any] = json.loads(payload)
    kind = pick.choice(["field", "field", "field", "missing", "bytes", "truncated", "utf8",
                        "oversize", "not-object", "topic", "deep"])  # fmt: skip
    if kind == "field":
        path, values = pick.choice(_field_rules(topic, body))
        raw = pick.choice(values)
        return Sent(
            topic_name, _with(body, path, raw), False, f"{'.'.join(map(str, path))}={raw[:40]}"
        )
    if kind == "missing":
        name = pick.choice(REQUIRED[topic])
        return Sent(topic_name, _with(body, (name,), None), False, f"no {name}")
    if kind == "bytes":
        return Sent(topic_name, pick.blob(200), False, "random bytes")
    if kind == "truncated":  # a JSON object's last byte is its closing brace: no prefix is one
        cut = pick.integer(0, len(payload) - 1)
        return Sent(topic_name, payload[:cut], False, f"cut at {cut}")
    if kind == "utf8":
        return Sent(topic_name, payload.replace(b'"', b'"\xff', 1), False, "not UTF-8")
    if kind == "oversize":
        body["pad"] = "x" * (256 * 1024)
        return Sent(topic_name, json.dumps(body).encode(), False, "over 256 KiB")
    if kind == "not-object":
        raw = pick.choice(["[]", "1", '"x"', "null", "true", json.dumps([body])])
        return Sent(topic_name, raw.encode(), False, f"not an object: {raw[:20]}")
    if kind == "deep":
        path = pick.choice([("deep",), ("gw",)])
        return Sent(topic_name, _with(body, path, DEEP_OBJECT), False, "nested 5000 deep")
    wrong = pick.choice([f"amr/v1/gw/{GATEWAY}/{topic.value}z", f"amr/v2/gw/{GATEWAY}/x",
                         f"amr/v1/gw/gw bad/{topic.value}", f"amr/v1/gw/{GATEWAY}/cmd",
                         f"amr/v1/gw/{GATEWAY}/ack", f"amr/v1/gw/{OTHER_GATEWAY}/{topic.value}",
                         "amr/v1/gw//readings"])  # fmt: skip
    return Sent(wrong, payload, False, f"topic {wrong}")


@st.composite
def conversation(draw: st.DrawFn, length: int = 12) -> list[Sent]:
    """Valid and bad messages interleaved, as one gateway's topics might carry them, with
    resends and reused seqs. Valid journaled messages take seqs 0, 1, 2, ... (some skipped)."""
    sent: list[Sent] = []
    seq = draw(st.sampled_from([0, 1]))
    for _ in range(draw(st.integers(1, length))):
        choice = draw(st.sampled_from(["good", "good", "bad", "bad", "bad", "resend", "reuse"]))
        journaled = [s for s in sent if s.journaled]
        if choice == "good" or (choice in ("resend", "reuse") and not journaled):
            message = draw(good_message(seq))
            sent.append(message)
            if message.journaled:
                seq += draw(st.sampled_from([1, 1, 2]))
        elif choice == "bad":
            sent.append(draw(bad_message(seq)))
        elif choice == "resend":
            sent.append(draw(st.sampled_from(journaled)))
        else:  # other valid content under a seq already committed
            used = draw(st.sampled_from(journaled)).seq
            assert used is not None
            topic = draw(st.sampled_from([Topic.READINGS, Topic.EVENTS, Topic.COMMAND_STATUS]))
            sent.append(draw(good_message(used, topic)))
    return sent
