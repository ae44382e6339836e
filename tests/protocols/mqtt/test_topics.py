"""Topic names, filters and matching: the examples of MQTT 5.0 §4.7 and §4.8.2."""

from __future__ import annotations

import pytest

from protocols.mqtt import (
    MqttUsageError,
    SharedFilter,
    parse_shared,
    topic_filter_problem,
    topic_matches,
    topic_name_problem,
)

MATCHES = [
    # §4.7.1.2 "sport/tennis/player1/#" matches ...
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),  # "also matches the singular 'sport'"
    ("#", "sport/tennis", True),
    ("#", "/", True),
    # §4.7.1.3
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/tennis/#", "sport/tennis/x/y", True),
    ("+", "a", True),
    # plain
    ("a/b", "a/b", True),
    ("a/b", "a/b/c", False),
    ("a/b/c", "a/b", False),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("A", "a", False),  # case-sensitive
    # §4.7.2: $-topics are not matched by a leading wildcard
    ("#", "$SYS/broker/clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("a/#", "a/$x", True),  # only the first level counts
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_filter_problem(topic_filter) is None
    assert topic_name_problem(topic) is None
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "+", "sport/tennis/#", "+/tennis/#", "sport/+/player1", "/", "//", "a/+/+", "$SYS/#"],
)
def test_valid_filters(topic_filter: str) -> None:
    assert topic_filter_problem(topic_filter) is None


@pytest.mark.parametrize(
    "topic_filter",
    [
        "",  # [MQTT-4.7.3-1]
        "sport/tennis#",  # [MQTT-4.7.1-1]
        "sport/tennis/#/ranking",
        "##",
        "sport+",  # [MQTT-4.7.1-2]
        "+a/b",
        "a/b\x00",  # [MQTT-4.7.3-2]
        "x" * 65_536,  # [MQTT-4.7.3-3]
    ],
)
def test_invalid_filters(topic_filter: str) -> None:
    assert topic_filter_problem(topic_filter) is not None


@pytest.mark.parametrize("topic", ["", "a/+", "#", "a/#/b", "a\x00"])
def test_invalid_topic_names(topic: str) -> None:
    assert topic_name_problem(topic) is not None


def test_shared_subscriptions() -> None:
    assert parse_shared("$share/consumer1/sport/tennis/+") == SharedFilter(
        "consumer1", "sport/tennis/+"
    )
    assert parse_shared("$share/g/#") == SharedFilter("g", "#")
    assert str(SharedFilter("g", "a/b")) == "$share/g/a/b"
    assert parse_shared("sport/#") is None
    assert parse_shared("$sharex/g/t") is None  # not a shared filter: an ordinary $ filter


@pytest.mark.parametrize(
    "topic_filter",
    [
        "$share/",  # [MQTT-4.8.2-1]
        "$share//t",
        "$share/g",  # [MQTT-4.8.2-2]: the share name must be followed by "/"
        "$share/g/",  # ... and that "/" by a topic filter
        "$share/g+/t",
        "$share/#/t",
        "$share/g/a#",
    ],
)
def test_invalid_shared_filters(topic_filter: str) -> None:
    assert topic_filter_problem(topic_filter) is not None
    with pytest.raises(MqttUsageError):
        parse_shared(topic_filter)
