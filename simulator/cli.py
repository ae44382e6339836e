"""``amr sim``: start a fleet of virtual STS prepaid meters and print where each bus is.

    amr sim --config config/sim.yaml

Heavy imports happen when the command runs, so ``amr --help`` stays fast.
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
        print(f"amr sim: {exc}", file=sys.stderr)
        return 2
    if args.speed is not None:
        config = config.model_copy(
            update={"clock": config.clock.model_copy(update={"speed": args.speed})}
        )

    def start(reactor: Any) -> None:
        from .fleet import SimulatorService, build_fleet

        fleet = build_fleet(config, reactor)
        service = SimulatorService(fleet, reactor)
        service.startService()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        print(f"amr sim: {len(fleet.meters_by_drn)} meters on {len(fleet.buses)} buses, "
              f"clock x{config.clock.speed:g}", flush=True)  # fmt: skip
        for entry in fleet.buses:
            units = sorted(entry.bus.meters)
            kind = "addresses" if isinstance(units[0], str) else "unit ids"
            print(f"  {entry.bus.name}: {entry.where}, {kind} {units[0]}-{units[-1]}", flush=True)
        if service.control_url:
            print(f"  control API: {service.control_url}/meters", flush=True)
        print("Ctrl-C stops the simulator.", flush=True)

    return run(start, level=args.log_level)


def register(commands: Any) -> None:
    parser = commands.add_parser("sim", help="run virtual STS prepaid meters on real transports")
    parser.add_argument("--config", default="config/sim.yaml", help="simulator config (YAML)")
    parser.add_argument("--speed", type=float, help="override clock.speed (simulated s per s)")
    parser.add_argument("--log-level", default="warn", choices=["debug", "info", "warn", "error"])
    parser.set_defaults(handler=_run)
