"""The uplink: journal entries out to the broker, acknowledgements and commands in.

Theory of operation::

    connect (MQTT v5, clean_start=False, session expiry) --> subscribe cmd + ack (every connect),
        publish retained state "online" (the last will says "offline"), then publish every
        journal entry not yet acknowledged, events and command results before readings
    entry appended --> kick(): publish it if the window of unacknowledged messages has room
    ack [first, last] --> journal entries deleted, the window moves on
    no ack for ack_timeout_s while messages wait --> watchdog forces a reconnect
    ack time t --> headend_offset_s: the head-end's clock, by which commands expire

A resend after a reconnect carries the original seq, so the head-end counts nothing twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy.exc import OperationalError
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from headend.mqtt import ReactorMqtt
from protocols.link import (
    Ack,
    GatewayState,
    LinkError,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
)

from .journal import EntryKind, JournalEntry, JournalStats, JournalStore

__all__ = ["Journal", "Uplink"]

log = Logger()


class Journal:
    """The journal store run on its own one-thread pool (SQLite likes one writer thread).

    A write that fails (the disk is full, an I/O error) does not lose the entry: it is held in
    memory, in order, and written again every ``retry_s`` until the disk takes it; nothing
    overtakes what is held. Past ``max_held`` entries the oldest of the lowest class (interval
    readings first, command results last) is dropped and counted in ``dropped``.
    """

    def __init__(self, store: JournalStore, reactor: Any, max_held: int = 5000,
                 retry_s: float = 2.0) -> None:  # fmt: skip
        self.store = store
        self.reactor = reactor
        self.pool = ThreadPool(1, 1, "journal")
        self.max_held = max_held
        self.retry_s = retry_s
        self.held: deque[_Held] = deque()
        self.write_failures = 0
        self.dropped: dict[str, int] = {kind.name.lower(): 0 for kind in EntryKind}
        self.on_written: Callable[[], None] = lambda: None
        self._retry: Any = None

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self.pool.stop()

    def _call(self, function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self.reactor, self.pool, function, *args)

    async def append(
        self, kind: EntryKind, topic: str, build: Callable[[int], bytes], now: float
    ) -> JournalEntry | None:
        """The entry as written, or None when it is held in memory until the disk takes it."""
        if self.held:
            self._hold(_Held(kind, topic, build, now))
            return None
        try:
            entry: JournalEntry = await self._call(self.store.thd_append, kind, topic, build, now)
        except (OperationalError, OSError) as error:
            self._failed(error)
            self._hold(_Held(kind, topic, build, now))
            return None
        return entry

    def _failed(self, error: Exception) -> None:
        self.write_failures += 1
        log.error("Journal write failed ({error}); holding entries in memory and retrying every "
                  "{retry_s} s", error=str(error).splitlines()[0], retry_s=self.retry_s)  # fmt: skip
        if self._retry is None or not self._retry.active():
            self._retry = self.reactor.callLater(self.retry_s, self._write_held)

    def _hold(self, held: _Held) -> None:
        self.held.append(held)
        if len(self.held) > self.max_held:
            lowest = min(self.held, key=lambda h: h.kind)
            self.held.remove(lowest)
            self.dropped[lowest.kind.name.lower()] += 1

    def _write_held(self) -> defer.Deferred[None]:
        async def write() -> None:
            while self.held:
                first = self.held[0]
                try:
                    await self._call(self.store.thd_append, first.kind, first.topic, first.build,
                                     first.now)  # fmt: skip
                except (OperationalError, OSError) as error:
                    self._failed(error)
                    return
                if self.held and self.held[0] is first:
                    self.held.popleft()
            log.info("Journal writes work again; every held entry is written")
            self.on_written()

        done = defer.ensureDeferred(write())
        done.addErrback(lambda failure: log.failure("Writing held journal entries failed", failure))
        return done

    async def pending(
        self, limit: int, kinds: tuple[EntryKind, ...] | None, after_seq: int
    ) -> list[JournalEntry]:
        entries: list[JournalEntry] = await self._call(
            self.store.thd_pending, limit, kinds, after_seq
        )
        return entries

    async def acknowledge(self, ranges: tuple[tuple[int, int], ...]) -> int:
        deleted: int = await self._call(self.store.thd_acknowledge, ranges)
        return deleted

    async def first_sight(self, cmd_id: str, now: float) -> bool:
        first: bool = await self._call(self.store.thd_first_sight, cmd_id, now)
        return first

    async def stats(self) -> JournalStats:
        stats: JournalStats = await self._call(self.store.thd_stats)
        return stats


@dataclass(frozen=True, slots=True)
class _Held:
    kind: EntryKind
    topic: str
    build: Callable[[int], bytes]
    now: float


URGENT = (EntryKind.EVENTS, EntryKind.COMMAND_STATUS)


class Uplink:
    def __init__(
        self,
        reactor: Any,
        mqtt_client: ReactorMqtt,
        journal: Journal,
        gateway_id: str,
        *,
        on_command: Callable[[bytes], object],
        version: str,
        meters: Callable[[], tuple[str, ...]],
        window: int = 500,
        ack_timeout_s: float = 120.0,
    ) -> None:
        self.reactor = reactor
        self.mqtt = mqtt_client
        self.journal = journal
        self.gateway_id = gateway_id
        self.on_command = on_command
        self.version = version
        self.meters = meters
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self._published: dict[int, float] = {}  # seq -> when it was published, until acked
        self._generation = 0  # bumped on every (re)connect: a pump of an older one stops
        self._cursors = {"urgent": 0, "readings": 0}
        self._pumping = False
        self._again = False
        self._last_ack_s = reactor.seconds()
        self.acked = 0
        self._unapplied_acks: tuple[tuple[int, int], ...] = ()  # acked, not yet deleted (disk full)
        # head-end clock minus ours, learnt from acks; commands' not_after is judged on it
        self.headend_offset_s = 0.0
        self.bad_messages = 0
        self.publish_refusals = 0
        self.resent = 0
        mqtt_client.on_connect = self._on_connect
        mqtt_client.on_message = self._on_message
        mqtt_client.on_disconnect = self._on_disconnect
        self._watchdog = task.LoopingCall(self._check_acks)
        self._watchdog.clock = reactor

    def topic(self, topic: Topic) -> str:
        return gateway_topic(self.gateway_id, topic)

    def last_will(self) -> tuple[str, bytes]:
        _, payload = encode_message(GatewayState(self.gateway_id, 0.0, False, self.version))
        return self.topic(Topic.STATE), payload

    def start(self) -> None:
        self._watchdog.start(max(1.0, self.ack_timeout_s / 4), now=False)

    def stop(self) -> None:
        if self._watchdog.running:
            self._watchdog.stop()
        if self.mqtt.connected:  # a clean DISCONNECT discards the last will: say offline ourselves
            topic, payload = self.last_will()
            self.mqtt.publish(topic, payload, qos=1, retain=True)

    @property
    def unacknowledged(self) -> int:
        return len(self._published)

    # -- connection events ----------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.warn("MQTT broker refused the connection: {reason}", reason=str(reason))
            return
        client.subscribe([(self.topic(Topic.COMMAND), 1), (self.topic(Topic.ACK), 1)])
        _, state = encode_message(
            GatewayState(self.gateway_id, self.reactor.seconds(), True, self.version, self.meters())
        )
        self.mqtt.publish(self.topic(Topic.STATE), state, qos=1, retain=True)
        self._published.clear()
        self._generation += 1
        self._cursors = {"urgent": 0, "readings": 0}  # resend everything not yet acknowledged
        self._last_ack_s = self.reactor.seconds()
        self.kick()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        log.info("MQTT link down: {reason}", reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        if message.topic == self.topic(Topic.COMMAND):
            self.on_command(payload)
            return
        if message.topic != self.topic(Topic.ACK):
            return
        try:
            ack = decode_message(Topic.ACK, payload)
        except LinkError as exc:
            self.bad_messages += 1
            log.warn("Ignoring malformed ack: {error}", error=str(exc))
            return
        assert isinstance(ack, Ack)
        self._last_ack_s = self.reactor.seconds()
        if ack.time is not None:  # the head-end's clock, as near as one message's transit
            self.headend_offset_s = ack.time - self._last_ack_s
        self._published = {s: t for s, t in self._published.items() if not ack.covers(s)}
        defer.ensureDeferred(self._acknowledge(ack)).addErrback(
            lambda failure: log.failure("Applying an ack failed", failure)
        )

    async def _acknowledge(self, ack: Ack) -> None:
        ranges = (*self._unapplied_acks, *ack.ranges)
        try:
            self.acked += await self.journal.acknowledge(ranges)
        except (OperationalError, OSError) as error:  # a full disk: delete them later
            if not self._unapplied_acks:
                log.warn("Cannot delete acknowledged journal entries yet ({error}); retrying "
                         "with the next ack", error=str(error).splitlines()[0])  # fmt: skip
            self._unapplied_acks = ranges[-1000:]
            return
        self._unapplied_acks = ()
        self.kick()

    def _check_acks(self) -> None:
        now = self.reactor.seconds()
        waiting = self.unacknowledged
        if not waiting or not self.mqtt.connected:
            return
        # silence counts from the last ack, or from the oldest message waiting if that came
        # later: a gateway idle for longer than the timeout (15-minute polls) has had no ack to
        # wait for, and its next message must be given the whole timeout
        silent_since = max(self._last_ack_s, min(self._published.values()))
        if now - silent_since > self.ack_timeout_s:
            log.warn("No acknowledgement for {waited_s:.0f}s with {count} messages waiting: reconnecting",
                     waited_s=now - silent_since, count=waiting)  # fmt: skip
            self._last_ack_s = now
            self.mqtt.force_reconnect()
            return
        stale = [seq for seq, sent in self._published.items() if now - sent > self.ack_timeout_s]
        if stale:
            # acks for newer messages keep coming, but these were lost on the way (a broker that
            # restarted, a subscriber that was not there yet): send everything unacknowledged again
            log.info("{count} messages unacknowledged for {timeout_s:.0f}s: sending them again",
                     count=len(stale), timeout_s=self.ack_timeout_s)  # fmt: skip
            self.resent += len(stale)
            self._published.clear()
            self._cursors = {"urgent": 0, "readings": 0}
            self._generation += 1
            self.kick()

    # -- publishing -----------------------------------------------------------------------------

    def kick(self) -> None:
        """Publish what is waiting (called after every append and every ack)."""
        if self._pumping:
            self._again = True
            return
        if not self.mqtt.connected:
            return
        self._pumping = True
        defer.ensureDeferred(self._pump()).addErrback(
            lambda failure: log.failure("Publishing from the journal failed", failure)
        ).addBoth(self._pumped)

    def _pumped(self, _: object) -> None:
        self._pumping = False
        if self._again:
            self._again = False
            self.kick()

    async def _pump(self) -> None:
        generation = self._generation
        while self.mqtt.connected and generation == self._generation:
            room = self.window - len(self._published)
            if room <= 0:
                return
            entries = await self.journal.pending(min(room, 200), URGENT, self._cursors["urgent"])
            lane = "urgent"
            if not entries:
                entries = await self.journal.pending(
                    min(room, 200), (EntryKind.READINGS,), self._cursors["readings"]
                )
                lane = "readings"
            if not entries or generation != self._generation:
                return  # nothing to do, or a reconnect reset the cursors while we waited
            for entry in entries:
                if not self.mqtt.connected:
                    return
                info = self.mqtt.publish(entry.topic, entry.payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self.publish_refusals += 1
                    return  # paho's queue is full: the entry stays in the journal for later
                self._published[entry.seq] = self.reactor.seconds()
                self._cursors[lane] = entry.seq
