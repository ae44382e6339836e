"""The virtual meter's behaviour, as a field technician or an operator would observe it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from protocols.modbus import (
    DataType,
    Table,
    decode_block,
    encode_registers,
    parse_profile,
    plan_reads,
)
from protocols.sts import (
    BaseDate,
    CreditType,
    DecoderKeyInputs,
    EncryptionAlgorithm,
    KeyType,
    MeterPan,
    SetMaximumPowerLimit,
    TokenCoder,
    TokenResult,
    TransferCredit,
    VendingKey,
    derive_decoder_key,
    tid_of,
)
from simulator.load import LoadProfile
from simulator.meter import MeterIdentity, RelayState, VirtualMeter, epoch_seconds
from simulator.registers import ILLEGAL_ADDRESS, ILLEGAL_VALUE, ModbusException, RegisterMap

ROOT = Path(__file__).resolve().parents[2]
PROFILE = parse_profile(yaml.safe_load((ROOT / "config/profiles/amr-prepaid-v1.yaml").read_text()))
VK = VendingKey.from_hex("ABABABABABABABAB")
INPUTS = DecoderKeyInputs(pan=MeterPan.from_drn("12000010012"), supply_group_code="123456",
                          base_date=BaseDate.Y2014)  # fmt: skip
CODER = TokenCoder.derive(VK, INPUTS)
# Tuesday 2025-03-04 10:00 UTC: outside the default friendly hours (18:00-06:00, weekends)
START = epoch_seconds(datetime(2025, 3, 4, 10, 0, tzinfo=UTC))


def meter(credit_kwh: float = 40.0, load: LoadProfile | None = None) -> VirtualMeter:
    identity = MeterIdentity("12000010012", 12, "123456", 1, 1, KeyType.DUTK, BaseDate.Y2014,
                             EncryptionAlgorithm.STA)  # fmt: skip
    return VirtualMeter(identity, derive_decoder_key(VK, INPUTS), load=load or LoadProfile(),
                        seed=7, credit_wh=credit_kwh * 1000, now_s=START)  # fmt: skip


def read_all(m: VirtualMeter) -> dict[str, object]:
    registers = RegisterMap(PROFILE)
    values: dict[str, object] = {}
    for block in plan_reads(PROFILE.points):
        values.update(
            decode_block(block, registers.read(m, block.table, block.address, block.count))
        )
    return values


def token(tenths: int, minutes: int = 0) -> list[int]:
    tid = tid_of(datetime(2025, 3, 4, 10, 0), 2014) + minutes
    digits = CODER.encode(TransferCredit(CreditType.ELECTRICITY, tenths, tid, rnd=3)).digits
    return encode_registers(int(digits), DataType.BCD, length=5)


def test_consumption_moves_energy_and_credit_together() -> None:
    m = meter()
    m.advance(START + 6 * 3600)
    values = read_all(m)
    energy = values["energy_import_total"]
    assert isinstance(energy, Decimal) and energy > 0
    assert values["energy_import_t1"] == energy  # default TOU table: one band all day
    credit = values["credit_remaining"]
    assert isinstance(credit, Decimal)
    assert abs(Decimal("40.00") - credit - energy) <= Decimal("0.02")
    assert values["consumption_month_0"] == energy
    assert values["meter_clock"] == int(START + 6 * 3600)


def test_credit_runs_out_then_a_token_over_modbus_restores_supply() -> None:
    m = meter(credit_kwh=0.5, load=LoadProfile(base_w=2000, peak_w=0, noise=0))
    registers = RegisterMap(PROFILE)
    m.advance(START + 3600)  # 2 kWh used: credit and 5 kWh emergency credit...
    assert "emergency_credit_active" in m.status_flags() and m.relay == RelayState.CLOSED
    m.advance(START + 4 * 3600)
    assert {"credit_exhausted", "low_credit"} <= m.status_flags()
    assert m.relay == RelayState.OPEN
    registers.write(m, 0, token(200))  # 20 kWh
    assert read_all(m)["token_result"] == TokenResult.ACCEPT
    assert m.relay == RelayState.CLOSED
    assert read_all(m)["token_last_amount"] == Decimal("20.00")
    registers.write(m, 0, token(200))
    assert read_all(m)["token_result"] == TokenResult.USED
    assert read_all(m)["token_count"] == 1


def test_friendly_hours_keep_the_supply_on() -> None:
    m = meter(credit_kwh=-10.0)  # far past the emergency credit
    m.advance(START + 60)
    assert m.relay == RelayState.OPEN
    evening = epoch_seconds(datetime(2025, 3, 4, 19, 0, tzinfo=UTC))
    m.set_clock(evening)
    assert m.relay == RelayState.CLOSED and "friendly_hours_active" in m.status_flags()


def test_overload_trips_the_relay_for_a_minute() -> None:
    m = meter(load=LoadProfile(base_w=3000, peak_w=0, noise=0))
    limit = CODER.encode(
        SetMaximumPowerLimit(tid=tid_of(datetime(2025, 3, 4, 9), 2014), rnd=1, watts=2500)
    )
    assert m.enter_token(limit.digits).result is TokenResult.ACCEPT
    m.advance(START + 30)
    assert m.relay == RelayState.OPEN and "over_power" in m.status_flags()
    assert read_all(m)["max_power_limit"] == 2500


def test_tou_table_written_over_modbus_drives_the_band_registers() -> None:
    m = meter(load=LoadProfile(base_w=1000, peak_w=0, noise=0))
    registers = RegisterMap(PROFILE)
    p = PROFILE.point
    registers.write(m, p("tou_version").address, [7])
    # weekdays: band 2 from 00:00, band 3 from 09:00, band 1 from 17:00
    base = p("tou_weekday_0_start").address
    registers.write(m, base, [0, 2, 540, 3, 1020, 1])
    registers.write(m, p("tou_commit").address, [1])
    assert m.tou.version == 7 and read_all(m)["tou_active_version"] == 7
    m.advance(START + 3600)  # 10:00-11:00 on a Tuesday: band 3
    values = read_all(m)
    assert values["active_tariff_band"] == 3
    assert values["energy_import_t3"] == values["energy_import_total"] == Decimal("1.00")
    registers.write(m, base, [600, 2, 540, 3])  # out of order
    with pytest.raises(ModbusException) as refused:
        registers.write(m, p("tou_commit").address, [1])
    assert refused.value.code == ILLEGAL_VALUE
    assert m.tou.version == 7


def test_addresses_outside_the_map_and_partial_writes_are_refused() -> None:
    m = meter()
    registers = RegisterMap(PROFILE)
    with pytest.raises(ModbusException) as past_end:
        registers.read(m, Table.INPUT, 80, 10)
    assert past_end.value.code == ILLEGAL_ADDRESS
    with pytest.raises(ModbusException) as partial:
        registers.write(m, PROFILE.point("max_power_limit").address, [5])  # half of a u32
    assert partial.value.code == ILLEGAL_ADDRESS
    with pytest.raises(ModbusException) as read_only:
        registers.write(m, PROFILE.point("clock_set").address - 1, [0, 0, 0])
    assert read_only.value.code == ILLEGAL_ADDRESS


def test_setting_the_clock_moves_it_for_good_without_counting_energy() -> None:
    m = meter(load=LoadProfile(base_w=1000, peak_w=0, noise=0))
    m.advance(START + 600)
    energy = m.energy_wh
    m.set_clock(START + 600 + 3600)  # an hour ahead
    m.advance(START + 660)  # one simulated minute later
    assert m.now_s == START + 600 + 3600 + 60
    assert abs(m.energy_wh - energy - 1000 / 60) < 1e-6  # only the minute that passed
    m.set_clock(START)  # back again
    m.advance(START + 720)
    assert m.now_s == pytest.approx(START + 60)
    assert abs(m.energy_wh - energy - 2 * 1000 / 60) < 1e-6  # nothing counted twice
