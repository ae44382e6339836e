"""``amr user add``, run as an administrator runs it: the installed console command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
import yaml

from headend.auth import thd_login
from headend.store import Database
from headend.store.schema import audit_log, operators

AMR = Path(sys.executable).with_name("amr")
PASSWORD = "first admin password"


def amr(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert AMR.exists(), f"the amr console command is not installed next to {sys.executable}"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AMR_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(AMR), *args], check=False, input=stdin, capture_output=True, text=True,
        timeout=120, env=full_env,
    )  # fmt: skip


def write_config(tmp_path: Path) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path / 'var' / 'headend.db'}"
    path = tmp_path / "headend.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": url}}))
    return path, url


def test_user_add_creates_an_operator_who_can_log_in(tmp_path: Path) -> None:
    config, url = write_config(tmp_path)
    result = amr("user", "add", "--config", str(config), "--username", "root", "--role", "admin",
                 stdin=PASSWORD + "\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "operator root (admin) created" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    result = amr("user", "add", "--config", str(config), "--username", "ann", "--role", "cashier",
                 "--vending-point", "kiosk-3", "--password-env", "ANN_PW",
                 env={"ANN_PW": "cashier password"})  # fmt: skip
    assert result.returncode == 0, result.stderr

    db = Database(None, url)
    try:
        session = db.run_sync(thd_login, "root", PASSWORD, 0.0, 60)
        assert session is not None and session[1].role == "admin"
        ann = db.run_sync(thd_login, "ann", "cashier password", 0.0, 60)
        assert ann is not None and ann[1].vending_point == "kiosk-3"
        with db.engine.connect() as connection:
            records = connection.execute(sa.select(audit_log).order_by(audit_log.c.id)).all()
            count = connection.execute(sa.select(sa.func.count()).select_from(operators)).scalar()
    finally:
        db.stop()
    assert count == 2
    assert [(r.actor, r.action, r.target) for r in records] == [
        ("cli", "operator.create", "operator:1"), ("cli", "operator.create", "operator:2"),
    ]  # fmt: skip
    assert json.loads(records[0].detail) == {"role": "admin", "username": "root",
                                             "vending_point": "head-office"}  # fmt: skip


def test_user_add_refusals(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path)
    base = ["user", "add", "--config", str(config), "--username", "root"]
    short = amr(*base, "--role", "admin", stdin="short\n")
    assert short.returncode == 3 and "at least 10 characters" in short.stderr
    assert amr(*base, "--role", "admin", stdin=PASSWORD + "\n").returncode == 0
    taken = amr(*base, "--role", "viewer", stdin=PASSWORD + "\n")
    assert taken.returncode == 3 and "'root' exists already" in taken.stderr
    role = amr(*base, "--role", "root", stdin=PASSWORD + "\n")
    assert role.returncode == 2 and "invalid choice: 'root'" in role.stderr
    name = amr("user", "add", "--config", str(config), "--username", "a b", "--role", "viewer",
               stdin=PASSWORD + "\n")  # fmt: skip
    assert name.returncode == 2 and "--username" in name.stderr
    unset = amr(*base, "--role", "viewer", "--password-env", "NOT_SET_ANYWHERE")
    assert unset.returncode == 3 and "NOT_SET_ANYWHERE is not set" in unset.stderr
    missing = amr("user", "add", "--config", str(tmp_path / "nope.yaml"), "--username", "x",
                  "--role", "viewer", stdin=PASSWORD + "\n")  # fmt: skip
    assert missing.returncode == 3 and "cannot read" in missing.stderr
