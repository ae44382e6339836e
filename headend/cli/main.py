"""The ``amr`` command: one front door for every tool of the system.

Subcommands are plugins: each package declares its own in pyproject.toml under the entry-point
group ``amr.commands`` (``sim = "simulator.cli:register"``, ...), and each ``register(commands)``
adds its argparse parser. The dispatcher therefore never imports another package by name (the
head-end does not depend on the concentrator), and a command's heavy imports happen only when it
runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

__all__ = ["build_parser", "main"]

GROUP = "amr.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amr",
        description="AMR for STS prepaid meters: tokens, head-end, concentrator, simulator.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        entry.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
