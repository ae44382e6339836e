"""Errors of the gateway <-> head-end link contract."""

from __future__ import annotations

from protocols.errors import RemoteProtocolError

__all__ = ["LinkError", "SignatureError"]


class LinkError(RemoteProtocolError):
    """A topic or message that is not part of the contract (malformed, wrong type, out of range)."""


class SignatureError(LinkError):
    """A command whose head-end signature is missing or does not verify."""
