"""Alarm notifications to customers and staff: e-mail over SMTP, SMS through an HTTP gateway.

:class:`Dispatcher` applies the policy (:class:`FlapSuppressor`: duplicates, rate limit, flapping
alarms) and retries transient failures (:class:`Retrying`); :class:`SmtpSender` and
:class:`HttpSmsSender` do the sending. Every outcome is a :class:`DeliveryResult`, for the caller
to persist: nothing here touches a database.
"""

from .dispatcher import Dispatcher, flapping_summary
from .email import SmtpSender, build_message
from .model import (
    AlarmState,
    Channel,
    DeliveryResult,
    InvalidNotification,
    Notification,
    NotifyError,
    Secret,
    Sender,
    SenderConfigError,
)
from .policy import Action, Decision, FlapSuppressor, Retrying, send_with_retry
from .sms import HttpSmsSender, SmsText, fit_sms_text

__all__ = [
    "Action",
    "AlarmState",
    "Channel",
    "Decision",
    "DeliveryResult",
    "Dispatcher",
    "FlapSuppressor",
    "HttpSmsSender",
    "InvalidNotification",
    "Notification",
    "NotifyError",
    "Retrying",
    "Secret",
    "Sender",
    "SenderConfigError",
    "SmsText",
    "SmtpSender",
    "build_message",
    "fit_sms_text",
    "flapping_summary",
    "send_with_retry",
]
