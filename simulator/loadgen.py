"""A load generator: thousands of virtual gateways in one process, each its own MQTT client.

Theory of operation::

    start: each gateway connects as its own client (id gw-{gateway_id}, user name = gateway id, as
        the broker's ACL wants; MQTT v5, clean_start=False, a session expiry, a retained last will
        saying offline), at most connect_concurrency connects at a time; on every connect it
        subscribes to its cmd and ack, publishes its retained state (online, its meters) and sends
        again everything not yet acknowledged
    poll (every interval_s per gateway, phases spread evenly over the interval) --> one batch due:
        the full read of every meter (simulator.workload, the values of benchmarks/headend_ingest),
        built with its own seq when the window has room, published QoS 1, kept until acked;
        rebuild_every N > 1: the values are built afresh every N polls, in between only the times
        and the seq change (BatchTemplate: the bytes encode_message would give, a tenth the cost)
    interval_s == 0 --> saturate: a new batch whenever the window has room (as fast as the
        head-end acknowledges)
    ack [first, last] --> those messages forgotten, the window refilled
    no ack for ack_timeout_s while messages wait --> reconnect (which sends them all again);
    a message unacknowledged for ack_timeout_s while acks for others come --> send them all again
        (same seq, same bytes), as concentrator/uplink.py does
    token command --> status received at once, applied (code 1, Accept) apply_delay_s later, each
        with its own seq, kept and resent like readings; any other command is rejected
    duration over --> no more polls; wait until everything is acknowledged (drain_timeout_s),
        then say offline and disconnect

``window`` counts reading batches only: command statuses are never held behind readings (the real
uplink sends them first, and its window of 500 messages is never full in practice), so a token's
latency is the head-end's, not the load generator's.

Each gateway is a paho client driven by the reactor through :class:`headend.mqtt.ReactorMqtt`
(one socket each, no thread each); one process drives thousands of them. The heavy part is building
the payloads: :class:`simulator.workload.FullRead` with ``exact=False`` (the same bytes as the
Decimal values a concentrator sends) and :func:`protocols.link.encode_message`.
"""

from __future__ import annotations

import collections
import heapq
import random
import re
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from twisted.internet import defer, task
from twisted.logger import Logger

from protocols.link import (
    Ack,
    Command,
    CommandState,
    CommandStatus,
    CommandType,
    GatewayState,
    LinkError,
    Reading,
    ReadingBatch,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
)
from protocols.sts.keys import luhn_check_digit

from .workload import FullRead

__all__ = [
    "BatchTemplate",
    "LoadConfig",
    "LoadGenerator",
    "LoadStats",
    "MqttLink",
    "VirtualGateway",
    "drn",
    "gateway_ids",
    "meter_ids",
]

log = Logger()

VERSION = "loadgen"
REJECT_DETAIL = "the load generator answers token commands for its own meters only"


class MqttLink(Protocol):
    """What a virtual gateway needs of its MQTT client: :class:`headend.mqtt.ReactorMqtt`, or a
    fake in the tests."""

    on_connect: Callable[..., Any] | None
    on_disconnect: Callable[..., Any] | None
    on_message: Callable[..., Any] | None

    @property
    def connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Any: ...

    def force_reconnect(self) -> None: ...

    def start(self, host: str, port: int, keepalive: int = 30, **connect: Any) -> Any: ...

    def stop(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    gateways: int = 100
    meters_per_gateway: int = 100
    interval_s: float = 900.0  # 0: saturate (a new batch whenever the window has room)
    duration_s: float = 60.0
    window: int = 10  # reading batches in flight per gateway
    ack_timeout_s: float = 120.0
    apply_delay_s: float = 0.1  # a token's write and read-back on the meter
    prefix: str = "lg"
    first_serial: int = 4_800_000_000  # DRN serials: first_serial + gateway * meters + meter
    seq_start: int = 1
    keepalive_s: int = 60
    session_expiry_s: int = 3600
    connect_concurrency: int = 100
    connect_timeout_s: float = 120.0
    drain_timeout_s: float = 120.0
    start_delay_s: float = 0.0  # connected and announced, before the first poll
    reading_spacing_s: float = 0.01  # between the readings of one poll cycle
    rebuild_every: int = 1  # values built afresh every N polls; in between only times and seq
    report_interval_s: float = 1.0
    seed: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.gateways < 1:
            problems.append("gateways must be >= 1")
        if not 1 <= self.meters_per_gateway <= 1000:
            problems.append("meters per gateway must be 1..1000")
        if min(self.interval_s, self.duration_s, self.start_delay_s) < 0:
            problems.append("interval, duration and start delay must be >= 0")
        if self.window < 1:
            problems.append("window must be >= 1")
        if self.ack_timeout_s <= 0:
            problems.append("ack timeout must be > 0")
        if self.seq_start < 1:
            problems.append("seq start must be >= 1")
        if self.rebuild_every < 1:
            problems.append("rebuild every must be >= 1")
        if (
            self.first_serial < 0
            or self.first_serial + self.gateways * self.meters_per_gateway > 10**10
        ):
            problems.append("meter serials must stay within 10 digits")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def readings_per_s(self) -> float:
        """The offered load (0 in saturate mode: whatever the head-end takes)."""
        if self.interval_s == 0:
            return 0.0
        return self.gateways * self.meters_per_gateway / self.interval_s


def drn(serial: int) -> str:
    """An 11-digit STS decoder reference number: 10 digits and the Luhn check digit."""
    body = f"{serial:010d}"
    return body + str(luhn_check_digit(body))


def gateway_ids(config: LoadConfig) -> list[str]:
    width = max(4, len(str(config.gateways - 1)))
    return [f"{config.prefix}-{g:0{width}d}" for g in range(config.gateways)]


def meter_ids(config: LoadConfig, gateway: int) -> tuple[str, ...]:
    first = config.first_serial + gateway * config.meters_per_gateway
    return tuple(drn(first + m) for m in range(config.meters_per_gateway))


@dataclass
class LoadStats:
    """Counters of the whole fleet (messages are reading batches unless said otherwise)."""

    batches: int = 0  # batches built and published (first sends)
    readings: int = 0  # readings in them
    payload_bytes: int = 0
    statuses: int = 0
    resent: int = 0  # messages sent again, same seq, same bytes
    acked_batches: int = 0
    acked_readings: int = 0
    acked_statuses: int = 0
    forced_reconnects: int = 0
    publish_refusals: int = 0
    bad_messages: int = 0
    commands: int = 0
    repeated_commands: int = 0
    tokens_applied: int = 0
    commands_rejected: int = 0
    ack_latencies_s: list[float] = field(default_factory=list)  # first send -> ack, batches

    def snapshot(self) -> dict[str, int]:
        return {name: value for name, value in vars(self).items() if isinstance(value, int)}


@dataclass(slots=True)
class Outgoing:
    """A message published and not yet acknowledged (the journal entry of a real gateway)."""

    seq: int
    topic: str
    payload: bytes
    readings: int  # 0: a command status
    first_sent_s: float | None = None
    sent_s: float | None = None


class BatchTemplate:
    """A gateway's ReadingBatch encoded once by :func:`protocols.link.encode_message`, with markers
    where the seq, the batch's time, each reading's time and each meter's clock go; :meth:`fill`
    gives the bytes ``encode_message`` gives for the same batch at another seq and time, without
    encoding the 25 values of every reading again (a tenth of the cost; the load generator's
    ``rebuild_every``). A meter's clock keeps its offset from the poll's time."""

    SEQ = 8_888_888_888_888_888  # below 2**63; no real seq, time or clock looks like these
    TIME = 3.3333333333333333e-300
    READ_TIME = 1.1111111111111111e-300
    METER_TIME = 2.2222222222222222e-300
    CLOCK = -7_777_777_777_777_777
    _MARKS: ClassVar[dict[bytes, str]] = {repr(SEQ).encode(): "seq", repr(TIME).encode(): "time",
              repr(READ_TIME).encode(): "t", repr(METER_TIME).encode(): "mt",
              repr(CLOCK).encode(): "clock"}  # fmt: skip
    _SPLIT = re.compile(b"(" + b"|".join(re.escape(m) for m in _MARKS) + b")")

    def __init__(self, gateway: str, readings: Sequence[Reading], at: float) -> None:
        marked = []
        self.clock_offsets: list[int] = []  # whole seconds the meter's clock is behind ``at``
        for reading in readings:
            clock = reading.values.get("meter_clock")
            if not isinstance(clock, int):
                raise ValueError("a templated reading carries its meter_clock as an int")
            self.clock_offsets.append(int(at) - clock)
            values = {**reading.values, "meter_clock": self.CLOCK}
            marked.append(Reading(reading.meter, self.READ_TIME, values, self.METER_TIME))
        _, payload = encode_message(ReadingBatch(gateway, self.SEQ, self.TIME, tuple(marked)))
        pieces = self._SPLIT.split(payload)
        self.parts = pieces[0::2]
        kinds = [self._MARKS[m] for m in pieces[1::2]]
        if kinds != ["seq", "time", *(["t", "mt", "clock"] * len(marked))]:
            raise ValueError("a reading's values contain a template marker")
        self.count = len(marked)

    def fill(self, seq: int, time: float, at: float, spacing: float) -> bytes:
        """The batch at ``seq`` built at ``time``, its readings spaced ``spacing`` apart and ending
        ``spacing`` before ``at`` (as :meth:`VirtualGateway._build` times them)."""
        values: list[bytes] = [str(seq).encode(), repr(time).encode()]
        whole = int(at)
        count = self.count
        for index, offset in enumerate(self.clock_offsets):
            clock = whole - offset
            values += (repr(at - (count - index) * spacing).encode(), repr(float(clock)).encode(),
                       str(clock).encode())  # fmt: skip
        out: list[bytes] = [b""] * (len(self.parts) + len(values))
        out[0::2] = self.parts
        out[1::2] = values
        return b"".join(out)


class VirtualGateway:
    """One gateway: its seq, its window of unacknowledged messages, its polls and its commands."""

    def __init__(self, clock: Any, link: MqttLink, gateway_id: str, meters: Sequence[str],
                 first_meter_index: int, full_read: FullRead, rng: random.Random,
                 stats: LoadStats, *, window: int = 10, ack_timeout_s: float = 120.0,
                 apply_delay_s: float = 0.1, seq_start: int = 1,
                 reading_spacing_s: float = 0.01, rebuild_every: int = 1) -> None:  # fmt: skip
        self.clock = clock
        self.link = link
        self.gateway_id = gateway_id
        self.meters = tuple(meters)
        self._meter_set = frozenset(self.meters)
        self.first_meter_index = first_meter_index
        self.full_read = full_read
        self.rng = rng
        self.stats = stats
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self.apply_delay_s = apply_delay_s
        self.reading_spacing_s = reading_spacing_s
        self.rebuild_every = rebuild_every
        self._template: BatchTemplate | None = None
        self.next_seq = seq_start
        self.step = 0
        self.due: collections.deque[float] = collections.deque()  # polls done, batches not built
        self.saturate = False
        self.unacked: dict[int, Outgoing] = {}  # by seq, in seq order
        self.in_flight_batches = 0
        self.seqs_published: list[tuple[int, int]] = []  # (seq, readings) of every batch
        self._last_cycle_end = 0.0
        self._last_ack_s = clock.seconds()
        self._seen_commands: set[str] = set()
        self._pending_calls: list[Any] = []
        self.topics = {t: gateway_topic(gateway_id, t) for t in Topic}
        self.session = False  # connected, subscribed and announced: publishing may go on
        self.first_connect: defer.Deferred[None] = defer.Deferred()
        link.on_connect = self._on_connect
        link.on_disconnect = self._on_disconnect
        link.on_message = self._on_message

    # -- what the broker should know ------------------------------------------------------------

    def state_payload(self, online: bool) -> bytes:
        now = self.clock.seconds() if online else 0.0
        meters = tuple(sorted(self.meters)) if online else ()
        return encode_message(GatewayState(self.gateway_id, now, online, VERSION, meters))[1]

    @property
    def idle(self) -> bool:
        return not self.unacked and not self._pending_calls

    # -- polls and batches ----------------------------------------------------------------------

    def poll(self, at: float) -> None:
        """A poll cycle of every meter ended at ``at``: one batch is due."""
        self.due.append(at)
        self.pump()

    def pump(self) -> None:
        """Build and publish batches while the window has room."""
        while self.session and self.link.connected and self.in_flight_batches < self.window:
            if self.due:
                at = self.due.popleft()
            elif self.saturate:
                at = self.clock.seconds()
            else:
                return
            if not self._send(self._build(at)):
                return

    def _build(self, at: float) -> Outgoing:
        self.step += 1
        count = len(self.meters)
        spacing = self.reading_spacing_s
        # the cycle's readings end at ``at``; a meter's readings never share a time (its key)
        end = max(at, self._last_cycle_end + count * spacing)
        self._last_cycle_end = end
        seq = self._take_seq()
        now = max(self.clock.seconds(), end)
        if self.rebuild_every > 1:
            if self._template is None or self.step % self.rebuild_every == 1:
                self._template = BatchTemplate(self.gateway_id, self._readings(end), end)
            payload = self._template.fill(seq, now, end, spacing)
        else:
            batch = ReadingBatch(self.gateway_id, seq, now, tuple(self._readings(end)))
            _, payload = encode_message(batch)
        self.stats.batches += 1
        self.stats.readings += count
        self.stats.payload_bytes += len(payload)
        self.seqs_published.append((seq, count))
        return Outgoing(seq, self.topics[Topic.READINGS], payload, count)

    def _readings(self, end: float) -> list[Reading]:
        """The full read of every meter in the poll cycle ending at ``end``."""
        count = len(self.meters)
        spacing = self.reading_spacing_s
        readings = []
        make = self.full_read.values
        for offset, meter in enumerate(self.meters):
            values = make(self.first_meter_index + offset, self.step, self.rng, end)
            meter_clock = values["meter_clock"]
            assert isinstance(meter_clock, int)
            readings.append(Reading(meter, end - (count - offset) * spacing, values,
                                    float(meter_clock)))  # fmt: skip
        return readings

    def _take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def _send(self, out: Outgoing) -> bool:
        """Keep ``out`` until acknowledged and publish it if connected (else on connect)."""
        if not self.unacked:
            self._last_ack_s = self.clock.seconds()  # the wait for an ack starts now
        self.unacked[out.seq] = out
        if out.readings:
            self.in_flight_batches += 1
        return self._publish(out)

    def _publish(self, out: Outgoing) -> bool:
        if not (self.session and self.link.connected):
            return False
        info = self.link.publish(out.topic, out.payload, qos=1)
        if getattr(info, "rc", 0) != 0:
            self.stats.publish_refusals += 1
            return False
        now = self.clock.seconds()
        if out.first_sent_s is None:
            out.first_sent_s = now
        out.sent_s = now
        return True

    def _resend_all(self) -> None:
        for out in list(self.unacked.values()):
            if out.sent_s is not None:
                self.stats.resent += 1
            if not self._publish(out):
                return

    # -- commands -------------------------------------------------------------------------------

    def _on_command(self, payload: bytes) -> None:
        try:
            command = decode_message(Topic.COMMAND, payload)
        except LinkError as exc:
            self.stats.bad_messages += 1
            log.warn("{gateway}: malformed command: {error}", gateway=self.gateway_id,
                     error=str(exc))  # fmt: skip
            return
        assert isinstance(command, Command)
        if command.cmd_id in self._seen_commands:
            self.stats.repeated_commands += 1  # the same command again: it is under way
            return
        self._seen_commands.add(command.cmd_id)
        self.stats.commands += 1
        if command.type is not CommandType.TOKEN or command.meter not in self._meter_set:
            self.stats.commands_rejected += 1
            self._status(command.cmd_id, CommandState.REJECTED, detail=REJECT_DETAIL)
            return
        self._status(command.cmd_id, CommandState.RECEIVED, detail="received")
        call = self.clock.callLater(self.apply_delay_s, self._apply, command)
        self._pending_calls.append(call)

    def _apply(self, command: Command) -> None:
        self._pending_calls = [c for c in self._pending_calls if c.active()]
        tokens = command.args.get("tokens")
        count = len(tokens) if isinstance(tokens, list) else 0
        self.stats.tokens_applied += 1
        self._status(command.cmd_id, CommandState.APPLIED, code=1, detail="Accept",
                     result={"token_count": count})  # fmt: skip

    def _status(self, cmd_id: str, state: CommandState, code: int | None = None,
                detail: str = "", result: dict[str, Any] | None = None) -> None:  # fmt: skip
        status = CommandStatus(self.gateway_id, self._take_seq(), self.clock.seconds(), cmd_id,
                               state, code, detail, result or {})  # fmt: skip
        _, payload = encode_message(status)
        self.stats.statuses += 1
        self._send(Outgoing(status.seq, self.topics[Topic.COMMAND_STATUS], payload, 0))

    # -- MQTT events ----------------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:  # fmt: skip
        if getattr(reason, "is_failure", False):
            log.warn("{gateway}: the broker refused the connection: {reason}",
                     gateway=self.gateway_id, reason=str(reason))  # fmt: skip
            return
        client.subscribe([(self.topics[Topic.COMMAND], 1), (self.topics[Topic.ACK], 1)])
        self.link.publish(self.topics[Topic.STATE], self.state_payload(True), qos=1, retain=True)
        self.session = True
        self._last_ack_s = self.clock.seconds()
        self._resend_all()
        self.pump()
        if not self.first_connect.called:
            self.first_connect.callback(None)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:  # fmt: skip
        self.session = False

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic, payload = message.topic, bytes(message.payload)
        if topic == self.topics[Topic.ACK]:
            self._on_ack(payload)
        elif topic == self.topics[Topic.COMMAND]:
            self._on_command(payload)

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = decode_message(Topic.ACK, payload)
        except LinkError as exc:
            self.stats.bad_messages += 1
            log.warn("{gateway}: malformed ack: {error}", gateway=self.gateway_id, error=str(exc))
            return
        assert isinstance(ack, Ack)
        now = self.clock.seconds()
        self._last_ack_s = now
        stats = self.stats
        for seq in [s for s in self.unacked if ack.covers(s)]:
            out = self.unacked.pop(seq)
            if out.readings:
                self.in_flight_batches -= 1
                stats.acked_batches += 1
                stats.acked_readings += out.readings
                if out.first_sent_s is not None:
                    stats.ack_latencies_s.append(now - out.first_sent_s)
            else:
                stats.acked_statuses += 1
        self.pump()

    def check_acks(self, now: float) -> None:
        """The uplink's watchdog: reconnect after ack_timeout_s of silence while messages wait;
        send everything again when one message waited that long while others were acked."""
        if not self.unacked or not self.link.connected:
            return
        if now - self._last_ack_s > self.ack_timeout_s:
            self._last_ack_s = now
            self.stats.forced_reconnects += 1
            self.link.force_reconnect()  # the reconnect sends everything again
            return
        timeout = self.ack_timeout_s
        if any(o.sent_s is not None and now - o.sent_s > timeout for o in self.unacked.values()):
            self._resend_all()

    def stop(self) -> None:
        for call in self._pending_calls:
            if call.active():
                call.cancel()
        self._pending_calls = []


@dataclass
class LoadReport:
    config: LoadConfig
    connected: int
    connect_s: float
    run_s: float
    drain_s: float
    drained: bool
    stats: LoadStats
    cpu_s: float  # this process, user + system, from the start of the run to the drain's end
    max_rss_kb: int
    unacked_left: int
    due_left: int
    progress: list[dict[str, Any]]
    per_gateway: dict[str, list[tuple[int, int]]]  # gateway -> (seq, readings) of each batch

    def as_dict(self, with_batches: bool = False) -> dict[str, Any]:
        latencies = sorted(self.stats.ack_latencies_s)

        def pct(p: float) -> float:
            if not latencies:
                return 0.0
            return latencies[min(len(latencies) - 1, max(0, round(p / 100 * len(latencies)) - 1))]

        c = self.config
        out: dict[str, Any] = {
            "type": "summary",
            "broker": f"{c.host}:{c.port}",
            "gateways": c.gateways,
            "meters_per_gateway": c.meters_per_gateway,
            "meters": c.gateways * c.meters_per_gateway,
            "interval_s": c.interval_s,
            "offered_readings_per_s": c.readings_per_s,
            "duration_s": c.duration_s,
            "window": c.window,
            "ack_timeout_s": c.ack_timeout_s,
            "connected": self.connected,
            "connect_s": self.connect_s,
            "run_s": self.run_s,
            "drain_s": self.drain_s,
            "drained": self.drained,
            "unacked_left": self.unacked_left,
            "due_left": self.due_left,
            "published_readings_per_s": self.stats.readings / self.run_s if self.run_s else 0.0,
            "acked_readings_per_s": self.stats.acked_readings / (self.run_s + self.drain_s)
            if self.run_s + self.drain_s
            else 0.0,
            "ack_latency_ms": {
                "p50": pct(50) * 1000,
                "p99": pct(99) * 1000,
                "max": (latencies[-1] if latencies else 0.0) * 1000,
            },
            "cpu_s": self.cpu_s,
            "cpu_us_per_reading": self.cpu_s / self.stats.readings * 1e6
            if self.stats.readings
            else 0.0,
            "max_rss_kb": self.max_rss_kb,
            **self.stats.snapshot(),
        }
        if with_batches:
            out["batches_by_gateway"] = self.per_gateway
        return out


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


LinkFactory = Callable[[str, tuple[str, bytes]], Any]


class LoadGenerator:
    """The fleet: connects every gateway, paces their polls, watches their acks, reports."""

    def __init__(self, reactor: Any, config: LoadConfig,
                 make_link: LinkFactory | None = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:  # fmt: skip
        self.reactor = reactor
        self.config = config
        self.make_link = make_link or self._paho_link
        self.on_progress = on_progress
        self.stats = LoadStats()
        self.rng = random.Random(config.seed)
        self.full_read = FullRead(exact=False)
        self.links: list[Any] = []
        self.gateways: list[VirtualGateway] = []
        self.progress: list[dict[str, Any]] = []
        self._started_s = 0.0
        self._polls: list[tuple[float, int]] = []
        self._producing = False
        for index, gateway_id in enumerate(gateway_ids(config)):
            meters = meter_ids(config, index)
            gateway_state = encode_message(GatewayState(gateway_id, 0.0, False, VERSION))[1]
            link = self.make_link(gateway_id, (gateway_topic(gateway_id, Topic.STATE),
                                               gateway_state))  # fmt: skip
            gateway = VirtualGateway(
                reactor, link, gateway_id, meters, index * config.meters_per_gateway,
                self.full_read, self.rng, self.stats, window=config.window,
                ack_timeout_s=config.ack_timeout_s, apply_delay_s=config.apply_delay_s,
                seq_start=config.seq_start, reading_spacing_s=config.reading_spacing_s,
                rebuild_every=config.rebuild_every,
            )  # fmt: skip
            self.links.append(link)
            self.gateways.append(gateway)
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor
        self._watchdog = task.LoopingCall(self._check_acks)
        self._watchdog.clock = reactor
        self._reporter = task.LoopingCall(self._report)
        self._reporter.clock = reactor

    def _paho_link(self, gateway_id: str, will: tuple[str, bytes]) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from headend.mqtt import ReactorMqtt

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{gateway_id}",
                             protocol=mqtt.MQTTv5)  # fmt: skip
        client.username_pw_set(gateway_id)  # the ACL's %u: each gateway only its own topics
        client.max_inflight_messages_set(self.config.window + 20)
        client.will_set(will[0], will[1], qos=1, retain=True)
        return ReactorMqtt(self.reactor, client, min_backoff_s=0.5, max_backoff_s=30.0)

    # -- connecting -----------------------------------------------------------------------------

    async def connect(self) -> int:
        """Connect every gateway, connect_concurrency at a time; the number connected."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        config = self.config
        limit = defer.DeferredSemaphore(config.connect_concurrency)
        waits: list[defer.Deferred[Any]] = []

        def start(gateway: VirtualGateway) -> defer.Deferred[None]:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = config.session_expiry_s
            gateway.link.start(config.host, config.port, config.keepalive_s, clean_start=False,
                               properties=properties)  # fmt: skip
            return gateway.first_connect  # subscribed and announced

        for gateway in self.gateways:
            waits.append(limit.run(start, gateway))
        done = defer.DeferredList(waits, consumeErrors=True)
        done.addTimeout(config.connect_timeout_s, self.reactor)
        try:
            await done
        except defer.TimeoutError:
            log.warn("Not every gateway connected within {timeout_s}s",
                     timeout_s=config.connect_timeout_s)  # fmt: skip
        return sum(1 for gateway in self.gateways if gateway.session)

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> LoadReport:
        config = self.config
        began = self.reactor.seconds()
        connected = await self.connect()
        connect_s = self.reactor.seconds() - began
        if config.start_delay_s > 0:  # let the head-end register the meters first
            await task.deferLater(self.reactor, config.start_delay_s, lambda: None)
        cpu0 = _cpu_s()
        self._started_s = self.reactor.seconds()
        self._producing = True
        if config.interval_s == 0:
            for gateway in self.gateways:
                gateway.saturate = True
                gateway.pump()
        else:
            count = len(self.gateways)
            self._polls = [(self._started_s + config.interval_s * (g + 1) / count, g)
                           for g in range(count)]  # fmt: skip
            heapq.heapify(self._polls)
            self._ticker.start(min(0.05, config.interval_s / 4), now=False)
        self._watchdog.start(max(0.25, min(1.0, config.ack_timeout_s / 4)), now=False)
        self._reporter.start(config.report_interval_s, now=False)
        await task.deferLater(self.reactor, config.duration_s, lambda: None)
        self._stop_producing()
        run_s = self.reactor.seconds() - self._started_s
        drain_began = self.reactor.seconds()
        drained = await self._drain(config.drain_timeout_s)
        drain_s = self.reactor.seconds() - drain_began
        cpu_s = _cpu_s() - cpu0
        self._report()
        for loop in (self._watchdog, self._reporter):
            if loop.running:
                loop.stop()
        report = LoadReport(
            config, connected, connect_s, run_s, drain_s, drained, self.stats, cpu_s,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            sum(len(g.unacked) for g in self.gateways), sum(len(g.due) for g in self.gateways),
            self.progress, {g.gateway_id: list(g.seqs_published) for g in self.gateways},
        )  # fmt: skip
        await self.stop()
        return report

    def _stop_producing(self) -> None:
        self._producing = False
        if self._ticker.running:
            self._ticker.stop()
        for gateway in self.gateways:
            gateway.saturate = False

    async def _drain(self, timeout_s: float) -> bool:
        """Wait until every message is acknowledged (polls already due are still published)."""
        deadline = self.reactor.seconds() + timeout_s
        while self.reactor.seconds() < deadline:
            if all(g.idle and not g.due for g in self.gateways):
                return True
            await task.deferLater(self.reactor, 0.1, lambda: None)
        return False

    async def stop(self) -> None:
        """Say offline (a clean DISCONNECT discards the last will) and disconnect everyone."""
        self._stop_producing()
        for gateway in self.gateways:
            gateway.stop()
            if gateway.link.connected:
                gateway.link.publish(gateway.topics[Topic.STATE], gateway.state_payload(False),
                                     qos=1, retain=True)  # fmt: skip
        closing = [defer.maybeDeferred(link.stop) for link in self.links]
        done = defer.DeferredList(closing, consumeErrors=True)
        done.addTimeout(30, self.reactor)
        try:
            await done
        except defer.TimeoutError:
            log.warn("Not every gateway disconnected within 30s")

    def _tick(self) -> None:
        now = self.reactor.seconds()
        interval = self.config.interval_s
        polls = self._polls
        while polls and polls[0][0] <= now:
            at, index = heapq.heappop(polls)
            self.gateways[index].poll(at)
            heapq.heappush(polls, (at + interval, index))

    def _check_acks(self) -> None:
        now = self.reactor.seconds()
        for gateway in self.gateways:
            try:
                gateway.check_acks(now)
            except Exception:
                log.failure("Checking {gateway}'s acks failed", gateway=gateway.gateway_id)

    def _report(self) -> None:
        row: dict[str, Any] = {
            "type": "progress",
            "t": self.reactor.seconds() - self._started_s,
            "wall": time.time(),
            "producing": self._producing,
            "connected": sum(1 for gateway in self.gateways if gateway.session),
            "unacked": sum(len(g.unacked) for g in self.gateways),
            "due": sum(len(g.due) for g in self.gateways),
            "cpu_s": _cpu_s(),
            **self.stats.snapshot(),
        }
        self.progress.append(row)
        if self.on_progress is not None:
            self.on_progress(row)
