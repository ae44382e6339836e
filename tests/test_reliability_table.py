"""docs/reliability.md is written by the suite: each marked test's result and figures.

A small test file runs in a child pytest (in two xdist workers, like CI) with the table
redirected to a temporary file; a second, partial run refreshes its row and keeps the others.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.reliability import ROOT, rows_from_doc

EXAMPLE = """
import pytest

@pytest.mark.reliability("fault", "broker restart | mid-burst")
def test_counts(reliability):
    reliability["lost"] = 0
    reliability["duplicated"] = 0

@pytest.mark.reliability("security", "a forged command")
def test_fails(reliability):
    reliability["accepted"] = 1
    assert False

@pytest.mark.reliability("bad input", "needs a namespace")
def test_skips():
    pytest.skip("no netns here")

def test_unmarked():
    pass
"""


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"AMR_RELIABILITY_DOC": str(folder / "reliability.md"),
                        "PYTHONPATH": str(ROOT)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.support.reliability",
                           "-p", "no:cacheprovider", "--rootdir", str(folder), *args],
                          check=False, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_each_marked_test_is_a_row_with_its_result_and_figures(tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(EXAMPLE)
    run = _pytest(tmp_path, "-n", "2", "test_example.py")
    assert run.returncode == 1, run.stdout + run.stderr  # one test fails on purpose
    text = (tmp_path / "reliability.md").read_text()
    rows = rows_from_doc(text)
    assert set(rows) == {f"test_example.py::{name}"
                         for name in ("test_counts", "test_fails", "test_skips")}  # fmt: skip
    counts = rows["test_example.py::test_counts"]
    assert counts["result"] == "passed"
    assert counts["figures"] == {"lost": 0, "duplicated": 0}
    assert rows["test_example.py::test_fails"]["result"] == "failed"
    assert rows["test_example.py::test_skips"]["result"] == "skipped: no netns here"
    assert "| broker restart \\| mid-burst | passed | lost 0; duplicated 0 |" in text
    assert text.index("## Fault") < text.index("## Bad input") < text.index("## Security")


def test_a_partial_run_refreshes_its_rows_and_keeps_the_others(tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(EXAMPLE)
    _pytest(tmp_path, "test_example.py")
    (tmp_path / "test_example.py").write_text(EXAMPLE.replace("assert False", "assert True"))
    run = _pytest(tmp_path, "test_example.py::test_fails")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = rows_from_doc((tmp_path / "reliability.md").read_text())
    assert rows["test_example.py::test_fails"]["result"] == "passed"
    assert rows["test_example.py::test_counts"]["result"] == "passed"
    assert len(rows) == 3
