"""systemd's service notification protocol, sd_notify(3), for the daemons' ``Type=notify`` units.

systemd hands a ``Type=notify`` service the address of an AF_UNIX datagram socket in
``$NOTIFY_SOCKET`` (a path, or an abstract socket written with a leading ``@``). The service sends
newline-separated ``KEY=VALUE`` assignments to it:

    READY=1        start-up is finished: ``systemctl start`` returns, units ordered after us start
    WATCHDOG=1     "still alive"; with ``WatchdogSec=`` set, systemd passes ``$WATCHDOG_USEC`` (and
                   ``$WATCHDOG_PID``) and kills and restarts a service that stays silent that long
    STOPPING=1     shutting down: a slow stop is not a hang

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op. Sending never raises: a lost
notification must not stop a daemon (systemd treats a missing READY or WATCHDOG as the failure,
which is what the unit's ``Restart=`` is for).

The watchdog ping runs from a Twisted ``LoopingCall`` on the daemon's reactor every
``WatchdogSec/2``, so it proves what matters: the reactor still turns. A reactor blocked by a
runaway call stops the pings and systemd restarts the daemon.

This module is the daemons' runtime glue, beside ``headend.cli.runtime.run`` which calls it and
which both ``amr headend`` and ``amr concentrator`` already use (as the concentrator already uses
``headend.mqtt``): protocols/ must stay free of I/O, and headend/ is where the shared daemon
runtime lives. It imports nothing from headend (and no Twisted at module level).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

__all__ = ["SystemdNotifier", "start_watchdog"]


class SystemdNotifier:
    """Sends sd_notify messages to one address (or nothing, when ``address`` is None)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._socket: socket.socket | None = None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> SystemdNotifier:
        """The notifier systemd asked for: ``$NOTIFY_SOCKET``, and ``$WATCHDOG_USEC`` when
        ``$WATCHDOG_PID`` is unset or this process (as sd_watchdog_enabled(3) checks)."""
        environ = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        watchdog: int | None = None
        try:
            usec = int(environ.get("WATCHDOG_USEC", ""))
            owner = environ.get("WATCHDOG_PID")
            if owner is None or int(owner) == pid:
                watchdog = usec
        except ValueError:
            watchdog = None
        return cls(environ.get("NOTIFY_SOCKET"), watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the watchdog timeout, as sd_watchdog_enabled(3)
        recommends; None when systemd set no watchdog."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):  # an abstract socket: a NUL byte, then the name
            return b"\0" + self.address[1:].encode()
        return self.address

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it was sent."""
        if not self.enabled or not assignments:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._socket.sendto("\n".join(assignments).encode(), self._target())
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def start_watchdog(notifier: SystemdNotifier, clock: Any) -> Any:
    """A running ``LoopingCall`` (on ``clock``, an IReactorTime) that sends WATCHDOG=1 every
    ``watchdog_interval_s``, the first one at once; None when there is no watchdog."""
    interval = notifier.watchdog_interval_s
    if interval is None:
        return None
    from twisted.internet import task

    loop = task.LoopingCall(notifier.notify, "WATCHDOG=1")
    loop.clock = clock
    loop.start(interval, now=True)
    return loop
