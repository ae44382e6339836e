"""The simulator benchmarks run against a real ``amr sim`` and report every case with valid replies.

Their speed, the ratios to the timing model and the CPU figure are not asserted here (timing
assertions do not belong in tests); the benchmarks report pass or fail themselves.
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
REGISTER_COUNTS = {1, 2, 10, 40, 125}
TURNAROUNDS_MS = {0.0, 10.0, 50.0}


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
    assert report["quick"] is True
    return report


def test_rtu_timing_quick_run_reports_every_case_with_valid_replies() -> None:
    report = run_quick("sim_rtu_timing")

    cases: list[dict[str, Any]] = report["cases"]
    assert len(cases) == len(REGISTER_COUNTS) * len(TURNAROUNDS_MS)
    assert {(c["registers"], c["turnaround_ms"]) for c in cases} == {
        (n, t) for n in REGISTER_COUNTS for t in TURNAROUNDS_MS
    }
    for case in cases:
        assert case["transactions"] > 0
        assert case["valid_replies"] == case["transactions"], case["errors"]
        assert case["invalid_replies"] == 0
        assert case["transactions_per_s"] > 0
        assert case["model_transactions_per_s"] > 0
        assert case["ratio"] > 0
        assert isinstance(case["passed"], bool)


def test_fleet_cpu_quick_run_polls_four_buses_with_valid_replies() -> None:
    report = run_quick("sim_fleet_cpu")

    assert report["meters"] == 500
    buses: list[dict[str, Any]] = report["buses"]
    assert [b["name"] for b in buses] == ["rtu1", "rtu2", "rtu3", "rtu4"]
    for bus in buses:
        assert bus["polls"] > 0
        assert bus["valid_replies"] == bus["polls"], bus["errors"]
        assert bus["invalid_replies"] == 0
        assert bus["polls_per_s"] > 0
        assert bus["fraction_of_line_limit"] > 0
    assert report["polls"] == sum(b["polls"] for b in buses)
    assert report["invalid_replies"] == 0
    assert report["polls_per_s"] > 0
    assert report["wall_s"] > 0
    assert report["simulator_cpu_s"] >= 0
    assert report["simulator_cpu_cores"] >= 0
    assert isinstance(report["passed"], bool)
