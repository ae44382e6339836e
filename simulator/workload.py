"""What a concentrator reports in a full read of an ``amr-prepaid-v1`` meter: the shared workload of
the head-end benchmarks (``benchmarks/headend_ingest.py``) and of the load generator
(:mod:`simulator.loadgen`).

A full read is the 25 input-register values of the map a meter reports each poll: energy per band,
credit, instantaneous values, relay, status, clock, tariff band, TOU version, last token, four
months of history (identity points are read daily and are left out). Values are typed as the
concentrator sends them: a scaled point as ``Decimal`` (``exact=True``), the rest as ``int``.

``exact=False`` gives each scaled value as the float its Decimal becomes on the wire instead:
:func:`protocols.link.encode_message` writes a Decimal as ``float(value)``, and every scale of the
map is a power of ten, so ``raw / 10**k`` is that same float (both are the double nearest the exact
quotient). The payload is byte for byte the same, and cheaper to build; with it the random values
are drawn with ``rng.random()`` rather than ``rng.randrange`` (same ranges, other numbers), which
together cut the cost of a reading to about a third: what lets one load generator process feed
thousands of gateways.

Values are a pure function of (meter, step, time) plus a ``random.Random`` for the instantaneous
values and the history, drawn in the map's order, so a seeded run is the same every time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

import yaml

from protocols.link.messages import ReadingValue
from protocols.modbus import parse_profile
from protocols.modbus.profiles import PROFILE_DIR

__all__ = [
    "HISTORY_MONTHS",
    "POLL_INTERVAL_S",
    "PROFILE",
    "T0",
    "VALUE_GROUPS",
    "FullRead",
    "full_read_points",
    "raw_value",
]

PROFILE: Path = PROFILE_DIR / "amr-prepaid-v1.yaml"
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
POLL_INTERVAL_S = 900.0
VALUE_GROUPS = ("energy", "status", "instant", "token")  # and consumption_month_0..3
HISTORY_MONTHS = 4


def full_read_points() -> list[tuple[str, Decimal]]:
    """(name, scale) of the 25 values a full read of amr-prepaid-v1 reports, in the map's order."""
    profile = parse_profile(yaml.safe_load(PROFILE.read_text()), str(PROFILE))
    history = [f"consumption_month_{n}" for n in range(HISTORY_MONTHS)]
    return [
        (p.name, p.scale)
        for p in profile.points
        if p.table.name.lower().startswith("input")
        and (p.group in VALUE_GROUPS or p.name in history)
    ]


def raw_value(name: str, meter: int, step: int, rng: random.Random, at: float | None = None) -> int:
    """A plausible raw register value for point ``name`` of meter ``meter`` at poll ``step``.

    ``at`` is the poll's time (the meter's clock is a few seconds off it); by default
    ``T0 + step * POLL_INTERVAL_S``."""
    energy = 100_000 + meter * 37 + step * (5 + meter % 40)  # 0.01 kWh
    match name:
        case "energy_import_total":
            return energy
        case "energy_import_t1" | "energy_import_t2" | "energy_import_t3":
            return energy // 3
        case "energy_import_t4":
            return 0
        case "credit_remaining":
            return max(0, 9_000 - step * 5 - meter)
        case "emergency_credit_remaining":
            return 500
        case "power_active":
            return rng.randrange(50, 6_000)
        case "voltage":
            return rng.randrange(2_250, 2_450)
        case "current":
            return rng.randrange(20, 2_600)
        case "frequency":
            return rng.randrange(4_990, 5_010)
        case "power_factor":
            return rng.randrange(850, 1_000)
        case "meter_clock":
            return int(T0 + step * POLL_INTERVAL_S if at is None else at) - meter % 7
        case "active_tariff_band":
            return 1 + step % 3
        case "tou_active_version" | "token_result":
            return 1
        case "token_last_tid":
            return 17_000_000 + meter
        case "token_last_amount":
            return 5_000
        case "token_count":
            return 3 + meter % 20
        case _ if name.startswith("consumption_month_"):
            return 15_000 + rng.randrange(0, 20_000)
        case _:
            return 0  # relay closed, no status flags


_RawFn = Callable[[int, int, random.Random, float], int]


def _compiled(name: str, fast_draws: bool = False) -> _RawFn:
    """:func:`raw_value` for one point, without matching its name on every call (the same values
    and the same draws from ``rng``, in the same order).

    ``fast_draws``: a random value is ``low + int(rng.random() * span)`` instead of
    ``rng.randrange(low, high)`` (pure Python, most of the cost of a reading): the same range and
    a uniform enough draw, but not the same numbers."""
    if name == "energy_import_total":
        return lambda m, s, rng, at: 100_000 + m * 37 + s * (5 + m % 40)
    if name in ("energy_import_t1", "energy_import_t2", "energy_import_t3"):
        return lambda m, s, rng, at: (100_000 + m * 37 + s * (5 + m % 40)) // 3
    if name == "credit_remaining":
        return lambda m, s, rng, at: max(0, 9_000 - s * 5 - m)
    if name == "meter_clock":
        return lambda m, s, rng, at: int(at) - m % 7
    if name == "active_tariff_band":
        return lambda m, s, rng, at: 1 + s % 3
    if name == "token_last_tid":
        return lambda m, s, rng, at: 17_000_000 + m
    if name == "token_count":
        return lambda m, s, rng, at: 3 + m % 20
    bounds = {"power_active": (50, 6_000), "voltage": (2_250, 2_450), "current": (20, 2_600),
              "frequency": (4_990, 5_010), "power_factor": (850, 1_000)}  # fmt: skip
    if name.startswith("consumption_month_"):
        bounds[name] = (15_000, 35_000)
    if name in bounds:
        low, high = bounds[name]
        if fast_draws:
            span = high - low
            return lambda m, s, rng, at: low + int(rng.random() * span)
        if name.startswith("consumption_month_"):
            return lambda m, s, rng, at: 15_000 + rng.randrange(0, 20_000)
        return lambda m, s, rng, at: rng.randrange(low, high)
    constant = raw_value(name, 0, 0, random.Random(0))  # no draw: the remaining points are fixed
    return lambda m, s, rng, at: constant


class FullRead:
    """Builds the values of a full read, point by point in the map's order.

    ``exact=True``: scaled values as Decimal (as the concentrator's driver decodes them);
    ``exact=False``: as the floats those Decimals are written as (see the module's docstring).
    ``fast_draws`` (default: ``not exact``): see :func:`_compiled`; the load generator's choice,
    while ``benchmarks/headend_ingest.py`` keeps the draws of :func:`raw_value`."""

    def __init__(self, points: Sequence[tuple[str, Decimal]] | None = None,
                 exact: bool = True, fast_draws: bool | None = None) -> None:  # fmt: skip
        self.points = list(full_read_points() if points is None else points)
        self.names = tuple(name for name, _ in self.points)
        self.exact = exact
        self.fast_draws = not exact if fast_draws is None else fast_draws
        self._makers: list[tuple[str, _RawFn, Decimal | None, float]] = []
        for name, scale in self.points:
            exponent = scale.as_tuple().exponent
            if scale != 1 and (not isinstance(exponent, int) or scale * 10**-exponent != 1):
                raise ValueError(f"{name}: scale {scale} is not a power of ten")
            divisor = float(1 / scale) if scale != 1 else 1.0
            make = _compiled(name, self.fast_draws)
            self._makers.append((name, make, scale if scale != 1 else None, divisor))

    def values(self, meter: int, step: int, rng: random.Random,
               at: float | None = None) -> dict[str, ReadingValue]:  # fmt: skip
        """The values of meter ``meter`` (an index, not an id) at poll ``step`` made at ``at``
        (default ``T0 + step * POLL_INTERVAL_S``)."""
        when = T0 + step * POLL_INTERVAL_S if at is None else at
        values: dict[str, ReadingValue] = {}
        if self.exact:
            for name, make, scale, _ in self._makers:
                raw = make(meter, step, rng, when)
                values[name] = raw * scale if scale is not None else raw
        else:
            for name, make, scale, divisor in self._makers:
                raw = make(meter, step, rng, when)
                values[name] = raw / divisor if scale is not None else raw
        return values
