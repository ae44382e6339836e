"""Signed commands: a compromised broker account must not be able to disconnect a town.

The head-end signs every command except STS tokens (which authenticate themselves) with Ed25519
(RFC 8032, via ``cryptography``). The signature covers the canonical JSON of the command body
(sorted keys, no spaces, UTF-8) and travels base64-encoded in ``sig``; the gateway verifies it with
the head-end's public key from its configuration before it acts.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import SignatureError
from .messages import Command, _json_default

__all__ = ["canonical_bytes", "sign_command", "verify_command"]


def canonical_bytes(command: Command) -> bytes:
    body = command.signed_body()
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_default).encode()


def sign_command(command: Command, key: Ed25519PrivateKey) -> Command:
    """The command with its ``signature`` set."""
    signature = key.sign(canonical_bytes(command))
    return replace(command, signature=base64.b64encode(signature).decode())


def verify_command(command: Command, key: Ed25519PublicKey) -> None:
    """Raise SignatureError unless the command carries a valid signature by ``key``."""
    if not command.signature:
        raise SignatureError(f"command {command.cmd_id} ({command.type.value}) is not signed")
    try:
        signature = base64.b64decode(command.signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"command {command.cmd_id}: signature is not base64") from None
    try:
        key.verify(signature, canonical_bytes(command))
    except InvalidSignature:
        raise SignatureError(
            f"command {command.cmd_id}: signature does not verify with the head-end's key"
        ) from None
