"""Every notify test fails if Twisted logged an error while it ran: an unhandled errback, an
exception in a timed call or a protocol callback is a bug even when the result looked right."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from zope.interface import implementer


@implementer(ILogObserver)
class LogEvents(list[dict[str, Any]]):
    """Every log event emitted while it observes."""

    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)

    def text(self) -> str:
        """All the events, formatted and raw, as one string to search for what must not be there."""
        return "\n".join(f"{formatEvent(e)}\n{e!r}" for e in self)


@pytest.fixture(autouse=True)
def log_events() -> Iterator[LogEvents]:
    events = LogEvents()
    globalLogPublisher.addObserver(events)
    try:
        yield events
        gc.collect()  # an unhandled error in a Deferred is logged when the Deferred is collected
    finally:
        globalLogPublisher.removeObserver(events)
    errors = [
        formatEvent(e) + (f"\n{e['log_failure'].getTraceback()}" if "log_failure" in e else "")
        for e in events
        if "log_failure" in e or e.get("log_level") in (LogLevel.error, LogLevel.critical)
    ]
    assert errors == [], "\n".join(errors)
