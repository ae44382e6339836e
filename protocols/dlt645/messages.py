"""DL/T 645-2007 messages: the data field of each function, for both ends of the line. Pure.

Data fields (unscrambled; notes §2, §4, §5; the frame around them is :mod:`.frame`)::

    C     sender  data field                                            meaning
    ----  ------  ----------------------------------------------------  -------------------------
    11H   master  DI0 DI1 DI2 DI3 [parameters]                          read data
    91H   meter   DI0 DI1 DI2 DI3 | N1 .. Nm                            value (B1H: more follows)
    12H   master  DI0 DI1 DI2 DI3 | SEQ                                 read follow-up frame SEQ
    92H   meter   DI0 DI1 DI2 DI3 | N1 .. Nm | SEQ                      (B2H: more follows)
    13H   master  (empty), sent to AAAAAAAAAAAA                         read address
    93H   meter   A0 .. A5                                              the meter's address
    14H   master  DI0..DI3 | PA P0 P1 P2 | C0 C1 C2 C3 | N1 .. Nm       write data
    15H   master  A0 .. A5 (the new address), sent to AAAAAAAAAAAA      write address
    08H   master  ss mm hh DD MM YY, sent to 999999999999               broadcast time: no reply
    1CH   master  PA P0 P1 P2 | C0..C3 | N1 | N2 | N3..N8 (16 bytes)    relay control, plaintext
    1CH   master  an opaque payload (e.g. 98000000 00000000 ciphertext) relay control, encrypted
    94H/95H/9CH   (empty)                                               accepted
    C|C0H meter   ERR (one byte of error flags)                         refused ("abnormal")

PA is the password's authority level and P0..P2 the password, C0..C3 the operator code, both sent
low byte first (password "123456" goes out as 56 34 12). N1 is the relay command, N2 reserved, and
N3..N8 the time after which the meter must refuse the command, ss mm hh DD MM YY (notes §4, after
sqf-ice/SY03A ``uartx.c`` case 0x1C). The follow-up layout (12H carries DI + SEQ; 92H/B2H end with
SEQ) matches icprog/dlt698.45 ``libDlt645/dlt645.c``; the error bits are 600888/dlt645's
``ErrorCode`` (notes §2).

A relay "accepted" (9CH) reply means the meter took the command, not that the relay moved: a trip
runs after the meter's trip delay and is refused under power-protect, and 1BH only *allows* the
customer to close. Confirm with status word 3 (04000503) and the trip/close times (1D000101,
1E000101).

The meter side uses the same classes: :func:`parse_request` turns a received frame into a request,
whose ``reply(...)`` and ``error(...)`` build the answer. Functions or flag combinations this module
does not model come back as :class:`OtherRequest` / :class:`OtherReply`, so a simulator can still
answer them (typically with an error reply).

Passwords never show in ``repr``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, IntFlag
from typing import TypeAlias

from .data import Value, decode_datetime, decode_value, di_from_wire, di_to_wire, encode_datetime
from .data import normalise_di as _normalise_di
from .frame import (
    BROADCAST_ADDRESS,
    FOLLOW_UP_BIT,
    MAX_DATA_LENGTH,
    WILDCARD_ADDRESS,
    DataFormatError,
    Dlt645UsageError,
    Frame,
    FunctionCode,
    MessageError,
    address_from_wire,
    address_to_wire,
    normalise_address,
)

__all__ = [
    "Acknowledgement",
    "BroadcastTimeSync",
    "ErrorFlag",
    "ErrorReply",
    "Message",
    "OtherReply",
    "OtherRequest",
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
    "WriteAddressRequest",
    "WriteRequest",
    "error_flags",
    "parse_message",
    "parse_reply",
    "parse_request",
]

NORMAL_REPLY = 0x80
ABNORMAL_REPLY = 0xC0
RELAY_PLAINTEXT_LENGTH = 16  # SY03A checks L == 16 for the plaintext form


class ErrorFlag(IntFlag):
    """The error byte of an abnormal reply (notes §2, after 600888/dlt645 ``ErrorCode``)."""

    OTHER = 0x01
    NO_REQUESTED_DATA = 0x02
    UNAUTHORISED = 0x04  # password error / unauthorised (SY03A: also an expired relay command)
    BAUD_RATE_UNCHANGEABLE = 0x08
    YEAR_ZONES_EXCEEDED = 0x10
    DAY_SLOTS_EXCEEDED = 0x20
    TARIFFS_EXCEEDED = 0x40


_ERROR_NAMES = {
    ErrorFlag.OTHER: "other",
    ErrorFlag.NO_REQUESTED_DATA: "no_requested_data",
    ErrorFlag.UNAUTHORISED: "unauthorised",
    ErrorFlag.BAUD_RATE_UNCHANGEABLE: "baud_rate_unchangeable",
    ErrorFlag.YEAR_ZONES_EXCEEDED: "year_zones_exceeded",
    ErrorFlag.DAY_SLOTS_EXCEEDED: "day_slots_exceeded",
    ErrorFlag.TARIFFS_EXCEEDED: "tariffs_exceeded",
}


def error_flags(error: int) -> dict[str, bool]:
    """The error byte as named flags (bit 7 is reserved and not named)."""
    return {name: bool(error & flag) for flag, name in _ERROR_NAMES.items()}


class RelayCommand(IntEnum):
    """N1 of a relay control (1CH) command (notes §4, after SY03A ``uartx.c`` case 0x1C)."""

    TRIP = 0x1A
    CLOSE_ALLOWED = 0x1B  # the customer closes the relay with the button
    CLOSE_DIRECT = 0x1C
    ALARM = 0x2A
    ALARM_RELEASE = 0x2B
    POWER_PROTECT = 0x3A  # never trip until released
    POWER_PROTECT_RELEASE = 0x3B


_RELAY_COMMANDS = frozenset(command.value for command in RelayCommand)


# -- field helpers ------------------------------------------------------------------------------

_HEX = {6: re.compile(r"[0-9A-F]{6}"), 8: re.compile(r"[0-9A-F]{8}")}


def _hex_field(value: str, digits: int, what: str) -> str:
    if not isinstance(value, str) or _HEX[digits].fullmatch(value.upper()) is None:
        raise Dlt645UsageError(f"{what} must be {digits} hex digits, most significant first")
    return value.upper()


def _byte(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise Dlt645UsageError(f"{what} must be an int 0..255, not {value!r}")
    return value


def _payload(value: bytes, room: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise Dlt645UsageError(f"{what} must be bytes")
    value = bytes(value)
    if len(value) > room:
        raise Dlt645UsageError(f"{what} is {len(value)} bytes; this message has room for {room}")
    return value


def _own_address(address: str) -> str:
    """A meter's own address: 12 digits, neither broadcast nor (abbreviated) wildcard."""
    address = normalise_address(address)
    if "A" in address or address == BROADCAST_ADDRESS:
        raise Dlt645UsageError(f"{address} is not a meter's own address")
    return address


def _reply_address(request_address: str, address: str | None) -> str:
    if address is not None:
        return _own_address(address)
    if "A" in request_address or request_address == BROADCAST_ADDRESS:
        raise Dlt645UsageError(
            f"the request went to {request_address}; a reply needs the meter's own address"
        )
    return request_address


def _error_flag(error: int) -> ErrorFlag:
    return ErrorFlag(_byte(error, "error byte"))


def _wall_clock(when: datetime, what: str) -> datetime:
    encode_datetime(when)  # validates: naive, whole seconds, 2000-2099
    return when


@dataclass(frozen=True, slots=True)
class Password:
    """PA, the authority level, and P0..P2, the password printed most significant digit first."""

    level: int
    code: str = field(repr=False)

    def __post_init__(self) -> None:
        _byte(self.level, "password level PA")
        object.__setattr__(self, "code", _hex_field(self.code, 6, "password"))

    def to_wire(self) -> bytes:
        return bytes((self.level,)) + bytes.fromhex(self.code)[::-1]

    @classmethod
    def from_wire(cls, raw: bytes) -> Password:
        if len(raw) != 4:
            raise DataFormatError(f"PA P0 P1 P2 is 4 bytes, got {len(raw)}")
        return cls(raw[0], bytes(raw[1:4][::-1]).hex())


def _operator_to_wire(operator: str) -> bytes:
    return bytes.fromhex(operator)[::-1]


def _operator_from_wire(raw: bytes) -> str:
    return bytes(raw[::-1]).hex().upper()


# -- requests (master -> meter) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """11H: read the item ``di``; ``parameters`` follow the DI for items that take them."""

    address: str
    di: str
    parameters: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        object.__setattr__(self, "di", _normalise_di(self.di))
        object.__setattr__(
            self, "parameters", _payload(self.parameters, MAX_DATA_LENGTH - 4, "parameters")
        )

    def to_frame(self) -> Frame:
        return Frame(self.address, FunctionCode.READ, di_to_wire(self.di) + self.parameters)

    def reply(
        self, payload: bytes, *, address: str | None = None, follow_up: bool = False
    ) -> ReadReply:
        """The meter's answer carrying ``payload`` (e.g. from :func:`.data.encode_value`)."""
        return ReadReply(_reply_address(self.address, address), self.di, payload, follow_up)

    def error(self, error: ErrorFlag | int, *, address: str | None = None) -> ErrorReply:
        return ErrorReply(
            _reply_address(self.address, address), FunctionCode.READ, _error_flag(error)
        )


@dataclass(frozen=True, slots=True)
class ReadFollowUpRequest:
    """12H: read follow-up frame ``sequence`` of item ``di`` (after a reply flagged follow-up)."""

    address: str
    di: str
    sequence: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        object.__setattr__(self, "di", _normalise_di(self.di))
        _byte(self.sequence, "sequence number SEQ")

    def to_frame(self) -> Frame:
        data = di_to_wire(self.di) + bytes((self.sequence,))
        return Frame(self.address, FunctionCode.READ_FOLLOW_UP, data)

    def reply(
        self, payload: bytes, *, address: str | None = None, follow_up: bool = False
    ) -> ReadFollowUpReply:
        address = _reply_address(self.address, address)
        return ReadFollowUpReply(address, self.di, payload, self.sequence, follow_up)

    def error(self, error: ErrorFlag | int, *, address: str | None = None) -> ErrorReply:
        address = _reply_address(self.address, address)
        return ErrorReply(address, FunctionCode.READ_FOLLOW_UP, _error_flag(error))


@dataclass(frozen=True, slots=True)
class ReadAddressRequest:
    """13H: ask the one meter on the line for its address (sent to the wildcard address)."""

    address: str = WILDCARD_ADDRESS

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))

    def to_frame(self) -> Frame:
        return Frame(self.address, FunctionCode.READ_ADDRESS)

    def reply(self, meter_address: str) -> ReadAddressReply:
        return ReadAddressReply(meter_address)

    def error(self, error: ErrorFlag | int, *, address: str | None = None) -> ErrorReply:
        address = _reply_address(self.address, address)
        return ErrorReply(address, FunctionCode.READ_ADDRESS, _error_flag(error))


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """14H: write ``payload`` to item ``di``, with password and operator code."""

    address: str
    di: str
    password: Password
    operator: str
    payload: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        object.__setattr__(self, "di", _normalise_di(self.di))
        if not isinstance(self.password, Password):
            raise Dlt645UsageError("password must be a Password")
        object.__setattr__(self, "operator", _hex_field(self.operator, 8, "operator code"))
        object.__setattr__(self, "payload", _payload(self.payload, MAX_DATA_LENGTH - 12, "value"))

    def to_frame(self) -> Frame:
        data = (
            di_to_wire(self.di)
            + self.password.to_wire()
            + _operator_to_wire(self.operator)
            + self.payload
        )
        return Frame(self.address, FunctionCode.WRITE, data)

    def value(self) -> Value:
        """The value being written, decoded by the DI registry."""
        return decode_value(self.di, self.payload)

    def reply(self, *, address: str | None = None) -> Acknowledgement:
        return Acknowledgement(_reply_address(self.address, address), FunctionCode.WRITE)

    def error(self, error: ErrorFlag | int, *, address: str | None = None) -> ErrorReply:
        return ErrorReply(
            _reply_address(self.address, address), FunctionCode.WRITE, _error_flag(error)
        )


@dataclass(frozen=True, slots=True)
class WriteAddressRequest:
    """15H: give the one meter on the line the address ``new_address``."""

    new_address: str
    address: str = WILDCARD_ADDRESS

    def __post_init__(self) -> None:
        object.__setattr__(self, "new_address", _own_address(self.new_address))
        object.__setattr__(self, "address", normalise_address(self.address))

    def to_frame(self) -> Frame:
        return Frame(self.address, FunctionCode.WRITE_ADDRESS, address_to_wire(self.new_address))

    def reply(self, *, address: str | None = None) -> Acknowledgement:
        """The acknowledgement, from ``new_address`` unless told otherwise."""
        own = self.new_address if address is None else _own_address(address)
        return Acknowledgement(own, FunctionCode.WRITE_ADDRESS)

    def error(self, error: ErrorFlag | int, *, address: str | None = None) -> ErrorReply:
        """A refusal (e.g. programming not enabled), from the meter's current address."""
        address = _reply_address(self.address, address)
        return ErrorReply(address, FunctionCode.WRITE_ADDRESS, _error_flag(error))


@dataclass(frozen=True, slots=True)
class BroadcastTimeSync:
    """08H: set the meters' clocks to ``when`` (local wall time); no meter replies.

    Sent seconds first: ss mm hh DD MM YY (notes §5; NUC97X_JS's example, 2017-06-05 10:22:51, is
    ``84 55 43 38 39 4A`` on the wire). Meters only trim small drift this way (SY03A: once a day,
    at most +-5 min, not near midnight or the billing time).
    """

    when: datetime
    address: str = BROADCAST_ADDRESS

    def __post_init__(self) -> None:
        _wall_clock(self.when, "broadcast time")
        object.__setattr__(self, "address", normalise_address(self.address))

    def to_frame(self) -> Frame:
        return Frame(self.address, FunctionCode.BROADCAST_TIME, encode_datetime(self.when))


@dataclass(frozen=True, slots=True)
class RelayControl:
    """1CH, plaintext form (16 bytes): trip, close, alarm or power-protect, valid until a time."""

    address: str
    password: Password
    operator: str
    command: RelayCommand
    valid_until: datetime
    reserved: int = 0  # N2

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        if not isinstance(self.password, Password):
            raise Dlt645UsageError("password must be a Password")
        object.__setattr__(self, "operator", _hex_field(self.operator, 8, "operator code"))
        try:
            object.__setattr__(self, "command", RelayCommand(self.command))
        except ValueError:
            raise Dlt645UsageError(f"{self.command!r} is not a relay command (N1)") from None
        _wall_clock(self.valid_until, "valid_until")
        _byte(self.reserved, "N2")

    def to_frame(self) -> Frame:
        data = (
            self.password.to_wire()
            + _operator_to_wire(self.operator)
            + bytes((self.command, self.reserved))
            + encode_datetime(self.valid_until)
        )
        return Frame(self.address, FunctionCode.RELAY_CONTROL, data)

    def reply(self, *, address: str | None = None) -> Acknowledgement:
        return Acknowledgement(_reply_address(self.address, address), FunctionCode.RELAY_CONTROL)

    def error(self, error: ErrorFlag | int, *, address: str | None = None) -> ErrorReply:
        address = _reply_address(self.address, address)
        return ErrorReply(address, FunctionCode.RELAY_CONTROL, _error_flag(error))


@dataclass(frozen=True, slots=True)
class RelayControlOpaque:
    """1CH with a data field carried as-is: a head-end-built (e.g. ESAM-encrypted) command.

    With encrypted meters the concentrator cannot mint relay commands; it relays the head-end's
    bytes (SY03A documents L = 1CH: PA = 98H, password and operator code, then ciphertext).
    """

    address: str
    payload: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        object.__setattr__(self, "payload", _payload(self.payload, MAX_DATA_LENGTH, "payload"))
        if not self.payload:
            raise Dlt645UsageError("an opaque relay command needs a payload")

    def to_frame(self) -> Frame:
        return Frame(self.address, FunctionCode.RELAY_CONTROL, self.payload)

    def reply(self, *, address: str | None = None) -> Acknowledgement:
        return Acknowledgement(_reply_address(self.address, address), FunctionCode.RELAY_CONTROL)

    def error(self, error: ErrorFlag | int, *, address: str | None = None) -> ErrorReply:
        address = _reply_address(self.address, address)
        return ErrorReply(address, FunctionCode.RELAY_CONTROL, _error_flag(error))


@dataclass(frozen=True, slots=True)
class OtherRequest:
    """A request this module does not model (freeze, baud rate, clear, ...), kept as its fields."""

    address: str
    control: int
    data: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        if _byte(self.control, "control") & NORMAL_REPLY:
            raise Dlt645UsageError("a request has D7 = 0")
        object.__setattr__(self, "data", _payload(self.data, MAX_DATA_LENGTH, "data"))

    def to_frame(self) -> Frame:
        return Frame(self.address, self.control, self.data)

    def error(self, error: ErrorFlag | int, *, address: str | None = None) -> ErrorReply:
        return ErrorReply(
            _reply_address(self.address, address), self.control & 0x1F, _error_flag(error)
        )


# -- replies (meter -> master) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadReply:
    """91H (B1H with ``follow_up``): the value of item ``di`` as ``payload`` bytes."""

    address: str
    di: str
    payload: bytes
    follow_up: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        object.__setattr__(self, "di", _normalise_di(self.di))
        object.__setattr__(self, "payload", _payload(self.payload, MAX_DATA_LENGTH - 4, "value"))
        if not isinstance(self.follow_up, bool):
            raise Dlt645UsageError("follow_up must be a bool")

    def to_frame(self) -> Frame:
        control = NORMAL_REPLY | FunctionCode.READ | (FOLLOW_UP_BIT if self.follow_up else 0)
        return Frame(self.address, control, di_to_wire(self.di) + self.payload)

    def value(self) -> Value:
        """The payload decoded by the DI registry (UnknownDataIdentifierError if unregistered)."""
        return decode_value(self.di, self.payload)


@dataclass(frozen=True, slots=True)
class ReadFollowUpReply:
    """92H (B2H with ``follow_up``): follow-up frame ``sequence`` of item ``di``."""

    address: str
    di: str
    payload: bytes
    sequence: int
    follow_up: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        object.__setattr__(self, "di", _normalise_di(self.di))
        object.__setattr__(self, "payload", _payload(self.payload, MAX_DATA_LENGTH - 5, "value"))
        _byte(self.sequence, "sequence number SEQ")
        if not isinstance(self.follow_up, bool):
            raise Dlt645UsageError("follow_up must be a bool")

    def to_frame(self) -> Frame:
        control = (
            NORMAL_REPLY | FunctionCode.READ_FOLLOW_UP | (FOLLOW_UP_BIT if self.follow_up else 0)
        )
        data = di_to_wire(self.di) + self.payload + bytes((self.sequence,))
        return Frame(self.address, control, data)


@dataclass(frozen=True, slots=True)
class ReadAddressReply:
    """93H: the meter's address, in the address field and again as the data."""

    address: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", _own_address(self.address))

    def to_frame(self) -> Frame:
        control = NORMAL_REPLY | FunctionCode.READ_ADDRESS
        return Frame(self.address, control, address_to_wire(self.address))


# Functions whose normal reply carries data, so an empty reply to them is not an acknowledgement.
_DATA_REPLIES = frozenset(
    {FunctionCode.READ, FunctionCode.READ_FOLLOW_UP, FunctionCode.READ_ADDRESS}
)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A normal reply with no data (94H write, 95H write address, 9CH relay control accepted)."""

    address: str
    function: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        if _byte(self.function, "function") > 0x1F or self.function in _DATA_REPLIES:
            raise Dlt645UsageError(f"function {self.function:02X}H has no empty normal reply")

    def to_frame(self) -> Frame:
        return Frame(self.address, NORMAL_REPLY | self.function)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The meter refused (C = function | C0H): ``error`` holds the error flags."""

    address: str
    function: int
    error: ErrorFlag

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        if _byte(self.function, "function") > 0x1F:
            raise Dlt645UsageError(f"function {self.function:02X}H is more than 5 bits")
        object.__setattr__(self, "error", _error_flag(self.error))

    def to_frame(self) -> Frame:
        return Frame(self.address, ABNORMAL_REPLY | self.function, bytes((self.error,)))

    @property
    def flags(self) -> dict[str, bool]:
        return error_flags(self.error)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Names of the error bits that are set, e.g. ``("no_requested_data",)``."""
        return tuple(name for name, is_set in self.flags.items() if is_set)


@dataclass(frozen=True, slots=True)
class OtherReply:
    """A reply this module does not model, kept as its fields."""

    address: str
    control: int
    data: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))
        if not _byte(self.control, "control") & NORMAL_REPLY:
            raise Dlt645UsageError("a reply has D7 = 1")
        object.__setattr__(self, "data", _payload(self.data, MAX_DATA_LENGTH, "data"))

    def to_frame(self) -> Frame:
        return Frame(self.address, self.control, self.data)


Request: TypeAlias = (
    ReadRequest
    | ReadFollowUpRequest
    | ReadAddressRequest
    | WriteRequest
    | WriteAddressRequest
    | BroadcastTimeSync
    | RelayControl
    | RelayControlOpaque
    | OtherRequest
)
Reply: TypeAlias = (
    ReadReply | ReadFollowUpReply | ReadAddressReply | Acknowledgement | ErrorReply | OtherReply
)
Message: TypeAlias = Request | Reply


# -- parsing ------------------------------------------------------------------------------------


def _need(frame: Frame, what: str, length: int, *, exact: bool) -> None:
    size = len(frame.data)
    if size < length or (exact and size != length):
        bound = "" if exact else "at least "
        raise MessageError(
            f"{what} ({frame.control:02X}H) has {bound}{length} data bytes, got {size}"
        )


def parse_request(frame: Frame) -> Request:
    """The request a master sent (a meter simulator's entry point); MessageError if malformed."""
    if frame.is_reply:
        raise MessageError(f"control {frame.control:02X}H has D7 = 1: a reply, not a request")
    try:
        return _parse_request(frame)
    except Dlt645UsageError as exc:  # a field our own classes refuse: the sender's fault here
        raise MessageError(f"{frame.control:02X}H request: {exc}") from exc


def _parse_request(frame: Frame) -> Request:
    address, control, data = frame.address, frame.control, frame.data
    if control == FunctionCode.READ:
        _need(frame, "read request", 4, exact=False)
        return ReadRequest(address, di_from_wire(data[:4]), data[4:])
    if control == FunctionCode.READ_FOLLOW_UP:
        _need(frame, "read follow-up request", 5, exact=True)
        return ReadFollowUpRequest(address, di_from_wire(data[:4]), data[4])
    if control == FunctionCode.READ_ADDRESS:
        _need(frame, "read address request", 0, exact=True)
        return ReadAddressRequest(address)
    if control == FunctionCode.WRITE:
        _need(frame, "write request", 12, exact=False)
        password = Password.from_wire(data[4:8])
        operator = _operator_from_wire(data[8:12])
        return WriteRequest(address, di_from_wire(data[:4]), password, operator, data[12:])
    if control == FunctionCode.WRITE_ADDRESS:
        _need(frame, "write address request", 6, exact=True)
        return WriteAddressRequest(address_from_wire(data), address)
    if control == FunctionCode.BROADCAST_TIME:
        _need(frame, "broadcast time sync", 6, exact=True)
        return BroadcastTimeSync(decode_datetime(data), address)
    if control == FunctionCode.RELAY_CONTROL:
        _need(frame, "relay control", 1, exact=False)
        return _parse_relay_control(address, data)
    return OtherRequest(address, control, data)


def _parse_relay_control(address: str, data: bytes) -> RelayControl | RelayControlOpaque:
    # A 16-byte field that reads as the plaintext form is taken as that; anything else (another
    # length, an unknown N1, no valid time in N3..N8) is carried as an opaque payload.
    if len(data) == RELAY_PLAINTEXT_LENGTH and data[8] in _RELAY_COMMANDS:
        try:
            valid_until = decode_datetime(data[10:16])
        except DataFormatError:
            return RelayControlOpaque(address, data)
        return RelayControl(
            address,
            Password.from_wire(data[0:4]),
            _operator_from_wire(data[4:8]),
            RelayCommand(data[8]),
            valid_until,
            data[9],
        )
    return RelayControlOpaque(address, data)


def parse_reply(frame: Frame) -> Reply:
    """The reply a meter sent (a concentrator's entry point); MessageError if malformed."""
    if not frame.is_reply:
        raise MessageError(f"control {frame.control:02X}H has D7 = 0: a request, not a reply")
    try:
        return _parse_reply(frame)
    except Dlt645UsageError as exc:
        raise MessageError(f"{frame.control:02X}H reply: {exc}") from exc


def _parse_reply(frame: Frame) -> Reply:
    address, control, data = frame.address, frame.control, frame.data
    code = frame.function
    if frame.is_abnormal:
        if frame.has_follow_up:
            return OtherReply(address, control, data)
        _need(frame, "abnormal reply", 1, exact=True)
        return ErrorReply(address, code, ErrorFlag(data[0]))
    follow_up = frame.has_follow_up
    if code == FunctionCode.READ:
        _need(frame, "read reply", 4, exact=False)
        return ReadReply(address, di_from_wire(data[:4]), data[4:], follow_up)
    if code == FunctionCode.READ_FOLLOW_UP:
        _need(frame, "read follow-up reply", 5, exact=False)
        return ReadFollowUpReply(address, di_from_wire(data[:4]), data[4:-1], data[-1], follow_up)
    if code == FunctionCode.READ_ADDRESS and not follow_up:
        _need(frame, "read address reply", 6, exact=True)
        carried = address_from_wire(data)
        if carried != address:
            raise MessageError(f"read address reply from {address} carries address {carried}")
        return ReadAddressReply(address)
    if not follow_up and not data and code not in _DATA_REPLIES:
        return Acknowledgement(address, code)
    return OtherReply(address, control, data)


def parse_message(frame: Frame) -> Message:
    """:func:`parse_request` or :func:`parse_reply`, by the direction bit."""
    return parse_reply(frame) if frame.is_reply else parse_request(frame)
