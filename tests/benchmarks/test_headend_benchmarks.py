"""The head-end benchmarks run end to end and report every figure from a valid run.

Ingest runs the real Ingest against SQLite and a real PostgreSQL next to raw inserts of the same
rows; vending runs ``amr headend`` (and for the push latency Mosquitto, ``amr sim`` and ``amr
concentrator``). Their speed is not asserted here: timing thresholds do not belong in tests, and
``--check`` reports them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_quick(module: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    assert report["benchmark"] == module
    assert report["quick"] is True
    return report


def positive(report: dict[str, Any], *names: str) -> None:
    for name in names:
        value = report[name]
        assert isinstance(value, int | float) and not isinstance(value, bool), (name, value)
        assert value > 0, (name, value)


def test_ingest_quick_run_stores_every_reading_once_on_both_databases() -> None:
    report = run_quick("headend_ingest")

    workload = report["workload"]
    assert workload["readings_per_message"] == 100
    assert workload["values_per_reading"] == 25 == len(workload["points"])
    assert workload["readings"] == workload["messages"] * 100
    assert workload["meters"] == workload["gateways"] * 100
    assert workload["ingest_batch_rows"] == 5000
    positive(report, "decode_us_per_reading", "json_loads_us_per_reading")
    backends = {b["name"]: b for b in report["backends"]}
    assert set(backends) == {"sqlite", "postgresql"}
    raw_paths = {"sqlite": {"core_executemany", "dbapi_executemany"},
                 "postgresql": {"copy", "core_executemany"}}  # fmt: skip
    for name, backend in backends.items():
        baselines = {b["key"]: b for b in backend["baselines"]}
        assert set(baselines) == raw_paths[name]
        for baseline in baselines.values():
            positive(baseline, "seconds", "readings_per_s", "ratio")
        fastest = max(baselines.values(), key=lambda b: b["readings_per_s"])
        assert backend["baseline"] == fastest["key"]
        assert backend["baseline_readings_per_s"] == fastest["readings_per_s"]
        ingest, again = backend["ingest"], backend["duplicates"]
        positive(ingest, "seconds", "readings_per_s", "transactions", "store_us_per_reading")
        positive(again, "seconds", "readings_per_s", "transactions")
        assert ingest["readings_per_s"] / fastest["readings_per_s"] == pytest.approx(
            backend["ratio"]
        )
        assert ingest["stored"] == workload["readings"] == backend["stored_readings"]
        assert ingest["duplicate_messages"] == 0
        assert again["stored"] == 0
        assert again["duplicate_messages"] == workload["messages"]
        for run in (ingest, again):
            assert run["broker_acks"] == workload["messages"]
            assert run["acked_before_commit"] == 0
            assert run["gaps"] == run["malformed"] == run["failures"] == 0
            assert run["max_readings_per_transaction"] <= 5000 + 100
        # counted whichever decoder read them (it was 0 for the fast path's FastReadings)
        assert ingest["max_readings_per_transaction"] > 0
        assert backend["meters_registered"] == workload["meters"]
        checks: dict[str, bool] = backend["checks"]
        assert checks and all(checks.values()), (name, checks)
        assert backend["valid"] is True
        assert backend["errors"] == []
        assert isinstance(backend["passed"], bool)
    assert report["target_ratio"] == 0.5
    assert report["valid"] is True
    assert isinstance(report["passed"], bool)


def test_vending_quick_run_vends_through_the_api_and_applies_every_pushed_token() -> None:
    report = run_quick("headend_vending")

    assert report["dispatch_interval_s"] == 0.2
    api, direct = report["api"], report["direct"]
    assert api["vends"] == direct["vends"] == direct["tokens"] == 200
    assert api["clients"] == 8
    assert api["failures"] == []
    positive(api, "seconds", "vends_per_s", "headend_cpu_ms_per_vend")
    positive(direct, "seconds", "vends_per_s", "ms_per_vend", "cpu_ms_per_vend")
    assert api["latency_ms"]["p50"] <= api["latency_ms"]["p99"] <= api["latency_ms"]["max"]
    assert report["ratio_api_to_direct"] == pytest.approx(
        api["vends_per_s"] / direct["vends_per_s"]
    )

    latency = report["latency"]
    assert latency["tokens"] == latency["applied"] == 20
    assert latency["timed_out"] == 0
    assert latency["failures"] == []
    for part in ("total_ms", "headend_ms", "link_ms", "gateway_ms", "vend_request_ms"):
        figures = latency[part]
        assert 0 <= figures["min"] <= figures["p50"] <= figures["p99"] <= figures["max"], part
    total, parts = latency["total_ms"], ("headend_ms", "link_ms", "gateway_ms")
    assert total["mean"] == pytest.approx(sum(latency[p]["mean"] for p in parts))
    assert total["min"] > 0

    checks: dict[str, bool] = report["checks"]
    assert checks and all(checks.values()), checks
    assert report["valid"] is True
    assert report["errors"] == []
