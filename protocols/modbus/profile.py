"""Meter profiles: a meter model's Modbus register map as data.

A profile is a YAML file in ``config/profiles/`` (parsed by the caller; this module takes the
mapping), for example::

    name: amr-prepaid-v1
    manufacturer: AMR reference design
    model: single-phase STS prepaid meter
    word_order: big            # defaults for every point
    byte_order: big
    max_registers_per_read: 125
    points:
      - {name: energy_import_total, table: input, address: 20, type: u32, scale: 0.01, unit: kWh}
      - {name: status_flags, table: input, address: 41, type: u16,
         flags: {0: low_credit, 1: credit_exhausted, 2: tamper}}

Each point has a ``name`` (unique), a ``table`` (holding, input, coil, discrete), an ``address``
(0-based protocol address), a ``type`` (see :mod:`protocols.modbus.values`), ``length`` for bcd and
string, ``scale``, ``unit``, ``access`` (r, w, rw), ``word_order``/``byte_order``, an optional
``group`` (the poll group it belongs to), ``flags`` (bit -> name, for status words) and ``values``
(raw -> label, for enumerations), and a ``description``.

Every problem in a profile is reported at once, each with its path
(``points[3].address: must be 0..65535``), before anything uses the profile.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from protocols.errors import LocalProtocolError

from .values import ByteOrder, DataType, Value, WordOrder, decode_registers, register_count

__all__ = ["Access", "Point", "Profile", "ProfileError", "Table", "parse_profile"]


class Table(Enum):
    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def writable(self) -> bool:
        return self in (Table.HOLDING, Table.COIL)

    @property
    def max_read(self) -> int:
        """Modbus Application Protocol V1.1b3 6.1-6.4: 2000 bits or 125 registers per read."""
        return 2000 if self.is_bits else 125


class Access(Enum):
    READ = "r"
    WRITE = "w"
    READ_WRITE = "rw"

    @property
    def readable(self) -> bool:
        return self is not Access.WRITE

    @property
    def writable(self) -> bool:
        return self is not Access.READ


class ProfileError(LocalProtocolError):
    """A profile that cannot be used; ``problems`` lists every problem with its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid meter profile:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    table: Table
    address: int
    data_type: DataType
    length: int | None = None
    scale: Decimal = Decimal(1)
    unit: str | None = None
    access: Access = Access.READ
    word_order: WordOrder = WordOrder.BIG
    byte_order: ByteOrder = ByteOrder.BIG
    group: str | None = None
    flags: Mapping[int, str] = field(default_factory=dict)
    values: Mapping[int, str] = field(default_factory=dict)
    description: str = ""

    @property
    def count(self) -> int:
        """Registers (or bits) the point occupies."""
        return 1 if self.table.is_bits else register_count(self.data_type, self.length)

    @property
    def end(self) -> int:
        return self.address + self.count

    def decode(self, registers: list[int]) -> Value:
        return decode_registers(
            registers,
            self.data_type,
            scale=self.scale,
            word_order=self.word_order,
            byte_order=self.byte_order,
        )

    def flag_names(self, raw: int) -> frozenset[str]:
        """The names of the flags set in a status word."""
        return frozenset(name for bit, name in self.flags.items() if raw >> bit & 1)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    manufacturer: str
    model: str
    points: tuple[Point, ...]
    max_registers_per_read: int = 125
    description: str = ""

    def point(self, name: str) -> Point:
        for point in self.points:
            if point.name == name:
                return point
        raise KeyError(f"profile {self.name} has no point {name!r}")

    def group(self, name: str) -> tuple[Point, ...]:
        return tuple(p for p in self.points if p.group == name)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(sorted({p.group for p in self.points if p.group}))


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_POINT_KEYS = {
    "name", "table", "address", "type", "length", "scale", "unit", "access", "word_order",
    "byte_order", "group", "flags", "values", "description",
}  # fmt: skip
_PROFILE_KEYS = {
    "name", "manufacturer", "model", "description", "word_order", "byte_order",
    "max_registers_per_read", "points",
}  # fmt: skip


def _enum(kind: type[Enum], value: object, path: str, problems: list[str]) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        problems.append(f"{path}: must be one of {allowed}, got {value!r}")
        return None


def _int_map(value: object, path: str, problems: list[str], limit: int) -> dict[int, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{path}: must be a mapping of numbers to names")
        return {}
    out: dict[int, str] = {}
    for key, name in value.items():
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < limit:
            problems.append(f"{path}.{key}: must be a number 0..{limit - 1}")
        elif not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{path}.{key}: name must be lower_snake_case, got {name!r}")
        else:
            out[key] = name
    return out


def _point(
    raw: object, path: str, defaults: Mapping[str, Any], problems: list[str]
) -> Point | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{path}: must be a mapping")
        return None
    before = len(problems)
    for key in sorted(set(raw) - _POINT_KEYS):
        problems.append(f"{path}.{key}: unknown field")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{path}.name: must be lower_snake_case, got {name!r}")
    table = _enum(Table, raw.get("table"), f"{path}.table", problems)
    data_type = _enum(DataType, raw.get("type"), f"{path}.type", problems)
    address = raw.get("address")
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFFFF:
        problems.append(f"{path}.address: must be 0..65535, got {address!r}")
    length = raw.get("length")
    if data_type in (DataType.STRING, DataType.BCD):
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 125:
            problems.append(f"{path}.length: {data_type.value} needs a length of 1..125 registers")
    elif length is not None:
        problems.append(f"{path}.length: only string and bcd points have a length")
    if (
        table is not None
        and data_type is not None
        and table.is_bits != (data_type is DataType.BOOL)
    ):
        problems.append(f"{path}.type: coils and discrete inputs are bool, registers are not")
    try:
        scale = Decimal(str(raw.get("scale", 1)))
        if not scale.is_finite() or scale <= 0:
            raise InvalidOperation
    except InvalidOperation:
        problems.append(f"{path}.scale: must be a positive number, got {raw.get('scale')!r}")
        scale = Decimal(1)
    access = _enum(Access, raw.get("access", "r"), f"{path}.access", problems)
    if table is not None and access is not None and access.writable and not table.writable:
        problems.append(f"{path}.access: {table.value} registers are read-only")
    word_order = _enum(
        WordOrder, raw.get("word_order", defaults["word_order"]), f"{path}.word_order", problems
    )
    byte_order = _enum(
        ByteOrder, raw.get("byte_order", defaults["byte_order"]), f"{path}.byte_order", problems
    )
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not _NAME.match(group)):
        problems.append(f"{path}.group: must be lower_snake_case, got {group!r}")
    flags = _int_map(raw.get("flags"), f"{path}.flags", problems, 64)
    values = _int_map(raw.get("values"), f"{path}.values", problems, 1 << 32)
    if isinstance(address, int) and data_type is not None and table is not None:
        count = (
            1
            if table.is_bits
            else register_count(data_type, length if isinstance(length, int) and length > 0 else 1)
        )
        if address + count > 0x10000:
            problems.append(f"{path}.address: the point runs past register 65535")
    if len(problems) > before:
        return None
    assert isinstance(name, str) and isinstance(address, int)
    return Point(
        name=name,
        table=table,
        address=address,
        data_type=data_type,
        length=length if isinstance(length, int) else None,
        scale=scale,
        unit=raw.get("unit"),
        access=access,
        word_order=word_order,
        byte_order=byte_order,
        group=group,
        flags=flags,
        values=values,
        description=str(raw.get("description", "")),
    )


def parse_profile(raw: object, source: str = "profile") -> Profile:
    """A validated :class:`Profile` from a parsed YAML mapping; ProfileError lists every problem."""
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise ProfileError([f"{source}: must be a mapping"])
    for key in sorted(set(raw) - _PROFILE_KEYS):
        problems.append(f"{key}: unknown field")
    for key in ("name", "manufacturer", "model"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            problems.append(f"{key}: required text")
    defaults = {
        "word_order": raw.get("word_order", "big"),
        "byte_order": raw.get("byte_order", "big"),
    }
    limit = raw.get("max_registers_per_read", 125)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 125:
        problems.append(f"max_registers_per_read: must be 1..125, got {limit!r}")
        limit = 125
    raw_points = raw.get("points")
    points: list[Point] = []
    if not isinstance(raw_points, list) or not raw_points:
        problems.append("points: must be a non-empty list")
    else:
        for index, item in enumerate(raw_points):
            point = _point(item, f"points[{index}]", defaults, problems)
            if point is not None:
                points.append(point)
    seen: dict[str, int] = {}
    for index, point in enumerate(points):
        if point.name in seen:
            problems.append(f"points[{index}].name: {point.name!r} is already used")
        seen[point.name] = index
    by_table: dict[Table, list[Point]] = {}
    for point in points:
        by_table.setdefault(point.table, []).append(point)
    for table, members in by_table.items():
        members.sort(key=lambda p: p.address)
        for before, after in itertools.pairwise(members):
            if after.address < before.end:
                problems.append(
                    f"points: {after.name} overlaps {before.name} in the {table.value} table"
                )
    if problems:
        raise ProfileError(problems)
    return Profile(
        name=str(raw["name"]),
        manufacturer=str(raw["manufacturer"]),
        model=str(raw["model"]),
        points=tuple(points),
        max_registers_per_read=limit,
        description=str(raw.get("description", "")),
    )
