"""Vending keys at rest: sealed in the database, useless without the master key.

Keys go in the way an operator puts them there: ``POST /api/v1/keys`` on a running
``amr headend`` (SQLite, then a real PostgreSQL), followed by a sale. The test then reads the
database behind the head-end's back: every column of every table (and, on PostgreSQL, ``pg_dump``
and the database's files and WAL on disk; on SQLite, the database file and its WAL) must hold
neither vending key, nor the decoder key of the meter they serve, nor the master key, raw, in
hexadecimal or in base64.

With a wrong master key the head-end keeps running and refuses the sale with a message saying the
key does not open; with the right one the key store makes the STS 531-1-0 compliance token
(CTSA01) from the key the API stored.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from headend.config import MeterDefaults
from headend.keystore import KeyStoreError, MeterKeys, SealedKeyStore
from headend.records import thd_ensure_meters, thd_touch_gateway
from headend.store import make_engine, upgrade
from headend.store.schema import vending_keys
from protocols.sts import (
    CreditType,
    DecoderKey,
    DecoderKeyInputs,
    MeterPan,
    TokenCoder,
    TransferCredit,
    VendingKey,
    derive_decoder_key,
)
from tests.support.api import Api, ApiFailure
from tests.support.gateway import add_admin, start_headend, stop
from tests.support.mosquitto import Mosquitto
from tests.support.pg_fixture import postgres  # noqa: F401
from tests.support.postgres import Postgres

pytestmark = pytest.mark.integration

# STS 531-1-0 edition 02, CTSA01 step 1: a class 0 electricity credit of 0.1 kWh under the public
# test vending key, for the meter with IIN 600727 and DRN 00000000000 (tests/vectors)
VECTOR_ID = "STSComplianceTests_STS_531_1_0_02_CTSA01#step1Test#150"
METER = "00000000000"
GATEWAY = "gw-keys"
PASSWORD = "admin-" + secrets.token_urlsafe(12)
TARIFF = {"currency": "ZAR", "blocks": [{"upper_kwh": None, "price_minor_per_kwh": "200"}]}


@dataclass
class Stored:
    """A database the head-end stored keys and a sale in, and the secrets it must not show."""

    kind: str
    url: str
    folder: Path
    config: Path
    master_hex: str
    vector: dict[str, Any]
    vend_tokens: list[str]
    secrets: dict[str, bytes] = field(default_factory=dict)  # what -> raw bytes
    postgres: Postgres | None = None


def _start_headend(config: Path, lines: list[str]) -> tuple[subprocess.Popen[str], Api]:
    process, base = start_headend(config, lines)
    return process, Api(base)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           sts_vectors: list[dict[str, Any]]) -> Iterator[Stored]:  # fmt: skip
    folder = tmp_path_factory.mktemp(f"keys-{request.param}")
    server: Postgres | None = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        assert server is not None
        url = server.create_database(f"keys_{int(time.time() * 1000)}")
    else:
        url = f"sqlite:///{folder}/headend.db"
    vector = next(v for v in sts_vectors if v["id"] == VECTOR_ID)
    master_hex = secrets.token_hex(32)
    other_key = secrets.token_bytes(8)
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    config = {
        "database": {"url": url},
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "keys": {"signing_key_file": str(folder / "signing.pem")},
        "api": {"host": "127.0.0.1", "port": 0},
    }
    path = folder / "headend.yaml"
    path.write_text(yaml.safe_dump(config))
    processes = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AMR_MASTER_KEY", master_hex)
        env.setenv("AMR_TEST_PASSWORD", PASSWORD)
        try:
            # the schema as amr db upgrade makes it; the meter as its gateway registers it (the
            # ingest's own functions)
            engine = make_engine(url)
            upgrade(engine)
            with engine.begin() as connection:
                thd_touch_gateway(connection, GATEWAY, time.time(), online=True)
                thd_ensure_meters(connection, GATEWAY, {METER}, MeterDefaults(), time.time())
            engine.dispose()
            add_admin(path)
            process, anonymous = _start_headend(path, [])
            processes.append(process)
            api = anonymous.login("admin", PASSWORD)
            vector_key = {"id": "sgc123456-krn1", "key_hex": vector["vending_key_hex"].upper(),
                          "sgc": 123456, "key_revision": 1, "key_type": 2, "algorithm": "sta",
                          "dkga": 2}  # fmt: skip
            imported = api.post("/api/v1/keys", vector_key)
            assert "key_hex" not in json.dumps(imported)
            api.post("/api/v1/keys", {**vector_key, "id": "sgc123456-krn2",
                                      "key_hex": other_key.hex(), "key_revision": 2})  # fmt: skip
            listed = json.dumps(api.get("/api/v1/keys"))
            assert vector["vending_key_hex"] not in listed.lower() and other_key.hex() not in listed
            tariff = api.post("/api/v1/tariffs", {"name": "flat", "kind": "step", "body": TARIFF})
            customer = api.post("/api/v1/customers", {"name": "Keys at rest"})
            api.post("/api/v1/accounts", {"customer_id": customer["id"], "meter_id": METER,
                                          "tariff_id": tariff["id"]})  # fmt: skip
            vend = api.post("/api/v1/vends", {"meter_id": METER, "amount_minor": 1000})
        finally:
            for process in processes:
                stop(process)
            broker.stop()
    meter_inputs = DecoderKeyInputs(pan=MeterPan.from_drn(METER), supply_group_code="123456",
                                     tariff_index="01", key_revision_number=2)  # fmt: skip
    other_decoder = derive_decoder_key(VendingKey(other_key), meter_inputs).material
    vector_decoder = bytes.fromhex(vector["decoder_key_hex"])
    found = Stored(request.param, url, folder, path, master_hex, vector,
                   [t.replace(" ", "") for t in vend["tokens"]], postgres=server)  # fmt: skip
    found.secrets = {
        "the master key": bytes.fromhex(master_hex),
        "vending key krn1 (the STS test key)": bytes.fromhex(vector["vending_key_hex"]),
        "vending key krn2 (random)": other_key,
        "decoder key of meter 00000000000, krn1": vector_decoder,
        "decoder key of meter 00000000000, krn1, byte-reversed": vector_decoder[::-1],
        "decoder key of meter 00000000000, krn2": other_decoder,
    }
    yield found


def _forms(secret: bytes) -> dict[str, bytes]:
    """The ways a key could sit in a column or a file: raw, hexadecimal, base64."""
    return {
        "raw": secret,
        "hex": secret.hex().encode(),
        "HEX": secret.hex().upper().encode(),
        "base64": base64.b64encode(secret).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(secret).rstrip(b"="),
    }


def _cells(stored: Stored) -> dict[str, list[bytes]]:
    """Every value of every column of every table, as bytes, by table."""
    tables: dict[str, list[bytes]] = {}

    def cell(value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return str(value).encode()

    if stored.kind == "sqlite":
        lite = sqlite3.connect(f"file:{stored.folder}/headend.db?mode=ro", uri=True)
        try:
            names = [r[0] for r in lite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]  # fmt: skip
            for name in names:
                rows = lite.execute(f'SELECT * FROM "{name}"').fetchall()
                tables[name] = [cell(v) for row in rows for v in row]
        finally:
            lite.close()
    else:
        dsn = sa.make_url(stored.url).set(drivername="postgresql")
        with psycopg.connect(dsn.render_as_string(hide_password=False)) as connection:
            names = [r[0] for r in connection.execute(
                "SELECT schemaname || '.' || tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")]  # fmt: skip
            for name in names:
                schema, table = name.split(".")
                rows = connection.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
                tables[name] = [cell(v) for row in rows for v in row]
    return tables


def _raw_files(stored: Stored) -> list[Path]:
    """The files the database keeps on disk (after a checkpoint, for PostgreSQL)."""
    if stored.kind == "sqlite":
        return [p for p in stored.folder.glob("headend.db*") if p.is_file()]
    assert stored.postgres is not None
    name = sa.make_url(stored.url).database
    with stored.postgres.admin() as admin:
        admin.execute("CHECKPOINT")
        row = admin.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is not None
    data = stored.postgres.data
    files = [p for p in (data / "base" / str(row[0])).rglob("*") if p.is_file()]
    return files + [p for p in (data / "pg_wal").glob("0*") if p.is_file()]


@pytest.mark.reliability("security", "vending keys imported through the API, the meter's "
                         "derived decoder keys and the master key are nowhere in the database "
                         "(every column of every table, the files on disk, the WAL)")  # fmt: skip
def test_no_key_is_readable_in_the_database(stored: Stored,
                                            reliability: dict[str, object]) -> None:  # fmt: skip
    engine = make_engine(stored.url)
    try:
        with engine.connect() as connection:
            sealed = {row.id: bytes(row.sealed) for row in connection.execute(
                sa.select(vending_keys.c.id, vending_keys.c.sealed))}  # fmt: skip
    finally:
        engine.dispose()
    # both keys are there, each as nonce + ciphertext + GCM tag
    assert {k: len(v) for k, v in sealed.items()} == {"sgc123456-krn1": 12 + 8 + 16,
                                                      "sgc123456-krn2": 12 + 8 + 16}  # fmt: skip
    tables = _cells(stored)
    assert "vending_keys" in {name.split(".")[-1] for name in tables}
    hits = []
    searched = 0
    for what, secret in stored.secrets.items():
        for form, needle in _forms(secret).items():
            for table, cells in tables.items():
                searched += len(cells)
                if any(needle in value.lower() if form == "hex" else needle in value
                       for value in cells):  # fmt: skip
                    hits.append(f"{what} ({form}) in table {table}")
    files = _raw_files(stored)
    blobs = {path: path.read_bytes() for path in files}
    # the raw scan reads what the database wrote: the sealed keys are found in the files
    assert all(any(s in blob for blob in blobs.values()) for s in sealed.values())
    for what, secret in stored.secrets.items():
        for form, needle in _forms(secret).items():
            for path, blob in blobs.items():
                if needle in blob:
                    hits.append(f"{what} ({form}) in {path.name}")
    if stored.kind == "postgresql":
        dump = subprocess.run(["pg_dump", "--data-only", "--dbname",
                               sa.make_url(stored.url).set(drivername="postgresql")
                               .render_as_string(hide_password=False)],
                              check=True, capture_output=True, timeout=60).stdout  # fmt: skip
        assert b"sgc123456-krn2" in dump
        for what, secret in stored.secrets.items():
            for form, needle in _forms(secret).items():
                if form != "raw" and needle in dump:
                    hits.append(f"{what} ({form}) in pg_dump")
    assert not hits, hits
    reliability["tables"] = len(tables)
    reliability["files"] = len(files)
    reliability["secrets_found"] = 0


@pytest.mark.reliability("security", "with a wrong master key the head-end keeps running and "
                         "refuses the sale: 409, the key does not open; the key store raises "
                         "KeyStoreError")  # fmt: skip
def test_a_wrong_master_key_is_refused_with_a_clear_error(stored: Stored) -> None:
    wrong = secrets.token_hex(32)
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AMR_MASTER_KEY", wrong)
        process, anonymous = _start_headend(stored.config, lines)
    try:
        api = anonymous.login("admin", PASSWORD)
        with pytest.raises(ApiFailure) as refused:
            api.post("/api/v1/vends", {"meter_id": METER, "amount_minor": 1000})
        assert refused.value.status == 409
        message = refused.value.body["error"]["message"]
        assert message == ("vending key sgc123456-krn1 does not open: wrong master key or a "
                           "tampered row")  # fmt: skip
        assert process.poll() is None  # no crash: the head-end serves on
        assert {k["id"] for k in api.get("/api/v1/keys")["items"]} == {"sgc123456-krn1",
                                                                     "sgc123456-krn2"}  # fmt: skip
        assert api.get(f"/api/v1/vends?meter_id={METER}")["total"] == 1  # the refused sale left
    finally:  # nothing behind
        stop(process)
    assert "Traceback" not in "".join(lines), "".join(lines)
    engine = make_engine(stored.url)
    try:
        with engine.connect() as connection, pytest.raises(KeyStoreError) as error:
            SealedKeyStore(bytes.fromhex(wrong)).issue(
                connection, MeterKeys(METER, 123456, 1, 1, 2, 1993, "sta"),
                TransferCredit(CreditType.ELECTRICITY, 1, 5871715, 5),
            )  # fmt: skip
    finally:
        engine.dispose()
    assert "does not open: wrong master key" in str(error.value)
    assert wrong not in str(error.value) and stored.master_hex not in str(error.value)


@pytest.mark.reliability("security", "with the right master key the stored key makes the STS "
                         "531-1-0 compliance token (CTSA01), and the live sale's token opens "
                         "with the meter's published decoder key")  # fmt: skip
def test_the_right_master_key_makes_the_compliance_token(stored: Stored) -> None:
    vector = stored.vector
    assert (vector["class"], vector["subclass"], vector["tid_base_date"]) == (0, 0, 1993)
    engine = make_engine(stored.url)
    try:
        with engine.connect() as connection:
            token = SealedKeyStore(bytes.fromhex(stored.master_hex)).issue(
                connection, MeterKeys(METER, 123456, 1, 1, 2, 1993, "sta"),
                TransferCredit(CreditType.ELECTRICITY, vector["amount_base_units"], vector["tid"],
                               vector["rnd"]),
            )  # fmt: skip
    finally:
        engine.dispose()
    assert token.digits == vector["token"]
    # the sale made earlier through the API: 1000 minor units at 200 per kWh = 5 kWh
    coder = TokenCoder(DecoderKey(bytes.fromhex(vector["decoder_key_hex"])), "sta")
    (sold,) = stored.vend_tokens
    decoded = coder.decode(sold)
    assert isinstance(decoded, TransferCredit)
    assert decoded.credit_type is CreditType.ELECTRICITY and decoded.amount == 50
