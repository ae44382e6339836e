"""The one module that touches pymodbus: Modbus RTU and TCP framing and PDUs.

pymodbus (pinned to 3.16.x in pyproject.toml) builds and parses the ADUs; nothing else in the
project imports it (tests/test_layering.py checks). Its framer and PDU classes are internal-ish
and have changed between minor releases, so the golden-frame tests in
tests/protocols/modbus/test_adapter.py lock the bytes: an upgrade that changes them fails a test
rather than a meter.

    RTU ADU:  unit (1) | function (1) | data (N) | CRC-16/MODBUS (2, low byte first)
    TCP ADU:  transaction (2) | protocol 0 (2) | length (2) | unit (1) | function (1) | data (N)

(Modbus over Serial Line V1.02 2.5.1; Modbus Messaging on TCP/IP Implementation Guide V1.0b 3.1.)

Requests and responses cross this boundary as the project's own frozen dataclasses,
:class:`Request` and :class:`Response`; :class:`Receiver` is a sans-I/O decoder for either side of
a link (``server=True`` decodes requests, as a meter does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
    WriteMultipleCoilsRequest,
    WriteMultipleCoilsResponse,
    WriteSingleCoilRequest,
    WriteSingleCoilResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from protocols.errors import LocalProtocolError, RemoteProtocolError

from .profile import Table

__all__ = [
    "EXCEPTION_NAMES",
    "FUNCTION_NAMES",
    "Framing",
    "InvalidRequest",
    "Receiver",
    "Request",
    "Response",
    "crc16_modbus",
    "encode_exception",
    "encode_request",
    "encode_response",
    "inspect_adu",
    "read_function",
]

READ_COILS, READ_DISCRETE, READ_HOLDING, READ_INPUT = 1, 2, 3, 4
WRITE_COIL, WRITE_REGISTER, WRITE_COILS, WRITE_REGISTERS = 5, 6, 15, 16

FUNCTION_NAMES = {
    1: "read coils",
    2: "read discrete inputs",
    3: "read holding registers",
    4: "read input registers",
    5: "write single coil",
    6: "write single register",
    15: "write multiple coils",
    16: "write multiple registers",
}
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

_REQUESTS: dict[int, type[ModbusPDU]] = {
    READ_COILS: ReadCoilsRequest,
    READ_DISCRETE: ReadDiscreteInputsRequest,
    READ_HOLDING: ReadHoldingRegistersRequest,
    READ_INPUT: ReadInputRegistersRequest,
    WRITE_COIL: WriteSingleCoilRequest,
    WRITE_REGISTER: WriteSingleRegisterRequest,
    WRITE_COILS: WriteMultipleCoilsRequest,
    WRITE_REGISTERS: WriteMultipleRegistersRequest,
}
_RESPONSES: dict[int, type[ModbusPDU]] = {
    READ_COILS: ReadCoilsResponse,
    READ_DISCRETE: ReadDiscreteInputsResponse,
    READ_HOLDING: ReadHoldingRegistersResponse,
    READ_INPUT: ReadInputRegistersResponse,
    WRITE_COIL: WriteSingleCoilResponse,
    WRITE_REGISTER: WriteSingleRegisterResponse,
    WRITE_COILS: WriteMultipleCoilsResponse,
    WRITE_REGISTERS: WriteMultipleRegistersResponse,
}
_BIT_FUNCTIONS = {READ_COILS, READ_DISCRETE, WRITE_COIL, WRITE_COILS}


class Framing(Enum):
    RTU = "rtu"
    TCP = "tcp"


def read_function(table: Table) -> int:
    return {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}[table]


@dataclass(frozen=True, slots=True)
class Request:
    """A request: reads carry ``count``; writes carry ``values`` (registers, or 0/1 for coils)."""

    unit_id: int
    function: int
    address: int
    count: int = 0
    values: tuple[int, ...] = ()
    transaction_id: int = 0

    def __post_init__(self) -> None:
        if self.function not in _REQUESTS:
            raise LocalProtocolError(f"function code {self.function} is not supported")
        if not 0 <= self.unit_id <= 247:
            raise LocalProtocolError(f"unit id must be 0..247, got {self.unit_id}")
        if not 0 <= self.address <= 0xFFFF:
            raise LocalProtocolError(f"address must be 0..65535, got {self.address}")
        if self.function in (1, 2) and not 1 <= self.count <= 2000:
            raise LocalProtocolError(f"a bit read is 1..2000 bits, got {self.count}")
        if self.function in (3, 4) and not 1 <= self.count <= 125:
            raise LocalProtocolError(f"a register read is 1..125 registers, got {self.count}")
        if self.function in (5, 6) and len(self.values) != 1:
            raise LocalProtocolError("a single write carries exactly one value")
        if self.function == 16 and not 1 <= len(self.values) <= 123:
            raise LocalProtocolError("a multiple register write carries 1..123 registers")
        if self.function == 15 and not 1 <= len(self.values) <= 1968:
            raise LocalProtocolError("a multiple coil write carries 1..1968 coils")
        if any(not 0 <= v <= 0xFFFF for v in self.values):
            raise LocalProtocolError("register values must be 0..65535")

    @property
    def is_read(self) -> bool:
        return self.function in (1, 2, 3, 4)

    @property
    def quantity(self) -> int:
        return self.count if self.is_read else len(self.values)


@dataclass(frozen=True, slots=True)
class Response:
    """A response: read data, a write echo, or an exception code."""

    unit_id: int
    function: int
    values: tuple[int, ...] = ()
    exception_code: int | None = None
    address: int = 0
    transaction_id: int = 0

    @property
    def is_exception(self) -> bool:
        return self.exception_code is not None


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """A well-framed request a server must refuse with an exception (01 or 03), not ignore."""

    unit_id: int
    function: int
    exception_code: int
    transaction_id: int = 0
    reason: str = ""


def encode_exception(refused: InvalidRequest, framing: Framing) -> bytes:
    """The exception response to a refused request."""
    pdu = ExceptionResponse(refused.function & 0x7F, refused.exception_code, refused.unit_id)
    pdu.transaction_id = refused.transaction_id
    pdu.dev_id = refused.unit_id
    return bytes(_framer(framing, True).buildFrame(pdu))


def _framer(framing: Framing, server: bool) -> FramerRTU | FramerSocket:
    decoder = DecodePDU(is_server=server)
    return FramerRTU(decoder) if framing is Framing.RTU else FramerSocket(decoder)


def _request_pdu(request: Request) -> ModbusPDU:
    kind = _REQUESTS[request.function]
    kwargs: dict[str, Any] = {
        "dev_id": request.unit_id,
        "transaction_id": request.transaction_id,
        "address": request.address,
    }
    if request.is_read:
        kwargs["count"] = request.count
    elif request.function in _BIT_FUNCTIONS:
        kwargs["bits"] = [bool(v) for v in request.values]
    else:
        kwargs["registers"] = list(request.values)
    return kind(**kwargs)


def encode_request(request: Request, framing: Framing) -> bytes:
    """The ADU of ``request``."""
    return bytes(_framer(framing, False).buildFrame(_request_pdu(request)))


def encode_response(request: Request, framing: Framing, values: Sequence[int] = (),
                    exception_code: int | None = None) -> bytes:  # fmt: skip
    """The ADU a server sends for ``request``: its data, a write echo, or an exception."""
    pdu: ModbusPDU
    if exception_code is not None:
        pdu = ExceptionResponse(request.function, exception_code, request.unit_id)
    else:
        kind = _RESPONSES[request.function]
        kwargs: dict[str, Any] = {"dev_id": request.unit_id, "address": request.address}
        if request.function in (READ_COILS, READ_DISCRETE):
            if len(values) != request.count:
                raise LocalProtocolError(f"response needs {request.count} bits, got {len(values)}")
            kwargs["bits"] = [bool(v) for v in values]
        elif request.function in (READ_HOLDING, READ_INPUT):
            if len(values) != request.count:
                raise LocalProtocolError(
                    f"response needs {request.count} registers, got {len(values)}"
                )
            kwargs["registers"] = list(values)
        elif request.function in (WRITE_COIL, WRITE_COILS):
            kwargs["bits"] = [bool(v) for v in request.values]
            kwargs["count"] = len(request.values)
        else:
            kwargs["registers"] = list(request.values)
            kwargs["count"] = len(request.values)
        pdu = kind(**kwargs)
    pdu.transaction_id = request.transaction_id
    pdu.dev_id = request.unit_id
    return bytes(_framer(framing, True).buildFrame(pdu))


def _from_pdu(
    pdu: ModbusPDU, server: bool, expected_count: int | None
) -> Request | Response | InvalidRequest:
    if server:
        values: tuple[int, ...] = ()
        if pdu.function_code in (WRITE_COIL, WRITE_COILS):
            values = tuple(int(b) for b in pdu.bits[: max(1, pdu.count)])
        elif pdu.function_code in (WRITE_REGISTER, WRITE_REGISTERS):
            values = tuple(pdu.registers)
        try:
            return Request(
                unit_id=pdu.dev_id,
                function=pdu.function_code,
                address=pdu.address,
                count=pdu.count if pdu.function_code in (1, 2, 3, 4) else 0,
                values=values,
                transaction_id=pdu.transaction_id,
            )
        except LocalProtocolError as exc:  # e.g. a read of 0 or of more than 125 registers
            return InvalidRequest(pdu.dev_id, pdu.function_code, 3, pdu.transaction_id, str(exc))
    if isinstance(pdu, ExceptionResponse) or pdu.isError():
        return Response(
            unit_id=pdu.dev_id,
            function=pdu.function_code & 0x7F,
            exception_code=pdu.exception_code,
            transaction_id=pdu.transaction_id,
        )
    if pdu.function_code in (READ_COILS, READ_DISCRETE):
        bits = [int(b) for b in pdu.bits]
        values = tuple(bits[:expected_count] if expected_count else bits)
    elif pdu.function_code in (READ_HOLDING, READ_INPUT, WRITE_REGISTER):
        values = tuple(pdu.registers)
    else:
        values = ()
    return Response(
        unit_id=pdu.dev_id,
        function=pdu.function_code,
        values=values,
        address=pdu.address,
        transaction_id=pdu.transaction_id,
    )


class Receiver:
    """Sans-I/O Modbus decoder: ``receive_data(bytes)``, then ``next_event()`` until None.

    A client receiver (``server=False``) decodes responses for ``expect_unit``; a server receiver
    decodes requests for any unit id. On RTU, bytes that do not form a valid ADU (bad CRC,
    garbage, another unit's reply) are dropped and counted in ``discarded_bytes``; on TCP a broken
    MBAP header raises RemoteProtocolError (the connection should be closed). The buffer is bounded.
    """

    MAX_BUFFER = 4096

    def __init__(self, framing: Framing, *, server: bool) -> None:
        self.framing = framing
        self.server = server
        self._framer = _framer(framing, server)
        self._buffer = b""
        self.discarded_bytes = 0
        self.expect_unit = 0
        self.expect_transaction = 0
        self.expect_count: int | None = None

    def expect(self, request: Request) -> None:
        """Tell a client receiver which response comes next (RTU frames carry no request id)."""
        self._buffer = b""
        self.expect_unit = request.unit_id
        self.expect_transaction = request.transaction_id
        self.expect_count = request.count if request.is_read else None

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self.MAX_BUFFER:
            dropped = len(self._buffer) - self.MAX_BUFFER
            self._buffer = self._buffer[dropped:]
            self.discarded_bytes += dropped

    def reset(self) -> None:
        """Drop buffered bytes (a transport calls this after the line was silent for t3.5)."""
        self.discarded_bytes += len(self._buffer)
        self._buffer = b""

    def next_event(self) -> Request | Response | InvalidRequest | None:
        """The next complete request/response, or None until more bytes arrive."""
        if self.framing is Framing.RTU:
            return self._next_rtu()
        return self._next_tcp()

    def _rtu_length(self) -> int | None:
        """Length of the RTU frame at the head of the buffer; None: need more; 0: impossible.

        RTU frames are delimited by silence on the wire, which a pty or a USB adapter does not
        preserve, so the length comes from the function code (and byte count) instead.
        """
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        function = buffer[1]
        if self.server:
            if function in (1, 2, 3, 4, 5, 6):
                return 8
            if function in (15, 16):
                return None if len(buffer) < 7 else 9 + buffer[6]
            return 0
        if function & 0x80:
            return 5
        if function in (1, 2, 3, 4):
            return None if len(buffer) < 3 else 5 + buffer[2]
        if function in (5, 6, 15, 16):
            return 8
        return 0

    def _drop(self, count: int) -> None:
        self._buffer = self._buffer[count:]
        self.discarded_bytes += count

    def _next_rtu(self) -> Request | Response | InvalidRequest | None:
        while self._buffer:
            length = self._rtu_length()
            if length is None or len(self._buffer) < (length or 1):
                return None
            if length == 0:
                self._drop(1)
                continue
            frame = self._buffer[:length]
            if crc16_modbus(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
                self._drop(1)  # not a frame start after all: slide by one byte
                continue
            unit = 0 if self.server else self.expect_unit
            try:
                _, pdu = self._framer.handleFrame(frame, unit, 0)
            except Exception:  # pymodbus raises bare exceptions on odd PDUs
                pdu = None
            if pdu is None:
                self._drop(length)  # valid CRC but not for us, or a PDU pymodbus refuses
                continue
            self._buffer = self._buffer[length:]
            return _from_pdu(pdu, self.server, self.expect_count)
        return None

    def _next_tcp(self) -> Request | Response | InvalidRequest | None:
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[4:6], "big")
            if int.from_bytes(self._buffer[2:4], "big") != 0 or not 2 <= length <= 254:
                # Not an MBAP header: TCP does not lose bytes, so the stream is unusable.
                self.reset()
                raise RemoteProtocolError("not a Modbus TCP stream (bad MBAP header)")
            if len(self._buffer) < 6 + length:
                return None
            frame = self._buffer[: 6 + length]
            self._buffer = self._buffer[6 + length :]
            try:
                _, pdu = self._framer.handleFrame(frame, 0, 0)
            except Exception:  # pymodbus raises bare exceptions on odd PDUs
                pdu = None
            if pdu is None:
                if self.server and len(frame) >= 8:
                    tid = int.from_bytes(frame[0:2], "big")
                    if frame[7] not in _REQUESTS:
                        return InvalidRequest(frame[6], frame[7], 1, tid, "illegal function")
                    return InvalidRequest(frame[6], frame[7], 3, tid, "request out of range")
                self.discarded_bytes += len(frame)
                continue
            return _from_pdu(pdu, self.server, self.expect_count)
        return None


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (its low byte is sent first)."""
    wire_order = int(FramerRTU.compute_CRC(data))  # pymodbus returns the bytes in wire order
    return int.from_bytes(wire_order.to_bytes(2, "big"), "little")


def inspect_adu(raw: bytes, framing: Framing) -> dict[str, object]:
    """A captured ADU described for a field technician (raises RemoteProtocolError if invalid).

    Bad CRCs are reported (``checksum_ok: false`` with expected and found) rather than raised.
    """
    info: dict[str, object] = {"framing": framing.value}
    if framing is Framing.RTU:
        if len(raw) < 4:
            raise RemoteProtocolError(f"an RTU frame has at least 4 bytes, got {len(raw)}")
        body, found = raw[:-2], int.from_bytes(raw[-2:], "little")
        expected = crc16_modbus(body)
        info.update(
            checksum_ok=found == expected,
            checksum_expected=f"{expected:04X}",
            checksum_found=f"{found:04X}",
        )
        unit, pdu = body[0], body[1:]
    else:
        if len(raw) < 8:
            raise RemoteProtocolError(f"a Modbus TCP frame has at least 8 bytes, got {len(raw)}")
        length = int.from_bytes(raw[4:6], "big")
        if int.from_bytes(raw[2:4], "big") != 0:
            raise RemoteProtocolError("MBAP protocol identifier must be 0")
        if length != len(raw) - 6:
            raise RemoteProtocolError(
                f"MBAP length says {length} bytes follow, found {len(raw) - 6}"
            )
        info["transaction_id"] = int.from_bytes(raw[0:2], "big")
        info["checksum_ok"] = True  # TCP has no checksum; TCP itself protects the bytes
        unit, pdu = raw[6], raw[7:]
    function = pdu[0]
    info.update(address=unit, unit_id=unit, function=function)
    info["function_name"] = FUNCTION_NAMES.get(function & 0x7F, "unknown")
    data = pdu[1:]
    if function & 0x80:
        code = data[0] if data else None
        info.update(exception=True, exception_code=code,
                    exception_name=EXCEPTION_NAMES.get(code or 0, "unknown"))  # fmt: skip
        return info
    info["exception"] = False
    fields: dict[str, object] = {}
    if function in (1, 2, 3, 4) and len(data) == 4:
        fields = {"kind": "request", "start_address": int.from_bytes(data[0:2], "big"),
                  "quantity": int.from_bytes(data[2:4], "big")}  # fmt: skip
    elif function in (3, 4) and data and data[0] == len(data) - 1:
        registers = [int.from_bytes(data[i : i + 2], "big") for i in range(1, len(data), 2)]
        fields = {"kind": "response", "byte_count": data[0], "registers": registers}
    elif function in (1, 2) and data and data[0] == len(data) - 1:
        bits = [(byte >> i) & 1 for byte in data[1:] for i in range(8)]
        fields = {"kind": "response", "byte_count": data[0], "bits": bits}
    elif function in (5, 6) and len(data) == 4:
        fields = {"kind": "request or echo", "address": int.from_bytes(data[0:2], "big"),
                  "value": int.from_bytes(data[2:4], "big")}  # fmt: skip
    elif function in (15, 16) and len(data) == 4:
        fields = {"kind": "response", "start_address": int.from_bytes(data[0:2], "big"),
                  "quantity": int.from_bytes(data[2:4], "big")}  # fmt: skip
    elif function == 16 and len(data) >= 5 and data[4] == len(data) - 5:
        values = [int.from_bytes(data[i : i + 2], "big") for i in range(5, len(data), 2)]
        fields = {"kind": "request", "start_address": int.from_bytes(data[0:2], "big"),
                  "quantity": int.from_bytes(data[2:4], "big"), "values": values}  # fmt: skip
    elif function == 15 and len(data) >= 5 and data[4] == len(data) - 5:
        fields = {"kind": "request", "start_address": int.from_bytes(data[0:2], "big"),
                  "quantity": int.from_bytes(data[2:4], "big"), "data": data[5:].hex()}  # fmt: skip
    else:
        raise RemoteProtocolError(
            f"function {function} with {len(data)} data bytes is not a valid Modbus PDU"
        )
    info.update(fields)
    return info
