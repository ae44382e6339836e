"""Register values and meter profiles: what a profile author and a poller rely on."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import LocalProtocolError, RemoteProtocolError
from protocols.modbus import (
    ByteOrder,
    DataType,
    ProfileError,
    Table,
    WordOrder,
    decode_registers,
    encode_registers,
    parse_profile,
)

PROFILES = Path(__file__).resolve().parents[3] / "config" / "profiles"


@pytest.mark.parametrize(
    ("registers", "data_type", "kwargs", "value"),
    [
        ([0x0001, 0x86A0], DataType.U32, {}, 100000),
        ([0x86A0, 0x0001], DataType.U32, {"word_order": WordOrder.LITTLE}, 100000),
        (
            [0xA086, 0x0100],
            DataType.U32,
            {"word_order": WordOrder.LITTLE, "byte_order": ByteOrder.LITTLE},
            100000,
        ),
        ([0xFFFF], DataType.S16, {}, -1),
        ([0xFFFF, 0xFF9C], DataType.S32, {"scale": Decimal("0.01")}, Decimal("-1.00")),
        ([0x4366, 0x0000], DataType.F32, {}, 230.0),  # IEEE 754: 230.0 = 0x43660000
        ([0x1234, 0x5678], DataType.BCD, {}, 12345678),
        ([0x4142, 0x4300], DataType.STRING, {}, "ABC"),
        ([0x0000, 0x0000, 0x0001, 0x0000], DataType.U64, {}, 65536),
    ],
)
def test_known_register_layouts(
    registers: list[int], data_type: DataType, kwargs: dict[str, object], value: object
) -> None:
    assert decode_registers(registers, data_type, **kwargs) == value  # type: ignore[arg-type]
    length = len(registers) if data_type in (DataType.BCD, DataType.STRING) else None
    assert encode_registers(value, data_type, length=length, **kwargs) == registers  # type: ignore[arg-type]


def test_values_that_do_not_fit_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="does not fit"):
        encode_registers(70000, DataType.U16)
    with pytest.raises(LocalProtocolError, match="multiple of the scale"):
        encode_registers(Decimal("1.005"), DataType.U32, scale=Decimal("0.01"))
    with pytest.raises(LocalProtocolError, match="BCD"):
        encode_registers(123456789, DataType.BCD, length=2)
    with pytest.raises(RemoteProtocolError, match="not BCD"):
        decode_registers([0x12AB], DataType.BCD)


integer_types = st.sampled_from(
    [DataType.U16, DataType.S16, DataType.U32, DataType.S32, DataType.U64]
)
orders = st.sampled_from(list(WordOrder)), st.sampled_from(list(ByteOrder))


@given(data_type=integer_types, word=orders[0], byte=orders[1], data=st.data())
def test_integers_round_trip_in_every_layout(
    data_type: DataType, word: WordOrder, byte: ByteOrder, data: st.DataObject
) -> None:
    bits = {
        DataType.U16: 16,
        DataType.S16: 16,
        DataType.U32: 32,
        DataType.S32: 32,
        DataType.U64: 64,
    }[data_type]
    signed = data_type in (DataType.S16, DataType.S32)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    value = data.draw(st.integers(low, high))
    scale = data.draw(st.sampled_from([Decimal(1), Decimal("0.01"), Decimal("0.1")]))
    scaled = value * scale
    registers = encode_registers(scaled, data_type, scale=scale, word_order=word, byte_order=byte)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert (
        decode_registers(registers, data_type, scale=scale, word_order=word, byte_order=byte)
        == scaled
    )


def test_shipped_profiles_are_valid_and_complete() -> None:
    reference = parse_profile(yaml.safe_load((PROFILES / "amr-prepaid-v1.yaml").read_text()))
    names = {p.name for p in reference.points}
    for needed in ("drn", "sts_supply_group_code", "sts_key_revision_number", "energy_import_total",
                   "energy_import_t4", "credit_remaining", "power_active", "voltage", "current",
                   "frequency", "relay_state", "status_flags", "meter_clock", "token_entry",
                   "token_result", "token_last_tid", "tou_version", "relay_command",
                   "max_power_limit", "emergency_credit_limit", "friendly_hours_enabled",
                   "credit_limit", "consumption_month_11"):  # fmt: skip
        assert needed in names
    flags = reference.point("status_flags")
    assert flags.flag_names(0b101) == {"low_credit", "tamper"}
    assert reference.point("token_entry").count == 5  # 20 digits, 4 BCD digits per register
    sdm = parse_profile(yaml.safe_load((PROFILES / "eastron-sdm120.yaml").read_text()))
    assert all(p.table is Table.INPUT and not p.access.writable for p in sdm.points)
    assert sdm.point("energy_active_total").address == 342  # 30343 in Eastron's numbering


def test_every_profile_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(
            {
                "name": "bad",
                "manufacturer": "x",
                "model": "y",
                "colour": "red",
                "points": [
                    {"name": "ok", "table": "input", "address": 0, "type": "u32"},
                    {"name": "Bad Name", "table": "input", "address": 70000, "type": "u16"},
                    {"name": "overlap", "table": "input", "address": 1, "type": "u16"},
                    {"name": "ok", "table": "coil", "address": 0, "type": "u16"},
                    {"name": "text", "table": "input", "address": 9, "type": "string"},
                    {"name": "w", "table": "input", "address": 20, "type": "u16", "access": "rw"},
                ],
            }
        )
    problems = "\n".join(caught.value.problems)
    assert "colour: unknown field" in problems
    assert "points[1].name: must be lower_snake_case" in problems
    assert "points[1].address: must be 0..65535" in problems
    assert "overlap overlaps ok" in problems
    assert "points[3].type: coils and discrete inputs are bool" in problems
    assert "points[4].length" in problems
    assert "points[5].access: input registers are read-only" in problems
