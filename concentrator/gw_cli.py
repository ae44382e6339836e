"""``amr gw``: the field technician's commissioning commands.

    amr gw scan --bus-type modbus-rtu --device /dev/ttyUSB0 --baud 9600 --parity E
    amr gw scan --bus-type modbus-tcp --host 192.0.2.10 --port 502 --units 1-10 \\
        --write-config /etc/amr/concentrator.yaml --bus-name tcp1
    amr gw scan --bus-type dlt645 --device /dev/ttyUSB1          # one meter on the line
    amr gw check --config /etc/amr/concentrator.yaml

``scan`` exits 0 when it found a meter (or a DL/T 645 address), 1 when not or when the line does
not open, 2 on bad arguments or a config it will not write. ``check`` exits 0 when nothing
failed, 1 otherwise, and prints one line per check: PASS, FAIL (with what to do) or SKIP (not
configured, or not tried because something it needs failed). Stop the daemon first: it holds the
serial ports, and its meters would see two masters.

Only argument parsing and printing live here; the work is in :mod:`concentrator.commissioning`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_units", "register"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DLT645_TIMEOUT_MS = 1000.0  # DL/T 645 meters take 20-500 ms to answer, and 2400 baud is slow
MODBUS_TIMEOUT_MS = 200.0


def format_units(units: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    parts: list[str] = []
    start = previous = None
    for unit in [*units, None]:
        if unit is not None and previous is not None and unit == previous + 1:
            previous = unit
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = unit
    return ",".join(parts)


def _run_async(work: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    """Run ``work(reactor)`` under the CLI runtime and return its exit status."""
    from headend.cli.runtime import run

    outcome: dict[str, int] = {}

    def start(reactor: Any) -> None:
        from twisted.internet import defer
        from twisted.python.failure import Failure

        def done(result: int | Failure) -> None:
            if isinstance(result, Failure):
                print("amr gw: unexpected error:", file=sys.stderr)
                result.printTraceback(file=sys.stderr)
                outcome["code"] = EXIT_FAILED
            else:
                outcome["code"] = result
            reactor.stop()

        defer.ensureDeferred(work(reactor)).addBoth(done)

    status = run(start, level="warn")
    return status or outcome.get("code", 130)  # no outcome: interrupted (Ctrl-C)


# -- scan -----------------------------------------------------------------------------------------


def _scan(args: argparse.Namespace) -> int:
    from .commissioning import SerialLine, TcpLink, parse_unit_ids, read_config_file
    from .config import ConfigError

    def usage(message: str) -> int:
        print(f"amr gw scan: {message}", file=sys.stderr)
        return EXIT_USAGE

    link: SerialLine | TcpLink
    if args.bus_type in ("modbus-rtu", "dlt645"):
        if not args.device:
            return usage(f"--bus-type {args.bus_type} needs --device")
        default_baud = 2400 if args.bus_type == "dlt645" else 9600
        link = SerialLine(args.device, args.baud or default_baud, args.parity)
    else:
        if not args.host:
            return usage("--bus-type modbus-tcp needs --host")
        link = TcpLink(args.host, args.port)
    try:
        units = parse_unit_ids(args.units)
    except ValueError as exc:
        return usage(f"--units: {exc}")
    config_path = Path(args.write_config) if args.write_config else None
    if config_path is not None:  # every reason not to write is found before a long sweep
        if args.bus_type == "dlt645":
            return usage("--write-config: the concentrator has no DL/T 645 buses yet")
        if not args.bus_name:
            return usage("--write-config needs --bus-name")
        try:
            existing = read_config_file(config_path)
        except ConfigError as exc:
            return usage(f"--write-config: {exc.problems[0]}")
        if existing is None and not args.gateway_id:
            return usage(f"--write-config: {config_path} does not exist; give --gateway-id")
    if args.bus_type == "dlt645":
        timeout_ms = args.timeout_ms or DLT645_TIMEOUT_MS
        assert isinstance(link, SerialLine)
        return _run_async(lambda reactor: _scan_dlt645(reactor, args, link, timeout_ms))
    return _run_async(lambda reactor: _scan_modbus(reactor, args, link, units, config_path))


def _load_profile(args: argparse.Namespace) -> Any:
    import yaml

    from protocols.modbus import parse_profile

    from .commissioning import DEFAULT_PROFILES
    from .modbus_driver import load_profiles

    given = Path(args.profile)
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return parse_profile(yaml.safe_load(given.read_text()), str(given))
    directory = Path(args.profiles_dir) if args.profiles_dir else DEFAULT_PROFILES
    profiles = load_profiles(directory)
    if args.profile not in profiles:
        raise ValueError(
            f"no profile {args.profile!r} in {directory} (there are: {', '.join(sorted(profiles))})"
        )
    return profiles[args.profile]


async def _scan_modbus(
    reactor: Any, args: argparse.Namespace, link: Any, units: tuple[int, ...], path: Path | None
) -> int:
    from protocols.errors import ProtocolError

    from .commissioning import (
        LinkOpenError,
        identity_points,
        scan_modbus,
        scanned_bus,
        write_bus_config,
    )
    from .config import ConfigError

    try:
        profile = _load_profile(args)
        identity_points(profile)
    except (OSError, ValueError, ProtocolError) as exc:
        print(f"amr gw scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    timeout_ms = args.timeout_ms or MODBUS_TIMEOUT_MS
    if not args.json:
        print(f"Scanning {args.bus_type} {link}, unit ids {format_units(units)}, "
              f"profile {profile.name}, {timeout_ms:g} ms per unit ...", flush=True)  # fmt: skip
    try:
        scan = await scan_modbus(reactor, link, units, profile, timeout_ms=timeout_ms)
    except LinkOpenError as exc:
        print(f"amr gw scan: {exc.reason}\n  fix: {exc.fix}", file=sys.stderr)
        return EXIT_FAILED
    written: dict[str, Any] | None = None
    problems: list[str] = []
    if path is not None and scan.meters:
        bus = scanned_bus(args.bus_name, link, scan.meters, profile.name)
        try:
            outcome = write_bus_config(path, bus, args.gateway_id)
        except ConfigError as exc:
            problems = exc.problems
        except OSError as exc:
            problems = [f"{path}: cannot write ({exc.strerror})"]
        else:
            written = {"path": str(path), "bus": args.bus_name, "meters": len(scan.meters),
                       "created": outcome.created, "replaced_bus": outcome.replaced_bus,
                       "backup": str(outcome.backup) if outcome.backup else None}  # fmt: skip
    if args.json:
        print(json.dumps({
            "bus_type": args.bus_type, "where": scan.where, "profile": scan.profile,
            "units": format_units(scan.units), "elapsed_s": round(scan.elapsed_s, 3),
            "meters": [{"unit_id": h.unit_id, **h.identity.as_json()}
                       for h in scan.meters if h.identity],
            "other_devices": [{"unit_id": h.unit_id, "detail": h.detail} for h in scan.others],
            "stopped": scan.stopped or None, "config": written, "config_problems": problems,
        }, indent=2))  # fmt: skip
    else:
        _print_scan(scan)
        if written is not None:
            summary = f"bus {args.bus_name} ({written['meters']} meter(s))"
            if written["created"]:
                print(f"Created {path} with {summary}.")
            else:
                verb = "Replaced" if written["replaced_bus"] else "Added"
                print(f"{verb} {summary} in {path}; the previous file is kept as {written['backup']} "
                      "(comments are not carried over).")  # fmt: skip
        elif path is not None and not scan.meters:
            print(f"No meters found: {path} left unchanged.")
    if problems:
        print(f"amr gw scan: not writing {path}, the result would not be a valid config:",
              file=sys.stderr)  # fmt: skip
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK if scan.meters else EXIT_FAILED


def _print_scan(scan: Any) -> None:
    header = ("unit", "DRN", "mfr", "SGC", "KRN", "TI", "KT", "base", "EA", "firmware")
    widths = (4, 13, 3, 6, 3, 2, 4, 4, 6, 8)

    def row(cells: Sequence[object]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in (0, 2, 4) else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    def dash(value: object) -> object:
        return "-" if value is None else value

    if scan.hits:
        print(row(header))
    for hit in scan.hits:
        identity = hit.identity
        if identity is None:
            print(f"{hit.unit_id:>4}  {hit.detail}")
            continue
        ti = None if identity.tariff_index is None else f"{identity.tariff_index:02d}"
        print(row((hit.unit_id, identity.drn, dash(identity.manufacturer_code),
                   dash(identity.supply_group_code), dash(identity.key_revision_number), dash(ti),
                   dash(identity.key_type), dash(identity.base_date),
                   dash(identity.encryption_algorithm), dash(identity.firmware))))  # fmt: skip
    others = f" and {len(scan.others)} other device(s)" if scan.others else ""
    print(f"Found {len(scan.meters)} meter(s){others} at {len(scan.units)} unit id(s) "
          f"in {scan.elapsed_s:.2f} s.")  # fmt: skip
    if scan.stopped:
        print(f"The sweep stopped early: {scan.stopped}.")
    elif not scan.hits:
        hint = "check the wiring (A/B), power, baud rate and parity, and the unit id range"
        if scan.bytes_received:
            hint = (f"{scan.bytes_received} bytes arrived but no valid answer: check the baud "
                    "rate and parity (and A/B wiring)")  # fmt: skip
        print(f"Nobody answered: {hint}.")


async def _scan_dlt645(reactor: Any, args: argparse.Namespace, line: Any, timeout_ms: float) -> int:
    from .commissioning import LinkOpenError, scan_dlt645

    if not args.json:
        print(f"Asking dlt645 {line} for its address (13H to AAAAAAAAAAAA), "
              f"listening {timeout_ms:g} ms ...", flush=True)  # fmt: skip
    try:
        scan = await scan_dlt645(reactor, line, timeout_ms=timeout_ms)
    except LinkOpenError as exc:
        print(f"amr gw scan: {exc.reason}\n  fix: {exc.fix}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"bus_type": "dlt645", "where": scan.where, "address": scan.address,
                          "addresses": list(scan.addresses), "garbled_bytes": scan.garbled_bytes,
                          "message": scan.message, "elapsed_s": round(scan.elapsed_s, 3)},
                         indent=2))  # fmt: skip
    elif scan.address is not None:
        print(f"Found one meter: address {scan.address} ({scan.elapsed_s:.2f} s).")
    else:
        print(f"No address: {scan.message}.")
    return EXIT_OK if scan.address is not None else EXIT_FAILED


# -- check ----------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    async def work(reactor: Any) -> int:
        from .commissioning import Status, check_gateway

        report = await check_gateway(reactor, Path(args.config),
                                     broker_timeout_s=args.timeout_s,
                                     connect_timeout_s=args.timeout_s)  # fmt: skip
        failed = [r for r in report.results if r.status is Status.FAIL]
        if args.json:
            print(json.dumps({"config": args.config, "passed": report.passed,
                              "checks": [r.as_json() for r in report.results]}, indent=2))  # fmt: skip
        else:
            for result in report.results:
                fix = f" -- fix: {result.fix}" if result.fix else ""
                print(f"{result.status.value}  {result.check}: {result.reason}{fix}")
            skipped = sum(1 for r in report.results if r.status is Status.SKIP)
            if failed:
                print(f"{len(failed)} check(s) FAILED: fix them and run amr gw check again.")
            else:
                note = f" ({skipped} skipped)" if skipped else ""
                print(f"All {len(report.results) - skipped} checks passed{note}.")
        return EXIT_FAILED if failed else EXIT_OK

    return _run_async(work)


def register(commands: Any) -> None:
    parser = commands.add_parser("gw", help="commissioning: find meters on a line, check a config")
    sub = parser.add_subparsers(dest="gw_command", required=True, metavar="COMMAND")

    scan = sub.add_parser(
        "scan",
        help="find the meters on a Modbus line (or a DL/T 645 meter's address)",
        description="Sweep Modbus unit ids with an identity read and list the meters found; "
        "or ask the one DL/T 645 meter on a line for its address.",
    )
    scan.add_argument("--bus-type", required=True, choices=["modbus-rtu", "modbus-tcp", "dlt645"])
    scan.add_argument("--device", help="serial device (modbus-rtu, dlt645)")
    scan.add_argument("--baud", type=int, choices=[1200, 2400, 4800, 9600, 19200, 38400, 57600,
                      115200], help="default 9600 (modbus-rtu), 2400 (dlt645)")  # fmt: skip
    scan.add_argument("--parity", default="E", choices=["N", "E", "O"], help="default E")
    scan.add_argument("--host", help="Modbus TCP server or gateway (modbus-tcp)")
    scan.add_argument("--port", type=int, default=502, help="default 502")
    scan.add_argument("--units", default="1-247", help="unit ids to sweep: 1-247, 5, 1,3,10-12")
    scan.add_argument(
        "--timeout-ms", type=float, help="wait per unit id (default 200; dlt645 1000)"
    )
    scan.add_argument("--profile", default="amr-prepaid-v1", help="profile name, or a YAML file")
    scan.add_argument("--profiles-dir", help="folder of profiles (default: config/profiles)")
    scan.add_argument("--write-config", metavar="FILE", help="add the meters found to this "
                      "daemon config (created if missing)")  # fmt: skip
    scan.add_argument("--bus-name", help="the bus's name in that config (replaced if present)")
    scan.add_argument("--gateway-id", help="gateway_id when --write-config creates the file")
    scan.add_argument("--json", action="store_true", help="print JSON")
    scan.set_defaults(handler=_scan)

    check = sub.add_parser(
        "check",
        help="check a daemon config on this gateway: files, broker, clock, buses, meters",
        description="Check everything the daemon needs, one PASS/FAIL line per check with what "
        "to do. Stop the daemon first (it holds the serial ports). Exit 0 when nothing fails.",
    )
    check.add_argument("--config", default="config/concentrator.yaml", help="daemon config (YAML)")
    check.add_argument("--timeout-s", type=float, default=5.0,
                       help="broker and TCP connect timeout (default 5)")  # fmt: skip
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=_check)
