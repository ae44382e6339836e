"""The MQTT contract: what goes over the wire, and what a malformed or forged message gets."""

from __future__ import annotations

import contextlib
import itertools
import json
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.link import (
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
    LinkError,
    Reading,
    ReadingBatch,
    SignatureError,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    merge_ranges,
    parse_topic,
    shared_subscription,
    sign_command,
    to_ranges,
    verify_command,
)

T = 1767225600.0
MESSAGES = [
    ReadingBatch(
        "gw-1",
        7,
        T,
        (
            Reading(
                "12000010012",
                T - 1,
                {
                    "energy_import_total": Decimal("1234.56"),
                    "relay_state": 0,
                    "credit_remaining": Decimal("-1.25"),
                },
                T - 2,
            ),
        ),
    ),
    EventBatch(
        "gw-1", 8, T, (Event("12000010012", T, "low_credit", EventState.RAISED, "9.5 kWh"),)
    ),
    CommandStatus("gw-1", 9, T, "c-42", CommandState.APPLIED, 1, "Accept", {"credit_kwh": "20.00"}),
    Health("gw-1", 10, T, {"bus.rtu1.timeouts": 3}),
    GatewayState("gw-1", T, True, "0.1.0", ("12000010012",)),
    Command("c-42", CommandType.TOKEN, "12000010012", T + 600, 1, {"tokens": ["1" * 20]}),
    Ack(((1, 10), (12, 12))),
    Ack(((1, 10),), T),  # with the head-end's clock, by which a gateway judges not_after
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: object) -> None:
    topic, payload = encode_message(message)  # type: ignore[arg-type]
    assert decode_message(topic, payload) == message
    assert b" " not in payload.replace(b"9.5 kWh", b"")  # compact JSON: GPRS is paid by the byte


def test_topics() -> None:
    assert gateway_topic("gw-1", Topic.COMMAND_STATUS) == "amr/v1/gw/gw-1/cmd/status"
    assert parse_topic("amr/v1/gw/gw-1/readings") == ("gw-1", Topic.READINGS)
    assert shared_subscription(Topic.READINGS) == "$share/headend/amr/v1/gw/+/readings"
    for bad in ("amr/v1/gw/gw+1/readings", "amr/v1/gw/a/b/readings", "amr/v2/gw/x/readings",
                "amr/v1/gw/gw-1/secrets"):  # fmt: skip
        with pytest.raises(LinkError):
            parse_topic(bad)
    with pytest.raises(LinkError):
        gateway_topic("gw/../other", Topic.ACK)


@pytest.mark.parametrize(
    ("topic", "payload", "complaint"),
    [
        (Topic.READINGS, b"{not json", "not JSON"),
        (Topic.READINGS, b"[]", "JSON object"),
        (Topic.READINGS, b'{"v":2}', "version"),
        (Topic.READINGS, b'{"v":1,"gw":"g","seq":-1,"t":1,"r":[]}', "seq"),
        (
            Topic.READINGS,
            b'{"v":1,"gw":"g","seq":1,"t":1,"r":[{"m":"x","t":1,"v":{"a":[1]}}]}',
            r"r\[0\]\.v\.a",
        ),
        (Topic.READINGS, b'{"v":1,"gw":"g","seq":1,"t":NaN,"r":[]}', "not JSON"),
        (Topic.COMMAND, b'{"v":1,"id":"c","type":"self_destruct","na":1}', "unknown command type"),
        (Topic.COMMAND, b'{"v":1,"id":"c","type":"relay","na":1,"p":42}', "priority"),
        (Topic.ACK, b'{"v":1,"ranges":[[5,3]]}', "first <= last"),
        (Topic.ACK, b'{"v":1,"ranges":[[1,3]],"t":"noon"}', r"ack\.t"),
        (
            Topic.COMMAND_STATUS,
            b'{"v":1,"gw":"g","seq":1,"t":1,"id":"c","st":"maybe"}',
            "command state",
        ),
    ],
)
def test_malformed_messages_get_a_clear_link_error(
    topic: Topic, payload: bytes, complaint: str
) -> None:
    with pytest.raises(LinkError, match=complaint):
        decode_message(topic, payload)


@settings(max_examples=300)
@given(
    topic=st.sampled_from(list(Topic)),
    payload=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
)
def test_arbitrary_payloads_decode_or_raise_link_error(topic: Topic, payload: bytes) -> None:
    with contextlib.suppress(LinkError):
        decode_message(topic, payload)


def test_signed_commands_verify_and_tampering_is_caught() -> None:
    key = Ed25519PrivateKey.generate()
    relay = Command("c-7", CommandType.RELAY, "12000010012", T + 60, 2, {"action": "disconnect"})
    signed = sign_command(relay, key)
    topic, payload = encode_message(signed)
    received = decode_message(topic, payload)
    assert isinstance(received, Command)
    verify_command(received, key.public_key())
    with pytest.raises(SignatureError, match="not signed"):
        verify_command(relay, key.public_key())
    body = json.loads(payload)
    body["m"] = "99999999999"  # re-targeted at another meter by whoever holds the broker account
    forged = decode_message(topic, json.dumps(body).encode())
    assert isinstance(forged, Command)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_command(forged, key.public_key())
    with pytest.raises(SignatureError, match="does not verify"):
        verify_command(signed, Ed25519PrivateKey.generate().public_key())
    assert CommandType.TOKEN.needs_signature is False and CommandType.RELAY.needs_signature


@given(st.sets(st.integers(0, 500), max_size=100))
def test_seq_ranges_cover_exactly_the_seqs(seqs: set[int]) -> None:
    ranges = to_ranges(seqs)
    assert {s for a, b in ranges for s in range(a, b + 1)} == seqs
    assert all(b + 1 < c for (_, b), (c, _) in itertools.pairwise(ranges))
    assert merge_ranges(ranges + ranges) == ranges
    ack = Ack(ranges)
    assert all(ack.covers(s) for s in seqs)


def test_a_whole_not_after_signs_the_same_as_its_float() -> None:
    key = Ed25519PrivateKey.generate()
    whole = Command("c-9", CommandType.RELAY, "12000010012", 1767229200, 2, {"action": "connect"})
    topic, payload = encode_message(sign_command(whole, key))
    assert b'"na":1767229200.0' in payload
    received = decode_message(topic, payload)
    assert isinstance(received, Command)
    verify_command(received, key.public_key())
