"""A meter's time-of-use table: which tariff band applies at a local time.

The reference register map carries two day types (weekday, weekend), each with up to eight switch
points ``(start minute of the day, band 1..4)``; unused points start at 0xFFFF. A band runs from its
switch point to the next; before the first switch point of a day the last band of that day applies
(the schedule wraps around midnight).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNUSED", "TouError", "TouTable"]

UNUSED = 0xFFFF
MAX_POINTS = 8
MAX_BAND = 4


class TouError(ValueError):
    """A TOU table a meter refuses (the Modbus write gets 'illegal data value')."""


@dataclass(frozen=True, slots=True)
class TouTable:
    version: int = 0
    weekday: tuple[tuple[int, int], ...] = ((0, 1),)
    weekend: tuple[tuple[int, int], ...] = ((0, 1),)
    activation_s: int = 0

    def __post_init__(self) -> None:
        for name, points in (("weekday", self.weekday), ("weekend", self.weekend)):
            if not 1 <= len(points) <= MAX_POINTS:
                raise TouError(f"{name}: 1..{MAX_POINTS} switch points needed")
            starts = [start for start, _ in points]
            if starts != sorted(set(starts)):
                raise TouError(f"{name}: switch points must start in increasing order")
            for start, band in points:
                if not 0 <= start < 1440:
                    raise TouError(f"{name}: start minute {start} is not in 0..1439")
                if not 1 <= band <= MAX_BAND:
                    raise TouError(f"{name}: band {band} is not in 1..{MAX_BAND}")

    @classmethod
    def from_registers(cls, version: int, activation_s: int, weekday: list[int],
                       weekend: list[int]) -> TouTable:  # fmt: skip
        """From the (start, band) register pairs of the reference map; unused points dropped."""

        def points(raw: list[int]) -> tuple[tuple[int, int], ...]:
            pairs = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
            return tuple(p for p in pairs if p[0] != UNUSED)

        return cls(version, points(weekday), points(weekend), activation_s)

    def band_at(self, local_s: float) -> int:
        """The band in force at ``local_s`` seconds since 1970 in local time."""
        day = int(local_s // 86_400)
        weekday_index = (day + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
        points = self.weekend if weekday_index >= 5 else self.weekday
        minute = int(local_s % 86_400) // 60
        band = points[-1][1]
        for start, point_band in points:
            if start <= minute:
                band = point_band
        return band
