"""The usage example in ``protocols.sts``'s docstring runs and prints what it says."""

from __future__ import annotations

import doctest

import protocols.sts


def test_package_docstring_example() -> None:
    result = doctest.testmod(protocols.sts, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5
    assert result.failed == 0
