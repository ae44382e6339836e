"""MQTT topics of the gateway <-> head-end contract, version 1.

    amr/v1/gw/{gateway_id}/state        up    retained; the last will says offline
    amr/v1/gw/{gateway_id}/readings     up    batches of readings
    amr/v1/gw/{gateway_id}/events       up    alarms raised/cleared, meter events
    amr/v1/gw/{gateway_id}/cmd/status   up    each state change of a command
    amr/v1/gw/{gateway_id}/health       up    bus and journal health
    amr/v1/gw/{gateway_id}/cmd          down  commands (tokens, relay, tariffs, ...)
    amr/v1/gw/{gateway_id}/ack          down  the head-end's commit acknowledgements (seq ranges)

A gateway id is 1..64 characters of ``[A-Za-z0-9_-]``: no ``/``, ``+`` or ``#``, so it can never
reach into another gateway's topics, and a broker ACL can confine each gateway with ``%c``/``%u``.
"""

from __future__ import annotations

import re
from enum import Enum

from .errors import LinkError

__all__ = [
    "ROOT",
    "Topic",
    "gateway_topic",
    "parse_topic",
    "shared_subscription",
    "validate_gateway_id",
]

ROOT = "amr/v1/gw"
_GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Topic(Enum):
    STATE = "state"
    READINGS = "readings"
    EVENTS = "events"
    COMMAND_STATUS = "cmd/status"
    HEALTH = "health"
    COMMAND = "cmd"
    ACK = "ack"

    @property
    def uplink(self) -> bool:
        return self not in (Topic.COMMAND, Topic.ACK)


def validate_gateway_id(gateway_id: str) -> str:
    if not isinstance(gateway_id, str) or not _GATEWAY_ID.match(gateway_id):
        raise LinkError(f"gateway id must be 1..64 of A-Z a-z 0-9 _ -, got {gateway_id!r}")
    return gateway_id


def gateway_topic(gateway_id: str, topic: Topic) -> str:
    return f"{ROOT}/{validate_gateway_id(gateway_id)}/{topic.value}"


def parse_topic(name: str) -> tuple[str, Topic]:
    """(gateway id, topic) of a topic name; LinkError for anything outside the contract."""
    prefix = ROOT + "/"
    if not name.startswith(prefix):
        raise LinkError(f"topic {name!r} is not under {ROOT}/")
    gateway_id, _, rest = name[len(prefix) :].partition("/")
    validate_gateway_id(gateway_id)
    for topic in Topic:
        if topic.value == rest:
            return gateway_id, topic
    raise LinkError(f"unknown topic {rest!r} for gateway {gateway_id}")


def shared_subscription(topic: Topic, group: str = "headend") -> str:
    """The MQTT v5 shared subscription with which head-end processes split a topic."""
    return f"$share/{group}/{ROOT}/+/{topic.value}"
