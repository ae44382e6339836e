"""Frame layout, typed decode errors, addresses, and the streaming receiver.

Frames come from the vector file; damaged frames are made from them by changing the byte the test
is about, with checksums recomputed by the rule in the notes (§1: sum of the bytes from the first
68H to the last data byte, mod 256), written out here independently of the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocols.dlt645 import (
    MAX_FRAME_LENGTH,
    NEED_DATA,
    AddressError,
    BadFrame,
    ChecksumError,
    Dlt645UsageError,
    EndByteError,
    Frame,
    FrameLengthError,
    FrameReceiver,
    NeedData,
    StartByteError,
    address_from_wire,
    address_matches,
    address_to_wire,
    decode_frame,
    encode_frame,
    function,
    has_follow_up,
    is_abnormal,
    is_reply,
    parse_frame,
)
from tests.conftest import load_vectors

VECTORS = {v["id"]: v for v in load_vectors("dlt645_vectors.json")}
GOOD_2007 = [
    v for v in VECTORS.values() if v["decoded"]["checksum_ok"] and v["dlt645_version"] == "2007"
]

ENERGY_REQUEST = bytes.fromhex(VECTORS["pub-read-energy-req"]["hex"])
ENERGY_REPLY = bytes.fromhex(VECTORS["pub-read-energy-resp"]["hex"])
BALANCE_REPLY = bytes.fromhex(VECTORS["con-read-balance-resp"]["hex"])
TRIP = bytes.fromhex(VECTORS["con-relay-trip-1C-plaintext"]["hex"])  # 4 FE preamble
# The RiusuX frequency request with its checksum corrected (vector note: "...35 80 16"): the meter
# address 201500000016 puts 16H right after the first 68H.
FREQUENCY_REQUEST = bytes.fromhex("68 16 00 00 00 15 20 68 11 04 35 33 B3 35 80 16")
GARBAGE = bytes.fromhex("00 11 16 16 99 AA 33")  # no 68H, no FEH; 16H must not cut anything


def _with_checksum(body: bytes) -> bytes:
    """``body`` (68 .. last data byte) closed with its checksum and 16H, per the notes' rule."""
    return body + bytes((sum(body) % 256, 0x16))


def _events(receiver: FrameReceiver) -> list[Frame | BadFrame]:
    events: list[Frame | BadFrame] = []
    while True:
        event = receiver.next_event()
        if isinstance(event, NeedData):
            return events
        events.append(event)


# -- the frame itself -----------------------------------------------------------------------------


def test_encode_reproduces_a_public_frame() -> None:
    frame = Frame("000000000001", 0x11, bytes.fromhex("00 00 01 00"))
    assert encode_frame(frame, preamble=0) == ENERGY_REQUEST
    assert encode_frame(frame) == b"\xfe" * 4 + ENERGY_REQUEST  # 4 FEH by default


def test_data_is_held_unscrambled_and_sent_plus_33h() -> None:
    frame = decode_frame(ENERGY_REPLY)
    assert frame.data == bytes.fromhex("00 00 01 00 26 80 22 11")  # vector: after -33H
    assert ENERGY_REPLY[10:18] == bytes.fromhex("33 33 34 33 59 B3 55 44")


def test_scrambling_wraps_modulo_256() -> None:
    # bytes >= CDH wrap past FFH on the way out and back (gams/python-dlt645 forgot the & 0xFF)
    frame = Frame("000000000001", 0x91, bytes((0x00, 0xCC, 0xCD, 0xFF)))
    raw = encode_frame(frame, preamble=0)
    assert raw[10:14] == bytes((0x33, 0xFF, 0x00, 0x32))
    assert decode_frame(raw) == frame


@pytest.mark.parametrize("preamble", [0, 1, 2, 3, 4])
def test_preamble_is_optional_on_send_and_skipped_on_receive(preamble: int) -> None:
    frame = decode_frame(ENERGY_REQUEST)
    raw = encode_frame(frame, preamble=preamble)
    assert raw == b"\xfe" * preamble + ENERGY_REQUEST
    assert decode_frame(raw) == frame
    assert parse_frame(raw).preamble == preamble


def test_more_than_four_preamble_bytes_are_not_sent() -> None:
    with pytest.raises(Dlt645UsageError):
        encode_frame(decode_frame(ENERGY_REQUEST), preamble=5)


def test_extra_preamble_bytes_are_tolerated_on_receive() -> None:
    assert decode_frame(b"\xfe" * 7 + ENERGY_REQUEST) == decode_frame(ENERGY_REQUEST)


def test_control_bit_helpers() -> None:
    # notes §1: normal reply = request | 80H, abnormal = request | C0H, follow-up data B1H
    assert not is_reply(0x11) and is_reply(0x91) and is_reply(0xD1) and is_reply(0xB1)
    assert is_abnormal(0xD1) and not is_abnormal(0x91) and not is_abnormal(0xB1)
    assert has_follow_up(0xB1) and not has_follow_up(0x91) and not has_follow_up(0xD1)
    assert function(0x91) == function(0xD1) == function(0xB1) == 0x11
    assert function(0xDC) == 0x1C


def test_frame_validates_its_fields() -> None:
    with pytest.raises(Dlt645UsageError):
        Frame("00000000001", 0x11)  # 11 digits
    with pytest.raises(Dlt645UsageError):
        Frame("000000000001", 0x100)
    with pytest.raises(Dlt645UsageError):
        Frame("000000000001", 0x11, bytes(256))  # L is one byte
    assert len(Frame("000000000001", 0x11, bytes(255)).data) == 255


def test_address_printing_and_wire_order() -> None:
    assert address_to_wire("201500000016") == bytes.fromhex("16 00 00 00 15 20")
    assert address_from_wire(bytes.fromhex("16 00 00 00 15 20")) == "201500000016"
    assert address_to_wire("999999999999") == b"\x99" * 6
    assert address_to_wire("aaaaaaaaaaaa") == b"\xaa" * 6  # normalised to upper case
    # abbreviated address: AAH pads the high bytes
    assert address_to_wire("AAAAAAAA0001") == bytes.fromhex("01 00 AA AA AA AA")
    assert address_from_wire(bytes.fromhex("01 00 AA AA AA AA")) == "AAAAAAAA0001"


@pytest.mark.parametrize("text", ["0000AA000001", "00000000000A", "12345678901F", "AAA000000001"])
def test_invalid_addresses_are_refused(text: str) -> None:
    with pytest.raises(Dlt645UsageError):
        address_to_wire(text)


def test_address_from_the_wire_must_be_bcd() -> None:
    with pytest.raises(AddressError, match="A2 is 1FH"):
        address_from_wire(bytes.fromhex("01 00 1F 00 00 00"))
    with pytest.raises(AddressError, match="only pad the high bytes"):
        address_from_wire(bytes.fromhex("AA 00 00 00 00 00"))


def test_address_matching_for_a_meter() -> None:
    meter = "201500000016"
    assert address_matches("201500000016", meter)
    assert address_matches("999999999999", meter)  # broadcast
    assert address_matches("AAAAAAAAAAAA", meter)  # wildcard
    assert address_matches("AAAAAAAA0016", meter)  # abbreviated
    assert not address_matches("AAAAAAAA0017", meter)
    assert not address_matches("000000000016", meter)


# -- decode errors ------------------------------------------------------------------------------


def test_missing_first_start_byte() -> None:
    with pytest.raises(StartByteError) as caught:
        decode_frame(b"\x00" + ENERGY_REQUEST)
    assert (caught.value.offset, caught.value.found) == (0, 0x00)


def test_missing_second_start_byte() -> None:
    raw = bytearray(b"\xfe\xfe" + ENERGY_REQUEST)
    raw[2 + 7] = 0x69
    with pytest.raises(StartByteError, match="second start byte") as caught:
        decode_frame(bytes(raw))
    assert (caught.value.offset, caught.value.found) == (9, 0x69)


def test_truncated_frame() -> None:
    with pytest.raises(FrameLengthError, match="L=4 needs 16 bytes"):
        decode_frame(ENERGY_REQUEST[:-1])
    with pytest.raises(FrameLengthError, match="truncated"):
        decode_frame(ENERGY_REQUEST[:9])
    with pytest.raises(FrameLengthError, match="preamble"):
        decode_frame(b"\xfe\xfe\xfe\xfe")


def test_bytes_after_the_end_byte() -> None:
    with pytest.raises(FrameLengthError, match="1 bytes after the end byte"):
        decode_frame(ENERGY_REQUEST + b"\x16")


def test_wrong_end_byte() -> None:
    with pytest.raises(EndByteError) as caught:
        decode_frame(ENERGY_REQUEST[:-1] + b"\x17")
    assert (caught.value.offset, caught.value.found) == (15, 0x17)


def test_wrong_checksum_names_expected_and_found() -> None:
    raw = bytearray(ENERGY_REQUEST)
    raw[-2] = 0xB4
    with pytest.raises(ChecksumError) as caught:
        decode_frame(bytes(raw))
    assert (caught.value.expected, caught.value.found) == (0xB3, 0xB4)
    assert "B3H" in str(caught.value) and "B4H" in str(caught.value)


def test_non_bcd_address_in_a_frame() -> None:
    raw = _with_checksum(bytes.fromhex("68 01 00 00 0F 00 00 68 11 04 33 33 34 33"))
    with pytest.raises(AddressError, match="A3 is 0FH"):
        decode_frame(raw)


def test_frames_are_cut_by_length_not_by_16h() -> None:
    # 16H right after 68 (the address) must not end the frame.
    frame = decode_frame(FREQUENCY_REQUEST)
    assert frame.address == "201500000016"
    assert frame.data == bytes.fromhex("02 00 80 02")  # vector: DI 02800002 after -33H


# -- the receiver -------------------------------------------------------------------------------

STREAM = [bytes.fromhex(v["hex"]) for v in GOOD_2007]


def test_receiver_whole_frames() -> None:
    receiver = FrameReceiver()
    receiver.receive_data(b"".join(STREAM))
    assert _events(receiver) == [decode_frame(raw) for raw in STREAM]
    assert receiver.skipped_bytes == 0  # FEH wake-up bytes are not garbage
    assert receiver.buffered == 0


def test_receiver_byte_by_byte() -> None:
    receiver = FrameReceiver()
    events: list[Frame | BadFrame] = []
    for raw in STREAM:
        for index in range(len(raw)):
            receiver.receive_data(raw[index : index + 1])
            event = receiver.next_event()
            if index < len(raw) - 1:
                assert event is NEED_DATA
            else:
                assert isinstance(event, Frame)
                events.append(event)
    assert events == [decode_frame(raw) for raw in STREAM]


def test_receiver_with_garbage_before_between_and_after() -> None:
    receiver = FrameReceiver()
    receiver.receive_data(GARBAGE + ENERGY_REQUEST + GARBAGE + TRIP + GARBAGE + BALANCE_REPLY)
    receiver.receive_data(GARBAGE)
    expected = [decode_frame(ENERGY_REQUEST), decode_frame(TRIP), decode_frame(BALANCE_REPLY)]
    assert _events(receiver) == expected
    assert receiver.skipped_bytes == 4 * len(GARBAGE)
    assert receiver.next_event() is NEED_DATA


def test_receiver_16h_in_the_address_byte_by_byte() -> None:
    receiver = FrameReceiver()
    events = []
    for byte in FREQUENCY_REQUEST:
        receiver.receive_data(bytes((byte,)))
        events.extend(_events(receiver))
    assert events == [decode_frame(FREQUENCY_REQUEST)]


def test_a_68h_in_garbage_is_not_a_frame_start() -> None:
    receiver = FrameReceiver()
    receiver.receive_data(b"\x68\x00\x00" + ENERGY_REQUEST)
    assert _events(receiver) == [decode_frame(ENERGY_REQUEST)]
    assert receiver.skipped_bytes == 3


def test_bad_checksum_between_good_frames() -> None:
    bad = bytes.fromhex(VECTORS["pub-riusux-read-freq-BAD-CS"]["hex"])
    receiver = FrameReceiver()
    receiver.receive_data(ENERGY_REQUEST + bad + BALANCE_REPLY)
    events = _events(receiver)
    assert events[0] == decode_frame(ENERGY_REQUEST)
    assert isinstance(events[1], BadFrame)
    assert events[1].raw == bad
    assert "checksum" in events[1].reason and "80H" in events[1].reason
    assert events[2:] == [decode_frame(BALANCE_REPLY)]
    # after the BadFrame the receiver searched the rest of the bad frame byte by byte
    assert receiver.skipped_bytes == len(bad) - 1


def test_a_corrupted_length_does_not_swallow_the_next_frame() -> None:
    damaged = bytearray(ENERGY_REQUEST)
    damaged[9] = 0x10  # L = 16: the frame now seems to run 12 bytes into the next one
    receiver = FrameReceiver()
    receiver.receive_data(bytes(damaged) + BALANCE_REPLY)
    events = _events(receiver)
    assert len(events) == 2
    assert isinstance(events[0], BadFrame) and "end byte" in events[0].reason
    assert events[1] == decode_frame(BALANCE_REPLY)


def test_bad_address_is_reported_without_waiting_for_the_length() -> None:
    receiver = FrameReceiver()
    receiver.receive_data(bytes.fromhex("68 FF FF FF FF FF FF 68"))
    event = receiver.next_event()
    assert isinstance(event, BadFrame)
    assert "not BCD" in event.reason
    assert event.raw == bytes.fromhex("68 FF FF FF FF FF FF 68")


def test_buffer_is_bounded_and_drops_the_oldest_bytes() -> None:
    receiver = FrameReceiver(max_buffer=MAX_FRAME_LENGTH)
    receiver.receive_data(bytes(1000))
    assert receiver.buffered == MAX_FRAME_LENGTH
    assert receiver.dropped_bytes == 1000 - MAX_FRAME_LENGTH
    receiver.receive_data(ENERGY_REQUEST)
    assert receiver.buffered == MAX_FRAME_LENGTH
    assert receiver.dropped_bytes == 1000 + len(ENERGY_REQUEST) - MAX_FRAME_LENGTH
    assert _events(receiver) == [decode_frame(ENERGY_REQUEST)]
    assert receiver.skipped_bytes == MAX_FRAME_LENGTH - len(ENERGY_REQUEST)


def test_buffer_must_hold_the_longest_frame() -> None:
    assert MAX_FRAME_LENGTH == 12 + 255
    with pytest.raises(Dlt645UsageError):
        FrameReceiver(max_buffer=MAX_FRAME_LENGTH - 1)


def test_longest_frame_passes_through_a_minimal_buffer() -> None:
    frame = Frame("000000000001", 0x91, bytes(range(255)))
    receiver = FrameReceiver(max_buffer=MAX_FRAME_LENGTH)
    receiver.receive_data(encode_frame(frame, preamble=0))
    assert _events(receiver) == [frame]
    assert receiver.dropped_bytes == 0


def test_need_data_sentinel() -> None:
    receiver = FrameReceiver()
    assert receiver.next_event() is NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"
    receiver.receive_data(b"")
    assert receiver.next_event() is NEED_DATA


def _parametrised(vectors: list[dict[str, Any]]) -> list[bytes]:
    return [bytes.fromhex(v["hex"]) for v in vectors]


@pytest.mark.parametrize("raw", _parametrised(GOOD_2007), ids=[v["id"] for v in GOOD_2007])
def test_every_vector_through_the_receiver_in_two_chunks(raw: bytes) -> None:
    receiver = FrameReceiver()
    middle = len(raw) // 2
    receiver.receive_data(raw[:middle])
    assert receiver.next_event() is NEED_DATA
    receiver.receive_data(raw[middle:])
    assert _events(receiver) == [decode_frame(raw)]
