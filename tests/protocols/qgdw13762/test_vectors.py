"""Golden frames: the AFN 13H F1 vector, hand-assembled replies, and every typed error.

Expected values come from the vector's stated meaning (``tests/vectors/dlt645_vectors.json``, key
``qgdw_1376_2``) or are assembled here from the frame rules (L = whole length, CS = sum of C..data
mod 256, 16H), never from the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocols.errors import LocalProtocolError, RemoteProtocolError
from protocols.qgdw13762 import (
    ChecksumError,
    CommunicationMode,
    Confirm,
    DataUnitIdError,
    Deny,
    DenyReason,
    Direction,
    DownstreamInfo,
    EndByteError,
    Frame,
    FrameLengthError,
    InfoField,
    MasterAddress,
    MessageError,
    MonitorSlaveNodeReply,
    MonitorSlaveNodeRequest,
    ProtocolType,
    Qgdw13762Error,
    Qgdw13762UsageError,
    QueryMasterAddress,
    StartBroadcast,
    StartByteError,
    UpstreamInfo,
    decode_frame,
    dt_to_fn,
    encode_frame,
    fn_to_dt,
    monitor_slave_node,
    parse_message,
    reply_to,
    request,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "dlt645_vectors.json"

# From the vector's meaning: the DL/T 645-2007 read of DI 00010000 sent to meter 000000000001.
READ_ENERGY_645 = bytes.fromhex("68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16")
# A DL/T 645 reply to it (constructed: 91H, 8 bytes, DI + 1234.56 kWh, each +33H), opaque here.
ENERGY_REPLY_645 = bytes.fromhex("68 01 00 00 00 00 00 68 91 08 33 33 34 33 89 67 45 33 9F 16")
MASTER = "000000000099"
METER = "000000000001"


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    entries: list[dict[str, Any]] = data["qgdw_1376_2"]["vectors"]
    for entry in entries:
        if entry["id"] == name:
            return entry
    raise LookupError(name)


@pytest.fixture(scope="module")
def read_energy() -> bytes:
    return bytes.fromhex(vector("con-3762-afn13f1-read-energy")["hex"])


def assemble(body: bytes) -> bytes:
    """A whole frame around ``body`` (C .. end of data unit), by the frame rules."""
    length = len(body) + 5
    return bytes((0x68, length & 0xFF, length >> 8)) + body + bytes((sum(body) & 0xFF, 0x16))


def with_checksum(raw: bytes) -> bytes:
    return assemble(raw[3:-2])


# --- the vector --------------------------------------------------------------------------------


def test_vector_decodes_to_its_stated_meaning(read_energy: bytes) -> None:
    frame = decode_frame(read_energy)

    assert frame.control == 0x41
    assert frame.direction is Direction.DOWN
    assert frame.prm is True
    assert frame.communication_mode == CommunicationMode.CENTRALISED_ROUTING_PLC
    assert frame.info.raw == bytes.fromhex("04 00 14 00 00 01")
    assert frame.info.module_flag is True
    assert frame.info.downstream.expected_reply_length == 0x14
    assert frame.seq == 0x01
    assert frame.source == MASTER
    assert frame.destination == METER
    assert frame.relays == ()
    assert (frame.afn, frame.fn) == (0x13, 1)
    assert frame.length == 0x2F == len(read_energy)

    message = parse_message(frame)
    assert message == MonitorSlaveNodeRequest(
        protocol=ProtocolType.DLT645_2007, delay_flag=0, attached_nodes=(), frame=READ_ENERGY_645
    )
    assert len(READ_ENERGY_645) == 0x10


def test_vector_reencodes_byte_identically(read_energy: bytes) -> None:
    assert encode_frame(decode_frame(read_energy)) == read_energy


def test_builder_reproduces_the_vector(read_energy: bytes) -> None:
    frame = monitor_slave_node(
        seq=1,
        master_address=MASTER,
        meter_address=METER,
        meter_frame=READ_ENERGY_645,
        expected_reply_length=0x14,
    )
    assert encode_frame(frame) == read_energy


def test_meter_address_containing_16h_is_framed_by_l() -> None:
    # dlt645.md section 7: meter 201500000016 puts 16H right after 68H in the 645 frame.
    frame = monitor_slave_node(
        seq=7, master_address=MASTER, meter_address="201500000016", meter_frame=READ_ENERGY_645
    )
    raw = encode_frame(frame)
    assert raw[16:22] == bytes.fromhex("16 00 00 00 15 20")
    assert decode_frame(raw).destination == "201500000016"


# --- upstream replies, hand-assembled ----------------------------------------------------------


def test_built_upstream_reply_matches_the_frame_rules_and_parses_back(read_energy: bytes) -> None:
    received = decode_frame(read_energy)
    info = UpstreamInfo(module_flag=True, phase=2, meter_channel=1, reply_quality=9, seq=1)
    reply = reply_to(
        received,
        MonitorSlaveNodeReply(
            protocol=ProtocolType.DLT645_2007, transit_time_s=5, frame=ENERGY_REPLY_645
        ),
        info=info,
    )
    expected = assemble(
        bytes.fromhex("81")  # DIR=1 upstream, PRM=0 reply, mode 1
        + bytes.fromhex(
            "04 00 12 90 00 01"
        )  # module flag; phase 2, channel kind 1; quality 9; SEQ 1
        + bytes.fromhex("01 00 00 00 00 00")  # source: the meter
        + bytes.fromhex("99 00 00 00 00 00")  # destination: the master node
        + bytes.fromhex("13 01 00")  # AFN 13H, F1
        + bytes.fromhex("05 00 02 14")  # 5 s transit, DL/T 645-2007, 20-byte frame
        + ENERGY_REPLY_645
    )
    assert encode_frame(reply) == expected

    decoded = decode_frame(expected)
    assert decoded.direction is Direction.UP
    assert decoded.prm is False
    assert decoded.info.upstream == info
    assert (decoded.source, decoded.destination) == (METER, MASTER)
    assert parse_message(decoded) == MonitorSlaveNodeReply(
        protocol=ProtocolType.DLT645_2007, transit_time_s=5, frame=ENERGY_REPLY_645
    )


def test_default_reply_echoes_seq_mode_and_swaps_addresses() -> None:
    received = monitor_slave_node(
        seq=0xA5,
        master_address=MASTER,
        meter_address=METER,
        meter_frame=READ_ENERGY_645,
        mode=CommunicationMode.BROADBAND_PLC,
    )
    reply = decode_frame(encode_frame(reply_to(received, Deny(reason=DenyReason.METER_NO_REPLY))))
    assert reply.control == 0x83  # upstream, slave frame, mode 3 (HPLC)
    assert reply.seq == 0xA5
    assert (reply.source, reply.destination) == (METER, MASTER)
    assert (reply.afn, reply.fn, reply.data) == (0x00, 2, b"\x08")


def test_concentrator_confirms_a_module_report_without_addresses() -> None:
    # An AFN 06H F2 report from the module: C = C1H (upstream start frame), SEQ 3, no address.
    report = decode_frame(assemble(bytes.fromhex("C1 00 00 00 00 00 03 06 02 00")))
    confirm = reply_to(report, Confirm())
    # [NUC] answers with C=01H, R cleared but SEQ kept, and data FF FF FF FF 00 00.
    assert encode_frame(confirm) == assemble(
        bytes.fromhex("01 00 00 00 00 00 03 00 01 00 FF FF FF FF 00 00")
    )


@pytest.mark.parametrize(
    ("direction", "afn_fn", "data", "message"),
    [
        (
            Direction.UP,
            "00 01 00",
            "FF FF FF FF 00 00",
            Confirm(command_processed=True, idle_channels=tuple(range(1, 32)), wait_time_s=0),
        ),
        (
            Direction.UP,
            "00 01 00",
            "05 00 00 00 3C 00",
            Confirm(command_processed=True, idle_channels=(2,), wait_time_s=60),
        ),
        (Direction.UP, "00 02 00", "00", Deny(reason=DenyReason.COMMUNICATION_TIMEOUT)),
        (Direction.UP, "00 02 00", "0C", Deny(reason=DenyReason.SLAVE_NODE_NOT_IN_NETWORK)),
        (Direction.DOWN, "03 08 00", "", QueryMasterAddress()),
        (Direction.UP, "03 08 00", "99 00 00 00 00 00", MasterAddress(address=MASTER)),
        (
            Direction.DOWN,
            "05 04 00",
            "02 10 " + READ_ENERGY_645.hex(" "),
            StartBroadcast(control=2, frame=READ_ENERGY_645),
        ),
    ],
)
def test_hand_assembled_messages(
    direction: Direction, afn_fn: str, data: str, message: object
) -> None:
    control = "81" if direction is Direction.UP else "41"
    raw = assemble(bytes.fromhex(control + " 00 00 00 00 00 01" + afn_fn + data))
    frame = decode_frame(raw)
    assert parse_message(frame) == message
    assert encode_frame(frame) == raw


def test_request_builder_for_module_commands() -> None:
    frame = request(QueryMasterAddress(), seq=9)
    assert encode_frame(frame) == assemble(bytes.fromhex("41 00 00 00 00 00 09 03 08 00"))


def test_unknown_fn_is_not_a_message() -> None:
    frame = decode_frame(assemble(bytes.fromhex("41 00 00 00 00 00 01 10 01 00")))  # AFN 10H F1
    assert parse_message(frame) is None


def test_deny_reason_outside_the_table_is_kept() -> None:
    assert Deny(reason=200).reason_name == "RESERVED"
    assert Deny(reason=8).reason_name == "METER_NO_REPLY"


# --- information field bits (clause 5.2, positions as in the module docstring's sources) -------


@pytest.mark.parametrize(
    ("view", "raw"),
    [
        (DownstreamInfo(routing_flag=True), "01 00 00 00 00 00"),
        (DownstreamInfo(attached_node_flag=True), "02 00 00 00 00 00"),
        (DownstreamInfo(module_flag=True), "04 00 00 00 00 00"),
        (DownstreamInfo(conflict_detection=True), "08 00 00 00 00 00"),
        (DownstreamInfo(relay_level=15), "F0 00 00 00 00 00"),
        (DownstreamInfo(channel=3, error_correction=1), "00 13 00 00 00 00"),
        (DownstreamInfo(expected_reply_length=0x14), "00 00 14 00 00 00"),
        (DownstreamInfo(rate=1200), "00 00 00 B0 04 00"),
        (DownstreamInfo(rate=1, rate_in_kbps=True), "00 00 00 01 80 00"),
        (DownstreamInfo(seq=0xFE), "00 00 00 00 00 FE"),
        (UpstreamInfo(routing_flag=True, module_flag=True, relay_level=2), "25 00 00 00 00 00"),
        (UpstreamInfo(channel=5), "00 05 00 00 00 00"),
        (UpstreamInfo(phase=3, meter_channel=4), "00 00 43 00 00 00"),
        (UpstreamInfo(command_quality=5, reply_quality=7), "00 00 00 75 00 00"),
        (UpstreamInfo(event_flag=True), "00 00 00 00 01 00"),
        (UpstreamInfo(seq=0x80), "00 00 00 00 00 80"),
    ],
)
def test_information_field_bits(view: DownstreamInfo | UpstreamInfo, raw: str) -> None:
    info = InfoField.of(view)
    assert info.raw == bytes.fromhex(raw)
    decoded = info.upstream if isinstance(view, UpstreamInfo) else info.downstream
    assert decoded == view


def test_reserved_information_bits_survive_a_round_trip(read_energy: bytes) -> None:
    raw = bytearray(read_energy)
    raw[8] = 0xFE  # upstream R5 D7..D1 are reserved; keep them as sent
    raw[3] = 0xC1
    frame = decode_frame(with_checksum(bytes(raw)))
    assert frame.info.raw[4] == 0xFE
    assert frame.info.upstream.event_flag is False
    assert encode_frame(frame) == with_checksum(bytes(raw))


# --- Fn <-> DT ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "dt"), [(1, "01 00"), (3, "04 00"), (8, "80 00"), (9, "01 01"), (2048, "80 FF")]
)
def test_fn_dt_mapping(fn: int, dt: str) -> None:
    assert fn_to_dt(fn) == bytes.fromhex(dt)
    assert dt_to_fn(*bytes.fromhex(dt)) == fn


# --- typed errors ------------------------------------------------------------------------------


def test_wrong_checksum(read_energy: bytes) -> None:
    damaged = read_energy[:-2] + b"\x95\x16"
    with pytest.raises(ChecksumError) as caught:
        decode_frame(damaged)
    assert (caught.value.expected, caught.value.found) == (0x96, 0x95)
    assert "95H" in str(caught.value)
    assert "96H" in str(caught.value)


def test_damaged_data_byte_is_a_checksum_error(read_energy: bytes) -> None:
    damaged = bytearray(read_energy)
    damaged[30] ^= 0x01
    with pytest.raises(ChecksumError):
        decode_frame(bytes(damaged))


@pytest.mark.parametrize("l_field", [0x30, 0x2E, 0x0E, 0x00, 0xFFFF])
def test_bad_l_field(read_energy: bytes, l_field: int) -> None:
    raw = bytes((0x68, l_field & 0xFF, l_field >> 8)) + read_energy[3:]
    with pytest.raises(FrameLengthError):
        decode_frame(raw)


def test_truncated_and_overlong_input(read_energy: bytes) -> None:
    with pytest.raises(FrameLengthError, match="only 46"):
        decode_frame(read_energy[:-1])
    with pytest.raises(FrameLengthError, match="1 bytes after the end"):
        decode_frame(read_energy + b"\x00")
    with pytest.raises(FrameLengthError):
        decode_frame(b"")
    with pytest.raises(FrameLengthError):
        decode_frame(b"\x68\x2f")


def test_bad_end_byte(read_energy: bytes) -> None:
    with pytest.raises(EndByteError) as caught:
        decode_frame(read_energy[:-1] + b"\x17")
    assert caught.value.found == 0x17


def test_bad_start_byte(read_energy: bytes) -> None:
    with pytest.raises(StartByteError) as caught:
        decode_frame(b"\x69" + read_energy[1:])
    assert caught.value.found == 0x69


@pytest.mark.parametrize("dt1", [0x00, 0x03, 0xFF])
def test_dt1_must_name_one_fn(read_energy: bytes, dt1: int) -> None:
    raw = bytearray(read_energy)
    raw[23] = dt1
    with pytest.raises(DataUnitIdError):
        decode_frame(with_checksum(bytes(raw)))


def test_address_field_that_does_not_fit_l() -> None:
    # R1 = 04H announces 12 address bytes, but L = 15 leaves room for AFN and DT only.
    with pytest.raises(FrameLengthError, match="address field"):
        decode_frame(assemble(bytes.fromhex("41 04 00 00 00 00 01 13 01 00")))


def test_errors_are_remote_protocol_errors() -> None:
    for error in (ChecksumError, FrameLengthError, EndByteError, StartByteError, MessageError):
        assert issubclass(error, Qgdw13762Error)
        assert issubclass(error, RemoteProtocolError)
    assert issubclass(Qgdw13762UsageError, LocalProtocolError)


@pytest.mark.parametrize(
    ("afn_fn", "data"),
    [
        ("13 01 00", "02 00 00 10 68 01"),  # 645 length byte says 16, 2 bytes follow
        ("13 01 00", "02 00 02 01 00 00"),  # two attached nodes announced, none present
        ("00 01 00", "FF FF FF"),  # confirm is 6 bytes
        ("00 02 00", ""),  # deny carries its reason
        ("03 08 00", "00"),  # the query carries nothing
    ],
)
def test_malformed_downstream_data_units(afn_fn: str, data: str) -> None:
    frame = decode_frame(assemble(bytes.fromhex("41 00 00 00 00 00 01" + afn_fn + data)))
    with pytest.raises(MessageError):
        parse_message(frame)


def test_malformed_upstream_reply() -> None:
    frame = decode_frame(assemble(bytes.fromhex("81 00 00 00 00 00 01 13 01 00 05 00 02 09 68")))
    with pytest.raises(MessageError, match="says 9 bytes but 1 follow"):
        parse_message(frame)


# --- frames we refuse to build -----------------------------------------------------------------


def test_module_flag_needs_addresses() -> None:
    info = InfoField.of(DownstreamInfo(module_flag=True, seq=1))
    with pytest.raises(Qgdw13762UsageError, match="source and a destination"):
        Frame(control=0x41, info=info, afn=0x13, fn=1)


def test_addresses_need_the_module_flag() -> None:
    with pytest.raises(Qgdw13762UsageError, match="module flag"):
        Frame(control=0x41, info=InfoField(), afn=0x13, fn=1, source=MASTER, destination=METER)


def test_relay_count_must_match_relay_level() -> None:
    info = InfoField.of(DownstreamInfo(module_flag=True, relay_level=2))
    with pytest.raises(Qgdw13762UsageError, match="2 relay addresses"):
        Frame(
            control=0x41,
            info=info,
            afn=0x13,
            fn=1,
            source=MASTER,
            relays=("000000000002",),
            destination=METER,
        )


def test_relays_are_sent_downstream_between_source_and_destination() -> None:
    frame = monitor_slave_node(
        seq=2,
        master_address=MASTER,
        meter_address=METER,
        meter_frame=READ_ENERGY_645,
        relays=("000000000002", "000000000003"),
    )
    raw = encode_frame(frame)
    assert raw[4] == 0x24  # relay level 2, module flag
    assert raw[10:34] == bytes.fromhex(
        "99 00 00 00 00 00 02 00 00 00 00 00 03 00 00 00 00 00 01 00 00 00 00 00"
    )
    assert decode_frame(raw).relays == ("000000000002", "000000000003")

    # The upstream answer reports the relay level but carries no relay addresses.
    answer = encode_frame(reply_to(frame, MonitorSlaveNodeReply(frame=ENERGY_REPLY_645)))
    assert answer[4] == 0x24
    assert answer[10:22] == bytes.fromhex("01 00 00 00 00 00 99 00 00 00 00 00")
    assert answer[22:25] == bytes.fromhex("13 01 00")


@pytest.mark.parametrize(
    "address", ["00000000001", "0000000000001", "00000000000g", "abcdefabcdef"]
)
def test_bad_address_strings(address: str) -> None:
    with pytest.raises(Qgdw13762UsageError):
        monitor_slave_node(
            seq=1, master_address=MASTER, meter_address=address, meter_frame=READ_ENERGY_645
        )


def test_meter_frame_longer_than_its_length_byte() -> None:
    with pytest.raises(Qgdw13762UsageError, match="at most 255"):
        MonitorSlaveNodeRequest(frame=bytes(256))


def test_reply_must_travel_the_other_way(read_energy: bytes) -> None:
    received = decode_frame(read_energy)
    with pytest.raises(Qgdw13762UsageError):
        reply_to(received, MonitorSlaveNodeRequest(frame=READ_ENERGY_645))
    with pytest.raises(Qgdw13762UsageError):
        request(MonitorSlaveNodeReply(frame=ENERGY_REPLY_645), seq=1)
