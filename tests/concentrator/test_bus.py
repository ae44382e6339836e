"""The bus actor: priorities, one job at a time, and dead meters costing no bus time."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from concentrator.bus import BreakerPolicy, BusActor, MeterUnavailable, Priority
from concentrator.modbus_master import LinkDown, MeterTimeout


def actor() -> tuple[BusActor, task.Clock, list[tuple[str, bool]]]:
    clock = task.Clock()
    changes: list[tuple[str, bool]] = []
    bus = BusActor("rtu1", clock, BreakerPolicy(threshold=3, base_backoff_s=30, max_backoff_s=120),
                   on_breaker=lambda meter, opened: changes.append((meter, opened)))  # fmt: skip
    return bus, clock, changes


def test_jobs_run_one_at_a_time_in_priority_order() -> None:
    bus, clock, _ = actor()
    ran: list[str] = []
    gate: defer.Deferred[None] = defer.Deferred()

    def job(name: str, wait: defer.Deferred[None] | None = None) -> Any:
        async def work() -> str:
            ran.append(name)
            if wait is not None:
                await wait
            return name

        return work

    first = bus.submit(Priority.POLL, "m1", job("poll-1", gate))
    clock.advance(0)  # the poll starts; everything below arrives while it is on the wire
    bus.submit(Priority.DISCOVERY, "m2", job("discovery"))
    bus.submit(Priority.POLL, "m3", job("poll-2"))
    bus.submit(Priority.COMMAND, "m4", job("token"))
    bus.submit(Priority.ALARM, "m5", job("status"))
    clock.advance(0)
    assert ran == ["poll-1"] and bus.queue_depth == 4  # the rest wait: one transaction in flight
    gate.callback(None)
    for _ in range(10):
        clock.advance(0)
    assert ran == ["poll-1", "token", "status", "poll-2", "discovery"]
    assert first.called


def test_a_dead_meter_is_left_alone_but_tokens_still_try() -> None:
    bus, clock, changes = actor()
    attempts: list[str] = []

    async def dead() -> None:
        attempts.append("x")
        raise MeterTimeout(7, 0.5)

    outcomes: list[Any] = []
    for _ in range(3):
        bus.submit(Priority.POLL, "m7", dead).addErrback(lambda f: outcomes.append(f.value))
        clock.advance(0)
        clock.advance(0)
    assert len(attempts) == 3 and changes == [("m7", True)]
    refused = bus.submit(Priority.POLL, "m7", dead)
    refused.addErrback(lambda f: outcomes.append(f.value))
    clock.advance(0)
    assert isinstance(outcomes[-1], MeterUnavailable) and len(attempts) == 3  # no bus time spent
    assert bus.stats.refused_fast == 1 and bus.stats.timeouts == 3

    async def alive() -> str:
        attempts.append("ok")
        return "applied"

    command = bus.submit(Priority.COMMAND, "m7", alive)  # a token push is always tried
    clock.advance(0)
    clock.advance(0)
    assert command.called and changes[-1] == ("m7", False)
    assert bus.breaker("m7").allows(clock.seconds())


def test_backoff_doubles_up_to_the_maximum() -> None:
    bus, clock, _ = actor()
    breaker = bus.breaker("m1")
    for _ in range(3):
        breaker.failure(clock.seconds())
    assert breaker.open_until == 30
    breaker.failure(0)
    assert breaker.open_until == 60
    for _ in range(10):
        breaker.failure(0)
    assert breaker.open_until == 120


def test_a_lost_link_does_not_count_against_the_meters() -> None:
    bus, clock, changes = actor()

    async def unplugged() -> None:
        raise LinkDown("serial port gone")

    for _ in range(5):
        bus.submit(Priority.POLL, "m1", unplugged).addErrback(lambda _: None)
        clock.advance(0)
        clock.advance(0)
    assert changes == [] and bus.breaker("m1").allows(clock.seconds())
    assert bus.stats.failures == 5
