"""``amr loadgen``: many virtual gateways publishing full reads over MQTT, to load a head-end.

    amr loadgen --broker 127.0.0.1:1883 --gateways 2000 --meters-per-gateway 100 \\
        --interval 180 --duration 600

Each gateway is its own MQTT client (``gw-<id>``, user name ``<id>``) that announces its meters in
its retained state message, publishes a ReadingBatch of its meters' full reads every ``--interval``
seconds (``0``: as fast as the head-end acknowledges), keeps what is not yet acknowledged and sends
it again when the head-end's ack does not come, and answers token commands with ``applied``. See
:mod:`simulator.loadgen`. With ``--json`` it prints one JSON object per line: progress every second,
then the summary.

Heavy imports happen when the command runs, so ``amr --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from typing import Any

__all__ = ["register"]


def _broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _raise_open_files_limit(needed: int) -> None:
    """One socket per gateway: lift the soft limit on open files up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _summary_text(summary: dict[str, Any]) -> str:
    s = summary
    offered = (
        f"{s['offered_readings_per_s']:,.0f} readings/s offered"
        if s["interval_s"]
        else "saturating (a new batch whenever the window has room)"
    )
    lines = [
        f"amr loadgen: {s['connected']}/{s['gateways']} gateways connected in "
        f"{s['connect_s']:.1f} s, {s['meters']:,} meters, {offered}",
        f"  ran {s['run_s']:.1f} s, drained in {s['drain_s']:.1f} s"
        + ("" if s["drained"] else f" (NOT drained: {s['unacked_left']} messages unacknowledged)"),
        f"  published {s['batches']:,} batches = {s['readings']:,} readings "
        f"({s['published_readings_per_s']:,.0f}/s, {s['payload_bytes'] / 1e6:,.1f} MB); "
        f"acknowledged {s['acked_readings']:,} readings",
        f"  resent {s['resent']:,} messages, {s['forced_reconnects']} reconnects for missing acks; "
        f"ack latency p50 {s['ack_latency_ms']['p50']:,.0f} ms, "
        f"p99 {s['ack_latency_ms']['p99']:,.0f} ms",
        f"  commands {s['commands']} ({s['tokens_applied']} tokens applied, "
        f"{s['commands_rejected']} rejected, {s['repeated_commands']} repeats)",
        f"  this process: {s['cpu_s']:.1f} CPU s ({s['cpu_us_per_reading']:.0f} µs per reading), "
        f"max RSS {s['max_rss_kb'] / 1024:,.0f} MiB",
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from headend.cli.runtime import run

    from .loadgen import LoadConfig, LoadGenerator

    host, port = args.broker
    try:
        config = LoadConfig(
            host=host,
            port=port,
            gateways=args.gateways,
            meters_per_gateway=args.meters_per_gateway,
            interval_s=args.interval,
            duration_s=args.duration,
            window=args.window,
            ack_timeout_s=args.ack_timeout,
            apply_delay_s=args.apply_delay,
            prefix=args.prefix,
            first_serial=args.first_serial,
            seq_start=args.seq_start,
            connect_concurrency=args.connect_concurrency,
            drain_timeout_s=args.drain_timeout,
            start_delay_s=args.start_delay,
            rebuild_every=args.rebuild_every,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"amr loadgen: {exc}", file=sys.stderr)
        return 2
    _raise_open_files_limit(config.gateways + 256)
    outcome: dict[str, Any] = {}

    def progress(row: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(row), flush=True)
        elif int(row["t"]) % 10 == 0 or not row["producing"]:
            print(
                f"t={row['t']:.0f}s connected {row['connected']}, published {row['readings']:,} "
                f"readings, acked {row['acked_readings']:,}, unacked {row['unacked']} messages, "
                f"resent {row['resent']}, tokens applied {row['tokens_applied']}",
                flush=True,
            )

    def start(reactor: Any) -> Any:
        from twisted.internet import defer

        generator = LoadGenerator(reactor, config, on_progress=progress)
        if not args.json:
            print(
                f"amr loadgen: connecting {config.gateways} gateways to {host}:{port}", flush=True
            )

        def finished(report: Any) -> None:
            outcome["summary"] = report.as_dict(with_batches=args.batches)
            reactor.stop()

        def failed(failure: Any) -> None:
            outcome["error"] = failure.getErrorMessage()
            reactor.stop()

        running = defer.ensureDeferred(generator.run())
        running.addCallbacks(finished, failed)
        # Ctrl-C: disconnect cleanly (offline state), but do not wait for a drain
        reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(
            generator.stop()) if "summary" not in outcome else None)  # fmt: skip

    status = run(start, level=args.log_level)
    if "error" in outcome:
        print(f"amr loadgen: {outcome['error']}", file=sys.stderr)
        return 1
    summary = outcome.get("summary")
    if summary is None:
        return 130 if status == 0 else status
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(_summary_text(summary), flush=True)
    if summary["connected"] < summary["gateways"] or not summary["drained"]:
        return 1
    return status


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "loadgen",
        help="many virtual gateways publishing readings over MQTT (load test of a head-end)",
        description="Thousands of virtual gateways, each its own MQTT client, publishing full "
        "reads of amr-prepaid-v1 meters as a concentrator does, resending what the head-end does "
        "not acknowledge, and applying token commands. Exit status 1 if not every gateway "
        "connected or not everything was acknowledged at the end.",
    )
    parser.add_argument("--broker", type=_broker, default=("127.0.0.1", 1883), metavar="HOST:PORT")
    parser.add_argument("--gateways", type=int, default=100, metavar="N")
    parser.add_argument("--meters-per-gateway", type=int, default=100, metavar="M")
    parser.add_argument(
        "--interval",
        type=float,
        default=900.0,
        metavar="S",
        help="seconds between a gateway's batches (0: as fast as the acks allow); default 900",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds of polling; then wait until everything is acknowledged",
    )
    parser.add_argument(
        "--window", type=int, default=10, help="reading batches in flight per gateway (10)"
    )
    parser.add_argument(
        "--ack-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="resend what is unacknowledged after this long (120, as the concentrator)",
    )
    parser.add_argument(
        "--apply-delay",
        type=float,
        default=0.1,
        metavar="S",
        help="seconds from a token's 'received' to its 'applied' (0.1)",
    )
    parser.add_argument(
        "--rebuild-every",
        type=int,
        default=1,
        metavar="N",
        help="build a gateway's values afresh every N polls (default 1: every poll); in between "
        "only the times and seq change, for about a tenth of the CPU (a saturating run)",
    )
    parser.add_argument("--prefix", default="lg", help="gateway ids are PREFIX-0000, ... (lg)")
    parser.add_argument(
        "--first-serial",
        type=int,
        default=4_800_000_000,
        help="meter DRNs are consecutive 10-digit serials from this one, plus a Luhn digit",
    )
    parser.add_argument(
        "--seq-start",
        type=int,
        default=1,
        help="first seq of every gateway; give a higher one (or a new --prefix) to run again "
        "against the same head-end, which drops seqs it has seen",
    )
    parser.add_argument(
        "--start-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between the last gateway's connect and the first poll (to let the "
        "head-end register the announced meters first); not counted in --duration",
    )
    parser.add_argument("--connect-concurrency", type=int, default=100, metavar="N")
    parser.add_argument("--drain-timeout", type=float, default=120.0, metavar="S")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--json", action="store_true", help="JSON lines: progress every second, then the summary"
    )
    parser.add_argument(
        "--batches",
        action="store_true",
        help="with the summary, every gateway's published (seq, readings)",
    )
    parser.add_argument("--log-level", default="warn", choices=["debug", "info", "warn", "error"])
    parser.set_defaults(handler=_run)
