"""The one way alarms reach people: policy first, then the channel's sender, with retries.

Theory of operation::

    notify(n) --> FlapSuppressor.decide(n, now)
        SUPPRESS  --> result(suppressed=True, attempts=0); counted in ``suppressed``
        SEND      --> the sender for n.channel, retried by ``Retrying`` while retryable
        FLAPPING  --> the same, but with a "this alarm keeps changing" summary instead of n;
                      a timer on the clock then waits for the alarm to be stable for the flap
                      window and sends its latest message (its current state) once
    a failed send is handed back to the suppressor (record_failure), so the alarm's next
    message is not taken for a duplicate of one that never arrived

The dispatcher keeps nothing but counters and the policy's memory: the caller persists each
``DeliveryResult`` (``notify`` never errbacks).
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .model import Channel, DeliveryResult, Notification, Sender
from .policy import Action, Decision, FlapSuppressor, Retrying

__all__ = ["Dispatcher", "flapping_summary"]

log = Logger()


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def flapping_summary(
    notification: Notification, decision: Decision, window_s: float
) -> Notification:
    """The one message sent when an alarm starts flapping, in place of its latest change."""
    stable = _duration(window_s)
    if notification.channel == "sms":
        body = (
            f"{notification.subject}: this alarm keeps changing. Updates paused until it has "
            f"been stable for {stable}."
        )
    else:
        body = (
            f'The alarm "{notification.subject}" keeps being raised and cleared '
            f"({decision.reason}).\n\n"
            f"Further changes are held back until it has been stable for {stable}; "
            f"you will then receive its current state.\n\n"
            f"Latest message:\n\n{notification.body}"
        )
    return Notification(
        channel=notification.channel,
        recipient=notification.recipient,
        subject=f"Alarm flapping: {notification.subject}",
        body=body,
        alarm_key=notification.alarm_key,
        created_s=notification.created_s,
        state=notification.state,
    )


class Dispatcher(Service):
    """Applies the notification policy and sends through the channel's sender.

    An ``IService``: ``stopService`` (or :meth:`stop`) stops the settle timer, refuses new
    notifications and waits for the sends in flight, retries included.

    Counters for metrics: ``sent`` (delivered, summaries and settled states included), ``failed``
    (gave up, after retries), ``suppressed`` (held back by the policy), ``flapping`` (flapping
    summaries sent), ``settled`` (current states sent after a flap ended).
    """

    def __init__(
        self,
        clock: IReactorTime,
        senders: Mapping[Channel, Sender],
        suppressor: FlapSuppressor,
        *,
        retrying: Retrying | None = None,
    ) -> None:
        self.clock = clock
        self.senders = dict(senders)
        self.suppressor = suppressor
        self.retrying = retrying if retrying is not None else Retrying()
        self.sent = 0
        self.failed = 0
        self.suppressed = 0
        self.flapping = 0
        self.settled = 0
        self._in_flight: set[Deferred[DeliveryResult]] = set()
        self._settle_call: IDelayedCall | None = None
        self._stopped = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def notify(self, notification: Notification) -> Deferred[DeliveryResult]:
        return self._track(Deferred.fromCoroutine(self._notify(notification)))

    def startService(self) -> None:  # noqa: N802
        Service.startService(self)

    def stopService(self) -> Deferred[None]:  # noqa: N802
        Service.stopService(self)
        return self.stop()

    def stop(self) -> Deferred[None]:
        """Stop the settle timer and take no more work; fires when every send in flight is done."""
        self._stopped = True
        if self._settle_call is not None and self._settle_call.active():
            self._settle_call.cancel()
        self._settle_call = None
        done: Deferred[None] = gatherResults(list(self._in_flight)).addCallback(lambda _: None)
        return done

    async def _notify(self, notification: Notification) -> DeliveryResult:
        if self._stopped:
            self.failed += 1
            return DeliveryResult(ok=False, detail="dispatcher stopped", attempts=0)
        decision = self.suppressor.decide(notification, self.clock.seconds())
        if decision.action is Action.SUPPRESS:
            self.suppressed += 1
            log.debug(
                "Held back {channel} to {recipient} for {alarm_key}: {reason}",
                channel=notification.channel,
                recipient=notification.recipient,
                alarm_key=notification.alarm_key,
                reason=decision.reason,
            )
            return DeliveryResult(
                ok=False, detail=f"suppressed: {decision.reason}", attempts=0, suppressed=True
            )
        if decision.action is Action.FLAPPING:
            self.flapping += 1
            self._schedule_settle()
            summary = flapping_summary(notification, decision, self.suppressor.flap_window_s)
            return await self._deliver(summary)
        return await self._deliver(notification)

    async def _deliver(self, notification: Notification) -> DeliveryResult:
        sender = self.senders.get(notification.channel)
        if sender is None:
            result = DeliveryResult(
                ok=False, detail=f"no sender for channel {notification.channel}", attempts=0
            )
        else:
            result = await self.retrying.run(self.clock, sender, notification)
        if result.ok:
            self.sent += 1
            log.info(
                "Sent {channel} to {recipient} for {alarm_key} ({attempts} attempt(s)): {detail}",
                channel=notification.channel,
                recipient=notification.recipient,
                alarm_key=notification.alarm_key,
                attempts=result.attempts,
                detail=result.detail,
            )
        else:
            self.failed += 1
            self.suppressor.record_failure(notification)
            log.warn(
                "Failed {channel} to {recipient} for {alarm_key} ({attempts} attempt(s)): {detail}",
                channel=notification.channel,
                recipient=notification.recipient,
                alarm_key=notification.alarm_key,
                attempts=result.attempts,
                detail=result.detail,
            )
        return result

    def _track(self, d: Deferred[DeliveryResult]) -> Deferred[DeliveryResult]:
        self._in_flight.add(d)

        def on_done(result: DeliveryResult) -> DeliveryResult:
            self._in_flight.discard(d)
            return result

        return d.addBoth(on_done)

    def _schedule_settle(self) -> None:
        if self._stopped or (self._settle_call is not None and self._settle_call.active()):
            return
        at_s = self.suppressor.next_settle_s()
        if at_s is None:
            return
        delay_s = max(0.0, at_s - self.clock.seconds())
        self._settle_call = self.clock.callLater(delay_s, self._on_settle_due)

    def _on_settle_due(self) -> None:
        self._settle_call = None
        for latest in self.suppressor.settled(self.clock.seconds()):
            self.settled += 1
            self._track(Deferred.fromCoroutine(self._deliver(latest)))
        self._schedule_settle()
