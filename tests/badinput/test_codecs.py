"""Bad input into the decoders the existing property tests leave out: each either decodes or raises
the project's typed error (protocols/errors.py), never another exception; where a decoder's output
goes on to another codec, that codec takes it.

    decoder                                    arbitrary/garbled input covered by
    dlt645 decode_frame, receiver, messages    tests/protocols/dlt645/test_properties.py
    dlt645 decode_value (a reply's payload)    here
    qgdw13762 frames, receiver, messages       tests/protocols/qgdw13762/test_properties.py
    modbus RTU/TCP receiver, inspect           tests/protocols/modbus/test_adapter.py
    modbus decode_block (a meter's registers)  here, on to the link encoder and decoder
    modbus parse_profile (a profile file)      here
    mqtt packets, properties, connection       tests/protocols/mqtt/test_hypothesis.py, ...
    link decode_message (arbitrary bytes)      tests/protocols/link/test_contract.py
    link fast_readings                         tests/protocols/link/test_fast.py, and here
    link decode_message (contract mutations)   here, and tests/badinput/test_headend_ingest.py
    link parse_topic, verify_command           here
    link encode_message (NaN, big numbers)     here
    sts decode_token (arbitrary digits)        tests/protocols/sts/test_properties.py
    sts MeterDecoder.enter (a keypad)          here
    sts Dkga/EncryptionAlgorithm/BaseDate/
        MeterPan parse (typed by people)       here
    headend, concentrator, simulator configs   here
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from concentrator.config import ConfigError as GatewayConfigError
from concentrator.config import load_config as load_gateway_config
from headend.config import ConfigError as HeadendConfigError
from headend.config import load_config as load_headend_config
from protocols.dlt645 import DATA_IDENTIFIERS, Dlt645Error, decode_value
from protocols.errors import ProtocolError, RemoteProtocolError
from protocols.link import (
    Command,
    CommandState,
    CommandStatus,
    CommandType,
    EventBatch,
    GatewayState,
    Health,
    LinkError,
    Message,
    Reading,
    ReadingBatch,
    SignatureError,
    Topic,
    decode_message,
    encode_message,
    gateway_topic,
    parse_topic,
    sign_command,
    verify_command,
)
from protocols.link.fast import fast_readings
from protocols.modbus import ProfileError, decode_block, parse_profile, plan_reads
from protocols.sts import (
    BaseDate,
    DecoderKey,
    Dkga,
    EncryptionAlgorithm,
    MeterPan,
    StsError,
    TokenResult,
)
from protocols.sts.meter import MeterDecoder, MeterState
from simulator.config import ConfigError as SimConfigError
from simulator.config import load_config as load_sim_config

from .profiles import CODEC
from .uplink import UPLINK, bad_message, good_message

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _examples(reliability: dict[str, object]) -> None:
    reliability["examples"] = CODEC.max_examples


PROFILES = sorted((ROOT / "protocols" / "modbus" / "profiles").glob("*.yaml"))
KEY = Ed25519PrivateKey.generate()
T = 1_767_225_600.0

# -- the link contract ----------------------------------------------------------------------------


def _check_storable(message: object) -> None:
    """What a decoded uplink message holds, a database can store (what poisoned ingest)."""
    texts: list[str] = []
    if isinstance(message, ReadingBatch):
        texts += [r.meter for r in message.readings]
        for reading in message.readings:
            for value in reading.values.values():
                assert not isinstance(value, Decimal) or math.isfinite(float(value))
    if isinstance(message, CommandStatus):
        texts += [message.cmd_id, message.detail]
        assert message.code is None or -(2**31) <= message.code < 2**31
    if isinstance(message, GatewayState):
        texts += [message.version, *message.meters]
        assert len(message.version) <= 64 and all(len(m) <= 64 for m in message.meters)
    for text in texts:
        try:
            text.encode()
        except UnicodeEncodeError:
            pytest.fail(f"{text!r} cannot be stored")
        assert "\x00" not in text, text


def _as_kept(message: Message | None) -> Message | None:
    """The message as the decoder keeps it: a NUL in a detail becomes U+FFFD (the contract)."""
    if isinstance(message, EventBatch):
        events = tuple(
            replace(e, detail=e.detail.replace("\x00", "\ufffd")) for e in message.events
        )
        return replace(message, events=events)
    if isinstance(message, CommandStatus):
        return replace(message, detail=message.detail.replace("\x00", "\ufffd"))
    return message


@pytest.mark.reliability(
    "bad input", "link messages with the contract broken decode to LinkError; valid ones round-trip"
)
@CODEC
@given(data=st.data(), seq=st.integers(0, 1000))
def test_link_messages_valid_or_bad_decode_or_raise_link_error(
    data: st.DataObject, seq: int
) -> None:
    """A valid message decodes to itself and back; one the contract refuses raises LinkError."""
    sent = data.draw(st.one_of(good_message(seq), bad_message(seq)))
    try:
        gateway, topic = parse_topic(sent.topic)
        message = decode_message(topic, sent.payload)
    except LinkError:
        assert not sent.good, f"a valid message was refused: {sent.payload[:200]!r}"
        return
    if getattr(message, "gateway", gateway) != gateway:
        assert not sent.good
        return
    assert sent.good or not topic.uplink, f"accepted what the contract refuses: {sent.why}"
    assert message == _as_kept(sent.message)
    assert decode_message(*encode_message(message)) == message
    _check_storable(message)
    fast = fast_readings(sent.payload) if topic is Topic.READINGS else None
    if fast is not None:  # the fast path never accepts more, nor reads it differently
        assert isinstance(message, ReadingBatch)
        assert fast.meters == tuple(r.meter for r in message.readings)


@pytest.mark.reliability("bad input", "arbitrary MQTT topic names parse or raise LinkError")
@CODEC
@given(st.text(max_size=90) | st.sampled_from(UPLINK).map(lambda t: gateway_topic("g", t)).flatmap(
    lambda name: st.text(max_size=3).map(lambda extra: name + extra)))  # fmt: skip
def test_topic_names_parse_or_raise_link_error(name: str) -> None:
    try:
        gateway, topic = parse_topic(name)
    except LinkError:
        return
    assert gateway_topic(gateway, topic) == name


numbers = st.one_of(st.floats(), st.decimals(allow_nan=True, allow_infinity=True, places=None),
                    st.integers(-(2**80), 2**80))  # fmt: skip


@pytest.mark.reliability(
    "bad input", "NaN, infinite and huge numbers a gateway holds reach the head-end decodable"
)
@CODEC
@given(values=st.dictionaries(st.text(max_size=8), numbers, max_size=4),
       metrics=st.dictionaries(st.text(max_size=8), numbers, max_size=3))  # fmt: skip
def test_whatever_numbers_a_gateway_holds_the_head_end_decodes(
    values: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """A meter's register can hold NaN or an infinity (an f32), and a gateway's counters any
    number: what the encoder makes of them, the decoder takes (non-finite values as null)."""
    batch = _round_trip(ReadingBatch("gw-1", 1, T, (Reading("m", T, values),)))
    assert isinstance(batch, ReadingBatch)
    _same_numbers(values, batch.readings[0].values)
    health = _round_trip(Health("gw-1", 0, T, metrics))
    assert isinstance(health, Health)
    _same_numbers(metrics, health.metrics)
    status = _round_trip(CommandStatus("gw-1", 2, T, "c", CommandState.APPLIED, None, "", metrics))
    assert isinstance(status, CommandStatus)
    _same_numbers(metrics, status.result)


def _round_trip(message: Message) -> Message:
    return decode_message(*encode_message(message))


def _same_numbers(sent: Mapping[str, Any], got: Mapping[str, Any]) -> None:
    assert got.keys() == sent.keys()
    for name, value in sent.items():
        if isinstance(value, int):
            assert got[name] == value
        elif (not isinstance(value, Decimal) or value.is_finite()) and math.isfinite(float(value)):
            assert float(got[name]) == float(value)
        else:
            assert got[name] is None, (name, value)


BAD_COMMAND_FIELDS = {
    "v": ["2", "null"], "id": ["7", "null", json.dumps("c" * 65), '"a\\u0000"', '"\\udfff"'],
    "type": ['"self_destruct"', "null"], "m": ["7", "[]"], "na": ['"soon"', "-1", "NaN", "1e400",
    "1" + "0" * 400], "p": ["10", "true", '"5"'], "a": ["[]", "7"], "sig": ["5", "{}"],
}  # fmt: skip


@pytest.mark.reliability(
    "bad input", "altered commands raise LinkError or fail signature verification"
)
@CODEC
@given(data=st.data(), kind=st.sampled_from(list(CommandType)))
def test_commands_decode_or_raise_and_only_a_true_signature_verifies(
    data: st.DataObject, kind: CommandType
) -> None:
    command = sign_command(Command("c1", kind, "12000010012", T, 5, {"x": [1, "y"]}), KEY)
    body: dict[str, Any] = json.loads(encode_message(command)[1])
    mutation = data.draw(st.sampled_from(["field", "signature", "args", "none"]))
    if mutation == "field":
        name = data.draw(st.sampled_from(sorted(BAD_COMMAND_FIELDS)))
        raw = data.draw(st.sampled_from(BAD_COMMAND_FIELDS[name]))
        body[name] = "\u2603"
        with pytest.raises(LinkError):
            decode_message(Topic.COMMAND, json.dumps(body).replace('"\\u2603"', raw).encode())
        return
    if mutation == "signature":
        body["sig"] = data.draw(st.one_of(st.text(max_size=100), st.binary(max_size=70).map(
            lambda b: base64.b64encode(b).decode())))  # fmt: skip
    elif mutation == "args":
        body["a"] = data.draw(st.dictionaries(st.text(max_size=4), st.integers(), min_size=1))
    decoded = decode_message(Topic.COMMAND, json.dumps(body).encode())
    assert isinstance(decoded, Command)
    if mutation == "none" or decoded == command:
        verify_command(decoded, KEY.public_key())
        return
    with pytest.raises(SignatureError):
        verify_command(decoded, KEY.public_key())
    with pytest.raises(SignatureError):
        verify_command(replace(decoded, signature=None), KEY.public_key())


# -- field codecs: what a meter answers ---------------------------------------------------------


def _profile_points() -> list[tuple[str, Any]]:
    points = []
    for path in PROFILES:
        profile = parse_profile(yaml.safe_load(path.read_text()), str(path))
        points += [(f"{path.stem}:{b.address}", b) for b in plan_reads(profile.points)]
    return points


BLOCKS = _profile_points()


@pytest.mark.reliability(
    "bad input", "arbitrary Modbus registers decode or raise, and the reading reaches the head-end"
)
@CODEC
@given(data=st.data(), block=st.sampled_from(BLOCKS))
def test_modbus_registers_decode_and_travel_to_the_head_end(
    data: st.DataObject, block: Any
) -> None:
    """Whatever registers a meter returns for a block of a bundled profile: values or a
    RemoteProtocolError; and the reading the gateway makes of them, the head-end decodes."""
    _, read = block
    registers = data.draw(
        st.lists(st.integers(0, 0xFFFF), min_size=read.count, max_size=read.count)
    )
    try:
        values = decode_block(read, registers)
    except RemoteProtocolError:
        return
    topic, payload = encode_message(ReadingBatch("gw-1", 1, T, (Reading("m", T, dict(values)),)))
    decoded = decode_message(topic, payload)
    assert isinstance(decoded, ReadingBatch) and decoded.readings[0].values.keys() == values.keys()


@pytest.mark.reliability(
    "bad input", "arbitrary DL/T 645 reply payloads decode or raise Dlt645Error"
)
@CODEC
@given(di=st.sampled_from(sorted(DATA_IDENTIFIERS)), raw=st.binary(max_size=80))
def test_dlt645_values_decode_or_raise_a_dlt645_error(di: str, raw: bytes) -> None:
    """Arbitrary bytes after a registered data identifier (a meter's reply)."""
    try:
        decode_value(di, raw)
    except Dlt645Error:
        return


# -- STS: what people type -----------------------------------------------------------------------

typed = st.one_of(st.text(max_size=24), st.integers(-(10**6), 10**6),
                  st.sampled_from(["\u00b2", "0\u00b2", "DKGA\u0660\u0662", "EA\u0660\u0667", "  7 ", "sta",
                                   "02", "1993"]))  # fmt: skip


@pytest.mark.reliability("bad input", "STS identifiers as typed parse or raise StsError")
@CODEC
@given(value=typed)
def test_sts_identifiers_parse_or_raise_an_sts_error(value: str | int) -> None:
    for parse in (Dkga.parse, EncryptionAlgorithm.parse, BaseDate.parse):
        with contextlib.suppress(StsError):
            parse(value)
    if isinstance(value, str):
        for parse_text in (MeterPan.parse, MeterPan.from_drn):
            with contextlib.suppress(StsError):
                parse_text(value)


@pytest.mark.reliability(
    "bad input", "any keypad entry gives the meter a token result, never an exception"
)
@CODEC
@given(token=st.one_of(st.text(max_size=30), st.text("0123456789 -", min_size=18, max_size=26)))
def test_a_meter_takes_any_keypad_entry_without_raising(token: str) -> None:
    meter = MeterDecoder(MeterState(DecoderKey(bytes(range(8)))))
    outcome = meter.enter(token, now_s=T)
    assert isinstance(outcome.result, TokenResult)


# -- config files ----------------------------------------------------------------------------------

yaml_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
).map(lambda doc: yaml.safe_dump(doc).encode())  # fmt: skip
config_bytes = st.one_of(
    st.binary(max_size=200), st.text(max_size=200).map(str.encode), yaml_documents,
    st.sampled_from([b"\xff\xfe\x00", b"a: " + b"[" * 600 + b"]" * 600, b"a: &a [*a]",
                     b"buses: [{name: x, type: modbus-rtu}]", b"database: {url: 7}"]),
)  # fmt: skip


@pytest.mark.reliability("bad input", "arbitrary bytes and YAML as config files give a ConfigError")
@CODEC
@given(raw=config_bytes)
def test_config_files_load_or_raise_a_config_error(tmp_path_factory: pytest.TempPathFactory,
                                                   raw: bytes) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_bytes(raw)
    for load, error in ((load_headend_config, HeadendConfigError),
                        (load_gateway_config, GatewayConfigError),
                        (load_sim_config, SimConfigError)):  # fmt: skip
        try:
            load(path)
        except error as exc:
            assert str(exc), "a config error says what is wrong"


@pytest.mark.reliability("bad input", "arbitrary YAML as a meter profile gives a ProfileError")
@CODEC
@given(raw=yaml_documents)
def test_meter_profiles_parse_or_raise_a_profile_error(raw: bytes) -> None:
    try:
        parse_profile(yaml.safe_load(raw), "profile.yaml")
    except ProfileError as exc:
        assert isinstance(exc, ProtocolError) and exc.problems
