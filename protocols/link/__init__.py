"""The gateway <-> head-end MQTT contract, version 1: topics, messages, signatures, seq ranges.

Pure: it turns messages into (topic, payload) and back, with a LinkError that names the field
when a payload is malformed. ``docs/mqtt-contract.md`` describes it for integrators.
"""

from __future__ import annotations

from .errors import LinkError, SignatureError
from .messages import (
    MAX_PAYLOAD_BYTES,
    Ack,
    Command,
    CommandState,
    CommandStatus,
    CommandType,
    Event,
    EventBatch,
    EventState,
    GatewayState,
    Health,
    Message,
    Reading,
    ReadingBatch,
    decode_message,
    encode_message,
)
from .seqranges import merge_ranges, to_ranges
from .signing import canonical_bytes, sign_command, verify_command
from .topics import (
    ROOT,
    Topic,
    gateway_topic,
    parse_topic,
    shared_subscription,
    validate_gateway_id,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "ROOT",
    "Ack",
    "Command",
    "CommandState",
    "CommandStatus",
    "CommandType",
    "Event",
    "EventBatch",
    "EventState",
    "GatewayState",
    "Health",
    "LinkError",
    "Message",
    "Reading",
    "ReadingBatch",
    "SignatureError",
    "Topic",
    "canonical_bytes",
    "decode_message",
    "encode_message",
    "gateway_topic",
    "merge_ranges",
    "parse_topic",
    "shared_subscription",
    "sign_command",
    "to_ranges",
    "validate_gateway_id",
    "verify_command",
]
