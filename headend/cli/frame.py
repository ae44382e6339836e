"""``amr frame decode``: a field technician's decoder for captured frames.

    amr frame decode --protocol dlt645 68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16
    amr frame decode --protocol modbus-rtu 01 03 00 00 00 02 C4 0B --json

The hex may be given as one or many arguments, with spaces, colons or dashes. Human output by
default, JSON with ``--json`` (with at least ``address``, ``control`` or ``function``,
``data_identifier`` where the protocol has one, the decoded values and ``checksum_ok``). A frame
that does not validate exits with status 3 and a message saying what is wrong (checksum, length,
end byte, ...); a bad checksum still prints what the bytes would mean.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["decode_hex", "register"]

EXIT_INVALID = 3


def decode_hex(parts: list[str]) -> bytes:
    """The bytes of hex text as technicians paste it ("68 01", "68:01", "6801", "0x68 0x01")."""
    text = " ".join(parts)
    text = re.sub(r"0[xX]([0-9a-fA-F]{1,2})\b", r"\1", text)
    cleaned = re.sub(r"[\s:,\-]+", "", text)
    if not cleaned:
        raise ValueError("no bytes given")
    if len(cleaned) % 2:
        raise ValueError(f"odd number of hex digits ({len(cleaned)})")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = re.search(r"[^0-9a-fA-F]", cleaned)
        raise ValueError(f"not hexadecimal: {bad.group(0) if bad else cleaned!r}") from None


def _inspectors() -> dict[str, Callable[[bytes], dict[str, Any]]]:
    from protocols.dlt645 import inspect_frame as dlt645_inspect
    from protocols.modbus.adapter import Framing, inspect_adu
    from protocols.qgdw13762 import inspect_frame as qgdw_inspect

    return {
        "dlt645": dlt645_inspect,
        "modbus-rtu": lambda raw: inspect_adu(raw, Framing.RTU),
        "modbus-tcp": lambda raw: inspect_adu(raw, Framing.TCP),
        "qgdw13762": qgdw_inspect,
    }


def _human(info: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines += _human(value, indent + "  ")
        elif isinstance(value, list) and len(value) > 16:
            lines.append(f"{indent}{key}: {value[:16]} ... ({len(value)} items)")
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def _decode(args: argparse.Namespace) -> int:
    from protocols.errors import ProtocolError

    try:
        raw = decode_hex(args.hex)
    except ValueError as exc:
        print(f"amr frame decode: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        info = _inspectors()[args.protocol](raw)
    except ProtocolError as exc:
        print(f"amr frame decode: invalid {args.protocol} frame: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(info, default=str))
    else:
        print("\n".join(_human(info)))
    if info.get("checksum_ok") is False:
        expected = info.get("checksum_expected", "?")
        found = info.get("checksum_found", "?")
        print(
            f"amr frame decode: invalid {args.protocol} frame: checksum is {found}, "
            f"expected {expected}",
            file=sys.stderr,
        )
        return EXIT_INVALID
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser("frame", help="decode captured DL/T 645, Modbus or 1376.2 frames")
    sub = parser.add_subparsers(dest="frame_command", required=True, metavar="COMMAND")
    decode = sub.add_parser("decode", help="decode one frame given in hex")
    decode.add_argument(
        "--protocol", required=True, choices=["dlt645", "modbus-rtu", "modbus-tcp", "qgdw13762"]
    )
    decode.add_argument("--json", action="store_true", help="print JSON")
    decode.add_argument("hex", nargs="+", help="the frame's bytes in hex")
    decode.set_defaults(handler=_decode)
