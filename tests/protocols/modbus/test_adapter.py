"""The pymodbus adapter, locked by golden frames so a pymodbus upgrade breaks a test, not a meter.

Golden frames: the Modbus specification's examples (Modbus Application Protocol V1.1b3, 6.3/6.4/
6.12; Modbus over Serial Line V1.02 6.2.2 for the CRC) and hand-checked MBAP headers.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import ProtocolError, RemoteProtocolError
from protocols.modbus.adapter import (
    Framing,
    InvalidRequest,
    Receiver,
    Request,
    Response,
    crc16_modbus,
    encode_exception,
    encode_request,
    encode_response,
    inspect_adu,
)

READ = Request(unit_id=1, function=3, address=0, count=2)


def test_golden_rtu_and_tcp_frames() -> None:
    assert encode_request(READ, Framing.RTU).hex() == "010300000002c40b"
    tcp = Request(unit_id=17, function=4, address=8, count=1, transaction_id=0x1234)
    assert encode_request(tcp, Framing.TCP).hex() == "123400000006110400080001"
    write = Request(unit_id=17, function=16, address=1, values=(0x000A, 0x0102))
    assert encode_request(write, Framing.RTU)[:-2].hex() == "1110000100020400" + "0a0102"
    assert encode_response(READ, Framing.RTU, [0x1234, 0x5678])[:-2].hex() == "0103041234" + "5678"
    assert encode_response(READ, Framing.RTU, exception_code=2)[:-2].hex() == "018302"
    assert crc16_modbus(bytes.fromhex("010300000002")) == 0x0BC4


def _feed(
    receiver: Receiver, data: bytes, whole: bool
) -> list[Request | Response | InvalidRequest]:
    events: list[Request | Response | InvalidRequest] = []
    chunks = [data] if whole else [data[i : i + 1] for i in range(len(data))]
    for chunk in chunks:
        receiver.receive_data(chunk)
        while (event := receiver.next_event()) is not None:
            events.append(event)
    return events


@pytest.mark.parametrize("framing", list(Framing))
@pytest.mark.parametrize("whole", [True, False], ids=["whole", "byte-by-byte"])
def test_requests_and_responses_round_trip(framing: Framing, whole: bool) -> None:
    server = Receiver(framing, server=True)
    requests = [
        READ,
        Request(unit_id=5, function=4, address=100, count=84),
        Request(unit_id=5, function=16, address=0, values=(0x1234, 0x5678, 0x9012, 0x3456, 0x7890)),
        Request(unit_id=7, function=6, address=10, values=(1,)),
    ]
    data = b"".join(encode_request(r, framing) for r in requests)
    assert _feed(server, data, whole) == requests
    client = Receiver(framing, server=False)
    client.expect(READ)
    assert _feed(client, encode_response(READ, framing, [7, 8]), whole) == [
        Response(unit_id=1, function=3, values=(7, 8))
    ]
    client.expect(READ)
    (exception,) = _feed(client, encode_response(READ, framing, exception_code=2), whole)
    assert isinstance(exception, Response) and exception.exception_code == 2


def test_rtu_garbage_and_bad_crc_are_skipped() -> None:
    server = Receiver(Framing.RTU, server=True)
    good = encode_request(READ, Framing.RTU)
    corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])
    events = _feed(server, b"\x00\xff\x13" + corrupt + good + b"\x42", whole=True)
    assert events == [READ]
    assert server.discarded_bytes > 0


def test_inspect_reports_what_is_wrong() -> None:
    info = inspect_adu(bytes.fromhex("010300000002c40b"), Framing.RTU)
    assert info["checksum_ok"] is True and info["function_name"] == "read holding registers"
    assert info["start_address"] == 0 and info["quantity"] == 2
    bad = inspect_adu(bytes.fromhex("010300000002c40c"), Framing.RTU)
    assert bad["checksum_ok"] is False and bad["checksum_expected"] == "0BC4"
    response = inspect_adu(encode_response(READ, Framing.TCP, [1, 2]), Framing.TCP)
    assert response["registers"] == [1, 2]
    exception = inspect_adu(encode_response(READ, Framing.RTU, exception_code=2), Framing.RTU)
    assert exception["exception_name"] == "illegal data address"
    with pytest.raises(RemoteProtocolError, match="MBAP length"):
        inspect_adu(bytes.fromhex("000100000009010300000002"), Framing.TCP)


@settings(max_examples=300)
@given(data=st.binary(max_size=300), framing=st.sampled_from(list(Framing)), server=st.booleans())
def test_arbitrary_bytes_never_crash_the_receiver(
    data: bytes, framing: Framing, server: bool
) -> None:
    receiver = Receiver(framing, server=server)
    receiver.expect(READ)
    try:
        events = _feed(receiver, data, whole=True)
    except ProtocolError:
        return
    assert all(isinstance(e, Request | Response | InvalidRequest) for e in events)


@given(data=st.binary(max_size=64), framing=st.sampled_from(list(Framing)))
def test_arbitrary_bytes_inspect_or_raise_a_protocol_error(data: bytes, framing: Framing) -> None:
    try:
        info = inspect_adu(data, framing)
    except ProtocolError:
        return
    assert "function" in info


def test_requests_a_server_must_refuse_become_invalid_requests() -> None:
    server = Receiver(Framing.TCP, server=True)
    zero_count = bytes.fromhex("000700000006" + "01" + "04" + "0000" + "0000")
    unknown_function = bytes.fromhex("000800000002" + "01" + "2b")
    events = _feed_any(server, zero_count + unknown_function)
    assert events == [
        InvalidRequest(1, 4, 3, 7, "request out of range"),
        InvalidRequest(1, 0x2B, 1, 8, "illegal function"),
    ]
    reply = encode_exception(events[0], Framing.TCP)
    assert reply.hex() == "000700000003" + "01" + "84" + "03"


def _feed_any(receiver: Receiver, data: bytes) -> list[InvalidRequest]:
    receiver.receive_data(data)
    found = []
    while (event := receiver.next_event()) is not None:
        assert isinstance(event, InvalidRequest)
        found.append(event)
    return found
