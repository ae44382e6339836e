"""Bad input into the gateway's downlink handlers: what arrives on its ``cmd`` and ``ack`` topics,
fed through the uplink's MQTT callback (``Uplink._on_message``, as paho delivers it), to the real
command processor and journal (SQLite), with a real DL/T 645 meter (the simulator's, on an
in-memory RS485 line) behind the gateway.

Each example is a conversation: valid signed commands (a read, which the meter answers, and a
token, which DL/T 645 cannot carry), commands the gateway must refuse (undecodable, unsigned,
forged, altered after signing, expired, for another meter, with arguments of the wrong type),
replays of a cmd_id, and acks good and bad. Whatever arrives, nothing escapes the callback and
nothing is logged as a failure; every command with an id gets exactly one final status, and
each bad one a clear refusal (rejected with the reason, or expired) before it reaches the meter;
each is counted; the journal stays intact (entries are only appended, never changed, and only
deleted by an ack that covers them), and a bad ack deletes nothing.
"""

from __future__ import annotations

import base64
import gc
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from twisted.internet import defer, task
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import IAddress, ITransport
from twisted.logger import ILogObserver, globalLogPublisher
from zope.interface import implementer

from concentrator.access import MeterAccess
from concentrator.bus import BusActor
from concentrator.commands import CommandProcessor
from concentrator.dlt645_driver import Dlt645Access
from concentrator.dlt645_link import Dlt645Line, LineProtocol
from concentrator.journal import JournalStore
from concentrator.polling import AlarmTracker, BusPoller, PollGroup, Recorder
from concentrator.uplink import Journal, Uplink
from headend.mqtt import ReactorMqtt
from protocols.link import (
    Ack,
    Command,
    CommandStatus,
    CommandType,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    sign_command,
)
from simulator.dlt645_bus import Dlt645Bus, Dlt645BusProtocol
from tests.simulator.meters import START, dlt645_meter

from .profiles import HANDLER

GATEWAY = "gw-downlink"
ADDRESS = "000000000001"
HEADEND_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
FINAL = {"applied", "rejected", "failed", "expired"}


class InlineJournal(Journal):
    """The gateway's Journal, its store called in this thread instead of its one-thread pool."""

    def _call(self, function: Any, *args: Any) -> defer.Deferred[Any]:
        return defer.execute(function, *args)


@implementer(ITransport)
class Loopback:
    """One end of an in-memory serial line: what is written arrives at the peer a turn later."""

    def __init__(self, clock: task.Clock, peer: Any) -> None:
        self.clock = clock
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.clock.callLater(0, self.peer.dataReceived, data)

    def writeSequence(self, data: Iterable[bytes]) -> None:  # noqa: N802 - Twisted's name
        self.write(b"".join(data))

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        """A serial line stays."""

    def getPeer(self) -> IAddress:  # noqa: N802 - Twisted's name
        return UNIXAddress(None)

    def getHost(self) -> IAddress:  # noqa: N802 - Twisted's name
        return UNIXAddress(None)


class Gateway:
    """The gateway's downlink side: uplink callback, command processor, journal, one meter."""

    def __init__(self, folder: Path) -> None:
        self.clock = clock = task.Clock()
        clock.advance(START)
        self.meter = meter = dlt645_meter(ADDRESS, now_s=START)
        bus = Dlt645Bus("dlt1", {meter.address: meter}, clock, clock.seconds, baud=9600,
                        turnaround_ms=20)  # fmt: skip
        line = Dlt645Line(clock, timeout_s=1.0)
        meter_side = Dlt645BusProtocol(bus)
        meter_side.transport = Loopback(clock, LineProtocol(line))
        line.connection_made(Loopback(clock, meter_side))
        self.store = JournalStore(folder / "journal.db")
        self.journal = InlineJournal(self.store, clock)
        access: MeterAccess = Dlt645Access(line, ADDRESS, ADDRESS)
        recorder = Recorder(self.journal, GATEWAY, clock, lambda: None, max_readings=1)
        poller = BusPoller(BusActor("dlt1", clock), [access], {"status": PollGroup("status", 60)},
                           recorder, AlarmTracker(), clock)  # fmt: skip

        def find_meter(meter_id: str) -> tuple[BusPoller, MeterAccess] | None:
            return (poller, access) if meter_id == ADDRESS else None

        self.commands = CommandProcessor(self.journal, GATEWAY, clock, find_meter,
                                         HEADEND_KEY.public_key(), lambda: None)  # fmt: skip
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=GATEWAY)
        self.uplink = Uplink(clock, ReactorMqtt(clock, self.client), self.journal, GATEWAY,
                             on_command=self.commands.receive, version="t", meters=lambda: ())  # fmt: skip

    def deliver(self, topic: Topic, payload: bytes) -> None:
        message = mqtt.MQTTMessage(topic=gateway_topic(GATEWAY, topic).encode())
        message.payload = payload
        self.uplink._on_message(self.client, None, message)
        for _ in range(2000):  # until the command has run its course on the bus
            if not self.clock.getDelayedCalls():
                return
            self.clock.advance(0.01)
        raise AssertionError("the gateway never went idle")

    def entries(self) -> dict[int, bytes]:
        return {e.seq: e.payload for e in self.store.thd_pending(10_000)}

    def close(self) -> None:
        self.store.thd_close()


@dataclass(frozen=True)
class Step:
    topic: Topic
    payload: bytes
    why: str
    cmd_id: str | None = None  # the id its statuses carry (None: none expected)
    final: str | None = None  # the final status expected (None: no new status at all)
    malformed: bool = False
    ack: tuple[tuple[int, int], ...] | None = None  # a valid ack's ranges


def _command(cmd_id: str, kind: CommandType, args: dict[str, Any], meter: str = ADDRESS,
             not_after: float = START + 3600) -> Command:  # fmt: skip
    return Command(cmd_id, kind, meter, not_after, 5, args)


def _payload(command: Command) -> bytes:
    return encode_message(command)[1]


def _signed(command: Command, key: Ed25519PrivateKey = HEADEND_KEY) -> bytes:
    return _payload(sign_command(command, key))


BAD_FIELDS = {
    "type": ['"self_destruct"', "7", "null"], "p": ["42", "-1", '"5"', "true", str(2**70)],
    "na": ['"soon"', "-1", "1e11", "NaN", "1e400", "1" + "0" * 400], "m": ["7", "[]"],
    "a": ["[]", '"x"', "7"], "sig": ["5", "[]"], "v": ["2", '"1"', "null"],
}  # fmt: skip


@st.composite
def command_step(draw: st.DrawFn, number: int) -> Step:
    cmd_id = f"cmd-{number}"
    read = _command(cmd_id, CommandType.READ, {"groups": ["status"]})
    kind = draw(st.sampled_from(["read", "read", "token", "unsigned", "forged", "tampered",
                                 "expired", "meter", "args", "field", "no-id", "bytes"]))  # fmt: skip
    if kind == "read":
        return Step(Topic.COMMAND, _signed(read), kind, cmd_id, "applied")
    if kind == "token":  # valid, but DL/T 645 cannot carry an STS token: refused by the meter side
        token = _command(cmd_id, CommandType.TOKEN, {"tokens": ["1234 5678 9012 3456 7890"]})
        return Step(Topic.COMMAND, _payload(token), kind, cmd_id, "rejected")
    if kind == "unsigned":
        return Step(Topic.COMMAND, _payload(read), kind, cmd_id, "rejected")
    if kind == "forged":
        return Step(Topic.COMMAND, _signed(read, OTHER_KEY), kind, cmd_id, "rejected")
    if kind == "tampered":  # signed, then a field changed on the way
        signed = sign_command(read, HEADEND_KEY)
        change = draw(st.sampled_from(["args", "meter", "type", "signature"]))
        if change == "args":
            signed = replace(signed, args={"groups": ["energy"]})
        elif change == "meter":
            signed = replace(signed, meter="000000000002")
        elif change == "type":
            signed = replace(signed, type=CommandType.REDISCOVER)
        else:
            flipped = bytearray(base64.b64decode(signed.signature or ""))
            flipped[draw(st.integers(0, len(flipped) - 1))] ^= 1 << draw(st.integers(0, 7))
            signed = replace(signed, signature=base64.b64encode(bytes(flipped)).decode())
        return Step(Topic.COMMAND, _payload(signed), f"tampered {change}", cmd_id, "rejected")
    if kind == "expired":
        old = replace(read, not_after=START - draw(st.sampled_from([1, 3600, START - 1])))
        return Step(Topic.COMMAND, _signed(old), kind, cmd_id, "expired")
    if kind == "meter":
        other = replace(read, meter=draw(st.sampled_from(["000000000002", "", "x" * 64])))
        return Step(Topic.COMMAND, _signed(other), kind, cmd_id, "rejected")
    if kind == "args":  # signed by the head-end, but arguments the command cannot take
        bad_args: list[tuple[CommandType, dict[str, Any]]] = [
            (CommandType.READ, {"groups": 5}), (CommandType.READ, {"groups": True}),
            (CommandType.RELAY, {"action": "explode"}), (CommandType.RELAY, {"action": None}),
            (CommandType.RELAY, {"action": "disconnect", "dlt645_payload_hex": "zz"}),
            (CommandType.TOKEN, {"tokens": "12345678901234567890"}),
            (CommandType.TOKEN, {"tokens": ["123"]}), (CommandType.TOKEN, {"tokens": [5]}),
            (CommandType.MAX_POWER, {"watts": -1}), (CommandType.MAX_POWER, {"watts": "lots"}),
            (CommandType.TOU, {"version": "3"}), (CommandType.TOU, {"version": 3, "weekday": 5}),
        ]  # fmt: skip
        kind_args = draw(st.sampled_from(bad_args))
        bad = _command(cmd_id, kind_args[0], kind_args[1])
        return Step(Topic.COMMAND, _signed(bad), f"args {kind_args}", cmd_id, "rejected")
    body: dict[str, Any] = json.loads(_signed(read))
    if kind == "field":  # undecodable, but its id is readable: rejected with the reason
        name = draw(st.sampled_from(sorted(BAD_FIELDS)))
        raw = draw(st.sampled_from(BAD_FIELDS[name]))
        body[name] = "\u2603"
        payload = json.dumps(body).replace('"\\u2603"', raw).encode()
        return Step(Topic.COMMAND, payload, f"{name}={raw[:20]}", cmd_id, "rejected",
                    malformed=True)  # fmt: skip
    if kind == "no-id":  # undecodable and no id to answer to: counted, nothing published
        raw = draw(st.sampled_from(["7", "null", json.dumps("c" * 65), '"a\\u0000"', '"\\ud800"',
                                    '{"a":' * 5000 + "1" + "}" * 5000]))  # fmt: skip
        body["id"] = "\u2603"
        payload = json.dumps(body).replace('"\\u2603"', raw).encode()
        return Step(Topic.COMMAND, payload, f"id={raw[:20]}", malformed=True)
    garbage = draw(st.one_of(st.binary(max_size=120), st.sampled_from(
        [b"", b"[]", b"{}", b"null", b"\xff\xfe", b"[" * 5000 + b"]" * 5000])))  # fmt: skip
    return Step(Topic.COMMAND, garbage, f"bytes {garbage[:20]!r}", malformed=True)


@st.composite
def ack_step(draw: st.DrawFn, held: list[int]) -> Step:
    valid: bool = draw(st.booleans())
    if held and valid:
        first = draw(st.sampled_from(held))
        last = draw(st.sampled_from([s for s in held if s >= first]))
        return Step(
            Topic.ACK, encode_message(Ack(((first, last),)))[1], "ack", ack=((first, last),)
        )
    raw = draw(st.sampled_from([
        b"", b"{}", b"garbage", b'{"v":1,"ranges":[[5,3]]}', b'{"v":1,"ranges":[[-1,2]]}',
        b'{"v":1,"ranges":[[0,%d]]}' % 2**70, b'{"v":1,"ranges":[[1.5,2]]}',
        b'{"v":1,"ranges":[[true,2]]}', b'{"v":1,"ranges":"1-9"}', b'{"v":2,"ranges":[[1,9]]}',
        b'{"v":1,"ranges":[[1,2,3]]}', b'{"v":1,"ranges":[[1,9]],"t":"now"}',
        b'{"v":1,"ranges":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ]))  # fmt: skip
    return Step(Topic.ACK, raw, f"bad ack {raw[:30]!r}", malformed=True)


@implementer(ILogObserver)
class FailureLog(list[dict[str, Any]]):
    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.append(event)


@pytest.fixture
def failures() -> Iterator[FailureLog]:
    logged = FailureLog()
    globalLogPublisher.addObserver(logged)
    try:
        yield logged
    finally:
        globalLogPublisher.removeObserver(logged)


def _statuses(payloads: dict[int, bytes]) -> dict[str, list[CommandStatus]]:
    found: dict[str, list[CommandStatus]] = {}
    for seq in sorted(payloads):
        message = decode_message(Topic.COMMAND_STATUS, payloads[seq])
        if isinstance(message, CommandStatus):
            found.setdefault(message.cmd_id, []).append(message)
    return found


def run_conversation(folder: Path, data: st.DataObject, figures: Counter[str],
                     failures: FailureLog) -> None:  # fmt: skip
    gateway = Gateway(folder)
    try:
        ever: dict[int, bytes] = {}  # every journal entry seen, by seq
        acked: set[int] = set()
        expected: dict[str, str | None] = {}
        steps: list[Step] = []
        before = (gateway.meter.meter.relay, gateway.meter.meter.relay_command,
                  gateway.meter.meter.token_count)  # fmt: skip
        for number in range(data.draw(st.integers(1, 10), label="steps")):
            kind = data.draw(st.sampled_from(["command", "command", "command", "replay", "ack"]))
            if kind == "ack":
                step = data.draw(ack_step(sorted(set(ever) - acked)))
            elif kind == "replay" and any(s.cmd_id for s in steps):
                earlier = data.draw(st.sampled_from([s for s in steps if s.cmd_id]))
                step = replace(earlier, why=f"replay of {earlier.cmd_id}", final=None)
            else:
                step = data.draw(command_step(number))
                expected[step.cmd_id or f"none-{number}"] = step.final
            steps.append(step)
            gateway.deliver(step.topic, step.payload)
            now = gateway.entries()
            for seq, payload in now.items():  # appended, never changed
                assert ever.setdefault(seq, payload) == payload, (
                    f"entry {seq} changed by {step.why}"
                )
            if step.ack is not None:
                acked |= {s for s in ever if any(a <= s <= b for a, b in step.ack)}
            assert set(now) == set(ever) - acked, f"the journal lost entries at {step.why}"
        meter = gateway.meter.meter  # no command changed the meter: reads and refusals only
        assert (meter.relay, meter.relay_command, meter.token_count) == before
        assert not failures, [e.get("log_format") for e in failures]
        statuses = _statuses({s: p for s, p in ever.items()
                              if p.startswith(b'{"v":1') and b'"st":' in p})  # fmt: skip
        for cmd_id, final in expected.items():
            states = [s.state.value for s in statuses.get(cmd_id, [])]
            finals = [s for s in states if s in FINAL]
            if final is None:
                assert states == [], f"{cmd_id}: no status expected, got {states}"
                continue
            assert finals == [final], f"{cmd_id}: {states}, expected one final {final}"
            last = statuses[cmd_id][-1]
            if final != "applied":
                assert last.detail, f"{cmd_id}: refused without a reason"
        commands, uplink = gateway.commands, gateway.uplink
        assert commands.malformed == sum(s.malformed for s in steps if s.topic is Topic.COMMAND)
        assert uplink.bad_messages == sum(s.malformed for s in steps if s.topic is Topic.ACK)
        reads = [s for s in steps if s.final == "applied"]
        batches = [decode_message(Topic.READINGS, p) for p in ever.values() if b'"r":' in p]
        assert len(batches) == len(reads), "each applied read records one reading, no other"
        assert all(isinstance(b, ReadingBatch) and b.readings[0].meter == ADDRESS for b in batches)
        figures.update(examples=1, steps=len(steps),
                       refused=sum(1 for s in steps if s.final in ("rejected", "expired")),
                       malformed=sum(s.malformed for s in steps),
                       replays=sum(1 for s in steps if s.why.startswith("replay")))  # fmt: skip
    finally:
        gateway.close()


@pytest.mark.reliability("bad input", "gateway cmd and ack handlers: bad commands get a clear "
                         "refusal and never reach the meter, bad acks delete nothing, the journal "
                         "stays intact")  # fmt: skip
def test_gateway_survives_bad_commands_and_acks(
    tmp_path: Path, failures: FailureLog, reliability: dict[str, object]
) -> None:
    figures: Counter[str] = Counter()
    runs = iter(range(10**9))

    @HANDLER
    @given(data=st.data())
    def conversations(data: st.DataObject) -> None:
        folder = tmp_path / str(next(runs))
        folder.mkdir()
        run_conversation(folder, data, figures, failures)

    conversations()
    gc.collect()  # an unhandled error in a Deferred is logged when the Deferred is collected
    assert not failures, [e.get("log_format") for e in failures]
    reliability.update(figures)
