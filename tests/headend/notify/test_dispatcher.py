"""The dispatcher on a task.Clock with scripted senders: policy, retries, counters, flap settling."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from headend.notify import (
    DeliveryResult,
    Dispatcher,
    FlapSuppressor,
    Notification,
    Retrying,
)
from headend.notify.model import AlarmState

OK = DeliveryResult(ok=True, detail="250 ok", provider_id="id-1")
TRANSIENT = DeliveryResult(ok=False, detail="421 try later", retryable=True)
PERMANENT = DeliveryResult(ok=False, detail="550 no such user")


class ScriptedSender:
    """Answers each send with the next scripted result, then with OK."""

    def __init__(self, *results: DeliveryResult) -> None:
        self.results = list(results)
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> Deferred[DeliveryResult]:
        self.sent.append(notification)
        return succeed(self.results.pop(0) if self.results else OK)


def mail(state: AlarmState = "raised", key: str = "credit-exhausted:0101") -> Notification:
    return Notification(
        "email",
        "customer@example.net",
        f"Credit exhausted ({state})",
        "Buy a token.",
        key,
        0.0,
        state,
    )


def make(*results: DeliveryResult, **policy: float) -> tuple[Clock, ScriptedSender, Dispatcher]:
    clock = Clock()
    clock.advance(1_000_000.0)
    sender = ScriptedSender(*results)
    suppressor = FlapSuppressor(
        min_interval_s=policy.get("min_interval_s", 600.0),
        max_per_hour=int(policy.get("max_per_hour", 100)),
        flap_window_s=policy.get("flap_window_s", 1000.0),
        flap_threshold=int(policy.get("flap_threshold", 3)),
    )
    dispatcher = Dispatcher(
        clock, {"email": sender}, suppressor, retrying=Retrying(attempts=3, base_delay_s=10.0)
    )
    return clock, sender, dispatcher


def notify(dispatcher: Dispatcher, notification: Notification) -> list[DeliveryResult]:
    results: list[DeliveryResult] = []
    dispatcher.notify(notification).addCallback(results.append)
    return results


def test_sends_and_counts() -> None:
    _, sender, dispatcher = make()
    assert notify(dispatcher, mail()) == [OK]
    assert sender.sent == [mail()]
    assert (dispatcher.sent, dispatcher.failed, dispatcher.suppressed) == (1, 0, 0)


def test_a_duplicate_is_suppressed_without_a_send() -> None:
    _, sender, dispatcher = make()
    notify(dispatcher, mail())
    [result] = notify(dispatcher, mail())
    assert result.suppressed and not result.ok
    assert result.attempts == 0
    assert result.detail.startswith("suppressed: duplicate")
    assert len(sender.sent) == 1
    assert (dispatcher.sent, dispatcher.failed, dispatcher.suppressed) == (1, 0, 1)


def test_transient_failures_are_retried_on_the_clock() -> None:
    clock, sender, dispatcher = make(TRANSIENT)
    results = notify(dispatcher, mail())
    assert results == [] and dispatcher.in_flight == 1
    clock.advance(10.0)
    assert results == [DeliveryResult(ok=True, detail="250 ok", attempts=2, provider_id="id-1")]
    assert len(sender.sent) == 2
    assert dispatcher.in_flight == 0
    assert (dispatcher.sent, dispatcher.failed) == (1, 0)


def test_a_permanent_failure_is_counted_and_does_not_block_the_next_attempt() -> None:
    clock, sender, dispatcher = make(PERMANENT)
    [result] = notify(dispatcher, mail())
    assert result == PERMANENT
    assert dispatcher.failed == 1
    clock.advance(1.0)
    [again] = notify(dispatcher, mail())  # not a "duplicate" of a message that never arrived
    assert again.ok
    assert len(sender.sent) == 2


def test_a_channel_without_a_sender_fails_cleanly() -> None:
    _, _, dispatcher = make()
    sms = Notification("sms", "+27821234567", "Tamper", "Tamper!", "tamper:1", 0.0)
    [result] = notify(dispatcher, sms)
    assert not result.ok and result.attempts == 0
    assert result.detail == "no sender for channel sms"
    assert dispatcher.failed == 1


def test_flapping_sends_one_summary_then_the_settled_state() -> None:
    clock, sender, dispatcher = make(flap_threshold=3, flap_window_s=1200.0)
    states: list[AlarmState] = ["raised", "cleared", "raised", "cleared", "raised", "cleared"]
    results = []
    for state in states:
        results += notify(dispatcher, mail(state))
        clock.advance(10.0)
    assert [r.suppressed for r in results] == [False] * 4 + [True] * 2
    summary = sender.sent[3]
    assert summary.subject == "Alarm flapping: Credit exhausted (cleared)"
    assert "keeps being raised and cleared (4 changes in 1200 s (threshold 3))" in summary.body
    assert "stable for 20 min; you will then receive its current state" in summary.body
    assert "Buy a token." in summary.body
    assert dispatcher.flapping == 1
    assert len(sender.sent) == 4
    # the last change was at +50 s; stable for the window from then on
    clock.advance(1200.0 - 10.0 - 1.0)
    assert len(sender.sent) == 4
    clock.advance(1.0)
    assert len(sender.sent) == 5
    assert sender.sent[4] == mail("cleared")
    assert dispatcher.settled == 1
    assert (dispatcher.sent, dispatcher.suppressed) == (5, 2)
    assert clock.getDelayedCalls() == []


def test_a_settle_timer_is_pushed_back_by_continued_flapping() -> None:
    clock, sender, dispatcher = make(flap_threshold=3, flap_window_s=1000.0)
    states: list[AlarmState] = ["raised", "cleared", "raised", "cleared"]
    for state in states:
        notify(dispatcher, mail(state))
        clock.advance(10.0)
    clock.advance(900.0)
    notify(dispatcher, mail("raised"))  # suppressed, and the alarm is not stable yet
    clock.advance(200.0)  # the first settle check finds it still flapping
    assert len(sender.sent) == 4
    clock.advance(800.0)
    assert sender.sent[-1] == mail("raised")
    assert dispatcher.settled == 1


def test_stop_cancels_the_settle_timer_and_waits_for_sends_in_flight() -> None:
    clock, _, dispatcher = make(TRANSIENT, flap_threshold=1)
    notify(dispatcher, mail("raised"))  # will retry in 10 s
    notify(dispatcher, mail("cleared"))  # flapping: summary sent, settle timer set
    assert dispatcher.in_flight == 1
    stopped: list[None] = []
    dispatcher.startService()
    dispatcher.stopService().addCallback(stopped.append)
    assert not dispatcher.running
    assert stopped == []
    clock.advance(10.0)
    assert stopped == [None]
    assert clock.getDelayedCalls() == []
    [late] = notify(dispatcher, mail("raised", key="other"))
    assert late.detail == "dispatcher stopped"
