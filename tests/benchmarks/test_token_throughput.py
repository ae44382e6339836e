"""The token throughput benchmark runs and reports sane figures (its speed is not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CASES = {"baseline", "sta_cached", "sta_dkga02", "misty1_cached", "misty1_dkga04", "sta_decode"}


def test_quick_json_run_reports_six_positive_rates_after_the_correctness_check() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.token_throughput", "--quick", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)

    assert report["correctness"]["passed"] is True
    assert all(report["correctness"].values())
    results: list[dict[str, Any]] = report["results"]
    assert len(results) == 6
    assert {r["key"] for r in results} == CASES
    for result in results:
        assert result["tokens"] > 0
        assert result["tokens_per_second"] > 0
        assert result["us_per_token"] > 0
        assert result["ratio_to_baseline"] > 0
