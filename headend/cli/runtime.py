"""Running a daemon from the command line: the one place that installs the reactor and configures
logging (STYLE.md rules 10 and 13).

``run(start)`` installs the asyncio reactor (pymodbus, amqtt and others need it), sends
twisted.logger events at ``level`` and above to stderr, calls ``start(reactor)`` once the reactor
runs, and stops cleanly on Ctrl-C or SIGTERM (Twisted's own signal handling), waiting for the
services' ``stopService``. Under systemd (``Type=notify``) it tells systemd READY=1 once ``start``
has succeeded, WATCHDOG=1 every WatchdogSec/2 and STOPPING=1 at shutdown (``sdnotify``); outside
systemd that is a no-op.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["install_reactor", "run"]


def install_reactor() -> Any:
    """The asyncio reactor, installed if no reactor is yet (idempotent)."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor

    return reactor


def run(start: Callable[[Any], Any], level: str = "info") -> int:
    """Run the reactor with ``start(reactor)`` called once it runs; returns the exit status."""
    reactor = install_reactor()
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    status = {"code": 0}
    from .sdnotify import SystemdNotifier, start_watchdog

    systemd = SystemdNotifier.from_environment()

    def ready(_: object) -> None:
        systemd.notify("READY=1")
        start_watchdog(systemd, reactor)

    def started() -> None:
        from twisted.internet import defer

        def failed(failure: Any) -> None:
            print(f"amr: {failure.getErrorMessage()}", file=sys.stderr)
            status["code"] = 1
            reactor.stop()

        defer.maybeDeferred(start, reactor).addCallback(ready).addErrback(failed)
        reactor.addSystemEventTrigger("before", "shutdown", systemd.notify, "STOPPING=1")

    reactor.callWhenRunning(started)
    reactor.run()
    return status["code"]
