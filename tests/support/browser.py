"""Debian's Chromium, driven by Playwright, for the browser tests of the operator interface.

Playwright's own browser downloads are never used: the machines that run the tests have no
internet, and the tests drive ``/usr/bin/chromium`` from Debian's ``chromium`` package (installed
on first use, like every other tool the integration tests need; see :mod:`tests.support.debian`).

Playwright's sync API and pytest-twisted share one thread, and asyncio keeps one "running loop" per
thread. pytest-twisted runs the asyncio reactor's loop in a greenlet that stays suspended inside
``run_forever`` between tests, so the thread reports the reactor's loop as running; Playwright
runs its own loop in a greenlet of its own the same way, and refuses to start (or, later, would
schedule its tasks on the wrong loop) when the thread reports another loop. :class:`EventLoops`
hands the thread to Playwright's loop only while browser code runs, and gives the reactor's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright

from tests.support.api import Api
from tests.support.debian import install_packages

__all__ = [
    "CHROMIUM",
    "SCREENSHOTS",
    "EventLoops",
    "RunningDemo",
    "ensure_chromium",
    "launch",
    "login",
    "shot",
]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Without a sandbox because CI runs as root; the rest stop Chromium's own connections (updates,
# sync, field trials, QUIC probes), which on a machine without internet only fail, noisily.
_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Read by Playwright's installer and its driver: never fetch a browser of its own.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt-get when it is missing (never a skipped test)."""
    if not CHROMIUM.exists():
        install_packages("chromium")
    assert CHROMIUM.exists(), f"{CHROMIUM} still missing after installing Debian's chromium"
    return CHROMIUM


def launch(playwright: Playwright) -> Browser:
    """A headless Debian Chromium with the flags this machine needs."""
    return playwright.chromium.launch(
        executable_path=str(ensure_chromium()), headless=True, args=_FLAGS
    )


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot as ``docs/screenshots/<name>.png``, the README's pictures.

    Every run of the browser tests regenerates them, so they show the interface as it is.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class EventLoops:
    """Which asyncio loop the thread reports as running: Playwright's, or whatever ran before.

    Every use of the sync API (starting it, each test, each fixture's set-up and tear-down)
    happens inside :meth:`playwright`; outside it the thread is the reactor's again, so the
    Twisted tests that run after the browser tests find their loop where they left it.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # None until Playwright starts

    @contextlib.contextmanager
    def playwright(self) -> Iterator[None]:
        outer = asyncio._get_running_loop()
        asyncio._set_running_loop(self._loop)
        try:
            yield
        finally:
            # Playwright marks its loop as running after every call (wait_for_future).
            self._loop = asyncio._get_running_loop()
            asyncio._set_running_loop(outer)


@dataclass
class RunningDemo:
    """``amr demo`` as the browser tests use it: its address, its admin login, its API."""

    base: str  # http://127.0.0.1:PORT
    username: str
    password: str
    api: Api  # logged in as the admin
    _operators: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def ui(self) -> str:
        return self.base + "/ui/"

    def operator(self, role: str) -> tuple[str, str]:
        """(username, password) of an operator with this role, created on first use."""
        if role not in self._operators:
            username, password = f"web-{role}", f"{role}-web-password"
            self.api.post(
                "/api/v1/operators", {"username": username, "password": password, "role": role}
            )
            self._operators[role] = (username, password)
        return self._operators[role]


def login(
    page: Page, demo: RunningDemo, username: str | None = None, password: str | None = None
) -> None:
    """Log in through the login form (the admin unless told), until the main navigation shows."""
    page.goto(demo.ui)
    page.get_by_label("Username").fill(demo.username if username is None else username)
    page.get_by_label("Password").fill(demo.password if password is None else password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation", name="Main").wait_for(state="visible")
