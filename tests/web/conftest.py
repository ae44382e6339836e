"""Fixtures of the browser tests: ``amr demo`` once per session, Debian's Chromium, a page per test.

These tests never touch the Twisted reactor: the system under test runs in ``amr demo``'s own
processes, and the browser is driven through Playwright's sync API. pytest-twisted would run each
test function inside its reactor greenlet (it does so for every test, not only the asynchronous
ones), so :func:`pytest_pyfunc_call` below runs the tests of this folder directly instead, and
every use of Playwright happens inside :meth:`EventLoops.playwright` (see
:mod:`tests.support.browser` for why the thread's running loop has to be switched).
"""

from __future__ import annotations

import inspect
import re
import signal
import subprocess
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from tests.support.api import Api
from tests.support.browser import EventLoops, RunningDemo, launch
from tests.support.gateway import start, wait_for

_LOOPS = EventLoops()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool:
    """Run the test here, before pytest-twisted would run it inside the reactor."""
    test = pyfuncitem.obj
    assert not inspect.iscoroutinefunction(test), "browser tests use Playwright's sync API"
    arguments = inspect.signature(test).parameters
    with _LOOPS.playwright():
        test(**{name: pyfuncitem.funcargs[name] for name in arguments})
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test, for the page fixture to see whether it failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """``amr demo`` with 9 meters per Modbus bus, every meter registered and with an account."""
    folder = tmp_path_factory.mktemp("web") / "demo"
    lines: list[str] = []
    process = start(["demo", "--dir", str(folder), "--api-port", "0", "--meters", "9"],
                    "Ctrl-C stops everything", lines)  # fmt: skip
    try:
        text = "".join(lines)
        base = re.search(r"head-end\s+(http://127\.0\.0\.1:\d+)/api/v1/openapi\.json", text)
        login = re.search(r"login\s+(\S+) / (\S+)", text)
        fleet = re.search(r"(\d+) meters on Modbus RTU \(pty\), (\d+) on Modbus TCP,\s+"
                          r"(\d+) DL/T 645 meters", text)  # fmt: skip
        assert base and login and fleet, text
        api = Api(base.group(1)).login(login.group(1), login.group(2))
        expected = sum(int(count) for count in fleet.groups())
        wait_for(lambda: _listed(api) >= expected, 90, f"the demo's {expected} meters registered")
        with_account: set[str] = set()

        def all_with_accounts() -> bool:
            for meter in api.get("/api/v1/meters?limit=100")["items"]:
                if meter["id"] not in with_account and _account(api, meter["id"]):
                    with_account.add(meter["id"])
            return len(with_account) >= expected

        wait_for(all_with_accounts, 30, "an account for each of the demo's meters")
        yield RunningDemo(base.group(1), login.group(1), login.group(2), api)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        finally:
            time.sleep(0.5)  # the reader thread takes the last lines
            if process.stdout is not None:
                process.stdout.close()
    assert status == 0, "amr demo did not stop cleanly:\n" + "".join(lines[-30:])


def _listed(api: Api) -> int:
    return int(api.get("/api/v1/meters?limit=1")["total"])


def _account(api: Api, meter_id: str) -> bool:
    return bool(api.get(f"/api/v1/meters/{meter_id}")["account"])


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, one for the whole session (each test has its own context)."""
    with _LOOPS.playwright():
        playwright = sync_playwright().start()
        try:
            chromium = launch(playwright)
        except BaseException:
            playwright.stop()
            raise
    yield chromium
    with _LOOPS.playwright():
        chromium.close()
        playwright.stop()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A fresh page (1280x800, en-GB); uncaught JavaScript errors fail the test.

    On failure, the page as it was goes to ``<tmp_path>/failure.png`` and the browser's console
    is printed (pytest shows it under the test's captured output).
    """
    console: list[str] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        console.append(f"console.{message.type}: {message.text} ({message.location['url']})")

    def on_page_error(error: Error) -> None:
        errors.append(f"uncaught: {error.stack or error.message}")
        console.append(errors[-1])

    with _LOOPS.playwright():
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
        tab = context.new_page()
        tab.on("console", on_console)
        tab.on("pageerror", on_page_error)
    yield tab
    with _LOOPS.playwright():
        if any(report.failed for report in request.node.stash.get(_REPORTS, {}).values()):
            tab.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}")
            print("browser console:", *console or ["(nothing)"], sep="\n  ")
        context.close()
    assert not errors, "uncaught JavaScript errors in the page:\n" + "\n".join(errors)
