"""What a notification is, what became of it, and the errors of the notify package.

A :class:`Notification` is one message to one recipient over one channel, raised by an alarm. The
senders turn every outcome into a :class:`DeliveryResult` (they never errback), so a caller can
persist the result as is; ``retryable`` tells :func:`~headend.notify.policy.send_with_retry`
whether trying again could help (a timeout, a 4xx SMTP reply, an HTTP 503) or not (a 550
"no such mailbox", an HTTP 400).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

from twisted.internet.defer import Deferred

__all__ = [
    "AlarmState",
    "Channel",
    "DeliveryResult",
    "InvalidNotification",
    "Notification",
    "NotifyError",
    "Secret",
    "Sender",
    "SenderConfigError",
]

Channel = Literal["email", "sms"]
AlarmState = Literal["raised", "cleared"]

_CHANNELS: tuple[str, ...] = get_args(Channel)
_STATES: tuple[str, ...] = get_args(AlarmState)
_LINE_BREAKS = ("\r", "\n", "\0")


class NotifyError(Exception):
    """Base of the notify package's errors."""


class InvalidNotification(NotifyError, ValueError):
    """A notification that cannot be sent as built (bad channel, a line break in a header...)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class SenderConfigError(NotifyError, ValueError):
    """A sender constructed with settings it cannot work with; raised before anything is sent."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class Secret:
    """A password or API token that does not show itself.

    ``repr()``, ``str()`` and f-strings print ``<secret>``; only :meth:`reveal` gives the value, so
    a secret that ends up in a log line or a traceback by accident shows nothing.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Secret:
        """Read a secret from a file (trailing newline dropped), the way deployments provide them."""
        return cls(Path(path).read_text(encoding="utf-8").rstrip("\r\n"))

    @classmethod
    def from_env(cls, name: str) -> Secret:
        try:
            return cls(os.environ[name])
        except KeyError:
            raise SenderConfigError(name, "environment variable is not set") from None

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:  # pragma: no cover - a guard, not a feature
        raise TypeError("a Secret is not pickled")


def _check_one_line(field: str, value: str) -> None:
    if any(c in value for c in _LINE_BREAKS):
        raise InvalidNotification(field, "must not contain a line break or NUL")


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one recipient.

    ``alarm_key`` names the alarm condition (``"low-credit:0101234567"``); with the channel and the
    recipient it is what the flap suppressor de-duplicates on. ``state`` says whether this message
    reports the alarm being raised or cleared: a change of state is what counts as a flap.
    ``created_s`` is when the alarm was seen (seconds since the epoch, from the caller's clock).
    """

    channel: Channel
    recipient: str
    subject: str
    body: str
    alarm_key: str
    created_s: float
    state: AlarmState = "raised"

    def __post_init__(self) -> None:
        if self.channel not in _CHANNELS:
            raise InvalidNotification("channel", f"must be one of {', '.join(_CHANNELS)}")
        if self.state not in _STATES:
            raise InvalidNotification("state", f"must be one of {', '.join(_STATES)}")
        if not self.recipient.strip():
            raise InvalidNotification("recipient", "must not be empty")
        if not self.alarm_key:
            raise InvalidNotification("alarm_key", "must not be empty")
        _check_one_line("recipient", self.recipient)
        _check_one_line("subject", self.subject)
        _check_one_line("alarm_key", self.alarm_key)
        if self.channel == "email" and "@" not in self.recipient:
            raise InvalidNotification("recipient", "an e-mail address needs an @")

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        """What identifies "the same alarm for the same person": channel, recipient, alarm key."""
        return (self.channel, self.recipient, self.alarm_key)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What became of a notification.

    ``ok`` is true only when the provider accepted the message. ``attempts`` counts the sends
    made (0 when the policy suppressed it, ``suppressed`` then says so and ``detail`` says why).
    ``provider_id`` is what the provider calls the message (the SMS gateway's message id, the
    e-mail's Message-ID), for matching later delivery reports and bounces.
    """

    ok: bool
    detail: str
    attempts: int = 1
    provider_id: str | None = None
    retryable: bool = False
    suppressed: bool = False


class Sender(Protocol):
    """A channel's sender. ``send`` never errbacks: every failure is a ``DeliveryResult``."""

    def send(self, notification: Notification) -> Deferred[DeliveryResult]: ...
