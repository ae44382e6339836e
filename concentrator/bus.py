"""One actor per physical bus: exactly one transaction in flight, a priority queue, and a circuit
breaker per meter so that a dead meter costs almost no bus time.

Theory of operation::

    submit(priority, meter, work) --> queue ordered by (priority, arrival)
        COMMAND (tokens, relay) > ALARM (fast status reads) > POLL (scheduled) > DISCOVERY
    the actor runs one job at a time: work(master) -> result or a TransactionError
    per meter: consecutive failures >= threshold --> breaker open for backoff_s, doubling up to a
               maximum; while open, only COMMAND jobs reach the meter (a token push must be tried);
               others fail at once with MeterUnavailable and cost no bus time. A success closes it.

Statistics (for the health message and metrics): requests, failures, timeouts, queue depth and the
fraction of wall time the bus was busy.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .modbus_master import LinkDown, MeterTimeout, TransactionError

__all__ = [
    "BreakerPolicy",
    "BusActor",
    "BusStats",
    "CircuitBreaker",
    "MeterUnavailable",
    "Priority",
]

log = Logger()
T = TypeVar("T")


class Priority(IntEnum):
    COMMAND = 0
    ALARM = 1
    POLL = 2
    DISCOVERY = 3


class MeterUnavailable(TransactionError):
    """The meter's circuit breaker is open: it failed repeatedly and is left alone for a while."""

    def __init__(self, meter: str, retry_in_s: float) -> None:
        self.retry_in_s = retry_in_s
        super().__init__(0, f"meter {meter} is not answering; next try in {retry_in_s:.0f} s")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    threshold: int = 3
    base_backoff_s: float = 30.0
    max_backoff_s: float = 3600.0


@dataclass(slots=True)
class CircuitBreaker:
    policy: BreakerPolicy
    streak: int = 0
    open_until: float = 0.0

    def allows(self, now: float) -> bool:
        return now >= self.open_until

    @property
    def is_open(self) -> bool:
        return self.streak >= self.policy.threshold

    def success(self) -> bool:
        """Record a success; True when this closed an open breaker."""
        was_open = self.is_open
        self.streak = 0
        self.open_until = 0.0
        return was_open

    def failure(self, now: float) -> bool:
        """Record a failure; True when this opened the breaker."""
        self.streak += 1
        if self.streak < self.policy.threshold:
            return False
        doublings = self.streak - self.policy.threshold
        backoff = min(
            self.policy.base_backoff_s * 2 ** min(doublings, 30), self.policy.max_backoff_s
        )
        self.open_until = now + backoff
        return self.streak == self.policy.threshold


@dataclass(slots=True)
class BusStats:
    requests: int = 0
    failures: int = 0
    timeouts: int = 0
    refused_fast: int = 0
    busy_s: float = 0.0
    started_s: float = 0.0


@dataclass(order=True)
class _Job(Generic[T]):
    priority: int
    order: int
    meter: str = field(compare=False)
    work: Callable[[], Awaitable[T]] = field(compare=False)
    done: defer.Deferred[T] = field(compare=False)


class BusActor:
    """Serialises all work on one bus. ``work`` coroutines do the bus I/O (Modbus, DL/T 645 ...)."""

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        policy: BreakerPolicy = BreakerPolicy(),
        on_breaker: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.policy = policy
        self.on_breaker = on_breaker
        self.breakers: dict[str, CircuitBreaker] = {}
        self.stats = BusStats(started_s=clock.seconds())
        self._queue: list[_Job[Any]] = []
        self._order = itertools.count()
        self._running = False
        self._stopped = False

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def breaker(self, meter: str) -> CircuitBreaker:
        if meter not in self.breakers:
            self.breakers[meter] = CircuitBreaker(self.policy)
        return self.breakers[meter]

    def utilisation(self) -> float:
        elapsed = self.clock.seconds() - self.stats.started_s
        return self.stats.busy_s / elapsed if elapsed > 0 else 0.0

    def submit(
        self, priority: Priority, meter: str, work: Callable[[], Awaitable[T]]
    ) -> defer.Deferred[T]:
        """Queue ``work`` for ``meter``; the Deferred fires with its result or its error."""
        done: defer.Deferred[T] = defer.Deferred()
        if self._stopped:
            done.errback(TransactionError(0, f"bus {self.name} is stopped"))
            return done
        breaker = self.breaker(meter)
        now = self.clock.seconds()
        if priority is not Priority.COMMAND and not breaker.allows(now):
            self.stats.refused_fast += 1
            done.errback(MeterUnavailable(meter, breaker.open_until - now))
            return done
        heapq.heappush(self._queue, _Job(int(priority), next(self._order), meter, work, done))
        if not self._running:
            self._running = True
            self.clock.callLater(0, self._run_next)
        return done

    def _run_next(self) -> None:
        if not self._queue or self._stopped:
            self._running = False
            return
        job = heapq.heappop(self._queue)
        started = self.clock.seconds()
        self.stats.requests += 1

        def finished(result: object) -> object:
            self.stats.busy_s += self.clock.seconds() - started
            breaker = self.breaker(job.meter)
            if isinstance(result, Failure) and result.check(LinkDown):
                self.stats.failures += 1  # the bus is down, not the meter: its breaker stays
            elif isinstance(result, Failure) and result.check(TransactionError):
                self.stats.failures += 1
                if result.check(MeterTimeout):
                    self.stats.timeouts += 1
                if breaker.failure(self.clock.seconds()) and self.on_breaker:
                    self.on_breaker(job.meter, True)
            elif not isinstance(result, Failure) and breaker.success() and self.on_breaker:
                self.on_breaker(job.meter, False)
            self.clock.callLater(0, self._run_next)
            return result

        running = defer.ensureDeferred(_as_coroutine(job.work))
        running.addBoth(finished)
        running.chainDeferred(job.done)

    def stop(self) -> None:
        """Refuse new work and fail what is queued (the daemon is stopping)."""
        self._stopped = True
        queued, self._queue = self._queue, []
        for job in queued:
            job.done.errback(TransactionError(0, f"bus {self.name} stopped"))


async def _as_coroutine(work: Callable[[], Awaitable[T]]) -> T:
    return await work()
