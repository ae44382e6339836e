"""A pseudo-terminal pair the simulator creates, so a client can open a real serial device.

The simulator keeps the master side (a Twisted file descriptor); clients open the slave device
(``/dev/pts/N``, also reachable through a stable symlink) with any serial library or tool. The
slave is set to raw mode, and the simulator keeps it open so the pair survives clients coming
and going.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from pathlib import Path

from twisted.internet import abstract, fdesc
from twisted.internet.interfaces import IReactorFDSet
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

__all__ = ["PtyLine"]


class PtyLine(abstract.FileDescriptor):
    """The master side of a pty pair, carrying bytes to and from ``protocol``."""

    def __init__(
        self, protocol: Protocol, reactor: IReactorFDSet, link: Path | None = None
    ) -> None:
        super().__init__(reactor)
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        fdesc.setNonBlocking(master)
        self._master = master
        self._slave = slave
        self.device = os.ttyname(slave)
        self.link = link
        if link is not None:
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(self.device)
        self.protocol = protocol
        self.connected = 1
        protocol.makeConnection(self)
        self.startReading()

    def write(self, data: bytes) -> None:
        """Write at once when nothing is queued (saves a reactor pass per reply)."""
        if not self.dataBuffer and not self._tempDataBuffer and self.connected:
            written = fdesc.writeToFD(self._master, data)
            if isinstance(written, int) and written == len(data):
                return
            if isinstance(written, int) and written > 0:
                data = data[written:]
        super().write(data)

    def fileno(self) -> int:
        return self._master

    def doRead(self) -> object:  # noqa: N802 - Twisted's name
        return fdesc.readFromFD(self._master, self.protocol.dataReceived)

    def writeSomeData(self, data: bytes) -> int | BaseException:  # noqa: N802 - Twisted's name
        written: int | BaseException = fdesc.writeToFD(self._master, data)
        return written

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        super().connectionLost(reason)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()
        self.protocol.connectionLost(reason)

    def close(self) -> None:
        self.loseConnection()
