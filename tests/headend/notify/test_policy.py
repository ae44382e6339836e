"""The notification policy with explicit times: duplicates, rate limit, flapping; and retries."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from headend.notify import (
    Action,
    DeliveryResult,
    FlapSuppressor,
    Notification,
    Retrying,
    send_with_retry,
)
from headend.notify.model import AlarmState, Channel


def note(
    state: AlarmState = "raised",
    recipient: str = "+27821234567",
    key: str = "tamper:0101",
    channel: Channel = "sms",
) -> Notification:
    return Notification(channel, recipient, f"Tamper {state}", "body", key, 0.0, state)


def suppressor(**kwargs: Any) -> FlapSuppressor:
    settings: dict[str, Any] = {
        "min_interval_s": 600.0,
        "max_per_hour": 100,
        "flap_window_s": 1000.0,
        "flap_threshold": 4,
    }
    settings.update(kwargs)
    return FlapSuppressor(**settings)


# --- duplicates ------------------------------------------------------------------------------


def test_first_message_is_sent() -> None:
    decision = suppressor().decide(note(), 0.0)
    assert decision.action is Action.SEND
    assert decision.reason == "changed"


def test_same_state_within_min_interval_is_a_duplicate() -> None:
    policy = suppressor()
    assert policy.decide(note(), 0.0).action is Action.SEND
    decision = policy.decide(note(), 599.0)
    assert decision.action is Action.SUPPRESS
    assert decision.reason.startswith("duplicate")


def test_same_state_after_min_interval_is_a_reminder() -> None:
    policy = suppressor()
    policy.decide(note(), 0.0)
    decision = policy.decide(note(), 600.0)
    assert (decision.action, decision.reason) == (Action.SEND, "reminder")


def test_a_change_of_state_is_not_a_duplicate() -> None:
    policy = suppressor()
    assert policy.decide(note("raised"), 0.0).action is Action.SEND
    assert policy.decide(note("cleared"), 1.0).action is Action.SEND


def test_duplicates_are_per_recipient_alarm_and_channel() -> None:
    policy = suppressor()
    assert policy.decide(note(), 0.0).action is Action.SEND
    assert policy.decide(note(recipient="+27829999999"), 1.0).action is Action.SEND
    assert policy.decide(note(key="low-credit:0101"), 2.0).action is Action.SEND
    email = note(recipient="ops@utility.example", channel="email")
    assert policy.decide(email, 3.0).action is Action.SEND


def test_a_failed_send_does_not_make_the_next_one_a_duplicate() -> None:
    policy = suppressor()
    assert policy.decide(note(), 0.0).action is Action.SEND
    policy.record_failure(note())
    assert policy.decide(note(), 10.0).action is Action.SEND


# --- rate limit ------------------------------------------------------------------------------


def test_max_per_hour_caps_one_recipient_across_alarms() -> None:
    policy = suppressor(max_per_hour=3)
    for i in range(3):
        assert policy.decide(note(key=f"alarm-{i}"), float(i)).action is Action.SEND
    decision = policy.decide(note(key="alarm-3"), 10.0)
    assert decision.action is Action.SUPPRESS
    assert decision.reason.startswith("rate limit")
    # another recipient has its own budget
    assert policy.decide(note(key="alarm-3", recipient="+27820000000"), 10.0).action is Action.SEND
    # an hour after the first send there is room again
    assert policy.decide(note(key="alarm-3"), 3600.0).action is Action.SEND


# --- flapping --------------------------------------------------------------------------------


def _flap(
    policy: FlapSuppressor, start_s: float, changes: int, step_s: float = 10.0, first: int = 0
) -> list[Any]:
    """``changes`` alternating messages, raised first (or cleared first with ``first=1``)."""
    states: tuple[AlarmState, AlarmState] = ("raised", "cleared")
    return [
        policy.decide(note(states[(first + i) % 2]), start_s + i * step_s).action
        for i in range(changes)
    ]


def test_more_than_threshold_changes_in_the_window_is_flapping_once() -> None:
    policy = suppressor(flap_threshold=4)
    actions = _flap(policy, 0.0, 8)
    assert actions == [Action.SEND] * 4 + [Action.FLAPPING] + [Action.SUPPRESS] * 3
    assert policy.flapping_count == 1


def test_threshold_changes_spread_beyond_the_window_are_not_flapping() -> None:
    policy = suppressor(flap_threshold=4, flap_window_s=1000.0)
    actions = _flap(policy, 0.0, 10, step_s=300.0)  # at most 4 changes in any 1000 s
    assert actions == [Action.SEND] * 10


def test_flapping_decision_gives_the_count_and_window() -> None:
    policy = suppressor(flap_threshold=2, flap_window_s=60.0)
    _flap(policy, 0.0, 2)
    decision = policy.decide(note("raised"), 20.0)
    assert decision.action is Action.FLAPPING
    assert decision.reason == "3 changes in 60 s (threshold 2)"


def test_flapping_keeps_suppressing_while_changes_continue() -> None:
    policy = suppressor(flap_threshold=4, flap_window_s=1000.0)
    _flap(policy, 0.0, 5)  # ends raised
    # changes every 900 s: never stable for 1000 s
    later = _flap(policy, 900.0, 5, step_s=900.0, first=1)
    assert later == [Action.SUPPRESS] * 5
    assert policy.next_settle_s() == 900.0 + 4 * 900.0 + 1000.0


def test_settled_returns_the_latest_state_once_stable_for_the_window() -> None:
    policy = suppressor(flap_threshold=4, flap_window_s=1000.0)
    _flap(policy, 0.0, 7)  # last change (raised, the 7th) at 60 s
    assert policy.next_settle_s() == 1060.0
    assert policy.settled(1059.0) == []
    [latest] = policy.settled(1060.0)
    assert latest.state == "raised"
    assert policy.flapping_count == 0
    assert policy.next_settle_s() is None
    assert policy.settled(5000.0) == []
    # the settled state counts as sent: the same state again is a duplicate
    assert policy.decide(note("raised"), 1100.0).action is Action.SUPPRESS
    assert policy.decide(note("cleared"), 1110.0).action is Action.SEND


def test_the_next_message_after_a_stable_window_ends_flapping_without_settled() -> None:
    policy = suppressor(flap_threshold=4, flap_window_s=1000.0)
    _flap(policy, 0.0, 6)  # last change at 50 s (cleared)
    decision = policy.decide(note("raised"), 1050.0)
    assert decision.action is Action.SEND
    assert policy.flapping_count == 0


def test_a_repeated_state_while_flapping_is_suppressed_and_does_not_extend_it() -> None:
    policy = suppressor(flap_threshold=4, flap_window_s=1000.0)
    _flap(policy, 0.0, 5)  # flapping from 40 s, latest raised
    assert policy.decide(note("raised"), 500.0).action is Action.SUPPRESS
    assert policy.next_settle_s() == 1040.0


def test_flapping_summary_respects_the_rate_limit() -> None:
    policy = suppressor(flap_threshold=2, max_per_hour=2)
    actions = _flap(policy, 0.0, 3)
    assert actions[:2] == [Action.SEND, Action.SEND]
    assert actions[2] is Action.SUPPRESS
    assert policy.flapping_count == 1


def test_prune_forgets_idle_keys_but_not_flapping_ones() -> None:
    policy = suppressor(flap_threshold=2, flap_window_s=100.0, min_interval_s=50.0)
    policy.decide(note(key="quiet"), 0.0)
    _flap(policy, 0.0, 3)
    assert policy.prune(1000.0) == 1
    assert policy.flapping_count == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_interval_s": -1},
        {"max_per_hour": 0},
        {"flap_window_s": 0},
        {"flap_threshold": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        suppressor(**kwargs)


# --- retries ---------------------------------------------------------------------------------


class ScriptedSender:
    """Answers each send with the next scripted result."""

    def __init__(self, *results: DeliveryResult) -> None:
        self.results = list(results)
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> Deferred[DeliveryResult]:
        self.sent.append(notification)
        return succeed(self.results.pop(0))


TRANSIENT = DeliveryResult(ok=False, detail="503", retryable=True)
PERMANENT = DeliveryResult(ok=False, detail="400")
OK = DeliveryResult(ok=True, detail="200")


def test_backoff_doubles_up_to_the_cap() -> None:
    retrying = Retrying(attempts=10, base_delay_s=2.0, max_delay_s=30.0)
    assert [retrying.delay_s(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_transient_failures_are_retried_after_the_backoff() -> None:
    clock = Clock()
    sender = ScriptedSender(TRANSIENT, TRANSIENT, OK)
    results: list[DeliveryResult] = []
    send_with_retry(clock, sender, note(), attempts=3, base_delay_s=5.0).addCallback(results.append)
    assert len(sender.sent) == 1
    clock.advance(4.9)
    assert len(sender.sent) == 1
    clock.advance(0.1)
    assert len(sender.sent) == 2
    clock.advance(9.9)
    assert len(sender.sent) == 2
    clock.advance(0.1)
    assert results == [DeliveryResult(ok=True, detail="200", attempts=3)]


def test_permanent_failures_are_not_retried() -> None:
    clock = Clock()
    sender = ScriptedSender(PERMANENT, OK)
    results: list[DeliveryResult] = []
    send_with_retry(clock, sender, note(), attempts=3).addCallback(results.append)
    assert results == [PERMANENT]
    assert len(sender.sent) == 1


def test_gives_up_after_the_last_attempt_with_the_last_result() -> None:
    clock = Clock()
    sender = ScriptedSender(TRANSIENT, TRANSIENT, OK)
    results: list[DeliveryResult] = []
    send_with_retry(clock, sender, note(), attempts=2, base_delay_s=1.0).addCallback(results.append)
    clock.advance(1.0)
    assert results == [DeliveryResult(ok=False, detail="503", attempts=2, retryable=True)]
    assert clock.getDelayedCalls() == []


def test_a_sender_that_raises_becomes_a_failed_result() -> None:
    class Broken:
        def send(self, notification: Notification) -> Deferred[DeliveryResult]:
            raise RuntimeError("bug")

    results: list[DeliveryResult] = []
    send_with_retry(Clock(), Broken(), note()).addCallback(results.append)
    assert results == [DeliveryResult(ok=False, detail="sender failed: RuntimeError")]
