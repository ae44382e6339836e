"""The concentrator benchmarks run end to end (Mosquitto, ``amr sim``, ``amr concentrator``) and
report every figure with their validity checks passed.

The figures themselves (the fraction of the line's limit, CPU per poll, resident memory) are not
asserted here: timing and memory thresholds do not belong in tests; ``--check`` reports them.
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
        timeout=120,
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


def test_line_quick_run_measures_a_saturated_line_with_valid_polls() -> None:
    report = run_quick("concentrator_line")

    assert report["baud"] == 9600
    assert report["meters"] == 20
    assert report["read"] == {"function": 4, "address": 30, "count": 16}
    assert report["offered_polls_per_s"] > report["model_polls_per_s"]  # the line is saturated
    positive(report, "window_s", "polls", "readings_in_window", "polls_per_s",
             "fraction_of_line_limit", "fraction_of_reference", "model_poll_ms",
             "model_polls_per_s", "measured_poll_ms", "line_busy_ms_per_poll", "gap_ms",
             "concentrator_cpu_s", "cpu_ms_per_poll", "readings_per_meter_min")  # fmt: skip
    for name in ("idle_beyond_gap_ms_per_poll", "simulator_latency_ms_per_poll",
                 "concentrator_latency_ms_per_poll"):  # fmt: skip
        assert isinstance(report[name], float), name
    reference = report["reference"]
    positive(reference, "transactions", "elapsed_s", "polls_per_s", "poll_ms")
    assert reference["invalid_replies"] == 0, reference["errors"]

    assert report["exception_replies"] == 0
    assert report["unanswered"] == 0
    assert report["requests"] == report["polls"]
    checks: dict[str, bool] = report["checks"]
    assert checks and all(checks.values()), checks
    assert report["valid"] is True
    assert report["errors"] == []
    assert isinstance(report["passed"], bool)
    assert report["target_fraction"] == 0.9


def test_memory_quick_run_measures_1000_meters_and_a_100k_backlog_against_a_baseline() -> None:
    report = run_quick("concentrator_memory")

    assert report["meters"] == 1000
    backlog = report["backlog"]
    assert backlog["messages"] == 100_000
    positive(backlog, "readings_per_message", "payload_bytes", "file_bytes", "build_s")
    runs = report["runs"]
    assert runs["baseline"]["meters"] == 10
    assert runs["baseline"]["backlog_messages"] == 0
    assert runs["full"]["meters"] == 1000
    assert runs["full"]["backlog_messages"] == 100_000
    for run in runs.values():
        positive(run, "window_s", "rss_kb", "rss_mb", "vm_hwm_kb", "peak_rss_mb",
                 "max_sampled_rss_mb", "samples", "polls", "new_journal_entries", "new_readings")  # fmt: skip
        assert run["peak_rss_mb"] >= run["rss_mb"]
        assert run["meters_read"] == run["meters"]
        assert run["new_readings"] >= run["meters"]
        assert run["exception_replies"] == 0
        assert run["unanswered"] == 0
        assert run["online"] is True
        assert run["backlog_entries_kept"] == run["backlog_messages"]
        assert run["evicted"] == 0
        checks: dict[str, bool] = run["checks"]
        assert checks and all(checks.values()), (run["name"], checks)
        assert run["valid"] is True
        assert run["errors"] == []
    assert runs["full"]["backlog_messages_published"] > 0
    positive(report, "rss_mb", "peak_rss_mb", "baseline_rss_mb", "baseline_peak_rss_mb",
             "fraction_of_target", "ratio_to_baseline")  # fmt: skip
    assert report["target_mb"] == 150
    assert report["valid"] is True
    assert isinstance(report["passed"], bool)
