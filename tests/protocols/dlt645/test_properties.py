"""Hypothesis properties: no crash and no hang on arbitrary bytes, and exact round trips.

* Arbitrary (and almost-valid) bytes given to ``decode_frame``, ``inspect_frame`` and the receiver
  raise nothing but :class:`Dlt645Error`; the receiver consumes at least one byte per event, so
  draining it always ends.
* Frames hidden in garbage (without 68H) come out of the receiver exactly, however the stream is
  chunked, and only the garbage is counted as skipped.
* ``decode(encode(frame)) == frame``; ``parse_message(frame).to_frame() == frame`` whenever the
  frame parses; ``encode_value(di, decode_value(di, raw)) == raw`` for every registered DI.

Generated value bytes follow the layout rules of the notes (§1: packed BCD, low byte first, sign in
the MSB; timestamps low byte first), built here by a small BCD helper of the test's own.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.dlt645 import (
    DATA_IDENTIFIERS,
    MAX_FRAME_LENGTH,
    BadFrame,
    Dlt645Error,
    Frame,
    FrameReceiver,
    Kind,
    NeedData,
    RelayCommand,
    ValueFormat,
    bcd_to_int,
    decode_frame,
    decode_value,
    encode_frame,
    encode_value,
    inspect_frame,
    int_to_bcd,
    parse_frame,
    parse_message,
)

# -- strategies ---------------------------------------------------------------------------------


def _bcd(*fields: int) -> bytes:
    """Each field (0..99) as one packed-BCD byte, in the order given."""
    return bytes((f // 10) << 4 | f % 10 for f in fields)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    pad = draw(st.integers(0, 6))
    digits = draw(st.text("0123456789", min_size=12 - 2 * pad, max_size=12 - 2 * pad))
    return "AA" * pad + digits


CONTROLS = st.one_of(
    st.sampled_from([0x08, 0x11, 0x12, 0x13, 0x14, 0x15, 0x1C, 0x91, 0xB1, 0x92, 0xB2, 0x93]),
    st.sampled_from([0x94, 0x95, 0x9C, 0xD1, 0xD2, 0xDC, 0xF1, 0x81]),
    st.integers(0, 0xFF),
)
datetimes = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59)).map(
    lambda d: d.replace(microsecond=0)
)


def _time_bytes(when: datetime) -> bytes:
    return _bcd(when.second, when.minute, when.hour, when.day, when.month, when.year - 2000)


@st.composite
def relay_fields(draw: st.DrawFn) -> bytes:
    """16 bytes shaped like the plaintext relay command (PA P0-P2 C0-C3 N1 N2 N3-N8)."""
    head = draw(st.binary(min_size=8, max_size=8))
    command = draw(st.sampled_from([int(c) for c in RelayCommand]))
    return head + bytes((command, draw(st.integers(0, 255)))) + _time_bytes(draw(datetimes))


DATA = st.one_of(
    st.binary(max_size=255),
    st.binary(min_size=4, max_size=6),
    relay_fields(),
    datetimes.map(_time_bytes),
)
frames = st.builds(Frame, addresses(), CONTROLS, DATA)


@st.composite
def damaged_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with one byte changed, cut short, or extended: the near misses."""
    raw = bytearray(encode_frame(draw(frames), preamble=draw(st.integers(0, 4))))
    how = draw(st.sampled_from(["change", "cut", "extend"]))
    if how == "change":
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    elif how == "cut":
        del raw[draw(st.integers(0, len(raw) - 1)) :]
    else:
        raw += draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


ANY_BYTES = st.one_of(st.binary(max_size=600), damaged_frames())
NO_START = st.binary(max_size=40).map(lambda b: b.replace(b"\x68", b""))


def _drain(receiver: FrameReceiver) -> list[Frame | BadFrame]:
    events: list[Frame | BadFrame] = []
    limit = receiver.buffered + 1  # every event consumes at least one byte
    for _ in range(limit):
        event = receiver.next_event()
        if isinstance(event, NeedData):
            return events
        events.append(event)
    raise AssertionError(f"no NEED_DATA after {limit} events: the receiver does not progress")


# -- no crash, no hang --------------------------------------------------------------------------


@settings(max_examples=1000)
@given(ANY_BYTES)
def test_decode_frame_raises_only_dlt645_errors(raw: bytes) -> None:
    try:
        frame = decode_frame(raw)
    except Dlt645Error:
        return
    # whatever decodes is exactly one frame: re-encoding gives the input back (the FEH run aside)
    preamble = parse_frame(raw).preamble
    assert b"\xfe" * preamble + encode_frame(frame, preamble=0) == raw


@settings(max_examples=500)
@given(ANY_BYTES)
def test_inspect_frame_raises_only_dlt645_errors(raw: bytes) -> None:
    try:
        info = inspect_frame(raw)
    except Dlt645Error:
        return
    assert info["checksum_ok"] is (info["checksum_expected"] == info["checksum_found"])
    json.dumps(info)  # raises TypeError if a field is not JSON-ready


@settings(max_examples=500)
@given(st.lists(ANY_BYTES, max_size=12), st.sampled_from([MAX_FRAME_LENGTH, 4096]))
def test_receiver_survives_arbitrary_chunks(chunks: list[bytes], max_buffer: int) -> None:
    receiver = FrameReceiver(max_buffer=max_buffer)
    stream = b"".join(chunks)
    for chunk in chunks:
        receiver.receive_data(chunk)
        assert receiver.buffered <= max_buffer
        for event in _drain(receiver):
            if isinstance(event, Frame):
                assert encode_frame(event, preamble=0) in stream
            else:
                assert event.raw in stream and event.reason


@settings(max_examples=300)
@given(
    st.lists(st.tuples(NO_START, frames, st.integers(0, 4)), max_size=6),
    NO_START,
    st.lists(st.integers(1, 50), min_size=1, max_size=10),
)
def test_receiver_finds_every_frame_in_garbage(
    items: list[tuple[bytes, Frame, int]], tail: bytes, sizes: list[int]
) -> None:
    stream = b"".join(junk + encode_frame(frame, preamble=p) for junk, frame, p in items) + tail
    receiver = FrameReceiver()
    events: list[Frame | BadFrame] = []
    offset = 0
    index = 0
    while offset < len(stream):
        size = sizes[index % len(sizes)]
        receiver.receive_data(stream[offset : offset + size])
        events.extend(_drain(receiver))
        offset += size
        index += 1
    assert events == [frame for _, frame, _ in items]
    garbage = b"".join(junk for junk, _, _ in items) + tail
    assert receiver.skipped_bytes == len(garbage) - garbage.count(0xFE)


# -- round trips --------------------------------------------------------------------------------


@given(frames, st.integers(0, 4))
def test_frame_round_trip(frame: Frame, preamble: int) -> None:
    raw = encode_frame(frame, preamble=preamble)
    assert decode_frame(raw) == frame
    assert parse_frame(raw).preamble == preamble
    assert len(raw) == preamble + 12 + len(frame.data)


@settings(max_examples=1000)
@given(frames)
def test_message_round_trip(frame: Frame) -> None:
    try:
        message = parse_message(frame)
    except Dlt645Error:
        return
    assert message.to_frame() == frame


@given(st.integers(0, 10**12 - 1))
def test_bcd_round_trip(value: int) -> None:
    raw = int_to_bcd(value, 6)
    assert bcd_to_int(raw) == value
    assert bytes(reversed(raw)).hex() == f"{value:012d}"  # low byte first


def _raw_values(value_format: ValueFormat) -> st.SearchStrategy[bytes]:
    """Well-formed bytes of a format, by the layout rules (not by the code under test)."""
    kind = value_format.kind
    length = value_format.length
    if kind in (Kind.NUMBER, Kind.COUNT, Kind.DIGITS):
        assert length is not None
        digits = st.lists(st.integers(0, 99), min_size=length, max_size=length)
        if not value_format.signed:
            return digits.map(lambda fields: _bcd(*fields))
        return st.tuples(digits, st.integers(0, 79), st.booleans()).map(
            lambda t: _bcd(*t[0][:-1]) + bytes((_bcd(t[1])[0] | (0x80 if t[2] else 0),))
        )
    if kind in (Kind.WORD, Kind.STATUS_WORD_3):
        return st.binary(min_size=2, max_size=2)
    if kind is Kind.DATETIME:
        return st.one_of(st.just(bytes(6)), datetimes.map(_time_bytes))
    if kind is Kind.DATETIME_MINUTES:
        return st.one_of(st.just(bytes(5)), datetimes.map(lambda d: _time_bytes(d)[1:]))
    if kind is Kind.DATE_WEEKDAY:
        return st.tuples(st.integers(0, 6), st.dates(date(2000, 1, 1), date(2099, 12, 31))).map(
            lambda t: _bcd(t[0], t[1].day, t[1].month, t[1].year - 2000)
        )
    if kind is Kind.TIME:
        return st.times().map(lambda t: _bcd(t.second, t.minute, t.hour))
    if kind is Kind.RECORD:
        parts = [_raw_values(part) for _, part in value_format.fields]
        return st.tuples(*parts).map(b"".join)
    if kind is Kind.TARIFF_BLOCK:
        count = st.just(length // 4) if length is not None else st.integers(1, 62)
        return count.flatmap(
            lambda n: st.lists(st.integers(0, 99), min_size=4 * n, max_size=4 * n).map(
                lambda fields: _bcd(*fields)
            )
        )
    assert kind is Kind.RAW
    if length is None:
        return st.binary(max_size=251)
    return st.binary(min_size=length, max_size=length)


REGISTERED = sorted(DATA_IDENTIFIERS.values(), key=lambda entry: entry.di)
NUMBERS = [e for e in REGISTERED if e.kind is Kind.NUMBER]

# Each example covers every registered DI (parametrize and @given do not mix under pytest-twisted).


@settings(max_examples=60)
@given(data=st.data())
def test_value_round_trip_for_every_registered_identifier(data: st.DataObject) -> None:
    for entry in REGISTERED:
        raw = data.draw(_raw_values(entry.value_format), label=entry.di)
        value = decode_value(entry.di, raw)
        assert encode_value(entry.di, value) == raw, entry.di
        if entry.kind in (Kind.DATETIME, Kind.DATETIME_MINUTES) and any(raw):
            assert isinstance(value, datetime)
        if entry.kind is Kind.TIME:
            assert isinstance(value, time)


@settings(max_examples=60)
@given(data=st.data())
def test_decimal_values_round_trip_exactly(data: st.DataObject) -> None:
    for entry in NUMBERS:
        assert entry.length is not None
        top = 8 * 10 ** (2 * entry.length - 1) if entry.signed else 10 ** (2 * entry.length)
        magnitude = data.draw(st.integers(0, top - 1), label=entry.di)
        negative = entry.signed and data.draw(st.booleans())
        digits = tuple(int(c) for c in str(magnitude))
        value = Decimal((1 if negative else 0, digits, -entry.decimals))
        decoded = decode_value(entry.di, encode_value(entry.di, value))
        assert isinstance(decoded, Decimal)
        assert str(decoded) == str(value), entry.di  # same digits, exponent and sign


def test_every_kind_is_exercised() -> None:
    assert {entry.kind for entry in REGISTERED} == set(Kind)
