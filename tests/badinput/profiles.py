"""Hypothesis settings profiles of the bad-input suite, and the example counts they give.

The counts keep the whole folder near a minute on CI's two cores. ``AMR_BADINPUT_SCALE``
multiplies every count for a longer local run (``AMR_BADINPUT_SCALE=20 pytest tests/badinput``);
the reliability table records the counts each test ran with.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["CODEC", "HANDLER", "POSTGRES", "examples"]

SCALE = float(os.environ.get("AMR_BADINPUT_SCALE", "1"))


def examples(count: int) -> int:
    return max(1, round(count * SCALE))


# a handler example commits transactions: its time depends on the disk, not on the code
_BASE = settings(deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
settings.register_profile("badinput-codec", _BASE, max_examples=examples(300))
settings.register_profile("badinput-handler", _BASE, max_examples=examples(60))
settings.register_profile("badinput-postgres", _BASE, max_examples=examples(10))

CODEC = settings.get_profile("badinput-codec")
HANDLER = settings.get_profile("badinput-handler")
POSTGRES = settings.get_profile("badinput-postgres")
