"""Messages built from their meaning reproduce the vector frames; the meter side answers them.

Each builder's inputs are the values a vector's ``meaning`` states (address, DI, password,
operator code, command, times), and the expected bytes are the vector's. Layouts without a vector
(follow-up, write) are checked field by field against the layout in the notes (§2) and, for the
follow-up SEQ position, icprog/dlt698.45 ``libDlt645/dlt645.c``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from protocols.dlt645 import (
    BROADCAST_ADDRESS,
    WILDCARD_ADDRESS,
    Acknowledgement,
    BroadcastTimeSync,
    DataFormatError,
    Dlt645UsageError,
    ErrorFlag,
    ErrorReply,
    Frame,
    Message,
    MessageError,
    OtherReply,
    OtherRequest,
    Password,
    ReadAddressReply,
    ReadAddressRequest,
    ReadFollowUpReply,
    ReadFollowUpRequest,
    ReadReply,
    ReadRequest,
    RelayCommand,
    RelayControl,
    RelayControlOpaque,
    WriteAddressRequest,
    WriteRequest,
    decode_frame,
    encode_frame,
    encode_value,
    error_flags,
    parse_reply,
    parse_request,
)
from tests.conftest import load_vectors

VECTORS = {v["id"]: v for v in load_vectors("dlt645_vectors.json")}
METER = "000000000001"


def _wire(vector_id: str) -> bytes:
    return bytes.fromhex(VECTORS[vector_id]["hex"])


def _encode(message: Message, preamble: int = 0) -> bytes:
    return encode_frame(message.to_frame(), preamble=preamble)


# The trip vector: "PA=03 + password 123456 (P0..P2 low first), operator code 12345678, N1=1AH
# trip, N2=00, N3..N8 valid until 2024-05-17 15:00:00 (ssmmhhDDMMYY)".
PASSWORD = Password(0x03, "123456")
OPERATOR = "12345678"
VALID_UNTIL = datetime(2024, 5, 17, 15, 0, 0)


# -- builders reproduce the vectors ---------------------------------------------------------------


def test_read_request() -> None:
    assert _encode(ReadRequest(METER, "00010000")) == _wire("pub-read-energy-req")
    assert _encode(ReadRequest(METER, "00900200")) == _wire("con-read-balance-req")
    assert _encode(ReadRequest(METER, "00900201")) == _wire("con-read-overdraft-req")
    assert _encode(ReadRequest(METER, "04000503")) == _wire("con-read-status3-req")
    assert _encode(ReadRequest(METER, "040005FF")) == _wire("con-read-status-block-req")
    assert _encode(ReadRequest(METER, "0201FF00")) == _wire("con-read-voltage-block-req")
    assert _encode(ReadRequest(METER, "1D000101")) == _wire("con-read-last-trip-time-req")
    assert _encode(ReadRequest(METER, "03330201")) == _wire("con-read-last-purchase-count-req")
    assert _encode(ReadRequest(WILDCARD_ADDRESS, "00010000"), 4) == _wire(
        "con-wildcard-read-energy"
    )


def test_read_reply() -> None:
    request = ReadRequest(METER, "00900200")
    reply = request.reply(encode_value("00900200", Decimal("123.45")))
    assert _encode(reply) == _wire("con-read-balance-resp")
    energy = ReadRequest(METER, "00010000").reply(encode_value("00010000", Decimal("112280.26")))
    assert _encode(energy) == _wire("pub-read-energy-resp")


def test_read_error_reply() -> None:
    reply = ReadRequest(METER, "12345678").error(ErrorFlag.NO_REQUESTED_DATA)
    assert _encode(reply) == _wire("con-read-error-no-data")


def test_read_address() -> None:
    assert _encode(ReadAddressRequest(), 4) == _wire("pub-read-address-req")
    reply = ReadAddressRequest().reply(METER)
    frame = reply.to_frame()
    assert frame.control == 0x93  # 13H | 80H
    assert frame.address == METER
    assert frame.data == bytes.fromhex("01 00 00 00 00 00")  # A0..A5
    assert parse_reply(frame) == ReadAddressReply(METER)


def test_write_address() -> None:
    assert _encode(WriteAddressRequest("000000000002")) == _wire("con-write-address")


def test_broadcast_time_sync_vector() -> None:
    # pub-nuc-broadcast-time: 2017-06-05 10:22:51, data ss mm hh DD MM YY
    sync = BroadcastTimeSync(datetime(2017, 6, 5, 10, 22, 51))
    raw = _encode(sync)
    assert raw == _wire("pub-nuc-broadcast-time")
    assert sync.to_frame().address == BROADCAST_ADDRESS
    assert sync.to_frame().data == bytes.fromhex("51 22 10 05 06 17")
    # 600888/dlt645's bug (notes §5): YY MM DD hh mm ss would be 17 06 05 10 22 51
    assert sync.to_frame().data != bytes.fromhex("17 06 05 10 22 51")
    parsed = parse_request(decode_frame(raw))
    assert parsed == sync


def test_broadcast_time_sync_2024_vector() -> None:
    sync = BroadcastTimeSync(datetime(2024, 5, 17, 14, 30, 0))
    assert _encode(sync, 4) == _wire("con-broadcast-time-2024")


def test_broadcast_time_needs_local_whole_seconds() -> None:
    with pytest.raises(Dlt645UsageError):
        BroadcastTimeSync(datetime(2024, 5, 17, 14, 30, 0, tzinfo=UTC))
    with pytest.raises(Dlt645UsageError):
        BroadcastTimeSync(datetime(2024, 5, 17, 14, 30, 0, 500))


def test_relay_trip_and_close_allowed() -> None:
    trip = RelayControl(METER, PASSWORD, OPERATOR, RelayCommand.TRIP, VALID_UNTIL)
    assert _encode(trip, 4) == _wire("con-relay-trip-1C-plaintext")
    close = RelayControl(METER, PASSWORD, OPERATOR, RelayCommand.CLOSE_ALLOWED, VALID_UNTIL)
    assert _encode(close, 4) == _wire("con-relay-close-allowed-1C")
    assert len(trip.to_frame().data) == 16  # L = 16 in plaintext


def test_relay_command_codes() -> None:
    # relay_control_1C.N1 in the vector file
    expected = {"1A", "1B", "1C", "2A", "2B", "3A", "3B"}
    assert {f"{c:02X}" for c in RelayCommand} == expected
    assert set(VECTORS["con-relay-trip-1C-plaintext"]["notes"][1].split()) >= {"1AH", "3BH"}


def test_relay_replies() -> None:
    trip = RelayControl(METER, PASSWORD, OPERATOR, RelayCommand.TRIP, VALID_UNTIL)
    assert _encode(trip.reply()) == _wire("con-relay-ack-ok")
    assert _encode(trip.error(ErrorFlag.UNAUTHORISED)) == _wire("con-relay-ack-unauthorised")


def test_opaque_relay_payload_is_carried_as_is() -> None:
    # SY03A's encrypted form: L = 1CH (28): 98000000 00000000 + 20 bytes of ciphertext
    payload = bytes.fromhex("98000000 00000000") + bytes(range(20))
    command = RelayControlOpaque(METER, payload)
    frame = command.to_frame()
    assert frame.control == 0x1C
    assert frame.data == payload
    raw = encode_frame(frame)
    assert raw[13] == 28  # L, after 4 FEH and the header
    assert raw[14:42] == bytes((b + 0x33) % 256 for b in payload)
    assert parse_request(decode_frame(raw)) == command
    assert _encode(command.reply()) == _wire("con-relay-ack-ok")


def test_relay_with_16_bytes_that_are_not_plaintext_stays_opaque() -> None:
    data = bytearray(decode_frame(_wire("con-relay-trip-1C-plaintext")).data)
    data[8] = 0x99  # no such N1
    parsed = parse_request(Frame(METER, 0x1C, bytes(data)))
    assert parsed == RelayControlOpaque(METER, bytes(data))


def test_password_never_shows_in_repr() -> None:
    password = Password(0x03, "987650")
    trip = RelayControl(METER, password, OPERATOR, RelayCommand.TRIP, VALID_UNTIL)
    write = WriteRequest(METER, "04000102", password, OPERATOR, bytes.fromhex("51 22 10"))
    for text in (repr(password), repr(trip), repr(write)):
        assert "987650" not in text
        assert "level=3" in text


# -- follow-up and write (layout checks) ----------------------------------------------------------


def test_read_follow_up_request_layout() -> None:
    frame = ReadFollowUpRequest(METER, "06000001", 1).to_frame()
    assert frame.control == 0x12
    assert frame.data == bytes.fromhex("01 00 00 06") + b"\x01"  # DI0..DI3, SEQ; L = 5


def test_follow_up_replies_set_d5() -> None:
    first = ReadRequest(METER, "06000001").reply(b"\x01\x02", follow_up=True)
    assert first.to_frame().control == 0xB1  # notes §1: "read with follow-up data B1H"
    request = ReadFollowUpRequest(METER, "06000001", 1)
    more = request.reply(b"\x03\x04", follow_up=True)
    last = request.reply(b"\x05")
    assert more.to_frame().control == 0xB2
    assert last.to_frame().control == 0x92
    assert last.to_frame().data == bytes.fromhex("01 00 00 06 05 01")  # DI, data, SEQ last
    assert parse_reply(last.to_frame()) == ReadFollowUpReply(METER, "06000001", b"\x05", 1)
    assert parse_reply(first.to_frame()) == first


def test_write_request_layout() -> None:
    value = encode_value("04001001", Decimal("20.00"))  # alarm money threshold 1
    write = WriteRequest(METER, "04001001", Password(0x02, "000000"), "00000001", value)
    frame = write.to_frame()
    assert frame.control == 0x14
    # DI0..DI3 | PA P0 P1 P2 | C0..C3 | data
    assert frame.data == bytes.fromhex("01 10 00 04 02 00 00 00 01 00 00 00 00 20 00 00")
    parsed = parse_request(frame)
    assert parsed == write
    assert isinstance(parsed, WriteRequest) and parsed.value() == Decimal("20.00")
    assert write.reply().to_frame() == Frame(METER, 0x94)
    assert write.error(ErrorFlag.UNAUTHORISED).to_frame() == Frame(METER, 0xD4, b"\x04")


# -- the meter side -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector_id", "expected"),
    [
        ("pub-read-energy-req", ReadRequest(METER, "00010000")),
        ("con-read-balance-req", ReadRequest(METER, "00900200")),
        ("pub-read-address-req", ReadAddressRequest()),
        ("con-write-address", WriteAddressRequest("000000000002")),
        ("pub-nuc-broadcast-time", BroadcastTimeSync(datetime(2017, 6, 5, 10, 22, 51))),
        (
            "con-relay-trip-1C-plaintext",
            RelayControl(METER, PASSWORD, OPERATOR, RelayCommand.TRIP, VALID_UNTIL),
        ),
        (
            "con-relay-close-allowed-1C",
            RelayControl(METER, PASSWORD, OPERATOR, RelayCommand.CLOSE_ALLOWED, VALID_UNTIL),
        ),
    ],
)
def test_parse_request_vectors(vector_id: str, expected: object) -> None:
    assert parse_request(decode_frame(_wire(vector_id))) == expected


@pytest.mark.parametrize(
    ("vector_id", "expected"),
    [
        ("con-relay-ack-ok", Acknowledgement(METER, 0x1C)),
        ("con-relay-ack-unauthorised", ErrorReply(METER, 0x1C, ErrorFlag.UNAUTHORISED)),
        ("con-read-error-no-data", ErrorReply(METER, 0x11, ErrorFlag.NO_REQUESTED_DATA)),
        (
            "con-read-status3-resp-relay-open",
            ReadReply(METER, "04000503", bytes.fromhex("1000")),
        ),
    ],
)
def test_parse_reply_vectors(vector_id: str, expected: object) -> None:
    assert parse_reply(decode_frame(_wire(vector_id))) == expected


def test_meter_answers_a_wildcard_read_from_its_own_address() -> None:
    request = parse_request(decode_frame(_wire("con-wildcard-read-energy")))
    assert isinstance(request, ReadRequest)
    with pytest.raises(Dlt645UsageError, match="own address"):
        request.reply(b"\x00\x00\x00\x00")
    reply = request.reply(encode_value(request.di, Decimal("112280.26")), address=METER)
    assert _encode(reply) == _wire("pub-read-energy-resp")


def test_unmodelled_request_can_be_refused() -> None:
    freeze = Frame(BROADCAST_ADDRESS, 0x16, bytes.fromhex("99 99 99 99"))
    request = parse_request(freeze)
    assert request == OtherRequest(BROADCAST_ADDRESS, 0x16, bytes.fromhex("99 99 99 99"))
    baud = parse_request(Frame(METER, 0x17, b"\x20"))
    assert isinstance(baud, OtherRequest)
    refusal = baud.error(ErrorFlag.BAUD_RATE_UNCHANGEABLE)
    assert refusal.to_frame() == Frame(METER, 0xD7, b"\x08")


def test_address_requests_can_be_refused_from_the_meters_own_address() -> None:
    write = parse_request(decode_frame(_wire("con-write-address")))
    assert isinstance(write, WriteAddressRequest)
    with pytest.raises(Dlt645UsageError, match="own address"):
        write.error(ErrorFlag.UNAUTHORISED)  # sent to AA..AA: the reply needs a real address
    refusal = write.error(ErrorFlag.UNAUTHORISED, address=METER)
    assert refusal.to_frame() == Frame(METER, 0xD5, b"\x04")
    assert write.reply().to_frame() == Frame("000000000002", 0x95)
    refused_read = ReadAddressRequest().error(ErrorFlag.OTHER, address=METER)
    assert refused_read.to_frame() == Frame(METER, 0xD3, b"\x01")


def test_error_flags_are_named() -> None:
    # abnormal_reply_error_bits in the vector file, bit 0 .. bit 6
    assert error_flags(0x01)["other"]
    assert error_flags(0x02)["no_requested_data"]
    assert error_flags(0x04)["unauthorised"]
    assert error_flags(0x08)["baud_rate_unchangeable"]
    assert error_flags(0x10)["year_zones_exceeded"]
    assert error_flags(0x20)["day_slots_exceeded"]
    assert error_flags(0x40)["tariffs_exceeded"]
    assert sum(error_flags(0x7F).values()) == 7
    assert not any(error_flags(0x80).values())  # bit 7 is not defined
    reply = ErrorReply(METER, 0x11, ErrorFlag(0x06))
    assert reply.reasons == ("no_requested_data", "unauthorised")


# -- malformed messages -------------------------------------------------------------------------


def test_direction_is_checked() -> None:
    with pytest.raises(MessageError, match="a reply, not a request"):
        parse_request(decode_frame(_wire("con-relay-ack-ok")))
    with pytest.raises(MessageError, match="a request, not a reply"):
        parse_reply(decode_frame(_wire("pub-read-energy-req")))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (Frame(METER, 0x11, b"\x00\x00"), "read request .* at least 4 data bytes, got 2"),
        (Frame(METER, 0x12, b"\x00\x00\x00\x00"), "5 data bytes, got 4"),
        (Frame(METER, 0x08, bytes(5)), "broadcast time sync .* 6 data bytes"),
        (Frame(METER, 0x14, bytes(11)), "write request"),
        (Frame(METER, 0x15, bytes.fromhex("AA AA AA AA AA AA")), "own address"),
    ],
)
def test_malformed_requests(frame: Frame, match: str) -> None:
    with pytest.raises(MessageError, match=match):
        parse_request(frame)


def test_broadcast_time_with_an_impossible_date() -> None:
    with pytest.raises(DataFormatError):
        parse_request(Frame(BROADCAST_ADDRESS, 0x08, bytes.fromhex("00 00 00 31 02 24")))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (Frame(METER, 0xD1, b""), "abnormal reply .* 1 data bytes, got 0"),
        (Frame(METER, 0x91, b"\x00"), "read reply"),
        (Frame(METER, 0x93, bytes.fromhex("02 00 00 00 00 00")), "carries address"),
    ],
)
def test_malformed_replies(frame: Frame, match: str) -> None:
    with pytest.raises(MessageError, match=match):
        parse_reply(frame)


def test_unmodelled_reply_is_kept() -> None:
    frame = decode_frame(_wire("pub-dlt645-1997-read-resp"))
    reply = parse_reply(frame)
    assert reply == OtherReply("000000001111", 0x81, bytes.fromhex("13 B6 20 02"))
    assert reply.to_frame() == frame
