"""No secret reaches a log, at debug level, through a day's worth of operations.

Every daemon runs as deployed and at ``--log-level debug``: Mosquitto (``log_type all``),
``amr sim`` (its meters' decoder keys derived from a random vending key), ``amr concentrator``
and ``amr headend``. Through the API an operator logs in, creates an API key and uses it, imports
the vending key, sells credit that the gateway pushes to the meter, disconnects the meter (a
signed command), fails a login with a wrong password and logs out; the first administrator came
from ``amr user add``. Every line every process wrote (standard output and error, and any log
file) is then searched for each secret involved: the master key, the vending key, the meter's
decoder key, both passwords, the API key, the session token, the command-signing private key
(PEM body and raw) and the sold token's plaintext data block.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.sts import (
    DecoderKeyInputs,
    MeterPan,
    TokenCoder,
    TransferCredit,
    VendingKey,
    derive_decoder_key,
    normalize_token,
)
from protocols.sts.number import split_number
from tests.support.api import Api, ApiFailure
from tests.support.debian import ensure_commands
from tests.support.gateway import add_admin, start, start_headend, start_sim, stop, wait_for
from tests.support.mosquitto import free_port, spawn_mosquitto

pytestmark = pytest.mark.integration

GW = "gw-logs"
TARIFF = {"currency": "ZAR", "blocks": [{"upper_kwh": None, "price_minor_per_kwh": "200"}]}


@dataclass
class Run:
    """What the processes logged, and the secrets they handled."""

    logs: dict[str, str] = field(default_factory=dict)  # source -> everything it wrote
    secrets: dict[str, str] = field(default_factory=dict)  # what -> its text
    facts: dict[str, Any] = field(default_factory=dict)


def _wait_state(api: Api, path: str, wanted: str, what: str) -> dict[str, Any]:
    def done() -> bool:
        state = api.get(path)
        found = state.get("state") or state.get("delivery", {}).get("state")
        return bool(found in (wanted, "rejected", "failed", "expired"))

    wait_for(done, 60, what)
    view: dict[str, Any] = api.get(path)
    return view


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("logs")
    master_hex = secrets.token_hex(32)
    vending_key = secrets.token_bytes(8)
    password = "pw-" + secrets.token_urlsafe(16)
    wrong_password = "wrong-" + secrets.token_urlsafe(16)
    result = Run()
    outputs: dict[str, list[str]] = {}
    processes = []
    ensure_commands("mosquitto")
    port = free_port()
    (folder / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_type all\n"
    )
    broker = spawn_mosquitto(folder / "mosquitto.conf", port, folder / "mosquitto.log")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AMR_MASTER_KEY", master_hex)
        env.setenv("AMR_SIM_VENDING_KEY", vending_key.hex())
        env.setenv("AMR_TEST_PASSWORD", password)
        try:
            sim_config = {
                "control": {"host": "127.0.0.1", "port": 0},
                "run_dir": str(folder / "sim"),
                "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1", "port": 0,
                           "meters": {"count": 2, "first_serial": 8101,
                                      "initial_credit_kwh": 20}}],
            }  # fmt: skip
            sim_lines: list[str] = []
            outputs["amr sim"] = sim_lines
            sim = start_sim(sim_config, folder, sim_lines, "--log-level", "debug")
            processes.append(sim.process)
            drns = sorted(m["drn"] for m in sim.meters)
            config = {
                "database": {"url": f"sqlite:///{folder}/headend.db"},
                "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 10},
                "keys": {"signing_key_file": str(folder / "signing.pem")},
                "api": {"host": "127.0.0.1", "port": 0},
                "commands": {"dispatch_interval_s": 0.5},
            }
            (folder / "headend.yaml").write_text(yaml.safe_dump(config))
            added_lines: list[str] = []
            outputs["amr user add"] = added_lines
            add_admin(folder / "headend.yaml", added_lines)
            headend_lines: list[str] = []
            outputs["amr headend"] = headend_lines
            headend, base = start_headend(folder / "headend.yaml", headend_lines,
                                          "--log-level", "debug")  # fmt: skip
            processes.append(headend)
            gw_config = {
                "gateway_id": GW,
                "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 10},
                "journal": {"path": str(folder / "journal.db")},
                "headend_public_key_file": str(folder / "signing.pub"),
                "poll_groups": {"status": {"interval_s": 2, "alarm": True},
                                "energy": {"interval_s": 5}},
                "batch": {"max_readings": 4, "max_delay_s": 1},
                "buses": [{"name": "tcp1", "type": "modbus-tcp", "host": "127.0.0.1",
                           "port": sim.tcp_ports[0], "timeout_ms": 500,
                           "meters": [{"address": 1}, {"address": 2}]}],
            }  # fmt: skip
            (folder / "gw.yaml").write_text(yaml.safe_dump(gw_config))
            gw_lines: list[str] = []
            outputs["amr concentrator"] = gw_lines
            processes.append(start(["concentrator", "--config", str(folder / "gw.yaml"),
                                    "--log-level", "debug"], "Ctrl-C", gw_lines))  # fmt: skip

            anonymous = Api(base)
            api = anonymous.login("admin", password)
            key = api.post("/api/v1/api-keys", {"name": "billing", "role": "cashier"})["key"]
            me = anonymous.call("GET", "/api/v1/me", headers={"X-API-Key": key})
            assert me["role"] == "cashier"
            api.post("/api/v1/keys", {"id": "sgc123456-krn1", "key_hex": vending_key.hex(),
                                      "sgc": 123456, "key_revision": 1, "key_type": 2,
                                      "algorithm": "sta", "dkga": 2})  # fmt: skip
            meter = drns[0]
            wait_for(lambda: meter in {m["id"] for m in api.get("/api/v1/meters")["items"]}, 30,
                     "the gateway's meters registered")  # fmt: skip
            tariff = api.post("/api/v1/tariffs", {"name": "flat", "kind": "step", "body": TARIFF})
            customer = api.post("/api/v1/customers", {"name": "Log reader"})
            api.post("/api/v1/accounts", {"customer_id": customer["id"], "meter_id": meter,
                                          "tariff_id": tariff["id"]})  # fmt: skip
            vend = api.post("/api/v1/vends", {"meter_id": meter, "amount_minor": 1000})
            delivered = _wait_state(api, f"/api/v1/vends/{vend['id']}", "applied",
                                    "the token delivered")  # fmt: skip
            relay = api.post(f"/api/v1/meters/{meter}/relay", {"action": "disconnect"})
            switched = _wait_state(api, f"/api/v1/commands/{relay['id']}", "applied",
                                   "the disconnect applied")  # fmt: skip
            with pytest.raises(ApiFailure) as refused:
                anonymous.login("admin", wrong_password)
            api.post("/api/v1/logout")
            result.facts = {"token": vend["tokens"][0], "meter": meter,
                            "delivery": delivered["delivery"]["state"],
                            "relay": switched["state"], "wrong_login": refused.value.status,
                            "relay_command": relay["id"]}  # fmt: skip
            session = api.token
        finally:
            for process in reversed(processes):
                stop(process)
            broker.terminate()
            broker.wait(timeout=15)
    result.logs = {name: "".join(lines) for name, lines in outputs.items()}
    for path in folder.rglob("*.log"):
        result.logs[str(path.relative_to(folder))] = path.read_text(errors="replace")
    signing = serialization.load_pem_private_key((folder / "signing.pem").read_bytes(), None)
    assert isinstance(signing, Ed25519PrivateKey)
    pem = (folder / "signing.pem").read_text()
    raw_signing = signing.private_bytes(serialization.Encoding.Raw,
                                        serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())  # fmt: skip
    inputs = DecoderKeyInputs(pan=MeterPan.from_drn(result.facts["meter"]),
                              supply_group_code="123456", tariff_index="01")  # fmt: skip
    decoder = derive_decoder_key(VendingKey(vending_key), inputs)
    coder = TokenCoder(decoder, "sta")
    _, encrypted = split_number(int(normalize_token(result.facts["token"])))
    plaintext = coder.decrypt_block(encrypted)
    assert isinstance(coder.decode(result.facts["token"]), TransferCredit)  # the right key
    assert session is not None
    result.secrets = {
        "master key (hex)": master_hex,
        "master key (base64)": base64.b64encode(bytes.fromhex(master_hex)).decode(),
        "vending key (hex)": vending_key.hex(),
        "decoder key of the meter (hex)": decoder.material.hex(),
        "decoder key of the meter, byte-reversed (hex)": decoder.material[::-1].hex(),
        "operator password": password,
        "wrong password": wrong_password,
        "API key": key,
        "API key without its prefix": key.removeprefix("amrk_"),
        "session (bearer) token": session,
        "signing key PEM body": "".join(pem.splitlines()[1:-1]),
        "signing key (raw hex)": raw_signing.hex(),
        "signing key (raw base64)": base64.b64encode(raw_signing).decode(),
        "the sold token's plaintext block (hex)": f"{plaintext:016x}",
    }
    yield result


def _found(text: str, what: str, secret: str) -> bool:
    """Whether ``secret`` is in ``text`` (hexadecimal in any case; the rest exactly)."""
    return secret.lower() in text.lower() if "(hex)" in what else secret in text


@pytest.mark.reliability("security", "at debug level, through login, API key, key import, vend, "
                         "relay command and a failed login, no process logs a key, a password, "
                         "a credential or a token's plaintext block")  # fmt: skip
def test_no_secret_is_in_any_log(run: Run, reliability: dict[str, object]) -> None:
    # the operations happened and the logs saw them: this is not a search of empty files
    assert run.facts["delivery"] == "applied" and run.facts["relay"] == "applied"
    assert run.facts["wrong_login"] == 401
    assert f"Command {run.facts['relay_command']}" in run.logs["amr concentrator"]
    assert "/api/v1/login" in run.logs["amr headend"]
    assert "Received PUBLISH" in run.logs["mosquitto.log"]
    # and the search finds a secret where there is one, in either case for hexadecimal
    careless = f"[headend#debug] unsealed {run.secrets['vending key (hex)'].upper()}"
    assert _found(careless, "vending key (hex)", run.secrets["vending key (hex)"])
    hits = [f"{what} in the log of {source}" for source, text in run.logs.items()
            for what, secret in run.secrets.items() if _found(text, what, secret)]  # fmt: skip
    assert not hits, hits
    reliability["log_lines"] = sum(text.count("\n") for text in run.logs.values())
    reliability["secrets_searched"] = len(run.secrets)
    reliability["found"] = 0
