"""When to notify, and how often to try.

Theory of operation (:class:`FlapSuppressor`, pure: every time is an argument)::

    each notification is keyed by (channel, recipient, alarm key); a change of its state
    (raised <-> cleared, or the first one seen) is a *transition*

    flapping?       more than flap_threshold transitions in the last flap_window_s
                    --> FLAPPING: send one summary instead, then SUPPRESS every message for that
                        key until no transition has happened for flap_window_s; settled() then
                        hands back the latest message (the alarm's current state) to send once
    duplicate?      the same state was sent less than min_interval_s ago --> SUPPRESS
    rate limit?     max_per_hour messages already went to this recipient on this channel in
                    the last hour (all alarm keys together: it caps what one phone or mailbox
                    receives) --> SUPPRESS
    otherwise       --> SEND (and it counts as sent from now: a failed send is handed back
                        with record_failure() so the next attempt is not taken for a duplicate)

:class:`Retrying` / :func:`send_with_retry` retry a send whose result is ``retryable`` after
``base_delay_s``, ``2 * base_delay_s``, ``4 * base_delay_s``... (at most ``max_delay_s``), up to
``attempts`` sends in all.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from .model import AlarmState, DeliveryResult, Notification, Sender

__all__ = ["Action", "Decision", "FlapSuppressor", "Retrying", "send_with_retry"]

HOUR_S = 3600.0
_PRUNE_EVERY = 1024


class Action(Enum):
    SEND = "send"
    SUPPRESS = "suppress"
    FLAPPING = "flapping"
    """Send one "this alarm is flapping" summary instead of the message."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str


@dataclass(slots=True)
class _KeyState:
    last_seen_s: float
    state: AlarmState | None = None
    transitions: deque[float] = field(default_factory=deque)
    sent_s: float | None = None
    sent_state: AlarmState | None = None
    flapping: bool = False
    latest: Notification | None = None


class FlapSuppressor:
    """Decides, for each notification, whether to send it now (see the module docstring)."""

    def __init__(
        self,
        min_interval_s: float = 900.0,
        max_per_hour: int = 10,
        flap_window_s: float = 1800.0,
        flap_threshold: int = 4,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError("min_interval_s: must be >= 0")
        if max_per_hour < 1:
            raise ValueError("max_per_hour: must be >= 1")
        if flap_window_s <= 0:
            raise ValueError("flap_window_s: must be > 0")
        if flap_threshold < 1:
            raise ValueError("flap_threshold: must be >= 1")
        self.min_interval_s = min_interval_s
        self.max_per_hour = max_per_hour
        self.flap_window_s = flap_window_s
        self.flap_threshold = flap_threshold
        self._keys: dict[tuple[str, str, str], _KeyState] = {}
        self._flapping: set[tuple[str, str, str]] = set()
        self._sent_to: dict[tuple[str, str], deque[float]] = {}  # (channel, recipient) -> times
        self._decisions = 0

    def decide(self, notification: Notification, now_s: float) -> Decision:
        self._decisions += 1
        if self._decisions % _PRUNE_EVERY == 0:
            self.prune(now_s)
        key = notification.dedupe_key
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = _KeyState(last_seen_s=now_s)
        st.last_seen_s = now_s
        window_start = now_s - self.flap_window_s

        if st.flapping:
            if st.transitions and st.transitions[-1] > window_start:
                st.latest = notification
                if notification.state != st.state:
                    st.state = notification.state
                    st.transitions.append(now_s)
                while len(st.transitions) > 1 and st.transitions[0] <= window_start:
                    st.transitions.popleft()
                return Decision(Action.SUPPRESS, "flapping: waiting for it to be stable")
            # Stable for the window but nobody called settled(): this message ends the flapping.
            self._end_flapping(key, st)

        changed = notification.state != st.state
        if changed:
            st.state = notification.state
            st.transitions.append(now_s)
        while st.transitions and st.transitions[0] <= window_start:
            st.transitions.popleft()

        if len(st.transitions) > self.flap_threshold:
            st.flapping = True
            st.latest = notification
            self._flapping.add(key)
            changes = len(st.transitions)
            if not self._rate_allows(notification, now_s):
                return Decision(Action.SUPPRESS, "flapping; summary not sent: rate limit")
            self._record_sent(notification, st, now_s)
            return Decision(
                Action.FLAPPING,
                f"{changes} changes in {self.flap_window_s:g} s (threshold {self.flap_threshold})",
            )

        if (
            st.sent_state == notification.state
            and st.sent_s is not None
            and now_s - st.sent_s < self.min_interval_s
        ):
            return Decision(
                Action.SUPPRESS,
                f"duplicate: {notification.state} sent {now_s - st.sent_s:g} s ago "
                f"(min interval {self.min_interval_s:g} s)",
            )
        if not self._rate_allows(notification, now_s):
            return Decision(
                Action.SUPPRESS,
                f"rate limit: {self.max_per_hour} messages to this recipient in the last hour",
            )
        self._record_sent(notification, st, now_s)
        return Decision(Action.SEND, "changed" if changed else "reminder")

    def record_failure(self, notification: Notification) -> None:
        """The send that ``decide`` allowed failed: do not hold it against the next attempt."""
        st = self._keys.get(notification.dedupe_key)
        if st is not None and st.sent_state == notification.state:
            st.sent_s = None
            st.sent_state = None

    def next_settle_s(self) -> float | None:
        """When the earliest flapping alarm will have been stable for the window, if any flaps."""
        times = [
            (st.transitions[-1] if st.transitions else st.last_seen_s) + self.flap_window_s
            for st in (self._keys[key] for key in self._flapping)
        ]
        return min(times, default=None)

    def settled(self, now_s: float) -> list[Notification]:
        """End the flapping of every alarm stable for the window; return each one's latest message.

        The caller sends these (the alarm's current state); they count as sent now.
        """
        window_start = now_s - self.flap_window_s
        done: list[Notification] = []
        for key in sorted(self._flapping):
            st = self._keys[key]
            if st.transitions and st.transitions[-1] > window_start:
                continue
            latest = st.latest
            self._end_flapping(key, st)
            if latest is not None:
                self._record_sent(latest, st, now_s)
                done.append(latest)
        return done

    @property
    def flapping_count(self) -> int:
        return len(self._flapping)

    def prune(self, now_s: float) -> int:
        """Forget keys idle for longer than anything here remembers; returns how many went."""
        horizon = now_s - max(self.min_interval_s, self.flap_window_s)
        idle = [
            key for key, st in self._keys.items() if not st.flapping and st.last_seen_s <= horizon
        ]
        for key in idle:
            del self._keys[key]
        for recipient in list(self._sent_to):
            times = self._sent_to[recipient]
            while times and times[0] <= now_s - HOUR_S:
                times.popleft()
            if not times:
                del self._sent_to[recipient]
        return len(idle)

    def _end_flapping(self, key: tuple[str, str, str], st: _KeyState) -> None:
        st.flapping = False
        st.latest = None
        st.transitions.clear()
        self._flapping.discard(key)

    def _rate_allows(self, notification: Notification, now_s: float) -> bool:
        times = self._sent_to.get((notification.channel, notification.recipient))
        if times is None:
            return True
        while times and times[0] <= now_s - HOUR_S:
            times.popleft()
        return len(times) < self.max_per_hour

    def _record_sent(self, notification: Notification, st: _KeyState, now_s: float) -> None:
        st.sent_s = now_s
        st.sent_state = notification.state
        recipient = (notification.channel, notification.recipient)
        self._sent_to.setdefault(recipient, deque()).append(now_s)


@dataclass(frozen=True, slots=True)
class Retrying:
    """Exponential back-off for transient failures: ``attempts`` sends at most."""

    attempts: int = 3
    base_delay_s: float = 5.0
    max_delay_s: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts: must be >= 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("base_delay_s, max_delay_s: must be >= 0")

    def delay_s(self, failed_attempt: int) -> float:
        """How long to wait after the ``failed_attempt``-th send (1-based) failed."""
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** (failed_attempt - 1))

    async def run(
        self, clock: IReactorTime, sender: Sender, notification: Notification
    ) -> DeliveryResult:
        attempt = 1
        while True:
            try:
                result = await sender.send(notification)
            except Exception as e:  # a sender must not errback; if one does, do not retry it
                result = DeliveryResult(ok=False, detail=f"sender failed: {type(e).__name__}")
            result = dataclasses.replace(result, attempts=attempt)
            if result.ok or not result.retryable or attempt >= self.attempts:
                return result
            await task.deferLater(clock, self.delay_s(attempt), lambda: None)
            attempt += 1

    def send(
        self, clock: IReactorTime, sender: Sender, notification: Notification
    ) -> Deferred[DeliveryResult]:
        return Deferred.fromCoroutine(self.run(clock, sender, notification))


def send_with_retry(
    clock: IReactorTime,
    sender: Sender,
    notification: Notification,
    attempts: int = 3,
    base_delay_s: float = 5.0,
    max_delay_s: float = 300.0,
) -> Deferred[DeliveryResult]:
    """Send, retrying transient failures; the result's ``attempts`` says how many sends it took."""
    return Retrying(attempts, base_delay_s, max_delay_s).send(clock, sender, notification)
