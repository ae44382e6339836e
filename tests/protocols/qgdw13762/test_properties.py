"""Hypothesis: round trips for generated frames and messages; arbitrary bytes never crash or hang."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from protocols.qgdw13762 import (
    BadFrame,
    Confirm,
    Deny,
    Frame,
    FrameReceiver,
    InfoField,
    MasterAddress,
    MessageError,
    MonitorSlaveNodeReply,
    MonitorSlaveNodeRequest,
    NeedData,
    Qgdw13762Error,
    QueryMasterAddress,
    StartBroadcast,
    decode_frame,
    describe,
    encode_frame,
    inspect_frame,
    parse_message,
)

addresses = st.text(alphabet="0123456789ABCDEF", min_size=12, max_size=12)
meter_frames = st.binary(max_size=255)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    upstream = draw(st.booleans())
    control = (0x80 if upstream else 0) | draw(st.integers(0, 0x7F))
    info = draw(st.binary(min_size=6, max_size=6))
    source = destination = None
    relays: tuple[str, ...] = ()
    if info[0] & 0x04:
        source = draw(addresses)
        destination = draw(addresses)
        if not upstream:
            relays = tuple(draw(addresses) for _ in range(info[0] >> 4))
    return Frame(
        control=control,
        info=InfoField(info),
        afn=draw(st.integers(0, 0xFF)),
        fn=draw(st.integers(1, 2048)),
        data=draw(st.binary(max_size=300)),
        source=source,
        relays=relays,
        destination=destination,
    )


messages = st.one_of(
    st.builds(
        MonitorSlaveNodeRequest,
        frame=meter_frames,
        protocol=st.integers(0, 0xFF),
        delay_flag=st.integers(0, 0xFF),
        attached_nodes=st.lists(addresses, max_size=5).map(tuple),
    ),
    st.builds(
        MonitorSlaveNodeReply,
        frame=meter_frames,
        protocol=st.integers(0, 0xFF),
        transit_time_s=st.integers(0, 0xFFFF),
    ),
    st.builds(
        Confirm,
        command_processed=st.booleans(),
        idle_channels=st.lists(st.integers(1, 31)).map(tuple),
        wait_time_s=st.integers(0, 0xFFFF),
    ),
    st.builds(Deny, reason=st.integers(0, 0xFF)),
    st.just(QueryMasterAddress()),
    st.builds(MasterAddress, address=addresses),
    st.builds(StartBroadcast, frame=meter_frames, control=st.integers(0, 0xFF)),
)


@given(frames())
def test_frames_round_trip(frame: Frame) -> None:
    raw = encode_frame(frame)
    assert len(raw) == frame.length
    assert raw[0] == 0x68
    assert raw[-1] == 0x16
    assert raw[1] | raw[2] << 8 == len(raw)
    assert raw[-2] == sum(raw[3:-2]) & 0xFF
    assert decode_frame(raw) == frame


@given(st.lists(frames(), min_size=1, max_size=4), st.data())
def test_receiver_recovers_a_stream_of_frames(frame_list: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(frame) for frame in frame_list)
    receiver = FrameReceiver(max_frame_length=2048)
    events: list[Frame | BadFrame] = []
    at = 0
    while at < len(stream):
        size = data.draw(st.integers(1, 64))
        receiver.receive_data(stream[at : at + size])
        at += size
        while not isinstance(event := receiver.next_event(), NeedData):
            events.append(event)
    assert events == frame_list
    assert receiver.garbage_bytes == 0


@given(messages)
def test_messages_round_trip(message: object) -> None:
    assert isinstance(
        message,
        MonitorSlaveNodeRequest
        | MonitorSlaveNodeReply
        | Confirm
        | Deny
        | QueryMasterAddress
        | MasterAddress
        | StartBroadcast,
    )
    assert type(message).parse(message.encode()) == message


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_package_errors(raw: bytes) -> None:
    decoded: Frame | None
    try:
        decoded = decode_frame(raw)
    except Qgdw13762Error:
        decoded = None
    else:
        assert encode_frame(decoded) == raw
    try:
        description = inspect_frame(raw)
    except Qgdw13762Error:
        assert decoded is None  # what inspect_frame rejects, decode_frame rejects too
    else:
        # inspect_frame only forgives the checksum
        assert description["checksum_ok"] is (decoded is not None)


@given(st.binary(min_size=15, max_size=120), st.integers(0, 0xFF), st.booleans())
def test_arbitrary_frame_bodies_decode_or_fail_cleanly(
    body: bytes, afn: int, upstream: bool
) -> None:
    # Give random bytes a valid envelope so that the body parsers are exercised too.
    middle = bytes(((0x80 if upstream else 0) | body[0] & 0x7F, *body[1:7], afn, 0x01, 0x00))
    middle += body[10:]
    raw = bytes((0x68, (len(middle) + 5) & 0xFF, 0)) + middle + bytes((sum(middle) & 0xFF, 0x16))
    try:
        frame = decode_frame(raw)
    except Qgdw13762Error:
        return
    with contextlib.suppress(MessageError):
        parse_message(frame)
    description = describe(frame)
    assert description["checksum_ok"] is True


@given(st.lists(st.binary(max_size=80), max_size=20))
def test_receiver_never_hangs_or_raises_on_arbitrary_chunks(chunks: list[bytes]) -> None:
    receiver = FrameReceiver(max_frame_length=256, max_buffer_size=1024)
    received = 0
    for chunk in chunks:
        receiver.receive_data(chunk)
        received += len(chunk)
        for _ in range(receiver.buffered + 2):  # every event consumes at least one byte
            if isinstance(receiver.next_event(), NeedData):
                break
        else:
            raise AssertionError("next_event() did not settle on NEED_DATA")
        assert receiver.buffered <= 256
    receiver.discard_partial()
    assert receiver.garbage_bytes <= received
