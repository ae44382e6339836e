"""Coverage-guided fuzzing (atheris on libFuzzer) of the DL/T 645, Modbus, Q/GDW 1376.2 and link
decoders, bounded to a few seconds: tests/badinput/fuzz_codecs.py, from a corpus of one valid input
per decoder. Any exception other than a codec's own fails the test with the input that raised it.

atheris ships wheels for Linux on x86-64 only (elsewhere it builds from source with clang), so
the test extras install it there, and the test is skipped where it is not installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .profiles import examples

ROOT = Path(__file__).resolve().parents[2]
RUNS = examples(20_000)


@pytest.mark.reliability("bad input", "atheris coverage-guided fuzzing of the DL/T 645, Modbus, "
                         "Q/GDW 1376.2 and link decoders finds no crash")  # fmt: skip
def test_coverage_guided_fuzzing_finds_no_crash(
    tmp_path: Path, reliability: dict[str, object]
) -> None:
    pytest.importorskip("atheris", reason="atheris has wheels for Linux x86-64 only")
    corpus, crashes = tmp_path / "corpus", tmp_path / "crashes"
    crashes.mkdir()
    module = "tests.badinput.fuzz_codecs"
    subprocess.run([sys.executable, "-m", module, "--seeds", str(corpus)], cwd=ROOT, check=True)
    seeds = len(list(corpus.iterdir()))
    done = subprocess.run(
        [sys.executable, "-m", module, f"-runs={RUNS}", "-max_len=4096", "-timeout=20",
         "-rss_limit_mb=2048", f"-artifact_prefix={crashes}/", str(corpus)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    said = done.stderr + done.stdout
    found = [path.name for path in crashes.iterdir()]
    assert done.returncode == 0 and not found, f"inputs that crashed: {found}\n{said[-4000:]}"
    ran = re.search(r"Done (\d+) runs", said)
    coverage = re.findall(r"cov: (\d+)", said)
    assert ran and int(ran.group(1)) == RUNS, said[-2000:]
    reliability.update(runs=RUNS, seeds=seeds, corpus=len(list(corpus.iterdir())),
                       coverage_edges=int(coverage[-1]) if coverage else 0)  # fmt: skip
