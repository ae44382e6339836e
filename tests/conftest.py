"""Test set-up shared by every test.

The asyncio reactor must be installed before anything imports ``twisted.internet.reactor``
(pytest-twisted then accepts it; see ``--reactor=asyncio`` in pyproject.toml).
"""

import contextlib

from twisted.internet import asyncioreactor
from twisted.internet.error import ReactorAlreadyInstalledError

with contextlib.suppress(ReactorAlreadyInstalledError):
    asyncioreactor.install()

import json
import signal
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.support.reliability"]

# Started in the background by a non-interactive shell (`cmd &`), the run inherits SIGINT
# ignored, and so would every daemon a test starts: their Ctrl-C tests would hang. Restore it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

VECTORS = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


@pytest.fixture(scope="session")
def sts_vectors() -> list[dict[str, Any]]:
    return load_vectors("sts_vectors.json")
