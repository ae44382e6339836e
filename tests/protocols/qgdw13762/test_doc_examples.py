"""The usage example in ``protocols.qgdw13762``'s docstring runs and prints what it says."""

from __future__ import annotations

import doctest

import protocols.qgdw13762


def test_package_docstring_example() -> None:
    result = doctest.testmod(protocols.qgdw13762)
    assert result.attempted >= 15
    assert result.failed == 0
