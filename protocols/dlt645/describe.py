"""What a DL/T 645 frame says, as JSON-ready fields, for ``amr frame decode``. Pure.

:func:`describe` takes a decoded :class:`~.frame.Frame`; :func:`inspect_frame` takes raw bytes and,
unlike :func:`~.frame.decode_frame`, reports a checksum mismatch instead of raising (a technician
with a damaged capture still wants to see what it would have said). Structural faults (start byte,
length, end byte, address) still raise, since then there is no frame to describe.

The fields, in order::

    address          "000000000001"        printed, most significant digit first
    control          "91"                  the control byte, hex
    direction        "slave->master"       D7 ("master->slave" for a request)
    abnormal         false                 D6
    follow_up        false                 D5
    function         "11"                  D4..D0, hex
    function_name    "read data"
    length           8                     L
    data             "0002900045230100"    data field, hex, after -33H, in wire order
    [preamble_bytes, checksum_expected, checksum_found]   inspect_frame only
    checksum_ok      true
    message          "read reply"          what the data field is
    ... then the message's own fields, e.g. data_identifier "00900200",
    data_identifier_name, value_bytes, value "123.45", unit "yuan"

Values are exact and JSON-ready: numbers as decimal strings (never floats), times in ISO 8601,
bytes in hex. A field that cannot be decoded is reported (``value_error``, ``error``) rather than
raised. Passwords are masked; the operator code is shown (it names who sent the command).
"""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

from .data import DATA_IDENTIFIERS, Value
from .frame import DataFormatError, Dlt645Error, Frame, FunctionCode, parse_frame
from .messages import (
    Acknowledgement,
    BroadcastTimeSync,
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
    WriteAddressRequest,
    WriteRequest,
    parse_message,
)

__all__ = ["FUNCTION_NAMES", "describe", "function_name", "inspect_frame", "json_ready"]

# The vector file's ``control_codes_2007`` (notes §2).
FUNCTION_NAMES: dict[int, str] = {
    FunctionCode.SECURITY_AUTHENTICATION: "security authentication",
    FunctionCode.BROADCAST_TIME: "broadcast time sync",
    FunctionCode.READ: "read data",
    FunctionCode.READ_FOLLOW_UP: "read follow-up data",
    FunctionCode.READ_ADDRESS: "read communication address",
    FunctionCode.WRITE: "write data",
    FunctionCode.WRITE_ADDRESS: "write communication address",
    FunctionCode.FREEZE: "freeze",
    FunctionCode.CHANGE_BAUD_RATE: "change baud rate",
    FunctionCode.CHANGE_PASSWORD: "change password",
    FunctionCode.CLEAR_MAX_DEMAND: "clear max demand",
    FunctionCode.CLEAR_METER: "clear meter",
    FunctionCode.CLEAR_EVENTS: "clear events",
    FunctionCode.RELAY_CONTROL: "trip/close, alarm, power-protect (relay control)",
    FunctionCode.MULTI_FUNCTION_OUTPUT: "multi-function terminal output control",
}

# DL/T 645-1997 codes that 2007 does not use (vector file ``control_codes_1997``), named so a
# technician who captured an old meter sees why the frame makes no 2007 sense.
_FUNCTION_NAMES_1997 = {
    0x01: "read data",
    0x02: "read follow-up",
    0x04: "write data",
    0x0A: "write address",
    0x0C: "change baud rate",
    0x0F: "change password",
    0x10: "clear max demand",
}

_RELAY_COMMAND_NAMES = {
    RelayCommand.TRIP: "trip",
    RelayCommand.CLOSE_ALLOWED: "close allowed",
    RelayCommand.CLOSE_DIRECT: "direct close",
    RelayCommand.ALARM: "alarm",
    RelayCommand.ALARM_RELEASE: "alarm release",
    RelayCommand.POWER_PROTECT: "power-protect",
    RelayCommand.POWER_PROTECT_RELEASE: "power-protect release",
}

_MESSAGE_NAMES: dict[type, str] = {
    ReadRequest: "read request",
    ReadReply: "read reply",
    ReadFollowUpRequest: "read follow-up request",
    ReadFollowUpReply: "read follow-up reply",
    ReadAddressRequest: "read address request",
    ReadAddressReply: "read address reply",
    WriteRequest: "write request",
    WriteAddressRequest: "write address request",
    BroadcastTimeSync: "broadcast time sync (no reply expected)",
    RelayControl: "relay control",
    RelayControlOpaque: "relay control, opaque payload",
    Acknowledgement: "accepted",
    ErrorReply: "refused (abnormal reply)",
    OtherRequest: "request not modelled",
    OtherReply: "reply not modelled",
}


def function_name(code: int) -> str:
    """The name of function code ``code`` (D4..D0)."""
    name = FUNCTION_NAMES.get(code)
    if name is not None:
        return name
    old = _FUNCTION_NAMES_1997.get(code)
    suffix = f"; DL/T 645-1997: {old}" if old else ""
    return f"not a DL/T 645-2007 function ({code:02X}H{suffix})"


def json_ready(value: Value) -> object:
    """``value`` with Decimals as strings, times as ISO 8601 and bytes as hex (for json.dumps)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    return value


def _header(frame: Frame) -> dict[str, object]:
    return {
        "address": frame.address,
        "control": f"{frame.control:02X}",
        "direction": "slave->master" if frame.is_reply else "master->slave",
        "abnormal": frame.is_abnormal,
        "follow_up": frame.has_follow_up,
        "function": f"{frame.function:02X}",
        "function_name": function_name(frame.function),
        "length": len(frame.data),
        "data": frame.data.hex().upper(),
    }


def describe(frame: Frame) -> dict[str, object]:
    """The fields of a decoded (hence checksum-valid) frame; see the module docstring."""
    fields = _header(frame)
    fields["checksum_ok"] = True
    fields.update(_message_fields(frame))
    return fields


def inspect_frame(raw: bytes) -> dict[str, object]:
    """Like :func:`describe` for raw bytes, reporting (not raising) a checksum mismatch.

    Adds ``preamble_bytes``, ``checksum_expected`` and ``checksum_found``. Raises the structural
    :class:`~.frame.Dlt645Error` subclasses like :func:`~.frame.decode_frame`.
    """
    parsed = parse_frame(raw)
    fields = _header(parsed.frame)
    fields["preamble_bytes"] = parsed.preamble
    fields["checksum_expected"] = f"{parsed.checksum_expected:02X}"
    fields["checksum_found"] = f"{parsed.checksum_found:02X}"
    fields["checksum_ok"] = parsed.checksum_ok
    fields.update(_message_fields(parsed.frame))
    return fields


def _message_fields(frame: Frame) -> dict[str, object]:
    try:
        message = parse_message(frame)
    except Dlt645Error as exc:
        return {"message": "malformed", "error": str(exc)}
    fields: dict[str, object] = {"message": _MESSAGE_NAMES[type(message)]}
    fields.update(_fields_of(message))
    return fields


def _fields_of(message: Message) -> dict[str, object]:
    if isinstance(message, ReadRequest):
        fields = _identifier(message.di)
        if message.parameters:
            fields["parameters"] = message.parameters.hex().upper()
        return fields
    if isinstance(message, ReadFollowUpRequest):
        return {**_identifier(message.di), "sequence": message.sequence}
    if isinstance(message, ReadReply):
        return _value(message.di, message.payload)
    if isinstance(message, ReadFollowUpReply):
        # A follow-up frame usually holds part of a long item, so no whole-value decoding.
        fields = _identifier(message.di)
        fields["sequence"] = message.sequence
        fields["value_bytes"] = message.payload.hex().upper()
        return fields
    if isinstance(message, ReadAddressReply):
        return {"meter_address": message.address}
    if isinstance(message, WriteRequest):
        return {
            **_credentials(message.password, message.operator),
            **_value(message.di, message.payload),
        }
    if isinstance(message, WriteAddressRequest):
        return {"new_address": message.new_address}
    if isinstance(message, BroadcastTimeSync):
        return {"time": message.when.isoformat()}
    if isinstance(message, RelayControl):
        return {
            **_credentials(message.password, message.operator),
            "relay_command": _RELAY_COMMAND_NAMES[message.command],
            "relay_command_code": f"{message.command:02X}",
            "reserved_n2": f"{message.reserved:02X}",
            "valid_until": message.valid_until.isoformat(),
        }
    if isinstance(message, RelayControlOpaque):
        return {
            "payload_length": len(message.payload),
            "payload": message.payload.hex().upper(),
        }
    if isinstance(message, ErrorReply):
        return {"error_byte": f"{message.error:02X}", "errors": list(message.reasons)}
    return {}  # ReadAddressRequest, Acknowledgement, OtherRequest, OtherReply: the header says it


def _credentials(password: Password, operator: str) -> dict[str, object]:
    return {
        "password_level": f"{password.level:02X}",
        "password": "******",
        "operator_code": operator,
    }


def _identifier(di: str) -> dict[str, object]:
    entry = DATA_IDENTIFIERS.get(di)
    return {
        "data_identifier": di,
        "data_identifier_name": entry.name if entry else "not in the registry",
    }


def _value(di: str, payload: bytes) -> dict[str, object]:
    fields = _identifier(di)
    fields["value_bytes"] = payload.hex().upper()
    entry = DATA_IDENTIFIERS.get(di)
    if entry is None:
        return fields
    try:
        value = entry.decode(payload)
    except DataFormatError as exc:
        fields["value_error"] = str(exc)
        return fields
    fields["value"] = json_ready(value)
    if entry.unit:
        fields["unit"] = entry.unit
    return fields
