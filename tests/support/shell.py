"""Reading shell lines out of the documentation, for the tests that check every command in it."""

from __future__ import annotations

import shlex

__all__ = ["SHELL_JOINERS", "simple_commands"]

SHELL_JOINERS = frozenset({"&&", "||", ";", "|", "&"})


def simple_commands(line: str) -> list[list[str]]:
    """A shell line's simple commands, split at ``&&``, ``|``, ... (words, quotes removed)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token in SHELL_JOINERS:
            segments.append([])
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]
