"""DL/T 645-2007 meter protocol: frames, values, messages and descriptions. Pure, no I/O.

A concentrator reading a prepaid meter's balance (DI 00900200)::

    >>> from protocols.dlt645 import (
    ...     NEED_DATA, FrameReceiver, ReadRequest, encode_frame, parse_reply)
    >>> request = ReadRequest("000000000001", "00900200")
    >>> encode_frame(request.to_frame(), preamble=0).hex(" ").upper()
    '68 01 00 00 00 00 00 68 11 04 33 35 C3 33 44 16'
    >>> receiver = FrameReceiver()
    >>> receiver.receive_data(bytes.fromhex("FE FE 68 01 00 00 00 00 00 68 91 08 33 35"))
    >>> receiver.next_event()
    NEED_DATA
    >>> receiver.receive_data(bytes.fromhex("C3 33 78 56 34 33 FD 16"))
    >>> reply = parse_reply(receiver.next_event())
    >>> reply.value()
    Decimal('123.45')

The meter's side of the same exchange (a simulator)::

    >>> from decimal import Decimal
    >>> from protocols.dlt645 import decode_frame, encode_value, parse_request
    >>> asked = parse_request(decode_frame(encode_frame(request.to_frame())))
    >>> answer = asked.reply(encode_value(asked.di, Decimal("123.45")))
    >>> encode_frame(answer.to_frame(), preamble=0) == encode_frame(reply.to_frame(), preamble=0)
    True

Modules: :mod:`.frame` (layout, checksum, :class:`FrameReceiver`, errors), :mod:`.data` (BCD and
the data identifier registry), :mod:`.messages` (read, follow-up, address, write, broadcast time,
relay control, error replies), :mod:`.describe` (JSON-ready descriptions for field tools).
"""

from __future__ import annotations

from .data import (
    DATA_IDENTIFIERS,
    DataIdentifier,
    Kind,
    UnknownDataIdentifierError,
    Value,
    ValueFormat,
    bcd_to_decimal,
    bcd_to_int,
    decimal_to_bcd,
    decode_datetime,
    decode_status_word_3,
    decode_value,
    di_from_wire,
    di_to_wire,
    encode_datetime,
    encode_status_word_3,
    encode_value,
    int_to_bcd,
    lookup,
    normalise_di,
)
from .describe import FUNCTION_NAMES, describe, function_name, inspect_frame, json_ready
from .frame import (
    BROADCAST_ADDRESS,
    DEFAULT_MAX_BUFFER,
    MAX_DATA_LENGTH,
    MAX_FRAME_LENGTH,
    MAX_PREAMBLE,
    NEED_DATA,
    WILDCARD_ADDRESS,
    AddressError,
    BadFrame,
    ChecksumError,
    DataFormatError,
    Dlt645Error,
    Dlt645UsageError,
    EndByteError,
    Frame,
    FrameLengthError,
    FrameReceiver,
    FunctionCode,
    MessageError,
    NeedData,
    ParsedFrame,
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
    normalise_address,
    parse_frame,
)
from .messages import (
    Acknowledgement,
    BroadcastTimeSync,
    ErrorFlag,
    ErrorReply,
    Message,
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
    Reply,
    Request,
    WriteAddressRequest,
    WriteRequest,
    error_flags,
    parse_message,
    parse_reply,
    parse_request,
)

__all__ = [
    "BROADCAST_ADDRESS",
    "DATA_IDENTIFIERS",
    "DEFAULT_MAX_BUFFER",
    "FUNCTION_NAMES",
    "MAX_DATA_LENGTH",
    "MAX_FRAME_LENGTH",
    "MAX_PREAMBLE",
    "NEED_DATA",
    "WILDCARD_ADDRESS",
    "Acknowledgement",
    "AddressError",
    "BadFrame",
    "BroadcastTimeSync",
    "ChecksumError",
    "DataFormatError",
    "DataIdentifier",
    "Dlt645Error",
    "Dlt645UsageError",
    "EndByteError",
    "ErrorFlag",
    "ErrorReply",
    "Frame",
    "FrameLengthError",
    "FrameReceiver",
    "FunctionCode",
    "Kind",
    "Message",
    "MessageError",
    "NeedData",
    "OtherReply",
    "OtherRequest",
    "ParsedFrame",
    "Password",
    "ReadAddressReply",
    "ReadAddressRequest",
    "ReadFollowUpReply",
    "ReadFollowUpRequest",
    "ReadReply",
    "ReadRequest",
    "RelayCommand",
    "RelayControl",
    "RelayControlOpaque",
    "Reply",
    "Request",
    "StartByteError",
    "UnknownDataIdentifierError",
    "Value",
    "ValueFormat",
    "WriteAddressRequest",
    "WriteRequest",
    "address_from_wire",
    "address_matches",
    "address_to_wire",
    "bcd_to_decimal",
    "bcd_to_int",
    "decimal_to_bcd",
    "decode_datetime",
    "decode_frame",
    "decode_status_word_3",
    "decode_value",
    "describe",
    "di_from_wire",
    "di_to_wire",
    "encode_datetime",
    "encode_frame",
    "encode_status_word_3",
    "encode_value",
    "error_flags",
    "function",
    "function_name",
    "has_follow_up",
    "inspect_frame",
    "int_to_bcd",
    "is_abnormal",
    "is_reply",
    "json_ready",
    "lookup",
    "normalise_address",
    "normalise_di",
    "parse_frame",
    "parse_message",
    "parse_reply",
    "parse_request",
]
