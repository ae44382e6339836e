"""Test set-up shared by every test.

The asyncio reactor must be installed before anything imports ``twisted.internet.reactor``
(pytest-twisted then accepts it; see ``--reactor=asyncio`` in pyproject.toml).
"""

from twisted.internet import asyncioreactor

try:
    asyncioreactor.install()
except Exception:  # noqa: BLE001 - already installed by pytest-twisted in this process
    pass

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


@pytest.fixture(scope="session")
def sts_vectors() -> list[dict[str, Any]]:
    return load_vectors("sts_vectors.json")
