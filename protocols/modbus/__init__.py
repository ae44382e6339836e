"""Modbus meters: profiles (register maps as data), typed register values, the read planner and the
pymodbus adapter (the only place pymodbus is used).

    >>> from protocols.modbus import parse_profile, plan_reads
    >>> profile = parse_profile({"name": "demo", "manufacturer": "x", "model": "y", "points": [
    ...     {"name": "energy", "table": "input", "address": 0, "type": "u32", "scale": "0.01"},
    ...     {"name": "power", "table": "input", "address": 4, "type": "s32"}]})
    >>> [(b.table.value, b.address, b.count) for b in plan_reads(profile.points)]
    [('input', 0, 6)]
"""

from __future__ import annotations

from .planner import FailureKind, ReadBlock, ReadLimits, decode_block, plan_reads, split_block
from .profile import Access, Point, Profile, ProfileError, Table, parse_profile
from .values import ByteOrder, DataType, Value, WordOrder, decode_registers, encode_registers

__all__ = [
    "Access",
    "ByteOrder",
    "DataType",
    "FailureKind",
    "Point",
    "Profile",
    "ProfileError",
    "ReadBlock",
    "ReadLimits",
    "Table",
    "Value",
    "WordOrder",
    "decode_block",
    "decode_registers",
    "encode_registers",
    "parse_profile",
    "plan_reads",
    "split_block",
]
