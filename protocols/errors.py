"""Errors shared by the field protocol codecs (Modbus, DL/T 645, Q/GDW 1376.2).

As in h11: :class:`RemoteProtocolError` means the peer (a meter, a PLC module, a capture someone
pasted) sent bytes that break the protocol; :class:`LocalProtocolError` means our own code asked a
codec for something the protocol cannot express. Both carry a plain message that says what is wrong
(checksum, length, end byte, ...), fit to show a field technician.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of every codec error."""


class LocalProtocolError(ProtocolError, ValueError):
    """We asked for a frame or value the protocol cannot carry."""


class RemoteProtocolError(ProtocolError):
    """Received bytes that do not form a valid frame or message."""
