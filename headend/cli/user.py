"""``amr user``: manage head-end operators from the command line (the first administrator, or one
locked out of the web UI).

    amr user add --config config/headend.yaml --username alice --role admin < password.txt
    AMR_PW=... amr user add --config ... --username alice --role cashier --password-env AMR_PW

The password is read from the first line of standard input (prompted for, without echo, when
standard input is a terminal), or from the environment variable ``--password-env`` names; never
from the command line, where every user of the machine could read it (``ps``). The database is
brought to the newest schema first. The audit log records the change with the actor ``cli``.

Exit status: 0 done, 2 bad command line, 3 refused (a short password, a taken username, a bad
configuration; the message says why).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]

EXIT_FAILED = 3
MIN_PASSWORD_LENGTH = 10  # as the API's (headend.api.admin.MIN_PASSWORD_LENGTH)
# headend.auth.ROLES, spelt out so that `amr --help` does not import the database layer (a test
# checks the two agree)
ROLES = ("admin", "supervisor", "cashier", "operator", "field_technician", "viewer")


class _Refused(Exception):
    pass


def _password(args: argparse.Namespace) -> str:
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise _Refused(f"the environment variable {args.password_env} is not set")
        return password
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise _Refused("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _add(args: argparse.Namespace) -> int:
    from ..audit import thd_audit
    from ..auth import DuplicateOperator, thd_create_operator
    from ..config import ConfigError, load_config
    from ..store import make_engine, upgrade

    try:
        password = _password(args)
        if len(password) < MIN_PASSWORD_LENGTH:
            raise _Refused(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
        config = load_config(Path(args.config))
        engine = make_engine(config.database.url)
        try:
            upgrade(engine)
            now = time.time()
            with engine.begin() as connection:
                operator_id = thd_create_operator(
                    connection, args.username, password, args.role, args.vending_point, now
                )
                thd_audit(connection, now, "cli", "operator.create", f"operator:{operator_id}",
                          {"username": args.username, "role": args.role,
                           "vending_point": args.vending_point})  # fmt: skip
        finally:
            engine.dispose()
    except (_Refused, ConfigError, DuplicateOperator) as exc:
        print(f"amr user add: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"operator {args.username} ({args.role}) created, id {operator_id}")
    return 0


def _username(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", text):
        raise argparse.ArgumentTypeError("1 to 64 letters, digits or _ . @ -")
    return text


def register(commands: Any) -> None:
    """Add ``amr user ...`` to the ``amr`` parser's subcommands."""
    parser = commands.add_parser("user", help="manage head-end operators")
    sub = parser.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = sub.add_parser(
        "add", help="create an operator (password on stdin, or --password-env)",
        description="Create an operator. The password is read from standard input's first line "
        "or from the environment variable --password-env names.",
    )  # fmt: skip
    add.add_argument("--config", required=True, metavar="FILE", help="the head-end's YAML config")
    add.add_argument("--username", required=True, type=_username)
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--vending-point", default="head-office", help="(default: head-office)")
    add.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
    add.set_defaults(handler=_add)
