"""The usage examples in ``protocols.dlt645``'s docstring run and print what they say."""

from __future__ import annotations

import doctest

import protocols.dlt645


def test_package_docstring_examples() -> None:
    result = doctest.testmod(protocols.dlt645, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10
    assert result.failed == 0
