"""The streaming receiver: whole frames, byte by byte, garbage, damaged frames, bounds."""

from __future__ import annotations

import pytest

from protocols.qgdw13762 import (
    NEED_DATA,
    BadFrame,
    ChecksumError,
    EndByteError,
    Frame,
    FrameReceiver,
    NeedData,
    Qgdw13762UsageError,
    ReceiveBufferFull,
    decode_frame,
)

from .test_vectors import READ_ENERGY_645, vector

# The vector, and a hand-assembled upstream AFN 13H F1 reply from meter 000000000001 to master
# 000000000099 carrying a 2-byte stand-in for the meter frame (C=81H, module flag, SEQ 1).
REQUEST = bytes.fromhex(vector("con-3762-afn13f1-read-energy")["hex"])
REPLY_BODY = bytes.fromhex(
    "81 04 00 00 00 00 01 01 00 00 00 00 00 99 00 00 00 00 00 13 01 00 00 00 02 02 AB CD"
)
REPLY = bytes((0x68, len(REPLY_BODY) + 5, 0)) + REPLY_BODY + bytes((sum(REPLY_BODY) & 0xFF, 0x16))
GARBAGE = bytes.fromhex("00 FE FE 16 AA 55")  # no 68H in it


def drain(receiver: FrameReceiver) -> list[Frame | BadFrame]:
    events: list[Frame | BadFrame] = []
    for _ in range(10_000):
        event = receiver.next_event()
        if isinstance(event, NeedData):
            return events
        events.append(event)
    raise AssertionError("next_event() never returned NEED_DATA")


def feed(receiver: FrameReceiver, data: bytes, chunk: int) -> list[Frame | BadFrame]:
    events: list[Frame | BadFrame] = []
    for at in range(0, len(data), chunk):
        receiver.receive_data(data[at : at + chunk])
        events += drain(receiver)
    return events


def test_whole_frame() -> None:
    receiver = FrameReceiver()
    assert receiver.next_event() is NEED_DATA
    receiver.receive_data(REQUEST)
    frame = receiver.next_event()
    assert isinstance(frame, Frame)
    assert (frame.afn, frame.fn, frame.destination) == (0x13, 1, "000000000001")
    assert receiver.next_event() is NEED_DATA
    assert (receiver.garbage_bytes, receiver.bad_frames, receiver.buffered) == (0, 0, 0)


def test_byte_by_byte() -> None:
    receiver = FrameReceiver()
    events: list[Frame | BadFrame | NeedData] = []
    for index in range(len(REQUEST)):
        receiver.receive_data(REQUEST[index : index + 1])
        events.append(receiver.next_event())
    assert all(event is NEED_DATA for event in events[:-1])
    assert events[-1] == decode_frame(REQUEST)
    assert receiver.garbage_bytes == 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 46, 47, 48, 1000])
def test_garbage_before_between_and_after(chunk: int) -> None:
    stream = GARBAGE + REQUEST + GARBAGE + REPLY + GARBAGE + REQUEST + GARBAGE
    receiver = FrameReceiver()
    events = feed(receiver, stream, chunk)
    assert events == [decode_frame(REQUEST), decode_frame(REPLY), decode_frame(REQUEST)]
    assert receiver.garbage_bytes == 4 * len(GARBAGE)
    assert receiver.bad_frames == 0
    assert receiver.buffered == 0


def test_false_start_bytes_are_garbage() -> None:
    # 68H followed by an L below the smallest frame (15) cannot start a frame.
    noise = bytes.fromhex("68 01 00 68 0E 00 68")
    receiver = FrameReceiver()
    events = feed(receiver, noise + REQUEST, 1)
    assert events == [decode_frame(REQUEST)]
    assert receiver.garbage_bytes == len(noise)


def test_l_too_small_for_the_announced_address_field_is_garbage() -> None:
    # 68H 0F 00 41 04: L=15 but R1 announces 12 address bytes.
    noise = bytes.fromhex("68 0F 00 41 04")
    receiver = FrameReceiver()
    assert feed(receiver, noise + REPLY, 3) == [decode_frame(REPLY)]
    assert receiver.garbage_bytes == len(noise)


def test_damaged_frame_then_good_frame() -> None:
    damaged = REQUEST[:-2] + bytes((REQUEST[-2] ^ 0xFF, 0x16))
    receiver = FrameReceiver()
    events = feed(receiver, damaged + REPLY, 5)
    assert len(events) == 2
    bad, good = events
    assert isinstance(bad, BadFrame)
    assert isinstance(bad.error, ChecksumError)
    assert bad.raw == damaged
    assert good == decode_frame(REPLY)
    assert receiver.bad_frames == 1
    assert receiver.garbage_bytes == 0  # the damaged frame was consumed whole


def test_resync_after_a_frame_cut_short() -> None:
    # The first 20 bytes of a frame, then a whole frame: the false candidate's L reaches into the
    # second frame, its end byte is wrong, and the second frame is found inside it.
    receiver = FrameReceiver()
    events = feed(receiver, REQUEST[:20] + REPLY + GARBAGE, 4)
    bad = [event for event in events if isinstance(event, BadFrame)]
    assert len(bad) == 1
    assert isinstance(bad[0].error, EndByteError)
    assert [event for event in events if isinstance(event, Frame)] == [decode_frame(REPLY)]


def test_discard_partial_after_a_quiet_line() -> None:
    receiver = FrameReceiver()
    receiver.receive_data(REQUEST[:30])
    assert receiver.next_event() is NEED_DATA
    assert receiver.discard_partial() == 30
    assert receiver.buffered == 0
    receiver.receive_data(REPLY)
    assert receiver.next_event() == decode_frame(REPLY)


def test_discard_partial_keeps_a_complete_frame_hidden_behind_a_false_start() -> None:
    # 68 40 00 announces 64 bytes, which never come; the real frame behind it is complete.
    receiver = FrameReceiver()
    receiver.receive_data(bytes.fromhex("68 40 00") + REPLY)
    assert receiver.next_event() is NEED_DATA
    assert receiver.discard_partial() == 3
    assert receiver.next_event() == decode_frame(REPLY)


def test_frames_longer_than_the_limit_are_skipped() -> None:
    long_frame = REQUEST  # 47 bytes
    receiver = FrameReceiver(max_frame_length=40)
    events = feed(receiver, long_frame + REPLY, 10)
    assert events == [decode_frame(REPLY)]
    assert receiver.garbage_bytes == len(long_frame)


def test_buffer_is_bounded() -> None:
    receiver = FrameReceiver(max_frame_length=64, max_buffer_size=100)
    receiver.receive_data(bytes.fromhex("68 40 00"))
    with pytest.raises(ReceiveBufferFull):
        receiver.receive_data(bytes(98))
    assert receiver.buffered == 3  # nothing was added
    receiver.receive_data(bytes(97))
    assert receiver.buffered == 100


def test_pure_garbage_is_never_buffered() -> None:
    receiver = FrameReceiver(max_frame_length=64, max_buffer_size=100)
    receiver.receive_data(bytes(10_000))
    assert receiver.buffered == 0
    assert receiver.garbage_bytes == 10_000


def test_limits_are_checked() -> None:
    with pytest.raises(Qgdw13762UsageError):
        FrameReceiver(max_frame_length=14)
    with pytest.raises(Qgdw13762UsageError):
        FrameReceiver(max_frame_length=100, max_buffer_size=99)


def test_embedded_meter_frame_survives_the_stream() -> None:
    receiver = FrameReceiver()
    events = feed(receiver, GARBAGE + REQUEST, 2)
    assert len(events) == 1
    frame = events[0]
    assert isinstance(frame, Frame)
    assert frame.data.endswith(READ_ENERGY_645)
