"""A PostgreSQL store backed up with ``pg_dump -Fc`` and restored with ``pg_restore`` into a new
database, as docs/headend.md section 11 says to: every row of every table comes back (the
readings in the same monthly partitions), ``amr db status`` sees the schema's revision, the
readings' id sequence carries on, and a real ``amr headend`` started on the restored database
serves the readings, the consumption report and the vend made before the backup. On a real
PostgreSQL, with the Debian package's own pg_dump and pg_restore."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from headend.auth import thd_create_operator
from headend.config import HeadendConfig, RetentionConfig
from headend.ingest import thd_ingest
from headend.keystore import SealedKeyStore
from headend.retention import run_pass_sync
from headend.store import make_engine, upgrade
from headend.store.partitions import add_months, month_of, month_range
from headend.store.schema import readings, tokens
from headend.vending import Seller, thd_vend
from protocols.link import Reading, ReadingBatch
from tests.headend.seed import (
    GATEWAY,
    add_customer,
    add_keys,
    add_meters,
    add_tariff,
    drn,
    open_account,
)
from tests.support.api import Api
from tests.support.gateway import start_headend, stop
from tests.support.mosquitto import Mosquitto
from tests.support.pg_fixture import postgres  # noqa: F401
from tests.support.postgres import Postgres, ensure_postgres

pytestmark = pytest.mark.integration

AMR = Path(sys.executable).with_name("amr")
M1, M2, ODD = drn(41), drn(42), drn(43)
PASSWORD = "backup-test-" + secrets.token_urlsafe(8)
Y2099 = datetime(2099, 1, 1, 6, tzinfo=UTC).timestamp()


def seed(engine: sa.Engine, master: bytes, now: float) -> dict[str, Any]:
    """Through the head-end's own functions: keys, two meters of group "town", an account and a
    vend, an administrator, and readings in last month, this month and 2099 (ingested)."""
    last_month = month_range(add_months(month_of(now), -1))[0]
    this_month = month_range(month_of(now))[0]
    times = {
        M1: [(last_month + 10 * 86400, "1.000"), (last_month + 20 * 86400, "1.500"),
             (this_month + 3600, "2.300")],
        M2: [(last_month + 15 * 86400, "0.050"), (this_month + 7200, "0.080")],
        ODD: [(Y2099, "9.000")],  # a gateway clock far ahead: the default partition
    }  # fmt: skip
    message = ReadingBatch(GATEWAY, 1, now, tuple(
        Reading(meter, ts, {"energy_import_total": Decimal(kwh), "credit_remaining": 4})
        for meter, points in times.items() for ts, kwh in points))  # fmt: skip
    with engine.begin() as connection:
        add_keys(connection, master)
        add_meters(connection, M1, M2, group="town", base_date=2014)
        account = open_account(connection, add_customer(connection, "Rita"), M1,
                               add_tariff(connection))  # fmt: skip
        sale = thd_vend(connection, SealedKeyStore(master), Seller("carol"), now,
                        account_id=account, amount_minor=1000)  # fmt: skip
        thd_create_operator(connection, "admin", PASSWORD, "admin", "head-office", now)
        thd_ingest(connection, [message], HeadendConfig(), now)
    # last month's readings went to the default partition (the upgrade made this month and the
    # ones after it): the partition maintenance of a retention pass gives them their month
    made = run_pass_sync(engine, RetentionConfig(), now).partitions_created
    assert made == [f"readings_p{month_of(last_month).year:04d}_{month_of(last_month).month:02d}"]
    return {"sale": sale, "window": (last_month, this_month + 86400)}


def tables(engine: sa.Engine) -> dict[str, tuple[str, int, str]]:
    """Every table of the schema, partitions included: (kind, rows, md5 of its rows as text);
    kind "p" is a partitioned table, whose rows are its partitions'."""
    with engine.connect() as connection:
        names = connection.exec_driver_sql(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        ).all()
        found = {}
        for name, kind in names:
            count, digest = connection.exec_driver_sql(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                f'FROM "{name}" t'
            ).one()
            found[name] = (str(kind), int(count), str(digest))
        return found


def placement(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as connection:
        found = connection.exec_driver_sql(
            "SELECT id, tableoid::regclass::text FROM readings ORDER BY id"
        ).all()
    return [(int(id_), str(table)) for id_, table in found]


def tool(name: str, postgres: Postgres, *args: str) -> None:  # noqa: F811
    """pg_dump or pg_restore from the server's own bin folder, as a client over TCP."""
    command = [str(ensure_postgres() / name), "-h", "127.0.0.1", "-p", str(postgres.port),
               "-U", "postgres", *args]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"{name} failed:\n{run.stdout}\n{run.stderr}"


@pytest.mark.reliability("fault", "PostgreSQL backup with pg_dump restores every row")
def test_pg_dump_restores_every_row_and_the_head_end_runs_on_it(
    postgres: Postgres,  # noqa: F811
    tmp_path: Path,
    reliability: dict[str, object],
) -> None:
    master = secrets.token_bytes(32)
    now = time.time()
    source = make_engine(postgres.create_database("backup_source"))
    upgrade(source)
    seeded = seed(source, master, now)
    before = tables(source)
    dump = tmp_path / "amr.dump"

    # docs/headend.md section 11: pg_dump -Fc, then pg_restore into a new, empty database
    tool("pg_dump", postgres, "-Fc", "-d", "backup_source", "-f", str(dump))
    restored_url = postgres.create_database("backup_restored")
    tool("pg_restore", postgres, "--exit-on-error", "--no-owner", "-d", "backup_restored",
         str(dump))  # fmt: skip
    restored = make_engine(restored_url)

    after = tables(restored)
    assert after == before  # every table, partitions and alembic_version included, row for row
    assert {name for name in after if name.startswith("readings_")} >= {
        "readings_default", "readings_daily",
        f"readings_p{month_of(now).year:04d}_{month_of(now).month:02d}",
    }  # fmt: skip
    assert placement(restored) == placement(source)  # each reading in the same partition
    rows = sum(count for kind, count, _ in after.values() if kind == "r")
    reliability["tables"] = len(after)
    reliability["rows"] = rows
    reliability["lost"] = sum(count for kind, count, _ in before.values() if kind == "r") - rows
    assert [before[t][1] for t in ("readings", "vends", "tokens", "operators")] == [6, 1, 1, 1]

    config = tmp_path / "restored.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"url": restored_url},
        "keys": {"signing_key_file": str(tmp_path / "signing.pem")},
        "api": {"host": "127.0.0.1", "port": 0},
    }))  # fmt: skip
    status = subprocess.run([str(AMR), "db", "--config", str(config), "status"],
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert status.stdout.strip() == "database revision 0002: up to date"

    # the triggers came back too: issued tokens cannot be rewritten
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), restored.begin() as connection:
        connection.execute(sa.update(tokens).values(digits="0" * 20))

    # new readings get new ids: the sequence came back with the rows
    with restored.begin() as connection:
        at = seeded["window"][1] + 4 * 86400  # after the report's window
        later = ReadingBatch(GATEWAY, 2, now, (Reading(M2, at, {"energy_import_total": 1}),))
        assert thd_ingest(connection, [later], HeadendConfig(), now + 60).readings == 1
        ids = connection.execute(sa.select(readings.c.id).order_by(readings.c.id)).scalars().all()
    assert ids[-1] > ids[-2] and len(set(ids)) == 7
    source.dispose()
    restored.dispose()

    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    config.write_text(yaml.safe_dump(yaml.safe_load(config.read_text())
                                     | {"mqtt": {"host": "127.0.0.1", "port": broker.port}}))  # fmt: skip
    lines: list[str] = []
    headend = None
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AMR_MASTER_KEY", master.hex())
            headend, base = start_headend(config, lines)
        api = Api(base).login("admin", PASSWORD)
        since, until = seeded["window"]
        report = api.get(f"/api/v1/reports/consumption?since={since}&until={until}")
        # M1: 2.300 - 1.000 kWh; M2: 0.080 - 0.050 kWh (its reading after the restore is outside)
        assert report["rows"] == [{"group": "town", "meters": 2, "energy_wh": 1300 + 30}]
        assert api.get(f"/api/v1/meters/{M1}/readings")["total"] == 3
        vends = api.get(f"/api/v1/vends?meter_id={M1}")["items"]
        assert [v["receipt_no"] for v in vends] == [seeded["sale"]["receipt_no"]]
        assert vends[0]["tokens"] == seeded["sale"]["tokens"] and len(vends[0]["tokens"]) == 1
    finally:
        if headend is not None:
            stop(headend)
        broker.stop()
