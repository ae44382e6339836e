"""``amr token``: vend, decode and batch-generate STS tokens from the command line.

Keys come from ``--vending-key-file``/``--decoder-key-file`` or the environment variables
``AMR_VENDING_KEY``/``AMR_DECODER_KEY`` (hex; ``AMR_NEW_VENDING_KEY`` for the key a key change
moves to); ``--vending-key HEX`` works too, but a key on a command
line is visible to every user of the machine (``ps``), so it is for test keys only. Keys are never
printed.

Exit status: 0 done, 2 bad command line, 3 a request that cannot be served or a token that does
not decode (the message says why), 1 for ``batch`` when at least one line failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from protocols.sts import (
    BaseDate,
    CreditType,
    EncryptionAlgorithm,
    MeterTestToken,
    StsError,
    Token,
    TokenRejected,
    TransferCredit,
    datetime_of_tid,
    decode_token,
    normalize_token,
)

from .token_requests import RequestError, build_request, coder_for, fields_to_json

__all__ = ["register"]

EXIT_FAILED = 3

_CREDIT_TYPES = {t.name.lower().replace("_", "-"): t for t in CreditType}
_ENGINEERING = {
    "max-power-limit": (0, "mpl_watts", "watts"),
    "clear-credit": (1, "register", "register number, or 65535 for all (default)"),
    "tariff-rate": (2, "rate", "rate"),
    "clear-tamper": (5, None, ""),
    "phase-unbalance-limit": (6, "mppul_watts", "watts"),
    "water-meter-factor": (7, "water_meter_factor", "factor"),
}


class CliError(Exception):
    """A command-line problem reported as one line on stderr."""


def _read_key(args: argparse.Namespace, prefix: str, env: str) -> str | None:
    direct = getattr(args, f"{prefix}_key")
    path = getattr(args, f"{prefix}_key_file")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read {prefix} key file {path}: {exc.strerror}") from None
    if direct:
        return str(direct)
    return os.environ.get(env) or None


def _key_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    keys = parser.add_argument_group("key (decoder key, or vending key and meter attributes)")
    keys.add_argument("--decoder-key", metavar="HEX", help="the meter's decoder key (test use)")
    keys.add_argument("--decoder-key-file", metavar="PATH", help="file holding the decoder key")
    keys.add_argument("--vending-key", metavar="HEX", help="vending key (test use; prefer a file)")
    keys.add_argument("--vending-key-file", metavar="PATH", help="file holding the vending key")
    keys.add_argument("--drn", help="the meter's DRN (11 or 13 digits, check digit included)")
    keys.add_argument("--iin", default="600727", help="issuer identification number (600727)")
    keys.add_argument("--pan", help="the full 18-digit MeterPAN instead of --iin/--drn")
    keys.add_argument("--sgc", help="supply group code (6 digits)")
    keys.add_argument("--ti", default="01", help="tariff index (01)")
    keys.add_argument("--krn", type=int, default=1, help="key revision number (1)")
    keys.add_argument("--kt", type=int, default=2, help="key type: 1 DDTK, 2 DUTK, 3 DCTK (2)")
    keys.add_argument(
        "--base-date", default="2014",
        help="the key's base date: 1993, 2014 or 2035 (2014; 1993 keys ran out on 2024-11-24)",
    )  # fmt: skip
    keys.add_argument("--ea", default="07", help="encryption algorithm: 07 STA, 09 DEA, 11 MISTY1")
    keys.add_argument("--dkga", default=None, help="02 or 04 (default: 04 for EA11, else 02)")


def _time_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tid", type=int, help="token identifier (default: from --at)")
    parser.add_argument("--at", metavar="YYYY-MM-DDTHH:MM", help="issue time (default: now)")
    parser.add_argument("--rnd", type=int, help="the 4-bit random number (default: random)")


def _key_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"encryption_algorithm": args.ea}
    decoder = _read_key(args, "decoder", "AMR_DECODER_KEY")
    vending = _read_key(args, "vending", "AMR_VENDING_KEY")
    if decoder:
        request["decoder_key_hex"] = decoder
    if vending:
        request["vending_key_hex"] = vending
        misty = EncryptionAlgorithm.parse(args.ea) is EncryptionAlgorithm.MISTY1
        request["dkga"] = args.dkga or ("04" if misty else "02")
        if args.pan:
            request["meter_pan"] = args.pan
        elif args.drn:
            request.update(iin=args.iin, drn_iain=args.drn)
        else:
            raise CliError("a vending key needs the meter: give --drn (or --pan)")
        if not args.sgc:
            raise CliError("a vending key needs the meter's supply group code: give --sgc")
        request.update(
            supply_group_code=args.sgc,
            tariff_index=args.ti,
            key_revision_number=args.krn,
            key_type=args.kt,
            base_date=args.base_date,
        )
    if not decoder and not vending:
        raise CliError(
            "no key: give --vending-key-file with the meter (--drn, --sgc, ...) or "
            "--decoder-key-file (or set AMR_VENDING_KEY / AMR_DECODER_KEY)"
        )
    return request


def _time_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"tid_base_date": args.base_date}
    if args.tid is not None:
        request["tid"] = args.tid
    elif args.at:
        request["tid_datetime_local"] = args.at
    if args.rnd is not None:
        request["rnd"] = args.rnd
    return request


def _base_units(text: str, credit_type: CreditType) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CliError(f"--amount must be a number, got {text!r}") from None
    if not value.is_finite():
        raise CliError(f"--amount must be a number, got {text!r}")
    # Rounded up: "in favour of the customer" (IEC 62055-41 6.3.6.2).
    return int((value * credit_type.scale).to_integral_value(rounding=ROUND_CEILING))


def _describe(token: Token, base_date: BaseDate | None) -> list[str]:
    fields = token.fields
    lines = [f"token   {token.grouped}", f"type    {type(fields).__name__}"]
    info = fields_to_json(fields)
    if isinstance(fields, TransferCredit):
        unit = fields.credit_type
        shown = Decimal(fields.amount) / unit.scale
        lines.append(f"amount  {shown} {unit.display_unit} ({fields.amount} x {unit.unit})")
    for name, value in info.items():
        if name in ("class", "subclass", "type", "amount_base_units", "unit", "credit_type"):
            continue
        text = str(value)
        if name == "tid" and base_date is not None:
            text = f"{value} ({datetime_of_tid(int(value), base_date):%Y-%m-%d %H:%M})"
        lines.append(f"{name:<7} {text}")
    return lines


def _emit(args: argparse.Namespace, tokens: list[Token], out: TextIO) -> None:
    base = BaseDate.parse(args.base_date) if getattr(args, "base_date", None) else None
    if args.json:
        items = [
            {"token": t.digits, "grouped": t.grouped, **fields_to_json(t.fields)} for t in tokens
        ]
        json.dump(items[0] if len(items) == 1 else {"tokens": items}, out)
        out.write("\n")
        return
    if len(tokens) > 1:
        out.write(f"A set of {len(tokens)} tokens: enter all of them, in any order.\n")
    for index, token in enumerate(tokens):
        if len(tokens) > 1:
            out.write(f"-- token {index + 1} of {len(tokens)}\n")
        out.write("\n".join(_describe(token, base)) + "\n")


def _run(
    build: Callable[[argparse.Namespace], dict[str, Any]],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            request = build(args)
            result = build_request(request)
        except (CliError, StsError, ValueError) as exc:
            print(f"amr token {args.token_command}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        _emit(args, result.tokens, sys.stdout)
        return 0

    return handler


def _credit(args: argparse.Namespace) -> dict[str, Any]:
    credit_type = _CREDIT_TYPES[args.type]
    request = {
        **_key_request(args),
        **_time_request(args),
        "class": 0,
        "subclass": int(credit_type),
    }
    if args.units is not None:
        request["amount_base_units"] = args.units
    elif args.amount is not None:
        request["amount_base_units"] = _base_units(args.amount, credit_type)
    else:
        raise CliError("give --amount (in kWh, m3, min or currency) or --units (base units)")
    return request


def _engineering(args: argparse.Namespace) -> dict[str, Any]:
    subclass, field, _ = _ENGINEERING[args.function]
    request = {**_key_request(args), **_time_request(args), "class": 2, "subclass": subclass}
    if field is not None:
        if args.value is None and args.function != "clear-credit":
            raise CliError(f"{args.function} needs --value")
        if args.value is not None:
            request[field] = args.value
    return request


def _keychange(args: argparse.Namespace) -> dict[str, Any]:
    request = {**_key_request(args), "class": 2}
    new_vending = _read_key(args, "new_vending", "AMR_NEW_VENDING_KEY") or request.get(
        "vending_key_hex"
    )
    if not new_vending:
        raise CliError("the new key is derived from a vending key: give --new-vending-key-file")
    new_ea = EncryptionAlgorithm.parse(args.new_ea or args.ea)
    default_dkga = "04" if new_ea is EncryptionAlgorithm.MISTY1 else request.get("dkga", "02")
    spec: dict[str, Any] = {
        "vending_key_hex": new_vending,
        "encryption_algorithm": new_ea.label,
        "dkga": args.new_dkga or default_dkga,
        "supply_group_code": args.new_sgc or args.sgc,
        "tariff_index": args.new_ti or args.ti,
        "key_revision_number": args.new_krn,
        "key_type": args.new_kt,
        "base_date": args.new_base_date or args.base_date,
    }
    if args.pan:
        spec["meter_pan"] = args.pan
    else:
        spec.update(iin=args.iin, drn_iain=args.drn)
    rollover = args.rollover
    if rollover is None:
        rollover = BaseDate.parse(spec["base_date"]) > BaseDate.parse(args.base_date)
    request.update(new_key_generation_inputs=spec, ken=args.ken, ro=int(rollover))
    return request


def _test(args: argparse.Namespace) -> dict[str, Any]:
    digits = args.mfr_code.strip()
    if not digits.isdigit() or len(digits) not in (2, 4):
        raise CliError("--mfr-code is the 2- or 4-digit manufacturer code")
    return {
        "class": 1,
        "subclass": 0 if len(digits) == 2 else 1,
        "mfr_code": int(digits),
        "control_hex": args.control,
    }


def _decode(args: argparse.Namespace) -> int:
    try:
        token = " ".join(args.token)
        has_key = any(
            (args.decoder_key, args.decoder_key_file, args.vending_key, args.vending_key_file,
             os.environ.get("AMR_DECODER_KEY"), os.environ.get("AMR_VENDING_KEY"))
        )  # fmt: skip
        coder = coder_for(_key_request(args)) if has_key else None
        fields = decode_token(token, coder)
    except TokenRejected as exc:
        print(f"amr token decode: rejected ({exc.result}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (CliError, StsError, ValueError) as exc:
        print(f"amr token decode: {exc}", file=sys.stderr)
        return EXIT_FAILED
    decoded = Token(normalize_token(token), fields)
    if args.json:
        json.dump(
            {"token": decoded.digits, "grouped": decoded.grouped, **fields_to_json(fields)},
            sys.stdout,
        )
        sys.stdout.write("\n")
    else:
        base = None if isinstance(fields, MeterTestToken) else BaseDate.parse(args.base_date)
        print("\n".join(_describe(decoded, base)))
    return 0


def run_batch(lines: TextIO, out: TextIO, now: Callable[[], datetime] = datetime.now) -> int:
    """Serve one JSON request per line; a bad line gives an error line and the batch goes on."""
    failed = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        reply: dict[str, Any] = {"line": number}
        try:
            request = json.loads(line)
            if isinstance(request, dict) and "id" in request:
                reply["id"] = request["id"]
            result = build_request(request, now)
        except json.JSONDecodeError as exc:
            reply.update(
                error=f"not JSON: {exc.msg} at column {exc.colno}", error_type="FormatError"
            )
        except RequestError as exc:
            reply.update(error=str(exc), error_type="RequestError")
        except StsError as exc:
            reply.update(error=str(exc), error_type=type(exc).__name__)
        except (TypeError, ValueError, OverflowError) as exc:
            reply.update(error=f"invalid value: {exc}", error_type="RequestError")
        else:
            if result.is_set:
                reply["tokens"] = [t.digits for t in result.tokens]
            else:
                reply["token"] = result.tokens[0].digits
        failed += "error" in reply
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 1 if failed else 0


def _batch(args: argparse.Namespace) -> int:
    return run_batch(sys.stdin, sys.stdout)


def register(commands: Any) -> None:
    """Add ``amr token ...`` to the ``amr`` parser's subcommands."""
    parser = commands.add_parser("token", help="vend, decode and batch-generate STS tokens")
    sub = parser.add_subparsers(dest="token_command", required=True, metavar="COMMAND")

    credit = sub.add_parser("credit", help="a credit token (class 0)")
    credit.add_argument("--type", choices=sorted(_CREDIT_TYPES), default="electricity")
    credit.add_argument("--amount", help="in kWh, m3, minutes or currency units (rounded up)")
    credit.add_argument("--units", type=int, help="in base units (0.1 kWh ... or 1e-5 currency)")
    _time_options(credit)
    _key_options(credit)
    credit.set_defaults(handler=_run(_credit))

    engineering = sub.add_parser("engineering", help="a management token (class 2)")
    engineering.add_argument("function", choices=sorted(_ENGINEERING))
    engineering.add_argument("--value", type=int, help="watts, register, rate or factor")
    _time_options(engineering)
    _key_options(engineering)
    engineering.set_defaults(handler=_run(_engineering))

    keychange = sub.add_parser("keychange", help="a key change token set (2 or 4 tokens)")
    _key_options(keychange)
    keychange.add_argument("--new-vending-key", metavar="HEX")
    keychange.add_argument("--new-vending-key-file", metavar="PATH")
    keychange.add_argument("--new-sgc")
    keychange.add_argument("--new-ti")
    keychange.add_argument("--new-krn", type=int, required=True)
    keychange.add_argument("--new-kt", type=int, default=2)
    keychange.add_argument("--new-base-date")
    keychange.add_argument("--new-ea")
    keychange.add_argument("--new-dkga")
    keychange.add_argument("--ken", type=int, default=255, help="key expiry number (255: none)")
    keychange.add_argument(
        "--rollover", action=argparse.BooleanOptionalAction, default=None,
        help="set the roll-over bit (default: when the base date moves forward)",
    )  # fmt: skip
    keychange.set_defaults(handler=_run(_keychange))

    test = sub.add_parser("test", help="a test/display token (class 1, not encrypted)")
    test.add_argument("--mfr-code", required=True, help="2- or 4-digit manufacturer code")
    test.add_argument("--control", default="1", help="test selection bits, hex (1 = test 0)")
    test.set_defaults(handler=_run(_test))

    decode = sub.add_parser("decode", help="decode a token with the meter's key")
    decode.add_argument("token", nargs="+", help="the 20 digits (spaces or dashes allowed)")
    _key_options(decode)
    decode.set_defaults(handler=_decode)

    batch = sub.add_parser("batch", help="JSON lines on stdin -> one JSON line per request")
    batch.set_defaults(handler=_batch)

    for command in (credit, engineering, keychange, test, decode):
        command.add_argument("--json", action="store_true", help="print JSON")
