"""The ``amr`` command: one front door for every tool of the system.

Each subcommand's module registers its own parser; this module only dispatches, so a command's
dependencies are imported when that command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from simulator import cli as sim_cli

from . import token

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amr",
        description="AMR for STS prepaid meters: tokens, head-end, concentrator, simulator.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    token.register(commands)
    sim_cli.register(commands)
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
