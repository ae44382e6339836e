"""Every example in the user documentation runs and prints what the document says it prints.

``pycon`` blocks run as doctests; ``console`` blocks run in bash (``$ `` starts a command, the lines
after it are its expected output, stdout and stderr together) in a scratch folder shared by the
document's examples, in document order (a later example may use a file an earlier one wrote), with the test
environment's ``amr`` first on PATH. A document whose examples drift from the code fails here.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "docs" / "sts-tokens.md"]
BLOCK = re.compile(r"^```(pycon|console)\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, int, str, str]]:
    found = []
    for document in DOCUMENTS:
        for number, match in enumerate(BLOCK.finditer(document.read_text()), start=1):
            found.append((document.name, number, match.group(1), match.group(2)))
    return found


BLOCKS = _blocks()


def _commands(body: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    lines = body.splitlines()
    commands: list[tuple[list[str], list[str]]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("$ "):
            command = [line[2:]]
            if "<<'EOF'" in line:
                index += 1
                while lines[index] != "EOF":
                    command.append(lines[index])
                    index += 1
                command.append("EOF")
            while command[-1].endswith("\\"):
                index += 1
                command.append(lines[index])
            commands.append((command, []))
        else:
            assert commands, f"output before any command: {line!r}"
            commands[-1][1].append(line)
        index += 1
    return [("\n".join(c), "\n".join(out).rstrip("\n")) for c, out in commands]


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One scratch folder per document: its console examples build on each other, in order."""
    return {d.name: tmp_path_factory.mktemp(d.stem) for d in DOCUMENTS}


def test_the_documents_have_examples() -> None:
    kinds = {kind for _, _, kind, _ in BLOCKS}
    assert kinds == {"pycon", "console"} and len(BLOCKS) >= 20


@pytest.mark.parametrize(
    ("document", "number", "kind", "body"), BLOCKS, ids=[f"{d}#{n}" for d, n, _, _ in BLOCKS]
)
def test_example(
    document: str, number: int, kind: str, body: str, workdirs: dict[str, Path]
) -> None:
    if kind == "pycon":
        test = doctest.DocTestParser().get_doctest(body, {}, f"{document}#{number}", document, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        result = runner.run(test, out=lambda text: print(text, end=""))
        assert result.failed == 0, f"{document} example {number} failed (see output above)"
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMR_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    commands = _commands(body)
    # One shell for the block, so that `echo $?` sees the previous command's status.
    script = ""
    for index, (command, _) in enumerate(commands):
        line = command
        if line.startswith(".venv/bin/python"):  # run against this checkout and interpreter
            line = f"cd {ROOT} && {sys.executable}{line.removeprefix('.venv/bin/python')}"
        script += f"{{ {line}\n}} 2>&1\n__status=$?\necho '@@@{index}'\n(exit $__status)\n"
    run = subprocess.run(
        ["bash", "-c", script],
        cwd=workdirs[document],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outputs = re.split(r"^@@@\d+\n", run.stdout, flags=re.M)
    for index, (command, expected) in enumerate(commands):
        got = outputs[index].rstrip("\n") if index < len(outputs) else "<no output>"
        assert got == expected, f"{document} example {number}: {command}"
