"""A gateway whose clock is three days ahead of the head-end's (an RTC set wrong on site).

The gateway runs under libfaketime (``FAKETIME=+3d``; its monotonic clock left alone so the
reactor's timers keep their pace). Readings carry the gateway's clock and must all be stored
once. A token's ``not_after`` is the head-end's time (now + 24 h): judged on the gateway's own
clock it would already have passed, so the gateway judges it on the head-end's clock, learnt from
the time in each ack, and the token is applied once. The gateway reports the offset it learnt in
its health, where an operator sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.system import GW, FaultSystem, build
from tests.support.debian import ensure_commands
from tests.support.gateway import wait_for

pytestmark = pytest.mark.integration

SKEW_S = 3 * 86_400
VEND_MINOR = 500  # 5 kWh at the flat tariff


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultSystem]:
    ensure_commands("faketime")
    library = next(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
    # preloaded into the gateway itself (the faketime wrapper would put a process between the
    # test and the gateway, which a SIGKILL of the wrapper would leave running)
    prefix = ["env", f"LD_PRELOAD={library}", f"FAKETIME=+{SKEW_S // 86_400}d",
              "FAKETIME_DONT_FAKE_MONOTONIC=1"]  # fmt: skip
    built = build(tmp_path_factory.mktemp("clock-skew"), gateway_prefix=prefix)
    try:
        yield built
    finally:
        built.close()


@pytest.mark.reliability("fault", "gateway clock 3 days ahead of the head-end")
def test_a_gateway_clock_days_ahead_loses_nothing_and_tokens_still_apply(
    system: FaultSystem, reliability: dict[str, object]
) -> None:
    _, before = system.wire.mark()
    wait_for(lambda: system.wire.mark()[1] >= before + 10, 60, "readings flowing")
    since = system.wire.mark()

    def offset() -> float | None:
        health = system.api.get(f"/api/v1/gateways/{GW}")["health"]
        value = health.get("clock.headend_offset_s")
        return None if value is None else float(value)

    wait_for(lambda: (offset() or 0) < -SKEW_S + 60, 60, "the gateway learning its offset")
    credit = system.credit_kwh(system.meters["still"])
    vend = system.vend(VEND_MINOR)
    delivery = system.delivery(vend["id"])
    wait_for(lambda: system.wire.mark()[1] >= since[1] + 10, 60, "more readings")
    system.wait_converged()
    counts = system.counts(since)
    _, readings = system.wire.snapshot()
    stamped_ahead = min(t for _, t in readings) - system.query("SELECT min(received_at) FROM "
                                                               "uplink_seen")[0][0]  # fmt: skip
    reliability.update(counts)
    reliability["gateway clock ahead s"] = round(stamped_ahead)
    reliability["offset reported s"] = round(offset() or 0)
    reliability["token"] = delivery["state"]
    assert counts["lost"] == 0 and counts["duplicated"] == 0, counts
    assert stamped_ahead > SKEW_S - 120  # the readings really carry the skewed clock
    assert delivery["state"] == "applied", delivery
    assert system.applied_transitions(delivery["command_id"]) == 1
    assert round(system.credit_kwh(system.meters["still"]) - credit, 1) == VEND_MINOR / 100
