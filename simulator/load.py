"""A household's daily load: what a simulated meter measures.

The profile is a base load with a morning and an evening peak (Gaussian bumps around 07:00 and
19:30 local time), scaled per meter and multiplied by noise drawn from the meter's own random
generator, so a fleet is varied but every run with the same seed is the same.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["LoadProfile"]

_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class LoadProfile:
    base_w: float = 150.0
    peak_w: float = 1800.0
    noise: float = 0.15
    morning_hour: float = 7.0
    evening_hour: float = 19.5

    def expected_w(self, local_s: float) -> float:
        """The noiseless power at ``local_s`` seconds after a local midnight (any day)."""
        hour = (local_s % _DAY_S) / 3600.0

        def bump(centre: float, width: float) -> float:
            distance = min(abs(hour - centre), 24 - abs(hour - centre))
            return math.exp(-0.5 * (distance / width) ** 2)

        shape = 0.45 * bump(self.morning_hour, 1.2) + 1.0 * bump(self.evening_hour, 1.8)
        return self.base_w + self.peak_w * shape

    def sample_w(self, local_s: float, rng: random.Random) -> float:
        """The power at ``local_s`` with noise (never negative)."""
        return max(0.0, self.expected_w(local_s) * rng.gauss(1.0, self.noise))
