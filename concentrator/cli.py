"""``amr concentrator --config FILE``: run the gateway daemon.

The configuration is validated before anything starts; every problem is printed with its path and
the command exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from headend.cli.runtime import run

    from .config import ConfigError, load_config

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"amr concentrator: {exc}", file=sys.stderr)
        return 2

    def start(reactor: Any) -> None:
        from .service import make_service

        service = make_service(config, reactor)
        service.startService()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        buses = ", ".join(f"{b.name} ({b.type}, {len(b.meters)} meters)" for b in config.buses)
        print(f"amr concentrator: gateway {config.gateway_id}, broker {config.mqtt.host}:"
              f"{config.mqtt.port}, journal {config.journal.path}", flush=True)  # fmt: skip
        print(f"  buses: {buses}", flush=True)
        if service.status_port is not None:
            host = service.status_port.getHost()
            print(
                f"  status page: http://{host.host}:{host.port}/ (metrics at /metrics)", flush=True
            )
        print("Ctrl-C stops the concentrator.", flush=True)

    return run(start, level=args.log_level)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "concentrator", help="run the gateway daemon (polls meters, MQTT uplink)"
    )
    parser.add_argument("--config", default="config/concentrator.yaml", help="daemon config (YAML)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"])
    parser.set_defaults(handler=_run)
