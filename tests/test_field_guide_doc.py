"""docs/field-technician-guide.md agrees with the real ``amr`` command line and the real
concentrator configuration model.

What is checked, and by which rule:

* **Commands.** Every ``amr`` command line in the guide's ``console`` blocks (lines starting with
  ``$ ``; a trailing ``\\`` continues a command on the next line) and ``sh`` blocks (every line that
  is not a comment) parses with the real parser, ``headend.cli.main.build_parser()``, as
  ``amr --help``-style validation: ``parse_args`` must not exit with an error. A line may hold
  several commands joined by ``&&``, ``||``, ``;`` or ``|``; each is looked at on its own, and one
  is an ``amr`` command when its first word is ``amr`` or a path ending in ``/amr``
  (``.venv/bin/amr``). Redirections (``<``, ``>``, ``>>``) and what follows them are not
  arguments and are cut off. Lines that are not ``amr`` commands (``curl``, ``diff``, ...) are
  ignored.
* **YAML.** Every ``yaml`` block must be a mapping and must validate:

  - a block whose first line is a comment starting with ``# amr sim`` is a *simulator*
    configuration, checked with ``simulator.config.parse_config``;
  - a block with a top-level ``gateway_id`` is a *full* concentrator configuration, checked with
    ``concentrator.config.parse_config``;
  - any other block is a *fragment* of a concentrator configuration: its top-level keys are laid
    over :data:`FRAGMENT_BASE` (a gateway id and one RTU bus, the least a configuration needs)
    and the result is checked with ``concentrator.config.parse_config``. A fragment therefore
    cannot carry a key that the configuration would refuse, at any depth (the model forbids
    unknown keys).

* **Coverage.** Every field of the concentrator configuration model (found by walking the model
  from ``ConcentratorConfig``) is named in the guide as code (`` `name` ``), so that a new field
  cannot be added without the guide's walkthrough mentioning it.

The last tests feed made-up text to the same functions, to show that each check can fail.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from concentrator.config import ConcentratorConfig, ConfigError
from concentrator.config import parse_config as parse_concentrator_config
from headend.cli.main import build_parser
from simulator.config import ConfigError as SimConfigError
from simulator.config import parse_config as parse_sim_config
from tests.support.shell import simple_commands

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "field-technician-guide.md"
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
REDIRECTIONS = {"<", ">", ">>", ">&", "<&", "&>"}
FRAGMENT_BASE: dict[str, Any] = {
    "gateway_id": "gw-fragment",
    "buses": [
        {"name": "base", "type": "modbus-rtu", "device": "/dev/null", "meters": [{"address": 1}]}
    ],
}


@dataclass(frozen=True, slots=True)
class Block:
    kind: str
    line: int  # 1-based line of the block's first content line in the document
    text: str


def blocks(document: str) -> list[Block]:
    """The fenced code blocks of a Markdown document, with their info string's first word."""
    found = []
    for match in BLOCK.finditer(document):
        line = document.count("\n", 0, match.start(2)) + 1
        found.append(Block(match.group(1), line, match.group(2)))
    return found


def command_lines(block: Block) -> list[tuple[int, str]]:
    """(line, command) of a console block (``$ `` lines) or a sh block (non-comment lines)."""
    lines = block.text.splitlines()
    commands: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        number = block.line + index
        index += 1
        if block.kind == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and index < len(lines):
            line = line[:-1] + " " + lines[index]
            index += 1
        commands.append((number, line))
    return commands


def amr_commands(line: str) -> list[list[str]]:
    """The argument lists (after ``amr``) of every ``amr`` command on a shell line."""
    segments = simple_commands(line)
    found = []
    for segment in segments:
        if not segment or not (segment[0] == "amr" or segment[0].endswith("/amr")):
            continue
        args: list[str] = []
        for token in segment[1:]:
            if token in REDIRECTIONS:
                break
            args.append(token)
        found.append(args)
    return found


def command_problem(args: list[str]) -> str | None:
    """None if ``amr ARGS`` parses with the real parser, else what the parser said."""
    parser = build_parser()
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            if exc.code not in (0, None):  # --help exits 0: a valid command
                return errors.getvalue().strip() or f"exit status {exc.code}"
    return None


def yaml_problems(block: Block) -> list[str]:
    """Why a yaml block does not validate under the module's rules; [] when it does."""
    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    if not isinstance(data, dict):
        return [f"not a mapping but {type(data).__name__}"]
    first = block.text.lstrip().splitlines()[0] if block.text.strip() else ""
    try:
        if first.startswith("# amr sim"):
            parse_sim_config(data)
        elif "gateway_id" in data:
            parse_concentrator_config(data)
        else:
            parse_concentrator_config({**FRAGMENT_BASE, **data})
    except (ConfigError, SimConfigError) as exc:
        return exc.problems
    return []


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in get_args(annotation):
        yield from _models(argument)


def config_fields() -> set[str]:
    """Every field name of the concentrator configuration model, nested models included."""
    names: set[str] = set()
    pending: list[type[BaseModel]] = [ConcentratorConfig]
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(name)
            pending.extend(_models(info.annotation))
    return names


def missing_fields(document: str) -> list[str]:
    """The configuration fields the document never names as code."""
    return sorted(name for name in config_fields() if f"`{name}`" not in document)


def guide_commands(document: str) -> list[tuple[int, str, list[str]]]:
    """(line, shell line, arguments after ``amr``) of every amr command in the document. A line
    that cannot be split into words at all (an unclosed quote) is kept with the arguments
    ``["<unreadable>", error]``, which no parser accepts, so that it fails rather than vanishes."""
    found = []
    for block in blocks(document):
        if block.kind not in ("console", "sh"):
            continue
        for number, line in command_lines(block):
            try:
                commands = amr_commands(line)
            except ValueError as exc:
                commands = [["<unreadable>", str(exc)]]
            found += [(number, line, args) for args in commands]
    return found


TEXT = GUIDE.read_text()
BLOCKS = blocks(TEXT)
COMMANDS = guide_commands(TEXT)
YAML_BLOCKS = [block for block in BLOCKS if block.kind == "yaml"]


def test_the_guide_shows_the_commissioning_commands() -> None:
    shown = {
        " ".join(args[:2]) if args[0] in ("gw", "frame") else args[0] for _, _, args in COMMANDS
    }
    assert {"sim", "gw scan", "gw check", "concentrator", "frame decode"} <= shown
    assert len(COMMANDS) >= 25, f"only {len(COMMANDS)} amr commands found"


@pytest.mark.parametrize(
    ("number", "line", "args"), COMMANDS, ids=[f"line {n}: amr {a[0]}" for n, _, a in COMMANDS]
)
def test_command_parses(number: int, line: str, args: list[str]) -> None:
    problem = command_problem(args)
    assert problem is None, f"{GUIDE.name} line {number}: {line}\n{problem}"


def test_the_guide_has_yaml_of_every_kind() -> None:
    kinds = set()
    for block in YAML_BLOCKS:
        data = yaml.safe_load(block.text)
        if block.text.startswith("# amr sim"):
            kinds.add("simulator")
        elif isinstance(data, dict) and "gateway_id" in data:
            kinds.add("full")
        else:
            kinds.add("fragment")
    assert kinds == {"simulator", "full", "fragment"}


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"yaml at line {b.line}" for b in YAML_BLOCKS])
def test_yaml_block_validates(block: Block) -> None:
    assert yaml_problems(block) == [], f"{GUIDE.name} line {block.line}"


def test_every_config_field_is_named() -> None:
    assert missing_fields(TEXT) == []


# -- the checks can fail ----------------------------------------------------------------------


def test_a_bad_command_is_found() -> None:
    document = (
        "```console\n"
        "$ amr gw scan --bus-type modbus-rtu --device /dev/ttyUSB0 --speed 9600\n"
        "output\n"
        "$ curl -s http://127.0.0.1:8080/ | grep amr\n"
        "$ cd /opt && .venv/bin/amr gw check --config c.yaml --timeout-s soon > out.txt\n"
        "$ amr gw scan --bus-type dlt645 \\\n"
        "    --device /dev/ttyUSB1 < /dev/null\n"
        "```\n"
    )
    (block,) = blocks(document)
    found = [args for _, line in command_lines(block) for args in amr_commands(line)]
    assert found == [
        ["gw", "scan", "--bus-type", "modbus-rtu", "--device", "/dev/ttyUSB0", "--speed", "9600"],
        ["gw", "check", "--config", "c.yaml", "--timeout-s", "soon"],
        ["gw", "scan", "--bus-type", "dlt645", "--device", "/dev/ttyUSB1"],
    ]
    assert guide_commands("```sh\n# a comment\ngit clone <the project's repo> /opt\n```\n") == [
        (3, "git clone <the project's repo> /opt", ["<unreadable>", "No closing quotation"])
    ]
    problems = [command_problem(args) for args in found]
    assert "unrecognized arguments: --speed 9600" in str(problems[0])
    assert "--timeout-s: invalid float value: 'soon'" in str(problems[1])
    assert problems[2] is None
    assert "invalid choice" in str(command_problem(["gw", "scan", "--bus-type", "serial"]))
    assert command_problem(["gw", "check", "--help"]) is None


def test_a_bad_config_key_is_found() -> None:
    full = Block("yaml", 1, "gateway_id: gw-1\nmqtt: {hots: broker}\nbuses: []\n")
    assert yaml_problems(full) == [
        "mqtt.hots: Extra inputs are not permitted",
        "buses: List should have at least 1 item after validation, not 0",
    ]
    fragment = Block("yaml", 1, "journal:\n  path: /var/lib/amr/journal.db\n  quota: 64\n")
    assert yaml_problems(fragment) == ["journal.quota: Extra inputs are not permitted"]
    bus = Block(
        "yaml", 1, "buses:\n  - {name: d, type: dlt645, device: /dev/x, meters: [{address: 1}]}\n"
    )
    assert yaml_problems(bus) == ["buses[0].meters[0].address: Input should be a valid string"]
    sim = Block(
        "yaml", 1, "# amr sim lab\nbuses:\n  - {name: t, type: modbus-tcp, meter: {count: 1}}\n"
    )
    assert "buses[0].meter: Extra inputs are not permitted" in yaml_problems(sim)
    assert yaml_problems(Block("yaml", 1, "- a list\n")) == ["not a mapping but list"]
    good = Block("yaml", 1, "mqtt:\n  tls: {ca_file: /etc/amr/ca.pem}\n")
    assert yaml_problems(good) == []


def test_a_missing_field_is_found() -> None:
    assert "quota_mb" in config_fields() and "master_address" in config_fields()
    assert missing_fields(TEXT.replace("`quota_mb`", "quota_mb")) == ["quota_mb"]
    assert len(missing_fields("nothing here")) == len(config_fields())
