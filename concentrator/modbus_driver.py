"""What the concentrator does with one Modbus meter: read its points, push a token, switch its
relay, each verified by reading back, using the meter's profile.

Reads go through the planner (:mod:`protocols.modbus.planner`): the points due become the fewest
requests; when a block fails with an illegal-address exception, or times out while the meter is
otherwise answering, the block is split in two, retried, and the meter's limits are remembered, so
the next poll asks only what this meter can answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from protocols.modbus import (
    DataType,
    FailureKind,
    Point,
    Profile,
    ReadBlock,
    ReadLimits,
    Value,
    decode_block,
    encode_registers,
    parse_profile,
    plan_reads,
    split_block,
)
from protocols.modbus.adapter import Request, read_function

from .modbus_master import MeterException, MeterTimeout, ModbusMaster

__all__ = [
    "ModbusMeter",
    "TokenPushResult",
    "drn_text",
    "load_profiles",
    "push_token",
    "read_points",
    "switch_relay",
    "write_point",
]


def drn_text(value: object) -> str:
    """A DRN read from a register as the gateway writes meter ids (11 digits, 13 when longer)."""
    drn = int(str(value))
    return f"{drn:011d}" if drn < 10**11 else f"{drn:013d}"


def load_profiles(directory: Path) -> dict[str, Profile]:
    """Every profile (``*.yaml``) in ``directory``, by name."""
    profiles = {}
    for path in sorted(directory.glob("*.yaml")):
        profile = parse_profile(yaml.safe_load(path.read_text()), str(path))
        profiles[profile.name] = profile
    return profiles


@dataclass(slots=True)
class ModbusMeter:
    """A meter on a Modbus bus, as the concentrator knows it."""

    meter_id: str
    unit_id: int
    profile: Profile
    limits: ReadLimits = field(default_factory=ReadLimits)
    max_gap: int = 8


async def _read_block(master: ModbusMaster, meter: ModbusMeter, block: ReadBlock) -> list[int]:
    request = Request(meter.unit_id, read_function(block.table), block.address, block.count)
    response = await master.execute(request)
    return list(response.values)


async def read_points(
    master: ModbusMaster, meter: ModbusMeter, points: Iterable[Point]
) -> dict[str, Value]:
    """Every readable point's value. Raises the first error that splitting cannot get around."""
    values: dict[str, Value] = {}
    pending = list(plan_reads(points, max_gap=meter.max_gap,
                              profile_limit=meter.profile.max_registers_per_read,
                              limits=meter.limits))  # fmt: skip
    answered = False
    while pending:
        block = pending.pop(0)
        try:
            data = await _read_block(master, meter, block)
        except MeterException as exc:
            halves = split_block(block)
            if exc.code != 2 or halves is None:
                raise
            meter.limits.on_failure(block, FailureKind.ILLEGAL_ADDRESS)
            pending[:0] = list(halves)
            continue
        except MeterTimeout:
            halves = split_block(block)
            if not answered or halves is None:
                raise  # a silent meter: do not multiply the timeouts
            meter.limits.on_failure(block, FailureKind.TIMEOUT)
            pending[:0] = list(halves)
            continue
        answered = True
        values.update(decode_block(block, data))
    return values


@dataclass(frozen=True, slots=True)
class TokenPushResult:
    result_code: int
    last_tid: int
    credit: Value
    token_count: int


async def write_point(master: ModbusMaster, meter: ModbusMeter, name: str, value: Value) -> None:
    point = meter.profile.point(name)
    registers = encode_registers(value, point.data_type, length=point.length, scale=point.scale,
                                 word_order=point.word_order, byte_order=point.byte_order)  # fmt: skip
    if len(registers) == 1:
        await master.execute(Request(meter.unit_id, 6, point.address, values=tuple(registers)))
    else:
        await master.execute(Request(meter.unit_id, 16, point.address, values=tuple(registers)))


async def push_token(master: ModbusMaster, meter: ModbusMeter, digits: str) -> TokenPushResult:
    """Write the 20 digits to the token entry register, then read the meter's verdict back."""
    point = meter.profile.point("token_entry")
    registers = encode_registers(int(digits), DataType.BCD, length=point.length)
    await master.execute(Request(meter.unit_id, 16, point.address, values=tuple(registers)))
    names = ("token_result", "token_last_tid", "credit_remaining", "token_count")
    values = await read_points(master, meter, [meter.profile.point(n) for n in names])
    return TokenPushResult(
        result_code=int(values["token_result"]),
        last_tid=int(values["token_last_tid"]),
        credit=values["credit_remaining"],
        token_count=int(values["token_count"]),
    )


async def switch_relay(
    master: ModbusMaster, meter: ModbusMeter, connect: bool
) -> Mapping[str, Any]:
    """Command the relay and read its state back; the caller judges the outcome."""
    await write_point(master, meter, "relay_command", 2 if connect else 1)
    values = await read_points(master, meter, [meter.profile.point("relay_state")])
    return {"relay_state": values["relay_state"], "expected": 0 if connect else 1}


def tou_registers(weekday: list[list[int]], weekend: list[list[int]]) -> list[int]:
    """The 32 switch-point registers of the reference map (8 weekday, 8 weekend; unused 0xFFFF)."""
    registers: list[int] = []
    for points in (weekday, weekend):
        if not 1 <= len(points) <= 8:
            raise ValueError("a day type has 1..8 switch points")
        for start, band in points:
            if not (0 <= start < 1440 and 1 <= band <= 4):
                raise ValueError(
                    f"switch point ({start}, {band}) is not (minute 0..1439, band 1..4)"
                )
        padded = [list(p) for p in points] + [[0xFFFF, 0]] * (8 - len(points))
        registers += [value for point in padded for value in point]
    return registers


async def write_tou(master: ModbusMaster, meter: ModbusMeter, version: int, activation_s: int,
                    weekday: list[list[int]], weekend: list[list[int]]) -> Mapping[str, Any]:  # fmt: skip
    """Write a TOU table, commit it, and read back the version the meter now holds."""
    await write_point(master, meter, "tou_version", version)
    await write_point(master, meter, "tou_activation", activation_s)
    first = meter.profile.point("tou_weekday_0_start").address
    await master.execute(
        Request(meter.unit_id, 16, first, values=tuple(tou_registers(weekday, weekend)))
    )
    await write_point(master, meter, "tou_commit", 1)
    names = ("tou_version", "tou_active_version")
    values = await read_points(master, meter, [meter.profile.point(n) for n in names])
    return {"version": values["tou_version"], "active_version": values["tou_active_version"]}
