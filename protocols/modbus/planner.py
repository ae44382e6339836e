"""The read planner: the points due in a poll as the fewest Modbus requests.

On a 9600-baud RS485 line one 125-register read costs about as much as eleven 2-register reads
(see docs/register-map.md), so points close together are read in one request:

    points   [A.][B....]   gap   [C.]          [D]
    blocks   |<----- one read (gap <= max_gap) --->|   |<- next read ->|

A block never spans more than 125 registers (2000 bits for coils and discrete inputs), nor more
than the meter has shown it can answer. When a meter answers a block with an exception or not at
all, the caller splits the block (:func:`split_block`) and tells :class:`ReadLimits`, which
remembers for that meter: an illegal-address exception over a block that bridged gaps means "do
not bridge gaps", anything else halves the largest block the meter is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from protocols.errors import RemoteProtocolError

from .profile import Point, Table
from .values import Value

__all__ = ["FailureKind", "ReadBlock", "ReadLimits", "decode_block", "plan_reads", "split_block"]


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: Table
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def bridges_gaps(self) -> bool:
        return sum(p.count for p in self.points) < self.count


class FailureKind(Enum):
    ILLEGAL_ADDRESS = "illegal_address"  # Modbus exception 02
    OTHER_EXCEPTION = "exception"
    TIMEOUT = "timeout"


@dataclass(slots=True)
class ReadLimits:
    """What the planner has learned about one meter (kept per meter by the caller)."""

    max_count: dict[Table, int] = field(default_factory=dict)
    bridge_gaps: bool = True

    def limit(self, table: Table, profile_limit: int = 125) -> int:
        return min(table.max_read, profile_limit, self.max_count.get(table, table.max_read))

    def on_failure(self, block: ReadBlock, kind: FailureKind) -> None:
        if kind is FailureKind.ILLEGAL_ADDRESS and block.bridges_gaps and self.bridge_gaps:
            self.bridge_gaps = False
            return
        largest_point = max(p.count for p in block.points)
        self.max_count[block.table] = max(largest_point, block.count // 2)


def plan_reads(
    points: Iterable[Point],
    *,
    max_gap: int = 8,
    profile_limit: int = 125,
    limits: ReadLimits | None = None,
) -> list[ReadBlock]:
    """The blocks that read every readable point in ``points``, fewest first-fit requests."""
    limits = limits or ReadLimits()
    gap = max_gap if limits.bridge_gaps else 0
    by_table: dict[Table, list[Point]] = {}
    for point in points:
        if point.access.readable:
            by_table.setdefault(point.table, []).append(point)
    blocks: list[ReadBlock] = []
    for table in Table:
        members = sorted(by_table.get(table, []), key=lambda p: p.address)
        limit = limits.limit(table, profile_limit)
        current: list[Point] = []
        start = end = 0
        for point in members:
            if current and point.address - end <= gap and max(end, point.end) - start <= limit:
                current.append(point)
                end = max(end, point.end)
                continue
            if current:
                blocks.append(ReadBlock(table, start, end - start, tuple(current)))
            current, start, end = [point], point.address, point.end
        if current:
            blocks.append(ReadBlock(table, start, end - start, tuple(current)))
    return blocks


def split_block(block: ReadBlock) -> tuple[ReadBlock, ReadBlock] | None:
    """The block's points in two halves, or None for a block of one point."""
    if len(block.points) < 2:
        return None
    middle = len(block.points) // 2
    halves = []
    for part in (block.points[:middle], block.points[middle:]):
        start = min(p.address for p in part)
        end = max(p.end for p in part)
        halves.append(ReadBlock(block.table, start, end - start, part))
    return halves[0], halves[1]


def decode_block(block: ReadBlock, data: list[int]) -> Mapping[str, Value]:
    """Each point's value from the registers (or bits, as 0/1) a block read returned."""
    if len(data) < block.count:
        raise RemoteProtocolError(
            f"read of {block.count} {block.table.value} values at {block.address} "
            f"returned {len(data)}"
        )
    values: dict[str, Value] = {}
    for point in block.points:
        offset = point.address - block.address
        values[point.name] = point.decode(data[offset : offset + point.count])
    return values
