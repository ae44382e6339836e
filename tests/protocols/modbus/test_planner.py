"""The read planner: fewest requests, never past the limits, and learning a meter's limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.modbus import (
    FailureKind,
    Profile,
    ReadLimits,
    Table,
    decode_block,
    parse_profile,
    plan_reads,
    split_block,
)


def profile(points: list[tuple[str, int, str]], table: str = "input") -> Profile:
    return parse_profile(
        {
            "name": "t",
            "manufacturer": "t",
            "model": "t",
            "points": [
                {"name": n, "table": table, "address": a, "type": t}
                | ({"length": 4} if t in ("string", "bcd") else {})
                for n, a, t in points
            ],
        }
    )


def test_close_points_share_a_request_and_far_ones_do_not() -> None:
    p = profile([("a", 0, "u32"), ("b", 2, "u16"), ("c", 10, "u16"), ("d", 100, "u16")])
    blocks = plan_reads(p.points, max_gap=8)
    assert [(b.address, b.count, [x.name for x in b.points]) for b in blocks] == [
        (0, 11, ["a", "b", "c"]),
        (100, 1, ["d"]),
    ]
    assert [(b.address, b.count) for b in plan_reads(p.points, max_gap=0)] == [
        (0, 3),
        (10, 1),
        (100, 1),
    ]


def test_tables_are_planned_separately_and_writes_are_skipped() -> None:
    p = parse_profile({"name": "t", "manufacturer": "t", "model": "t", "points": [
        {"name": "h", "table": "holding", "address": 0, "type": "u16"},
        {"name": "i", "table": "input", "address": 0, "type": "u16"},
        {"name": "w", "table": "holding", "address": 1, "type": "u16", "access": "w"},
        {"name": "c", "table": "coil", "address": 0, "type": "bool"}]})  # fmt: skip
    blocks = plan_reads(p.points)
    assert {(b.table, b.count) for b in blocks} == {
        (Table.HOLDING, 1),
        (Table.INPUT, 1),
        (Table.COIL, 1),
    }


@given(
    st.lists(st.integers(0, 3000), min_size=1, max_size=120, unique=True),
    st.integers(0, 40),
    st.integers(2, 125),
)
def test_blocks_cover_every_point_within_the_limits(
    addresses: list[int], gap: int, limit: int
) -> None:
    p = profile([(f"p{a}", a * 2, "u32") for a in addresses])
    blocks = plan_reads(p.points, max_gap=gap, profile_limit=limit)
    covered = [x.name for b in blocks for x in b.points]
    assert sorted(covered) == sorted(x.name for x in p.points)
    for block in blocks:
        assert block.count <= max(limit, 2)
        assert all(
            block.address <= x.address and x.end <= block.address + block.count
            for x in block.points
        )


def test_failures_split_and_are_remembered_per_meter() -> None:
    p = profile([(f"p{i}", i * 2, "u32") for i in range(60)])  # 120 registers, one block
    limits = ReadLimits()
    (block,) = plan_reads(p.points, limits=limits)
    assert block.count == 120
    halves = split_block(block)
    assert halves is not None and [h.count for h in halves] == [60, 60]
    limits.on_failure(block, FailureKind.TIMEOUT)
    assert [b.count for b in plan_reads(p.points, limits=limits)] == [60, 60]
    assert split_block(halves[0]) is not None
    single = plan_reads(profile([("x", 0, "u16")]).points)[0]
    assert split_block(single) is None


def test_an_illegal_address_in_a_gap_stops_bridging_gaps() -> None:
    p = profile([("a", 0, "u16"), ("b", 5, "u16")])
    limits = ReadLimits()
    (block,) = plan_reads(p.points, limits=limits)
    limits.on_failure(block, FailureKind.ILLEGAL_ADDRESS)
    assert [(b.address, b.count) for b in plan_reads(p.points, limits=limits)] == [(0, 1), (5, 1)]


def test_decoding_a_block() -> None:
    p = profile([("energy", 0, "u32"), ("flags", 3, "u16"), ("name", 4, "string")])
    (block,) = plan_reads(p.points)
    values = decode_block(block, [0x0001, 0x0002, 0xDEAD, 0x0005, 0x4D45, 0x5445, 0x5200, 0])
    assert values == {"energy": 65538, "flags": 5, "name": "METER"}
