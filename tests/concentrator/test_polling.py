"""The poller on a fake bus: clock alignment, no pile-up when the line cannot keep up, retries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from twisted.internet import defer, task

from concentrator.access import MeterAccess
from concentrator.bus import BusActor
from concentrator.modbus_master import LinkDown
from concentrator.polling import AlarmTracker, BusPoller, PollGroup, Recorder, next_aligned
from protocols.modbus import Value


def test_groups_align_to_the_clock() -> None:
    assert next_aligned(1000.0, 900) == 1800.0  # the next quarter hour
    assert next_aligned(1800.0, 900) == 2700.0
    assert next_aligned(1000.0, 900, offset_s=30) == 1830.0


class FakeMeter:
    def __init__(self, meter_id: str, gate: defer.Deferred[None] | None = None) -> None:
        self.meter_id = meter_id
        self.verified = True
        self.reads = 0
        self.gate = gate
        self.fail_link = 0

    @property
    def key(self) -> str:
        return self.meter_id

    @property
    def label(self) -> str:
        return "fake"

    def groups(self) -> tuple[str, ...]:
        return ("status",)

    async def identify(self) -> None:
        return None

    async def verify_identity(self) -> None:
        return None

    async def read_group(self, name: str) -> dict[str, Value]:
        self.reads += 1
        if self.fail_link:
            self.fail_link -= 1
            raise LinkDown("not connected")
        if self.gate is not None:
            await self.gate
        return {"credit_remaining": 1}

    def flags(self, values: Mapping[str, Value]) -> frozenset[str] | None:
        return None


class FakeRecorder:
    def __init__(self) -> None:
        self.readings: list[Any] = []

    def reading(self, reading: Any) -> None:
        self.readings.append(reading)

    def events(self, events: list[Any]) -> defer.Deferred[None]:
        return defer.succeed(None)


def poller(meters: list[FakeMeter], clock: task.Clock) -> tuple[BusPoller, FakeRecorder]:
    """A poller whose meters and recorder are fakes (only what polling uses is implemented)."""
    recorder = FakeRecorder()
    groups = {"status": PollGroup("status", 1.0, alarm=True)}
    access = cast("list[MeterAccess]", meters)
    bus_poller = BusPoller(BusActor("b", clock), access, groups, cast(Recorder, recorder),
                           AlarmTracker(), clock)  # fmt: skip
    return bus_poller, recorder


def test_a_slow_read_is_not_queued_again_every_interval() -> None:
    clock = task.Clock()
    gate: defer.Deferred[None] = defer.Deferred()
    slow = FakeMeter("m1", gate)
    bus_poller, recorder = poller([slow], clock)
    bus_poller.start()
    for _ in range(10):
        clock.advance(1.0)  # ten intervals pass while the first read is still on the wire
    assert slow.reads == 1 and bus_poller.skipped >= 9
    assert bus_poller.bus.queue_depth == 0
    gate.callback(None)
    clock.advance(0)
    clock.advance(1.0)
    clock.advance(0)
    assert len(recorder.readings) >= 1 and slow.reads >= 2


def test_a_read_lost_to_a_link_not_yet_up_is_retried_soon() -> None:
    clock = task.Clock()
    meter = FakeMeter("m1")
    meter.fail_link = 1
    groups_poller, recorder = poller([meter], clock)
    groups_poller.groups = {"status": PollGroup("status", 86_400.0)}  # a daily group
    groups_poller.start()
    clock.advance(0)
    clock.advance(0)
    assert meter.reads == 1 and recorder.readings == []
    clock.advance(5.0)
    clock.advance(0)
    clock.advance(0)
    assert meter.reads == 2 and len(recorder.readings) == 1  # not a day later
