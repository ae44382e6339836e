"""JSON-ready descriptions of Q/GDW 1376.2 frames, for ``amr frame decode --protocol qgdw13762``.

A field technician pastes what a serial sniffer showed between the concentrator and its PLC module;
:func:`inspect_frame` says what every field means. A wrong checksum is reported, not raised
(``checksum_ok: false`` with the expected and found values), so a frame damaged on the line can
still be read; a frame whose structure is broken (start byte, L, end byte, DT) still raises the
typed error that says what is wrong. A data unit that does not fit its AFN/Fn is reported under
``message_error`` next to the raw ``data``.

Names: AFN names are the list in [SPEC] and [LN] ``get_AFN_name``; Fn names are those of the
public sources cited in :mod:`.frame` and :mod:`.messages` ([LN], [NUC], ``format.h``); other Fn
show as ``"F<n>"`` only.
"""

from __future__ import annotations

import re

from .frame import (
    CommunicationMode,
    Direction,
    Frame,
    Qgdw13762UsageError,
    _inspect,
    encode_frame,
)
from .messages import (
    BroadcastControl,
    Confirm,
    Deny,
    MasterAddress,
    MessageError,
    MonitorSlaveNodeReply,
    MonitorSlaveNodeRequest,
    ProtocolType,
    QueryMasterAddress,
    StartBroadcast,
    parse_message,
)

__all__ = ["AFN_NAMES", "FN_NAMES", "bytes_from_hex", "describe", "inspect_frame"]

AFN_NAMES: dict[int, str] = {
    0x00: "confirm/deny",
    0x01: "initialise",
    0x02: "data forwarding",
    0x03: "query data",
    0x04: "link interface test",
    0x05: "control",
    0x06: "active report",
    0x10: "route query",
    0x11: "route setting",
    0x12: "route control",
    0x13: "route data forwarding",
    0x14: "route data reading",
    0x15: "file transfer",
    0xF0: "internal test",
    0xF1: "concurrent meter reading",
}

FN_NAMES: dict[tuple[int, int], str] = {
    (0x00, 1): "confirm",
    (0x00, 2): "deny",
    (0x02, 1): "forward a protocol frame",
    (0x03, 1): "vendor code and version",
    (0x03, 4): "master node address",
    (0x03, 6): "master node interference status",
    (0x03, 7): "slave node monitoring maximum timeout",
    (0x03, 10): "local module operating mode",
    (0x05, 1): "set master node address",
    (0x05, 2): "allow/forbid slave node reports",
    (0x05, 3): "start broadcast",
    (0x05, 4): "set slave node monitoring maximum timeout",
    (0x06, 1): "report slave node information",
    (0x06, 2): "report read data",
    (0x06, 3): "report routing condition change",
    (0x06, 4): "report slave node information and device type",
    (0x06, 5): "report slave node event",
    (0x10, 1): "slave node count",
    (0x10, 2): "slave node information",
    (0x10, 4): "router running status",
    (0x11, 1): "add slave nodes",
    (0x11, 2): "delete slave nodes",
    (0x13, 1): "monitor slave node",
    (0x14, 1): "router requests read content",
    (0x14, 2): "router requests concentrator clock",
    (0x14, 3): "request delay-corrected data",
    (0x15, 1): "file transfer mode 1",
    (0xF1, 1): "concurrent meter reading",
}

_MODE_NAMES: dict[int, str] = {
    CommunicationMode.CENTRALISED_ROUTING_PLC: "narrow-band PLC, centralised routing",
    CommunicationMode.DISTRIBUTED_ROUTING_PLC: "narrow-band PLC, distributed routing",
    CommunicationMode.BROADBAND_PLC: "broadband PLC (HPLC)",
    CommunicationMode.MICRO_POWER_WIRELESS: "micro-power wireless",
    CommunicationMode.ETHERNET: "Ethernet",
}

_PROTOCOL_NAMES: dict[int, str] = {
    ProtocolType.TRANSPARENT: "transparent",
    ProtocolType.DLT645_1997: "DL/T 645-1997",
    ProtocolType.DLT645_2007: "DL/T 645-2007",
    ProtocolType.DLT698_45: "DL/T 698.45",
}

_BROADCAST_NAMES: dict[int, str] = {
    BroadcastControl.TRANSPARENT: "transparent",
    BroadcastControl.DLT645_1997: "DL/T 645-1997",
    BroadcastControl.DLT645_2007: "DL/T 645-2007",
    BroadcastControl.PHASE_IDENTIFICATION: "phase identification",
}

_NOT_HEX = re.compile(r"[\s:,-]|0x", re.IGNORECASE)


def bytes_from_hex(text: str) -> bytes:
    """Bytes from hex as people paste it: ``"68 2F 00 ..."``, ``"682f00"``, ``"68:2F"``, ``0x68``."""
    digits = _NOT_HEX.sub("", text)
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise Qgdw13762UsageError(
            f"not hex bytes: {text[:40]!r}{'...' if len(text) > 40 else ''}"
        ) from None


def _hex(raw: bytes) -> str:
    return raw.hex(" ").upper()


def _protocol_name(value: int) -> str:
    return _PROTOCOL_NAMES.get(value, "reserved")


def _info(frame: Frame) -> dict[str, object]:
    fields: dict[str, object] = {"raw": _hex(frame.info.raw)}
    if frame.direction is Direction.DOWN:
        down = frame.info.downstream
        fields.update(
            routing_flag=int(down.routing_flag),
            attached_node_flag=int(down.attached_node_flag),
            module_flag=int(down.module_flag),
            conflict_detection=int(down.conflict_detection),
            relay_level=down.relay_level,
            channel=down.channel,
            error_correction=down.error_correction,
            expected_reply_length=down.expected_reply_length,
            rate=down.rate,
            rate_unit="kbit/s" if down.rate_in_kbps else "bit/s",
            seq=down.seq,
        )
    else:
        up = frame.info.upstream
        fields.update(
            routing_flag=int(up.routing_flag),
            module_flag=int(up.module_flag),
            relay_level=up.relay_level,
            channel=up.channel,
            phase=up.phase,
            meter_channel=up.meter_channel,
            command_quality=up.command_quality,
            reply_quality=up.reply_quality,
            event_flag=int(up.event_flag),
            seq=up.seq,
        )
    return fields


def _message(frame: Frame, out: dict[str, object]) -> None:
    try:
        message = parse_message(frame)
    except MessageError as error:
        out["message"] = None
        out["message_error"] = str(error)
        return
    fields: dict[str, object]
    match message:
        case None:
            out["message"] = None
            return
        case MonitorSlaveNodeRequest():
            fields = {
                "protocol_type": message.protocol,
                "protocol_name": _protocol_name(message.protocol),
                "delay_flag": message.delay_flag,
                "attached_nodes": list(message.attached_nodes),
                "embedded_frame_length": len(message.frame),
                "embedded_frame": _hex(message.frame),
            }
        case MonitorSlaveNodeReply():
            fields = {
                "transit_time_s": message.transit_time_s,
                "protocol_type": message.protocol,
                "protocol_name": _protocol_name(message.protocol),
                "embedded_frame_length": len(message.frame),
                "embedded_frame": _hex(message.frame),
            }
        case StartBroadcast():
            fields = {
                "control_word": message.control,
                "control_name": _BROADCAST_NAMES.get(message.control, "reserved"),
                "embedded_frame_length": len(message.frame),
                "embedded_frame": _hex(message.frame),
            }
        case Confirm():
            fields = {
                "command_processed": message.command_processed,
                "idle_channels": list(message.idle_channels),
                "wait_time_s": message.wait_time_s,
            }
        case Deny():
            fields = {"reason": message.reason, "reason_name": message.reason_name}
        case MasterAddress():
            fields = {"master_address": message.address}
        case QueryMasterAddress():
            fields = {}
    out["message"] = {"name": message.NAME, **fields}
    for key in ("protocol_type", "embedded_frame"):
        if key in fields:
            out[key] = fields[key]


def describe(frame: Frame) -> dict[str, object]:
    """Every field of ``frame`` as JSON-ready values (str, int, bool, None, lists, dicts)."""
    raw = encode_frame(frame)
    mode = frame.communication_mode
    out: dict[str, object] = {
        "protocol": "qgdw13762",
        "length": frame.length,
        "control": f"0x{frame.control:02X}",
        "direction": frame.direction.name.lower(),
        "direction_text": (
            "concentrator -> module"
            if frame.direction is Direction.DOWN
            else "module -> concentrator"
        ),
        "prm": int(frame.prm),
        "prm_text": "start frame" if frame.prm else "slave (reply) frame",
        "communication_mode": mode,
        "communication_mode_name": _MODE_NAMES.get(mode, "reserved"),
        "info": _info(frame),
        "seq": frame.seq,
        "source": frame.source,
        "relays": list(frame.relays),
        "destination": frame.destination,
        "afn": f"0x{frame.afn:02X}",
        "afn_name": AFN_NAMES.get(frame.afn, "reserved"),
        "fn": frame.fn,
        "fn_name": FN_NAMES.get((frame.afn, frame.fn), f"F{frame.fn}"),
        "data": _hex(frame.data),
        "checksum": f"0x{raw[-2]:02X}",
        "checksum_ok": True,
    }
    _message(frame, out)
    return out


def inspect_frame(raw: bytes) -> dict[str, object]:
    """:func:`describe` for raw bytes of one frame, reporting a checksum mismatch in the result.

    ``checksum_ok`` is False with ``checksum_expected`` and ``checksum_found`` when CS is wrong.
    Structural errors (:class:`~.frame.StartByteError`, :class:`~.frame.FrameLengthError`,
    :class:`~.frame.EndByteError`, :class:`~.frame.DataUnitIdError`) are raised.
    """
    frame, expected, found = _inspect(raw)
    out = describe(frame)
    out["checksum"] = f"0x{found:02X}"
    out["checksum_ok"] = expected == found
    if expected != found:
        out["checksum_expected"] = f"0x{expected:02X}"
        out["checksum_found"] = f"0x{found:02X}"
    return out
