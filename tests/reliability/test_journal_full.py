"""The gateway's journal disk fills up: the gateway holds what it reads in memory, loses nothing.

The journal lives on a small tmpfs of its own. A filler file takes every free byte while the
gateway polls; journal writes then fail with "database or disk is full". The gateway must go on
polling, hold the entries it could not write (in order), say so in its log and health, and write
them all once the filler is removed, so that the head-end stores every reading exactly once and
each meter's series of readings has no hole where the disk was full.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.system import GW, FaultSystem, build
from tests.support.gateway import wait_for

pytestmark = pytest.mark.integration

STATUS_INTERVAL_S = 1  # the status poll group of system.py


@contextlib.contextmanager
def small_disk(folder: Path, size_mb: int) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                              str(folder)], capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, b"\0" * size)
    finally:
        os.close(descriptor)
    assert shutil.disk_usage(disk).free == 0
    return filler


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultSystem]:
    folder = tmp_path_factory.mktemp("journal-full")
    with small_disk(folder / "journal-disk", 16) as disk:
        built = build(folder, journal_dir=disk)
        try:
            yield built
        finally:
            built.close()


def _series_holes(readings: set[tuple[str, float]], meter: str, first: float, last: float,
                  limit_s: float) -> list[tuple[float, float]]:  # fmt: skip
    times = sorted(t for m, t in readings if m == meter and first <= t <= last)
    return [(a, b) for a, b in itertools.pairwise(times) if b - a > limit_s]


@pytest.mark.reliability("fault", "gateway journal disk full for 10 s, then space again")
def test_a_full_journal_disk_loses_no_reading(
    system: FaultSystem, reliability: dict[str, object]
) -> None:
    disk = Path(system.gateway_config.read_text().split("journal.db")[0].split("path: ")[-1])
    _, before = system.wire.mark()
    wait_for(lambda: system.wire.mark()[1] >= before + 10, 60, "readings flowing")
    since = system.wire.mark()
    full_from = time.time()
    filler = fill(disk)
    wait_for(lambda: "Journal write failed" in system.log_text("gateway"), 60,
             "the gateway noticing the full disk")  # fmt: skip
    time.sleep(10)  # full: the gateway goes on polling and holds what it reads
    assert system.gateway is not None and system.gateway.poll() is None, "the gateway died"
    os.unlink(filler)
    full_until = time.time()
    wait_for(lambda: "Journal writes work again" in system.log_text("gateway"), 60,
             "the held entries written")  # fmt: skip
    system.wait_converged()
    counts = system.counts(since)
    _, readings = system.wire.snapshot()
    holes = _series_holes(readings, system.meters["still"], full_from - 5, full_until + 5,
                          3 * STATUS_INTERVAL_S + 1)  # fmt: skip
    health = system.api.get(f"/api/v1/gateways/{GW}")
    reliability.update(counts)
    reliability["journal write failures"] = system.log_text("gateway").count("Journal write failed")
    reliability["holes in a meter's series"] = len(holes)
    assert counts["lost"] == 0 and counts["duplicated"] == 0, counts
    assert holes == [], holes
    assert health["online"] is True
