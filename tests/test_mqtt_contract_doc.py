"""docs/mqtt-contract.md agrees with protocols.link, the contract it documents.

Every ``pycon`` block of the document runs as a doctest (from the project root, each block in a
fresh namespace) and must print what the document says it prints. Every topic of
``protocols.link.Topic`` must appear by its full name (``amr/v1/gw/{gateway_id}/<topic>``), and
every ``CommandType`` and ``CommandState`` value as code (`` `value` ``), so that a new topic,
command type or state cannot be added to the code without being documented.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from protocols.link import CommandState, CommandType, Topic

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "mqtt-contract.md"
PYCON = re.compile(r"^```pycon\n(.*?)^```", re.S | re.M)
TEXT = DOCUMENT.read_text()
# (line of the block's first example, 0-based; the block's text)
BLOCKS = [(TEXT.count("\n", 0, m.start(1)), m.group(1)) for m in PYCON.finditer(TEXT)]


def missing_names(text: str) -> list[str]:
    """The topics, command types and command states that ``text`` does not mention."""
    missing = []
    for topic in Topic:
        # "amr/v1/gw/{gateway_id}/cmd" must not be satisfied by ".../cmd/status"
        name = re.escape(f"amr/v1/gw/{{gateway_id}}/{topic.value}") + r"(?![\w/])"
        if not re.search(name, text):
            missing.append(f"topic {topic.value}")
    for kind in CommandType:
        if f"`{kind.value}`" not in text:
            missing.append(f"command type {kind.value}")
    for state in CommandState:
        if f"`{state.value}`" not in text:
            missing.append(f"command state {state.value}")
    return missing


def test_the_document_has_examples() -> None:
    assert len(BLOCKS) >= 15, f"only {len(BLOCKS)} pycon blocks in {DOCUMENT.name}"


@pytest.mark.parametrize("number", range(1, len(BLOCKS) + 1), ids=lambda n: f"pycon#{n}")
def test_example(number: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples open files relative to the project root, as documented
    line, body = BLOCKS[number - 1]
    name = f"{DOCUMENT.name}#{number}"
    globs = {"__name__": "mqtt_contract"}
    test = doctest.DocTestParser().get_doctest(body, globs, name, str(DOCUMENT), line)
    assert test.examples, f"{name} has no examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    # Collect the report: doctest replaces sys.stdout while it runs, so printing it would leak
    # into the next example's output.
    report: list[str] = []
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)


def test_every_topic_command_type_and_state_is_documented() -> None:
    assert missing_names(TEXT) == []


def test_the_check_notices_what_is_missing() -> None:
    """The check above can fail: remove a topic, a type and a state from the text."""
    cmd_topic = re.compile(r"amr/v1/gw/\{gateway_id\}/cmd(?![\w/])")
    assert cmd_topic.search(TEXT)
    text = cmd_topic.sub("amr/v1/gw/{gateway_id}/cmd/status", TEXT)
    text = text.replace("`time_sync`", "time_sync").replace("`expired`", "expired")
    assert missing_names(text) == ["topic cmd", "command type time_sync", "command state expired"]


def test_a_wrong_output_fails() -> None:
    """The doctest runner really compares: an example with a wrong output is a failure."""
    test = doctest.DocTestParser().get_doctest(
        ">>> from protocols.link import Topic\n>>> Topic.ACK.value\n'acknowledge'\n",
        {},
        "wrong",
        None,
        0,
    )
    result = doctest.DocTestRunner().run(test, out=lambda text: None)
    assert result.failed == 1
