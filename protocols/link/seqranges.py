"""Sequence numbers as ranges: what the head-end acknowledges and what a gateway still holds.

An ack carries committed seqs as sorted, merged ``[first, last]`` ranges, so one small message can
acknowledge thousands of readings, and duplicates or out-of-order commits cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["merge_ranges", "to_ranges"]


def to_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Sorted, merged ranges covering exactly ``seqs``."""
    ordered = sorted(set(seqs))
    ranges: list[tuple[int, int]] = []
    for seq in ordered:
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return tuple(ranges)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted ranges with overlapping and adjacent ones joined."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)
