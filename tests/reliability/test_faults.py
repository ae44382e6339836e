"""Faults, each with exact counts of readings lost and stored twice, and tokens applied twice.

One system (see ``system.py``) lives through the faults in turn: a broker restart, a PostgreSQL
restart, a head-end SIGKILL, a gateway SIGKILL. Each test marks the wire, does its damage while
readings keep flowing (and, where the head-end is hurt, while a token is on its way), waits until
everything published is stored, and records the figures in docs/reliability.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.system import FaultSystem, build
from tests.support.gateway import wait_for

pytestmark = pytest.mark.integration

# 1 minor unit buys 0.01 kWh at the flat tariff (100 minor per kWh); the token carries 0.1 kWh
VEND_MINOR = 500  # 5 kWh


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultSystem]:
    built = build(tmp_path_factory.mktemp("faults"))
    try:
        yield built
    finally:
        built.close()


def _flowing(system: FaultSystem, more: int = 10) -> None:
    _, before = system.wire.mark()
    wait_for(lambda: system.wire.mark()[1] >= before + more, 60, "readings flowing")


def _record(system: FaultSystem, since: tuple[int, int], figures: dict[str, object]) -> None:
    system.wait_converged()
    counts = system.counts(since)
    figures.update(counts)
    assert counts["readings"] > 0
    assert counts["lost"] == 0, counts
    assert counts["duplicated"] == 0, counts


def _token_once(system: FaultSystem, vend: dict[str, object], credit_before: float,
                figures: dict[str, object]) -> None:  # fmt: skip
    vend_id = vend["id"]
    assert isinstance(vend_id, int)
    delivery = system.delivery(vend_id)
    assert delivery["state"] == "applied", delivery
    applied = system.applied_transitions(delivery["command_id"])
    gained = round(system.credit_kwh(system.meters["still"]) - credit_before, 1)
    figures["tokens applied twice"] = applied - 1
    figures["credit gained kWh"] = gained
    assert applied == 1
    assert gained == VEND_MINOR / 100  # exactly once: the still meter uses no energy


@pytest.mark.reliability("fault", "Mosquitto restarted while the gateway publishes")
def test_broker_restart(system: FaultSystem, reliability: dict[str, object]) -> None:
    _flowing(system)
    since = system.wire.mark()
    system.broker.stop()
    time.sleep(5)  # the gateway goes on reading into its journal
    system.broker.start()
    _flowing(system)
    _record(system, since, reliability)


@pytest.mark.reliability("fault", "PostgreSQL restarted while readings and a token flow")
def test_postgres_restart(system: FaultSystem, reliability: dict[str, object]) -> None:
    _flowing(system)
    since = system.wire.mark()
    before = system.credit_kwh(system.meters["still"])
    vend = system.vend(VEND_MINOR)
    system.postgres.stop()
    time.sleep(6)  # the head-end cannot commit: it must not acknowledge either
    system.postgres.start()
    _flowing(system)
    _record(system, since, reliability)
    _token_once(system, vend, before, reliability)
    assert system.headend is not None and system.headend.poll() is None, "the head-end died"


@pytest.mark.reliability("fault", "head-end SIGKILL while readings and a token flow")
def test_headend_sigkill(system: FaultSystem, reliability: dict[str, object]) -> None:
    _flowing(system)
    since = system.wire.mark()
    before = system.credit_kwh(system.meters["still"])
    vend = system.vend(VEND_MINOR)
    system.kill_headend()
    time.sleep(4)  # the gateway goes on publishing; nobody acknowledges
    system.start_headend()
    _flowing(system)
    _record(system, since, reliability)
    _token_once(system, vend, before, reliability)


@pytest.mark.reliability("fault", "gateway SIGKILL mid-burst, restarted from its journal")
def test_gateway_sigkill(system: FaultSystem, reliability: dict[str, object]) -> None:
    _flowing(system)
    since = system.wire.mark()
    system.kill_gateway()
    time.sleep(2)
    system.start_gateway()
    _flowing(system)
    _record(system, since, reliability)


def test_the_system_is_whole_after_the_faults(system: FaultSystem, tmp_path: Path) -> None:
    """The gaps report agrees with the counts: the head-end sees no hole in the gateway's seqs."""
    gaps = system.api.get("/api/v1/gateways/gw-faults/gaps?since=0")["missing"]
    assert gaps == []
