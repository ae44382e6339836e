"""``amr headend`` (the head-end daemon) and ``amr db upgrade|backup|restore|status|retention``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _config(args: argparse.Namespace) -> Any:
    from headend.config import ConfigError, load_config

    try:
        return load_config(Path(args.config))
    except ConfigError as exc:
        print(f"amr: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _headend(args: argparse.Namespace) -> int:
    config = _config(args)
    from headend.cli.runtime import run

    def start(reactor: Any) -> Any:
        from headend.service import make_service

        top = make_service(config, reactor)
        top.startService()
        reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
        print(f"amr headend: {config.node_id} running; API on "
              f"http://{config.api.host}:{top.api_port.getHost().port}/api/v1/openapi.json",
              flush=True)  # fmt: skip

    return run(start, args.log_level)


def _db(args: argparse.Namespace) -> int:
    args.config = args.sub_config or args.config
    if not args.config:
        print("amr db: --config FILE is required", file=sys.stderr)
        return 2
    config = _config(args)
    from headend.store import make_engine
    from headend.store.backup import BackupError, backup, restore
    from headend.store.migrate import current_revision, head_revision, upgrade

    engine = make_engine(config.database.url)
    try:
        if args.db_command == "upgrade":
            upgrade(engine)
            print(f"database at revision {current_revision(engine)} (newest {head_revision()})")
        elif args.db_command == "status":
            current = current_revision(engine)
            state = "up to date" if current == head_revision() else "needs amr db upgrade"
            print(f"database revision {current or '(empty)'}: {state}")
        elif args.db_command == "retention":
            return _retention(config, engine, args.dry_run)
        elif args.db_command == "backup":
            count = backup(engine, Path(args.file))
            print(f"backed up {count} rows to {args.file}")
        else:
            try:
                count = restore(engine, Path(args.file))
            except (BackupError, OSError) as exc:
                print(f"amr db restore: {exc}", file=sys.stderr)
                return 1
            print(f"restored {count} rows from {args.file}")
    finally:
        engine.dispose()
    return 0


def _retention(config: Any, engine: Any, dry_run: bool) -> int:
    import time

    from sqlalchemy.exc import SQLAlchemyError

    from headend.retention import RetentionError, run_pass_sync
    from headend.store.migrate import current_revision, head_revision

    current = current_revision(engine)
    if current != head_revision():
        print(f"amr db retention: the database is at revision {current or '(empty)'}: "
              "run amr db upgrade first", file=sys.stderr)  # fmt: skip
        return 1
    try:
        report = run_pass_sync(engine, config.retention, time.time(), dry_run)
    except (RetentionError, SQLAlchemyError) as exc:  # rolled back; the next pass takes it up
        print(f"amr db retention: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser("headend", help="run the head-end service")
    parser.add_argument("--config", required=True, help="head-end YAML config")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"])
    parser.set_defaults(handler=_headend)
    db = commands.add_parser(
        "db", help="the head-end database: upgrade, status, backup, restore, retention"
    )
    db.add_argument("--config", help="head-end YAML config (database.url)")
    sub = db.add_subparsers(dest="db_command", required=True)
    # --config may come before or after the subcommand: amr db upgrade --config FILE
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", dest="sub_config", metavar="CONFIG", help=argparse.SUPPRESS)
    sub.add_parser("upgrade", parents=[common], help="apply the schema migrations (Alembic)")
    sub.add_parser("status", parents=[common], help="show the schema revision")
    backup = sub.add_parser("backup", parents=[common],
                            help="write every table to a file (JSON lines, gzip)")  # fmt: skip
    backup.add_argument("file")
    restore = sub.add_parser("restore", parents=[common],
                             help="load a backup into an empty, upgraded database")  # fmt: skip
    restore.add_argument("file")
    retention = sub.add_parser("retention", parents=[common],
                               help="one retention pass: fold old readings into daily totals "
                                    "and drop them, make partitions ahead")  # fmt: skip
    retention.add_argument("--dry-run", action="store_true",
                           help="say what the pass would do, change nothing")  # fmt: skip
    db.set_defaults(handler=_db)
