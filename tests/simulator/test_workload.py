"""The shared full-read workload: its float form is the same bytes on the wire as the Decimal one."""

from __future__ import annotations

import random
from decimal import Decimal

from protocols.link import Reading, ReadingBatch, Topic, decode_message, encode_message
from simulator.workload import FullRead, full_read_points, raw_value


def _batch(full_read: FullRead, step: int) -> bytes:
    rng = random.Random(7)
    at = 1_767_225_600.0 + step * 900
    readings = []
    for meter in range(40):
        values = full_read.values(meter, step, rng, at)
        clock = values["meter_clock"]
        assert isinstance(clock, int)
        readings.append(Reading(f"{47_000_000_000 + meter:011d}", at + meter * 0.5, values,
                                float(clock)))  # fmt: skip
    return encode_message(ReadingBatch("gw-1", step, at + 20, tuple(readings)))[1]


def test_float_values_encode_to_the_same_bytes_as_the_decimals_a_concentrator_sends() -> None:
    exact, floats = FullRead(exact=True), FullRead(exact=False, fast_draws=False)
    for step in (1, 2, 977):
        assert _batch(exact, step) == _batch(floats, step)
    decoded = decode_message(Topic.READINGS, _batch(floats, 3))
    assert isinstance(decoded, ReadingBatch)
    assert decoded.readings[5].values["voltage"] == Decimal(
        str(decoded.readings[5].values["voltage"])
    )


def test_compiled_values_are_raw_value_point_by_point_with_the_same_draws() -> None:
    points = full_read_points()
    assert len(points) == 25
    full_read = FullRead(points)
    a, b = random.Random(3), random.Random(3)
    for meter, step in ((0, 1), (17, 5), (3999, 25)):
        at = 1_767_225_600.0 + step * 900
        expected = {}
        for name, scale in points:
            raw = raw_value(name, meter, step, b, at)
            expected[name] = raw * scale if scale != 1 else raw
        assert full_read.values(meter, step, a, at) == expected
    assert a.random() == b.random()  # the same number of draws


def test_fast_draws_stay_in_the_ranges_of_raw_value() -> None:
    points = full_read_points()
    fast = FullRead(points, exact=True, fast_draws=True)
    ranges = {"power_active": (50, 6_000), "voltage": (2_250, 2_450), "current": (20, 2_600),
              "frequency": (4_990, 5_010), "power_factor": (850, 1_000),
              **{f"consumption_month_{n}": (15_000, 35_000) for n in range(4)}}  # fmt: skip
    rng, reference = random.Random(5), random.Random(5)
    seen: dict[str, set[int]] = {name: set() for name in ranges}
    for meter in range(2000):
        values = fast.values(meter, 4, rng, 1_767_229_200.0)
        for name, scale in points:
            value = values[name]
            assert isinstance(value, int | Decimal)
            raw = int(value / scale)
            if name in ranges:
                low, high = ranges[name]
                assert low <= raw < high, (name, raw)
                seen[name].add(raw)
            else:  # the rest do not draw: as raw_value gives them
                assert raw == raw_value(name, meter, 4, reference, 1_767_229_200.0), name
    for name, (low, high) in ranges.items():  # spread over the range, not a few values
        assert len(seen[name]) > min(100, (high - low) * 3 // 4), name
