"""Q/GDW 1376.2: the concentrator <-> local communication (PLC) module interface. Pure, no I/O.

In State Grid style systems the concentrator does not modulate PLC itself; it talks this protocol
over a UART to a narrow-band PLC, HPLC or micro-power wireless "router" module, which runs the
network and tunnels DL/T 645 (or DL/T 698.45) frames to the meters. The meter frames are opaque
bytes here. Reading one meter, concentrator side::

    >>> from protocols.qgdw13762 import (
    ...     Deny, DenyReason, FrameReceiver, MonitorSlaveNodeReply, encode_frame,
    ...     monitor_slave_node, parse_message, reply_to)
    >>> read_energy = bytes.fromhex("68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16")  # DL/T 645
    >>> frame = monitor_slave_node(seq=1, master_address="000000000099",
    ...                            meter_address="000000000001", meter_frame=read_energy,
    ...                            expected_reply_length=0x14)
    >>> raw = encode_frame(frame)
    >>> raw[:22].hex(" ").upper()  # 68H | L | C | R1..R6 | source (master) | destination (meter)
    '68 2F 00 41 04 00 14 00 00 01 99 00 00 00 00 00 01 00 00 00 00 00'
    >>> raw[22:].hex(" ").upper()  # AFN DT1 DT2 | protocol, delay, 0 nodes, length, 645 | CS 16H
    '13 01 00 02 00 00 10 68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16 96 16'

The module (or the simulator standing in for it) cuts frames out of the byte stream, reads the
request, and answers with the meter's reply; SEQ is echoed and the addresses swap::

    >>> module = FrameReceiver()
    >>> module.receive_data(b"\\xfe\\xfe" + raw)  # two bytes of line noise first
    >>> received = module.next_event()
    >>> parse_message(received).frame == read_energy, module.garbage_bytes
    (True, 2)
    >>> meter_reply = bytes.fromhex("68 01 00 00 00 00 00 68 91 08 33 33 34 33 89 67 45 33 9F 16")
    >>> answer = reply_to(received, MonitorSlaveNodeReply(frame=meter_reply, transit_time_s=3))
    >>> answer.control, answer.seq, answer.source, answer.destination
    (129, 1, '000000000001', '000000000099')

And the concentrator reads the answer, or a denial::

    >>> concentrator = FrameReceiver()
    >>> concentrator.receive_data(encode_frame(answer))
    >>> parse_message(concentrator.next_event()).frame == meter_reply
    True
    >>> denial = reply_to(received, Deny(reason=DenyReason.METER_NO_REPLY))
    >>> parse_message(denial).reason_name
    'METER_NO_REPLY'

Modules: :mod:`.frame` (frame codec, information field, streaming receiver, errors),
:mod:`.messages` (AFN 00H F1/F2, 03H F4, 05H F3, 13H F1 data units and frame builders),
:mod:`.describe` (JSON-ready descriptions for the frame decode tool). Each module names the public
sources of its facts and marks what is unverified.
"""

from __future__ import annotations

from .describe import AFN_NAMES, FN_NAMES, bytes_from_hex, describe, inspect_frame
from .frame import (
    MAX_FRAME_LENGTH,
    MIN_FRAME_LENGTH,
    NEED_DATA,
    BadFrame,
    ChecksumError,
    CommunicationMode,
    DataUnitIdError,
    Direction,
    DownstreamInfo,
    EndByteError,
    Frame,
    FrameLengthError,
    FrameReceiver,
    InfoField,
    NeedData,
    Qgdw13762Error,
    Qgdw13762UsageError,
    ReceiveBufferFull,
    StartByteError,
    UpstreamInfo,
    address_from_bytes,
    address_to_bytes,
    decode_frame,
    dt_to_fn,
    encode_frame,
    fn_to_dt,
    make_control,
)
from .messages import (
    ALL_CHANNELS,
    BroadcastControl,
    Confirm,
    Deny,
    DenyReason,
    MasterAddress,
    Message,
    MessageError,
    MonitorSlaveNodeReply,
    MonitorSlaveNodeRequest,
    ProtocolType,
    QueryMasterAddress,
    StartBroadcast,
    message_class,
    monitor_slave_node,
    parse_message,
    reply_to,
    request,
)

__all__ = [
    "AFN_NAMES",
    "ALL_CHANNELS",
    "FN_NAMES",
    "MAX_FRAME_LENGTH",
    "MIN_FRAME_LENGTH",
    "NEED_DATA",
    "BadFrame",
    "BroadcastControl",
    "ChecksumError",
    "CommunicationMode",
    "Confirm",
    "DataUnitIdError",
    "Deny",
    "DenyReason",
    "Direction",
    "DownstreamInfo",
    "EndByteError",
    "Frame",
    "FrameLengthError",
    "FrameReceiver",
    "InfoField",
    "MasterAddress",
    "Message",
    "MessageError",
    "MonitorSlaveNodeReply",
    "MonitorSlaveNodeRequest",
    "NeedData",
    "ProtocolType",
    "Qgdw13762Error",
    "Qgdw13762UsageError",
    "QueryMasterAddress",
    "ReceiveBufferFull",
    "StartBroadcast",
    "StartByteError",
    "UpstreamInfo",
    "address_from_bytes",
    "address_to_bytes",
    "bytes_from_hex",
    "decode_frame",
    "describe",
    "dt_to_fn",
    "encode_frame",
    "fn_to_dt",
    "inspect_frame",
    "make_control",
    "message_class",
    "monitor_slave_node",
    "parse_message",
    "reply_to",
    "request",
]
