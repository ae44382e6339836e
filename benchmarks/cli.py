"""The command line every benchmark shares: ``--quick``, ``--json``, ``--check``, and the same exit
statuses (0 done, 1 ``--check`` failed, 2 aborted with the reason, 130 interrupted)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["benchmark_main", "exit_on_sigterm"]

R = TypeVar("R")


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C does, so the ``with SimProcess`` blocks stop the simulator."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, leave)


def benchmark_main(
    argv: Sequence[str] | None, *, name: str, description: str, quick_help: str,
    check_help: str, run: Callable[[argparse.Namespace], R],
    as_json: Callable[[R, bool], Any], as_table: Callable[[R, bool], str],
    passed: Callable[[R], bool], errors: tuple[type[BaseException], ...],
    stopped: str = "every subprocess was stopped", on_sigterm: bool = True,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:  # fmt: skip
    """Parse the options (``arguments`` adds a benchmark's own), ``run(args)``, print the result as
    a table or JSON; ``errors`` abort with status 2 and the reason, Ctrl-C with 130 and
    ``stopped`` (what was cleaned up), and ``--check`` gives 1 unless ``passed(result)``."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help=check_help)
    if arguments is not None:
        arguments(parser)
    args = parser.parse_args(argv)
    if on_sigterm:
        exit_on_sigterm()
    try:
        result = run(args)
    except errors as exc:
        print(f"{name}: aborted: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted" + (f"; {stopped}" if stopped else ""), file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(as_json(result, args.quick), indent=2))
    else:
        print(as_table(result, args.quick))
    if args.check and not passed(result):
        return 1
    return 0
