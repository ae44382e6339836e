"""Alarms to people: notification rules -> e-mail / SMS, with flap suppression, every outcome stored.

A rule names an alarm kind (or ``*``), a channel and a recipient: an address, or ``customer`` for
the meter's account holder (their e-mail or phone). A low-credit message says how many days of
credit are left at the meter's recent rate of consumption.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger

from .notify.dispatcher import Dispatcher as NotifyDispatcher
from .notify.email import SmtpSender
from .notify.model import DeliveryResult, Notification, Sender
from .notify.policy import FlapSuppressor
from .notify.sms import HttpSmsSender
from .records import RaisedAlarm, thd_days_of_credit
from .store.schema import accounts, customers, notification_rules, notifications

__all__ = ["AlarmNotifier", "make_notifier", "thd_recipients"]

log = Logger()

TEXT = {
    "low_credit": "Meter {meter}: credit is low{days}. Buy electricity soon to avoid disconnection.",
    "credit_exhausted": "Meter {meter}: credit is used up; the supply is off until you buy more.",
}


def thd_recipients(connection: sa.Connection, alarm: RaisedAlarm, window_days: int,
                   now: float) -> tuple[list[tuple[str, str]], float | None]:  # fmt: skip
    """(channel, recipient) pairs the rules give for ``alarm``, and the days of credit left."""
    rules = connection.execute(
        sa.select(notification_rules).where(
            notification_rules.c.enabled.is_(True),
            notification_rules.c.kind.in_((alarm.kind, "*")),
        )
    ).all()
    customer = connection.execute(
        sa.select(customers.c.email, customers.c.phone)
        .join(accounts, accounts.c.customer_id == customers.c.id)
        .where(accounts.c.meter_id == alarm.meter_id, accounts.c.status != "closed")
    ).first()
    found: list[tuple[str, str]] = []
    for rule in rules:
        if rule.recipient != "customer":
            found.append((rule.channel, rule.recipient))
        elif customer is not None:
            address = customer.email if rule.channel == "email" else customer.phone
            if address:
                found.append((rule.channel, address))
    days = None
    if alarm.kind in ("low_credit", "credit_exhausted"):
        days = thd_days_of_credit(connection, alarm.meter_id, now, window_days)
    return sorted(set(found)), days


def thd_record(connection: sa.Connection, alarm_id: int, notification: Notification,
               result: DeliveryResult, now: float) -> None:  # fmt: skip
    outcome = "suppressed" if result.suppressed else ("sent" if result.ok else "failed")
    connection.execute(sa.insert(notifications).values(
        alarm_id=alarm_id, channel=notification.channel, recipient=notification.recipient,
        subject=notification.subject, outcome=outcome, detail=result.detail[:500], at=now))  # fmt: skip


class AlarmNotifier:
    def __init__(self, db: Any, clock: Any, dispatcher: NotifyDispatcher,
                 window_days: int) -> None:  # fmt: skip
        self.db = db
        self.clock = clock
        self.dispatcher = dispatcher
        self.window_days = window_days
        self.pending: set[defer.Deferred[None]] = set()

    def alarms_raised(self, raised: list[RaisedAlarm]) -> None:
        for alarm in raised:
            done = defer.ensureDeferred(self._notify(alarm))
            self.pending.add(done)
            done.addErrback(lambda f: log.failure("Notifying an alarm failed", f))

            def forget(_: object, finished: defer.Deferred[None] = done) -> None:
                self.pending.discard(finished)

            done.addBoth(forget)

    async def _notify(self, alarm: RaisedAlarm) -> None:
        now = self.clock.seconds()
        recipients, days = await self.db.run(thd_recipients, alarm, self.window_days, now)
        left = "" if days is None else f" (about {days:.1f} days left at your recent use)"
        body = TEXT.get(alarm.kind, "Meter {meter}: alarm {kind} raised. {detail}").format(
            meter=alarm.meter_id, days=left, kind=alarm.kind, detail=alarm.detail
        )
        subject = f"[{alarm.severity}] {alarm.kind.replace('_', ' ')} on meter {alarm.meter_id}"
        for channel, recipient in recipients:
            if channel not in self.dispatcher.senders:
                continue
            notification = Notification(channel, recipient, subject, body,
                                        f"{alarm.kind}:{alarm.meter_id}", alarm.raised_at)  # fmt: skip
            result = await self.dispatcher.notify(notification)
            await self.db.run(thd_record, alarm.id, notification, result, self.clock.seconds())

    def drained(self) -> defer.Deferred[Any]:
        return defer.DeferredList(list(self.pending))


def make_notifier(app: Any) -> AlarmNotifier:
    config = app.config.notify
    senders: dict[Any, Sender] = {}
    if config.smtp is not None:
        smtp = config.smtp
        senders["email"] = SmtpSender(
            app.clock, smtp.host, smtp.port, smtp.sender, username=smtp.username,
            password=app.config.secret(smtp.password_env), starttls=smtp.starttls,
        )  # fmt: skip
    if config.sms is not None:
        sms = config.sms
        token = app.config.secret(sms.token_env)
        senders["sms"] = HttpSmsSender(
            app.clock, sms.url, method=sms.method,
            body_template=None if sms.method == "GET" else dict(sms.body),
            headers={"Authorization": f"Bearer {token}"} if token else None,
        )  # fmt: skip
    suppressor = FlapSuppressor(config.min_interval_s, config.max_per_hour, config.flap_window_s,
                                config.flap_threshold)  # fmt: skip
    dispatcher = NotifyDispatcher(app.clock, senders, suppressor)
    return AlarmNotifier(app.db, app.clock, dispatcher, app.config.alarms.consumption_days)
