"""MQTT topic names, topic filters, wildcard matching and shared subscriptions. Pure, no I/O.

Theory of operation. A topic is split on ``/`` into levels (5.0 §4.7.1.1: "The forward slash
('/' U+002F) is used to separate each level within a topic tree"); empty levels are real levels
(``/finance`` has two, ``""`` and ``finance``). A filter matches a name level by level:

* §4.7.1.2: "The number sign ('#' U+0023) is a wildcard character that matches any number of
  levels within a topic. ... The multi-level wildcard character MUST be specified either on its
  own or following a topic level separator. In either case it MUST be the last character
  specified in the Topic Filter [MQTT-4.7.1-1]." It also matches the parent level: ``sport/#``
  matches ``sport``.
* §4.7.1.3: "The single-level wildcard can be used at any level in the Topic Filter, including
  first and last levels. Where it is used, it MUST occupy an entire level of the filter
  [MQTT-4.7.1-2]." ``sport/+`` matches ``sport/`` but not ``sport``.
* §4.7.2: "The Server MUST NOT match Topic Filters starting with a wildcard character (# or +)
  with Topic Names beginning with a $ character [MQTT-4.7.2-1]."
* §4.7.3: "All Topic Names and Topic Filters MUST be at least one character long [MQTT-4.7.3-1]";
  they "MUST NOT include the null character (Unicode U+0000) [MQTT-4.7.3-2]" and "MUST NOT encode
  to more than 65,535 bytes [MQTT-4.7.3-3]". §3.3.2.1: "The Topic Name in the PUBLISH packet MUST
  NOT contain wildcard characters [MQTT-3.3.2-2]".

Shared subscriptions, 5.0 §4.8.2: ``$share/{ShareName}/{filter}``. "A Shared Subscription's Topic
Filter MUST start with $share/ and MUST contain a ShareName that is at least one character long
[MQTT-4.8.2-1]. The ShareName MUST NOT contain the characters "/", "+" or "#", but MUST be
followed by a "/" character. This "/" character MUST be followed by a Topic Filter
[MQTT-4.8.2-2]". The filter after it is an ordinary one and matches as above.

The validators return a problem (a short text) or None, so that the broker can turn a bad filter
into a SUBACK reason code rather than an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import MqttUsageError
from .wire import utf8_problem

__all__ = [
    "SHARE_PREFIX",
    "SharedFilter",
    "filter_matches",
    "parse_shared",
    "split_levels",
    "topic_filter_problem",
    "topic_matches",
    "topic_name_problem",
]

SHARE_PREFIX: Final = "$share/"
SEPARATOR: Final = "/"
MULTI_LEVEL: Final = "#"
SINGLE_LEVEL: Final = "+"


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` cannot be a PUBLISH topic name (None if it can)."""
    if not topic:
        return "topic name is empty [MQTT-4.7.3-1]"
    if MULTI_LEVEL in topic or SINGLE_LEVEL in topic:
        return f"topic name {topic[:60]!r} contains a wildcard [MQTT-3.3.2-2]"
    problem = utf8_problem(topic)
    return None if problem is None else f"topic name {problem}"


def _plain_filter_problem(topic_filter: str) -> str | None:
    if not topic_filter:
        return "topic filter is empty [MQTT-4.7.3-1]"
    problem = utf8_problem(topic_filter)
    if problem is not None:
        return f"topic filter {problem}"
    levels = topic_filter.split(SEPARATOR)
    for index, level in enumerate(levels):
        if MULTI_LEVEL in level and (level != MULTI_LEVEL or index != len(levels) - 1):
            return f"topic filter {topic_filter[:60]!r}: '#' must be a whole, last level [MQTT-4.7.1-1]"
        if SINGLE_LEVEL in level and level != SINGLE_LEVEL:
            return f"topic filter {topic_filter[:60]!r}: '+' must be a whole level [MQTT-4.7.1-2]"
    return None


@dataclass(frozen=True, slots=True)
class SharedFilter:
    """``$share/{share_name}/{topic_filter}`` taken apart (5.0 §4.8.2)."""

    share_name: str
    topic_filter: str

    def __post_init__(self) -> None:
        if not self.share_name or any(c in self.share_name for c in "/+#"):
            raise MqttUsageError(
                f"share name {self.share_name!r} must be non-empty, without '/', '+' or '#'"
            )
        problem = _plain_filter_problem(self.topic_filter)
        if problem is not None:
            raise MqttUsageError(problem)

    def __str__(self) -> str:
        return f"{SHARE_PREFIX}{self.share_name}/{self.topic_filter}"


def _shared_problem(topic_filter: str) -> str | None:
    rest = topic_filter[len(SHARE_PREFIX) :]
    share_name, separator, inner = rest.partition(SEPARATOR)
    if not share_name or not separator:
        return (
            f"shared subscription {topic_filter[:60]!r} needs $share/{{ShareName}}/{{filter}} "
            "[MQTT-4.8.2-1]"
        )
    if SINGLE_LEVEL in share_name or MULTI_LEVEL in share_name:
        return f"share name {share_name!r} contains a wildcard [MQTT-4.8.2-2]"
    problem = _plain_filter_problem(inner)
    return None if problem is None else f"shared subscription: {problem} [MQTT-4.8.2-2]"


def topic_filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid SUBSCRIBE filter, shared ones included (None if valid)."""
    if topic_filter.startswith(SHARE_PREFIX):
        return _shared_problem(topic_filter)
    return _plain_filter_problem(topic_filter)


def parse_shared(topic_filter: str) -> SharedFilter | None:
    """The parts of a ``$share/...`` filter, None for an ordinary filter.

    MqttUsageError if ``topic_filter`` starts with ``$share/`` but is not a valid shared filter
    (check :func:`topic_filter_problem` first to get a reason instead).
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    problem = _shared_problem(topic_filter)
    if problem is not None:
        raise MqttUsageError(problem)
    share_name, _, inner = topic_filter[len(SHARE_PREFIX) :].partition(SEPARATOR)
    return SharedFilter(share_name, inner)


def split_levels(topic: str) -> tuple[str, ...]:
    """The levels of a topic name or filter (``"a//b"`` has three: ``a``, ``""``, ``b``)."""
    return tuple(topic.split(SEPARATOR))


def filter_matches(filter_levels: tuple[str, ...], topic_levels: tuple[str, ...]) -> bool:
    """Whether a valid, non-shared filter matches a valid topic name, both split into levels.

    The split form lets a broker split each filter once, and each published topic once.
    """
    if topic_levels[0].startswith("$") and filter_levels[0] in (MULTI_LEVEL, SINGLE_LEVEL):
        return False  # [MQTT-4.7.2-1]
    for index, level in enumerate(filter_levels):
        if level == MULTI_LEVEL:
            return True  # matches this level and everything below it, parent included
        if index >= len(topic_levels):
            return False
        if level != SINGLE_LEVEL and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether the ordinary (non-shared) ``topic_filter`` matches the topic name ``topic``."""
    return filter_matches(split_levels(topic_filter), split_levels(topic))
