"""``amr token``, run as a user runs it: the installed console command in a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from headend.cli.token import run_batch
from protocols.sts import (
    BaseDate,
    CreditType,
    DecoderKeyInputs,
    MeterDecoder,
    MeterPan,
    MeterState,
    TokenResult,
    VendingKey,
    derive_decoder_key,
    tid_of,
)
from tests.conftest import load_vectors

AMR = Path(sys.executable).with_name("amr")
VK = "ABABABABABABABAB"
METER = ["--drn", "00000000000", "--sgc", "123456"]
RESULTS = {
    "token",
    "token_66bit_hex",
    "encrypted_block_hex",
    "data_block_hex",
    "crc_hex",
    "crc_c_hex",
}


def amr(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert AMR.exists(), f"the amr console command is not installed next to {sys.executable}"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AMR_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(AMR), *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
    )


def test_batch_reproduces_every_vector_token() -> None:
    vectors = [v for v in load_vectors("sts_vectors.json") if "token" in v]
    lines = [json.dumps({k: x for k, x in v.items() if k not in RESULTS}) for v in vectors]
    run = amr("token", "batch", stdin="\n".join(lines) + "\n")
    assert run.returncode == 0, run.stderr
    replies = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r.get("id") for r in replies] == [v["id"] for v in vectors]
    assert [r.get("token") for r in replies] == [v["token"] for v in vectors]


def test_batch_reports_bad_lines_and_goes_on() -> None:
    good = {"class": 0, "subclass": 0, "decoder_key_hex": "E653341F9D5BF36F",
            "encryption_algorithm": "EA07", "tid": 6472570, "rnd": 5, "amount_base_units": 18}  # fmt: skip
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "amout_base_units": 5}),
        json.dumps({**good, "amount_base_units": 18201625}),
        json.dumps({**good, "decoder_key_hex": "E653"}),
        json.dumps([1, 2]),
        json.dumps({**good, "class": 0, "subclass": 9}),
        json.dumps({**good, "tid": "soon"}),
        json.dumps({**good, "subclass": 1}),
    ]
    run = amr("token", "batch", stdin="\n".join(lines) + "\n")
    assert run.returncode == 1  # some lines failed
    replies = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(replies) == len(lines)
    assert replies[0]["token"] and replies[-1]["token"]  # the batch went on after the errors
    errors = [r.get("error", "") for r in replies[1:-1]]
    assert all(errors), replies
    assert "not JSON" in errors[0]
    assert "amout_base_units" in errors[1]
    assert "out of range" in errors[2]
    assert "64 or 128 bits" in errors[3]
    assert "JSON object" in errors[4]
    assert "reserved" in errors[5]
    assert [r["line"] for r in replies] == list(range(1, len(lines) + 1))
    assert "E653341F9D5BF36F" not in run.stdout + run.stderr


def test_batch_key_change_set_is_accepted_by_a_meter() -> None:
    old = {"dkga": "02", "vending_key_hex": VK, "iin": "600727", "drn_iain": "00000000000",
           "supply_group_code": "123456", "tariff_index": "01", "key_revision_number": 1,
           "key_type": 2, "base_date": 1993}  # fmt: skip
    new = {
        **old,
        "vending_key_hex": "9494949494949494",
        "key_revision_number": 2,
        "base_date": 2014,
    }
    request = {"class": 2, **old, "new_key_generation_inputs": new, "ro": 1, "ken": 255}
    run = amr("token", "batch", stdin=json.dumps(request) + "\n")
    assert run.returncode == 0, run.stdout
    tokens = json.loads(run.stdout)["tokens"]
    assert len(tokens) == 2
    pan = MeterPan.from_drn("00000000000")
    inputs = DecoderKeyInputs(pan=pan, supply_group_code="123456")
    meter = MeterDecoder(MeterState(key=derive_decoder_key(VendingKey.from_hex(VK), inputs)))
    assert [meter.enter(t).result for t in tokens] == [
        TokenResult.FIRST_KCT_ENTERED,
        TokenResult.ACCEPT,
    ]
    assert meter.state.key_revision_number == 2 and meter.state.base_date is BaseDate.Y2014


def _json(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_credit_then_decode_round_trip_in_human_and_json_form(tmp_path: Path) -> None:
    key_file = tmp_path / "vending.key"
    key_file.write_text(VK + "\n")
    human = amr("token", "credit", "--vending-key-file", str(key_file), *METER, "--amount", "25.55",
                "--at", "2025-03-01T08:30", "--rnd", "5")  # fmt: skip
    assert human.returncode == 0, human.stderr
    assert "amount  25.6 kWh" in human.stdout  # 25.55 kWh rounds up to the next 0.1 kWh
    grouped = human.stdout.splitlines()[0].removeprefix("token").strip()
    assert len(grouped) == 24 and grouped.count(" ") == 4

    decoded = _json(
        amr("token", "decode", grouped, "--vending-key-file", str(key_file), *METER, "--json")
    )
    assert decoded["token"] == grouped.replace(" ", "")
    assert decoded["credit_type"] == "electricity"
    assert decoded["amount_base_units"] == 256
    assert decoded["tid"] == tid_of(datetime(2025, 3, 1, 8, 30), 2014)
    assert decoded["rnd"] == 5


def test_decode_with_the_wrong_key_is_refused_clearly() -> None:
    made = _json(amr("token", "credit", "--vending-key", VK, *METER, "--units", "10", "--json"))
    wrong = amr("token", "decode", made["token"], "--vending-key", VK, "--drn", "00000000000",
                "--sgc", "654321")  # fmt: skip
    assert wrong.returncode == 3
    assert "CRCError" in wrong.stderr
    assert wrong.stdout == ""


def test_keys_from_the_environment_are_never_printed() -> None:
    env = {"AMR_VENDING_KEY": VK}
    runs = [
        amr("token", "credit", *METER, "--units", "100", env=env),
        amr("token", "credit", *METER, "--units", "100", "--json", env=env),
        amr(
            "token", "engineering", "max-power-limit", "--value", "4000", *METER, "--json", env=env
        ),
        amr("token", "keychange", *METER, "--new-krn", "2", "--json", env=env),
        amr("token", "decode", "0000 0000 0000 0000 0000", *METER, env=env),
    ]
    assert [r.returncode for r in runs] == [0, 0, 0, 0, 3]
    derived = "E653341F9D5BF36F"
    for run in runs:
        for secret in (VK, derived, derived[:8], derived[8:]):
            assert secret.lower() not in (run.stdout + run.stderr).lower()


def test_engineering_keychange_and_test_tokens() -> None:
    mpl = _json(amr("token", "engineering", "max-power-limit", "--value", "180215",
                    "--vending-key", VK, *METER, "--json"))  # fmt: skip
    assert mpl["type"] == "SetMaximumPowerLimit" and mpl["watts"] == 180224
    clear = _json(
        amr("token", "engineering", "clear-credit", "--vending-key", VK, *METER, "--json")
    )
    assert clear["register"] == 0xFFFF
    change = _json(amr("token", "keychange", "--vending-key", VK, *METER, "--base-date", "1993",
                       "--new-base-date", "2014", "--new-krn", "2", "--json"))  # fmt: skip
    assert [t["type"] for t in change["tokens"]] == [
        "Set1stSectionDecoderKey",
        "Set2ndSectionDecoderKey",
    ]
    assert change["tokens"][0]["rollover"] is True
    test = _json(amr("token", "test", "--mfr-code", "0000", "--control", "1", "--json"))
    assert test["token"] == "01152921509036054672"  # STS 531-1-0 CTSA11, 4-digit MfrCode form
    test2 = _json(amr("token", "test", "--mfr-code", "00", "--control", "1", "--json"))
    assert test2["token"] == "00000000000150997584"  # CTSA11, 2-digit form


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "credit", *METER, "--units", "1"], "no key"),
        (["token", "credit", "--vending-key", VK, "--units", "1"], "--drn"),
        (["token", "credit", "--vending-key", VK, *METER], "--amount"),
        (["token", "credit", "--vending-key", VK, *METER, "--amount", "ten"], "number"),
        (
            ["token", "credit", "--vending-key", VK, *METER, "--units", "1", "--base-date", "1993"],
            "roll-over",
        ),
        (
            ["token", "credit", "--vending-key-file", "/nonexistent", *METER, "--units", "1"],
            "cannot read",
        ),
        (["token", "test", "--mfr-code", "123"], "2- or 4-digit"),
    ],
)
def test_command_line_mistakes_get_a_clear_message(args: list[str], message: str) -> None:
    run = amr(*args)
    assert run.returncode == 3
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_credit_types_use_their_own_units() -> None:
    water = _json(amr("token", "credit", "--type", "water", "--amount", "1.8", "--vending-key", VK,
                      *METER, "--json"))  # fmt: skip
    assert water["subclass"] == int(CreditType.WATER) and water["amount_base_units"] == 18
    money = _json(amr("token", "credit", "--type", "electricity-currency", "--amount", "100",
                      "--vending-key", VK, *METER, "--json"))  # fmt: skip
    assert money["subclass"] == 4 and money["amount_base_units"] >= 10_000_000


def _batch(*requests: dict[str, Any]) -> list[dict[str, Any]]:
    out = io.StringIO()
    run_batch(io.StringIO("\n".join(json.dumps(r) for r in requests) + "\n"), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


OLD_METER = {"dkga": "02", "vending_key_hex": VK, "iin": "600727", "drn_iain": "00000000000",
             "supply_group_code": "123456", "tariff_index": "01", "key_revision_number": 1,
             "key_type": 2, "base_date": 1993}  # fmt: skip


def test_batch_sets_the_rollover_bit_when_the_base_date_moves_forward() -> None:
    new = {**OLD_METER, "vending_key_hex": "9494949494949494", "key_revision_number": 2,
           "base_date": 2014}  # fmt: skip
    (reply,) = _batch({"class": 2, **OLD_METER, "new_key_generation_inputs": new})
    pan = MeterPan.from_drn("00000000000")
    inputs = DecoderKeyInputs(pan=pan, supply_group_code="123456")
    meter = MeterDecoder(MeterState(key=derive_decoder_key(VendingKey.from_hex(VK), inputs)))
    meter.state.tid_memory[-1] = tid_of(datetime(2024, 11, 1), 1993)
    assert all(meter.enter(t).accepted for t in reply["tokens"])
    assert set(meter.state.tid_memory) == {0}  # cleared: tokens on base 2014 will be accepted


def test_batch_refuses_contradictions_and_missing_key_change_fields() -> None:
    new = {**OLD_METER, "key_revision_number": 2}
    contradiction, no_ti, wrong_type = _batch(
        {"class": 2, **OLD_METER, "new_key_generation_inputs": new, "new_krn": 3},
        {"class": 2, **OLD_METER, "new_decoder_key_hex": "0011223344556677", "new_kt": 2,
         "new_krn": 2},
        {"class": 0, "subclass": 0, "decoder_key_hex": 1234567890123456, "amount_base_units": 1},
    )  # fmt: skip
    assert "contradicts" in contradiction["error"]
    assert "new_ti" in no_ti["error"]
    assert "must be str" in wrong_type["error"]
    assert "1234567890123456" not in wrong_type["error"]  # a key is never echoed
