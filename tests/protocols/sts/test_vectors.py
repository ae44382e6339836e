"""Every vector of tests/vectors/sts_vectors.json reproduces: keys, blocks, CRCs and tokens.

The vectors (with their sources) are the STS 531-1-0 compliance tokens as reproduced in public test
suites, unit-test tokens of an independent implementation, CRC examples and the RFC 2994 MISTY1
vectors. The expected values come from the file, never from the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocols.sts import (
    BaseDate,
    ClearCredit,
    ClearTamperCondition,
    CreditType,
    DecoderKey,
    DecoderKeyInputs,
    KeyType,
    MeterPan,
    MeterTestToken,
    Set1stSectionDecoderKey,
    Set2ndSectionDecoderKey,
    Set3rdSectionDecoderKey,
    Set4thSectionDecoderKey,
    SetMaximumPhasePowerUnbalanceLimit,
    SetMaximumPowerLimit,
    TokenCoder,
    TokenFields,
    TransferCredit,
    VendingKey,
    build_block,
    control_block,
    crc16,
    decode_token,
    derive_decoder_key,
    encode_test_token,
    pan_block,
)
from protocols.sts.amount import decode_currency_amount, decode_transfer_amount
from protocols.sts.keys import dkga04_message
from protocols.sts.misty1 import Misty1
from protocols.sts.number import join_number
from tests.conftest import load_vectors

VECTORS = load_vectors("sts_vectors.json")


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


TOKEN_VECTORS = [v for v in VECTORS if "token" in v]
KEYED = [v for v in VECTORS if "vending_key_hex" in v]
CRC_ONLY = [v for v in VECTORS if "crc_input_56bit_hex" in v]
PRIMITIVES = [v for v in VECTORS if v["category"] == "primitive"]


def fields_of(v: dict[str, Any]) -> TokenFields:
    """The token fields a vector states, built from its field values (not from its token)."""
    cls, sub = v["class"], v["subclass"]
    if cls == 0:
        if sub >= 4:
            amount = decode_currency_amount(
                int(v["amount_field_hex"], 16), v["se_nibble_in_rnd_position"]
            )
            return TransferCredit(CreditType(sub), amount, v["tid"])
        amount = decode_transfer_amount(int(v["amount_field_hex"], 16))
        if "amount_base_units" in v:
            assert amount == v["amount_base_units"]
        return TransferCredit(CreditType(sub), amount, v["tid"], v["rnd"])
    if cls == 1:
        return MeterTestToken(int(v["control_hex"], 16), v["mfr_code"], sub)
    if sub == 0:
        assert decode_transfer_amount(int(v["mpl_field_hex"], 16)) == v["mpl_watts"]
        return SetMaximumPowerLimit(tid=v["tid"], rnd=v["rnd"], watts=v["mpl_watts"])
    if sub == 1:
        return ClearCredit(tid=v["tid"], rnd=v["rnd"], register=int(v["register_hex"], 16))
    if sub == 5:
        return ClearTamperCondition(tid=v["tid"], rnd=v["rnd"], pad=int(v["pad_hex"], 16))
    if sub == 6:
        assert decode_transfer_amount(int(v["mppul_field_hex"], 16)) == v["mppul_watts"]
        return SetMaximumPhasePowerUnbalanceLimit(
            tid=v["tid"], rnd=v["rnd"], watts=v["mppul_watts"]
        )
    if sub == 3:
        return Set1stSectionDecoderKey(
            ken_high=v["kenho"],
            new_krn=v["new_krn"],
            rollover=bool(v["ro"]),
            new_key_type=KeyType(v["new_kt"]),
            nkho=int(v["nkho_hex"], 16),
            three_kct=bool(v["res_3kct"]),
        )
    if sub == 4:
        return Set2ndSectionDecoderKey(
            ken_low=v["kenlo"], new_tariff_index=v["new_ti_binary"], nklo=int(v["nklo_hex"], 16)
        )
    if sub == 8:
        return Set3rdSectionDecoderKey(sgc_low=v["sgclo12"], nkmo2=int(v["nkmo2_hex"], 16))
    if sub == 9:
        return Set4thSectionDecoderKey(sgc_high=v["sgcho12"], nkmo1=int(v["nkmo1_hex"], 16))
    raise AssertionError(f"vector {v['id']} has a class/subclass this test does not map")


def key_inputs(v: dict[str, Any]) -> DecoderKeyInputs:
    pan = MeterPan.parse(v["meter_pan"]) if "meter_pan" in v else MeterPan(v["iin"], v["drn_iain"])
    return DecoderKeyInputs(
        pan=pan,
        supply_group_code=v["supply_group_code"],
        tariff_index=v["tariff_index"],
        key_revision_number=v["key_revision_number"],
        key_type=KeyType(v["key_type"]),
        base_date=BaseDate.parse(v.get("base_date", 1993)),
        algorithm=v.get("encryption_algorithm", "EA07"),
        dkga=v["dkga"],
    )


def coder_of(v: dict[str, Any]) -> TokenCoder:
    return TokenCoder(DecoderKey.from_hex(v["decoder_key_hex"]), v["encryption_algorithm"])


def test_the_vector_file_covers_every_token_kind() -> None:
    kinds = {(v["class"], v["subclass"], v.get("encryption_algorithm")) for v in TOKEN_VECTORS}
    assert {(0, 0, "EA07"), (0, 0, "EA11"), (0, 4, "EA07"), (1, 0, None), (1, 1, None)} <= kinds
    assert {(2, s, "EA11") for s in (0, 1, 3, 4, 5, 6, 8, 9)} <= kinds
    assert len(TOKEN_VECTORS) >= 180


@pytest.mark.parametrize("v", TOKEN_VECTORS, ids=_ids(TOKEN_VECTORS))
def test_token_vector_encodes(v: dict[str, Any]) -> None:
    fields = fields_of(v)
    block = build_block(fields)
    assert f"{block:016X}" == v["data_block_hex"].upper()
    assert f"{block & 0xFFFF:04X}" == (v.get("crc_c_hex") or v["crc_hex"]).upper()
    if v["class"] == 1:
        token = encode_test_token(fields)  # type: ignore[arg-type]
        encrypted = block
    else:
        coder = coder_of(v)
        token = coder.encode(fields)
        encrypted = int(v["encrypted_block_hex"], 16)
        assert coder.decrypt_block(encrypted) == block
    if "token_66bit_hex" in v:
        assert join_number(v["class"], encrypted) == int(v["token_66bit_hex"], 16)
    assert token.digits == v["token"]


@pytest.mark.parametrize("v", TOKEN_VECTORS, ids=_ids(TOKEN_VECTORS))
def test_token_vector_decodes(v: dict[str, Any]) -> None:
    coder = None if v["class"] == 1 else coder_of(v)
    spaced = " ".join(v["token"][i : i + 4] for i in range(0, 20, 4))
    assert decode_token(spaced, coder) == fields_of(v)


@pytest.mark.parametrize("v", KEYED, ids=_ids(KEYED))
def test_decoder_key_generation(v: dict[str, Any]) -> None:
    inputs = key_inputs(v)
    key = derive_decoder_key(VendingKey.from_hex(v["vending_key_hex"]), inputs)
    assert key == DecoderKey.from_hex(v["decoder_key_hex"])
    if "pan_block_hex" in v:
        assert f"{pan_block(inputs.pan, inputs.key_type):016X}" == v["pan_block_hex"]
        assert f"{control_block(inputs):016X}" == v["control_block_hex"]
    if "dkga04_hmac_message_hex" in v:
        assert dkga04_message(inputs).hex() == v["dkga04_hmac_message_hex"]
    if "meter_pan" in v:
        assert inputs.pan.pan == v["meter_pan"]


NEW_KEY = [v for v in VECTORS if "new_key_generation_inputs" in v]


@pytest.mark.parametrize("v", NEW_KEY, ids=_ids(NEW_KEY))
def test_key_change_vector_carries_the_derived_new_key(v: dict[str, Any]) -> None:
    spec = v["new_key_generation_inputs"]
    new_key = derive_decoder_key(
        VendingKey.from_hex(spec["vending_key_hex"]),
        key_inputs({**spec, "encryption_algorithm": v["encryption_algorithm"]}),
    )
    assert new_key == DecoderKey.from_hex(v["new_decoder_key_hex"])
    material = new_key.material.hex().upper()
    section = fields_of(v)
    if isinstance(section, Set1stSectionDecoderKey):
        assert f"{section.nkho:08X}" == material[:8]
    elif isinstance(section, Set2ndSectionDecoderKey):
        assert f"{section.nklo:08X}" == material[-8:]
    elif isinstance(section, Set3rdSectionDecoderKey):
        assert f"{section.nkmo2:08X}" == material[8:16]
        assert section.sgc_low == int(spec["supply_group_code"]) & 0xFFF
    elif isinstance(section, Set4thSectionDecoderKey):
        assert f"{section.nkmo1:08X}" == material[16:24]
        assert section.sgc_high == int(spec["supply_group_code"]) >> 12


@pytest.mark.parametrize("v", CRC_ONLY, ids=_ids(CRC_ONLY))
def test_crc_examples(v: dict[str, Any]) -> None:
    assert crc16(bytes.fromhex(v["crc_input_56bit_hex"])) == int(v["crc_hex"], 16)


@pytest.mark.parametrize("v", PRIMITIVES, ids=_ids(PRIMITIVES))
def test_misty1_primitive_vectors(v: dict[str, Any]) -> None:
    cipher = Misty1(bytes.fromhex(v["key_hex"]))
    plain, cipher_text = int(v["plaintext_hex"], 16), int(v["ciphertext_hex"], 16)
    assert cipher.encrypt_block(plain) == cipher_text
    assert cipher.decrypt_block(cipher_text) == plain
