"""The reliability table: every fault, bad-input and security test with its result and figures.

A test joins the table with a marker, and may record figures (exact counts) as it runs::

    @pytest.mark.reliability("fault", "broker restart mid-burst")
    def test_broker_restart(reliability: dict[str, object]) -> None:
        ...
        reliability["lost"] = 0
        reliability["duplicated"] = 0

The figures travel in the test report's ``user_properties`` (so they cross pytest-xdist's
worker boundary); the controlling process writes ``docs/reliability.md`` at the end of a run.
Rows of marked tests this run did not include are kept from the previous table (their
results travel in a JSON block at the end of the document), so running one file refreshes
its rows without dropping the others.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["AREAS", "reliability", "render", "rows_from_doc"]

ROOT = Path(__file__).resolve().parents[2]
DOC = Path(os.environ.get("AMR_RELIABILITY_DOC", ROOT / "docs" / "reliability.md"))
AREAS = ("fault", "scale-out", "bad input", "security")
PROPERTY = "reliability"
FIGURES = pytest.StashKey[dict[str, object]]()
DATA = re.compile(r"<!-- results\n(.*?)\n-->", re.S)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reliability(area, what): a row of docs/reliability.md (area: " + ", ".join(AREAS) + ")",
    )
    config.stash[_ROWS] = {}


_ROWS = pytest.StashKey[dict[str, dict[str, Any]]]()


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> dict[str, object]:
    """The figures of this test's row: exact counts (lost, duplicated, ...) and short notes."""
    figures: dict[str, object] = {}
    request.node.stash[FIGURES] = figures
    return figures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    marker = item.get_closest_marker("reliability")
    if marker is not None:
        if len(marker.args) != 2 or marker.args[0] not in AREAS:
            raise pytest.UsageError(f"{item.nodeid}: reliability(area, what), area in {AREAS}")
        row = {"area": marker.args[0], "what": marker.args[1],
               "figures": item.stash.get(FIGURES, {})}  # fmt: skip
        report.user_properties.append((PROPERTY, json.dumps(row, default=str)))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    found = [str(value) for name, value in report.user_properties if name == PROPERTY]
    if not found:
        return
    rows = _rows_of(report)
    if rows is None:
        return
    row = rows.setdefault(report.nodeid, json.loads(found[-1]) | {"result": "passed"})
    row["figures"] = json.loads(found[-1])["figures"] or row["figures"]
    if report.failed:
        row["result"] = "failed" if report.when == "call" else "error"
    elif report.skipped and row["result"] == "passed":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
        row["result"] = f"skipped: {reason.removeprefix('Skipped: ')}"


_CONFIG: list[pytest.Config] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG[:] = [session.config]


def _rows_of(report: pytest.TestReport) -> dict[str, dict[str, Any]] | None:
    return _CONFIG[0].stash.get(_ROWS, None) if _CONFIG else None


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller writes the table
    rows = session.config.stash.get(_ROWS, {})
    if not rows:
        return
    previous: dict[str, dict[str, Any]] = {}
    if DOC.exists():
        found = DATA.search(DOC.read_text())
        if found:
            previous = json.loads(found.group(1))
    stamp = _stamp()
    for row in rows.values():
        row["run"] = stamp
    root = session.config.rootpath
    merged = {nodeid: row for nodeid, row in previous.items()
              if (root / nodeid.split("::")[0]).exists()}  # fmt: skip
    merged.update(rows)
    DOC.write_text(render(merged))


def _stamp() -> str:
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False,
                               capture_output=True, text=True, cwd=ROOT, timeout=10)  # fmt: skip
        commit = found.stdout.strip()
    except OSError:
        commit = ""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return f"{day} {commit}".strip() + (" (CI)" if os.environ.get("CI") else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _figures(figures: dict[str, Any]) -> str:
    return "; ".join(f"{name.replace('_', ' ')} {value}" for name, value in figures.items())


def render(rows: dict[str, dict[str, Any]]) -> str:
    """The document: one table per area, then the rows as JSON for the next partial run."""
    lines = [
        "# Reliability and security: every test and its last result",
        "",
        "This file is written by the test suite (`tests/support/reliability.py`); do not edit it.",
        "Each row is a test marked `reliability` and the figures it measured: for faults, the",
        "exact number of readings or commands lost and stored twice. Run the README's test",
        "command (or `pytest` on any of these files) to refresh it.",
        "",
    ]
    for area in AREAS:
        mine = sorted((r for r in rows.items() if r[1]["area"] == area),
                      key=lambda r: r[0])  # fmt: skip
        if not mine:
            continue
        lines += [f"## {area.capitalize()}", "",
                  "| what | result | figures | test | run |", "|---|---|---|---|---|"]  # fmt: skip
        for nodeid, row in mine:
            path, _, name = nodeid.partition("::")
            link = f"[`{_cell(name)}`](../{path})"
            lines.append(
                f"| {_cell(row['what'])} | {_cell(row['result'])} | "
                f"{_cell(_figures(row['figures']))} | {link} | {row.get('run', '')} |"
            )
        lines.append("")
    lines += ["<!-- results", json.dumps(rows, indent=1, sort_keys=True), "-->", ""]
    return "\n".join(lines)


def rows_from_doc(text: str) -> dict[str, dict[str, Any]]:
    found = DATA.search(text)
    return json.loads(found.group(1)) if found else {}
