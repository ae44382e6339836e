"""``amr demo``: broker, simulator, gateway and head-end on this machine, from one command."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from headend.config import load_config
    from headend.demo import Demo, describe

    demo = Demo(Path(args.dir), args.api_port, args.broker, args.meters)
    config = load_config(demo.prepare())
    demo.seed(config)
    try:
        use_mosquitto = demo.start_mosquitto()
        buses = demo.start_simulator()
    except RuntimeError as exc:
        demo.stop_processes()
        print(f"amr demo: {exc}", file=sys.stderr)
        return 1
    with urllib.request.urlopen(f"{buses['control']}/meters", timeout=10) as reply:
        example = next(m["drn"] for m in json.load(reply) if m["bus"] == "rtu1")

    from headend.cli.runtime import run

    def start(reactor: Any) -> Any:
        from twisted.internet import defer, task, threads

        from headend.demo import thd_open_accounts
        from headend.service import make_service

        broker: Any = None
        if not use_mosquitto:
            from headend.broker import EmbeddedBroker

            broker = EmbeddedBroker(reactor, port=demo.broker_port)
            broker.startService()
            demo.broker_kind = f"embedded MQTT broker on 127.0.0.1:{demo.broker_port}"
        top = make_service(config, reactor)
        top.startService()
        demo.start_concentrator(buses)
        app = top.app

        async def open_accounts() -> None:
            await app.db.run(thd_open_accounts, reactor.seconds())

        seeding = task.LoopingCall(lambda: defer.ensureDeferred(open_accounts()))
        seeding.clock = reactor
        seeding.start(2.0).addErrback(lambda f: print(f"amr demo: {f.getErrorMessage()}"))

        async def shutdown() -> None:
            if seeding.running:
                seeding.stop()
            await threads.deferToThread(demo.stop_processes)
            await top.stopService()
            if broker is not None:
                await broker.stopService()

        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: defer.ensureDeferred(shutdown())
        )
        port = top.api_port.getHost().port
        print(describe(demo, f"http://127.0.0.1:{port}", example), flush=True)

    try:
        return run(start, args.log_level)
    finally:
        demo.stop_processes()


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo", help="run broker, simulated meters, a gateway and the head-end on this machine"
    )
    parser.add_argument("--dir", default="var/demo", help="the demo's folder (default var/demo)")
    parser.add_argument("--api-port", type=int, default=8080, help="head-end API port (8080)")
    parser.add_argument("--meters", type=int, default=10, help="meters per Modbus bus (10)")
    parser.add_argument("--broker", choices=["auto", "embedded", "mosquitto"], default="auto",
                        help="auto: Mosquitto when installed, else the embedded broker")  # fmt: skip
    parser.add_argument("--log-level", default="warn", choices=["debug", "info", "warn", "error"])
    parser.set_defaults(handler=_demo)
