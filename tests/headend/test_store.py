"""The store as an operator relies on it: migrations match the tables, issued tokens and the audit
log cannot be rewritten, vending keys are unreadable without the master key, and a backup restores
into an empty database."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from headend.audit import thd_audit
from headend.keystore import KeyStoreError, MeterKeys, SealedKeyStore, thd_add_vending_key
from headend.store import make_engine, upgrade
from headend.store.backup import BackupError, backup, restore
from headend.store.schema import audit_log, metadata, tokens, vending_keys
from protocols.sts import CreditType, TransferCredit

AMR = Path(sys.executable).with_name("amr")
MASTER = bytes.fromhex("42" * 32)
METER = MeterKeys("00000000000", 123456, 1, 1, 2, 2014, "sta")


def _engine(path: Path) -> sa.Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def _seed(engine: sa.Engine) -> str:
    with engine.begin() as connection:
        thd_add_vending_key(connection, MASTER, "k1", "ABABABABABABABAB", 123456, 1, 2, "sta", 2,
                            1.0)  # fmt: skip
        token = SealedKeyStore(MASTER).issue(
            connection, METER, TransferCredit(CreditType.ELECTRICITY, 100, tid=5_000_000, rnd=3)
        )
        connection.execute(sa.insert(tokens).values(
            meter_id="00000000000", kind="credit", token_class=0, subclass=0, tid=5_000_000,
            amount=100, digits=token.digits, created_at=1.0, created_by="test"))  # fmt: skip
        thd_audit(connection, 1.0, "test", "vend", "meter:00000000000", {"amount_minor": 100})
    return token.digits


def test_the_migrations_give_exactly_the_tables_of_the_schema(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "he.db")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_tokens_and_the_audit_log_refuse_update_and_delete(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "he.db")
    _seed(engine)
    for statement in (sa.update(tokens).values(digits="0" * 20), sa.delete(tokens),
                      sa.update(audit_log).values(actor="someone else"), sa.delete(audit_log)):  # fmt: skip
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as c:
            c.execute(statement)
    engine.dispose()


def test_vending_keys_are_sealed_and_need_the_master_key(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "he.db")
    digits = _seed(engine)
    with engine.connect() as connection:
        sealed = bytes(connection.execute(sa.select(vending_keys.c.sealed)).scalar_one())
        assert bytes.fromhex("ABABABABABABABAB") not in sealed
        with pytest.raises(KeyStoreError, match="does not open"):
            SealedKeyStore(secrets.token_bytes(32)).issue(
                connection, METER, TransferCredit(CreditType.ELECTRICITY, 1, 5_000_001, 1)
            )
        # a sealed key moved to another supply group's row no longer opens
        connection.execute(sa.update(vending_keys).values(sgc=654321))
        with pytest.raises(KeyStoreError):
            SealedKeyStore(MASTER).issue(
                connection,
                MeterKeys("00000000000", 654321, 1, 1, 2, 2014, "sta"),
                TransferCredit(CreditType.ELECTRICITY, 1, 5_000_001, 1),
            )
    engine.dispose()
    assert len(digits) == 20


def test_backup_restores_into_an_empty_database_only(tmp_path: Path) -> None:
    source = _engine(tmp_path / "a.db")
    digits = _seed(source)
    count = backup(source, tmp_path / "backup.jsonl.gz")
    assert count == 3  # the key, the token, the audit record
    target = _engine(tmp_path / "b.db")
    assert restore(target, tmp_path / "backup.jsonl.gz") == 3
    with target.connect() as connection:
        assert connection.execute(sa.select(tokens.c.digits)).scalar_one() == digits
        token = SealedKeyStore(MASTER).issue(
            connection, METER, TransferCredit(CreditType.ELECTRICITY, 100, tid=5_000_000, rnd=3)
        )
    assert token.digits == digits  # the restored key makes the same token
    with pytest.raises(BackupError, match="not empty"):
        restore(target, tmp_path / "backup.jsonl.gz")
    source.dispose()
    target.dispose()


def test_amr_db_commands(tmp_path: Path) -> None:
    config = tmp_path / "headend.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'he.db'}"}}))
    run = subprocess.run([str(AMR), "db", "--config", str(config), "status"], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert "(empty): needs amr db upgrade" in run.stdout
    run = subprocess.run([str(AMR), "db", "--config", str(config), "upgrade"], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert "database at revision 0002" in run.stdout
    run = subprocess.run([str(AMR), "db", "--config", str(config), "backup",
                          str(tmp_path / "b.gz")], capture_output=True, text=True, timeout=60,
                         check=True)  # fmt: skip
    assert "backed up 0 rows" in run.stdout
