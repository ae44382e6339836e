"""The usage example in ``protocols.mqtt``'s docstring runs and prints what it says."""

from __future__ import annotations

import doctest

import protocols.mqtt


def test_package_docstring_examples() -> None:
    result = doctest.testmod(protocols.mqtt)
    assert result.attempted >= 8
    assert result.failed == 0
