"""docs/headend.md agrees with the head-end it documents.

What is checked, and by which rule:

* **Routes.** Every ``METHOD /api/v1/...`` named anywhere in the guide is a route of
  ``headend.api.app.build_router()`` (same ``route.method`` and ``route.template``), and every
  route of the router is named in the guide. The route reference table (the table whose header
  starts ``| Route |``) has one row per route, and its Permission column is the route's
  permission (``public`` for a route that needs none).
* **Settings.** Every setting in the settings table (header ``| Setting |``; the first cell is a
  dotted path as code, ``mqtt.tls.ca_file``) is a field of ``headend.config.HeadendConfig``,
  found by walking the pydantic models, and every leaf field of the model is in the table.
* **Roles.** The roles table (header ``| Permission |``) has one column per role of
  ``headend.auth.ROLE_PERMISSIONS``, in the code's order, one row per permission of
  ``headend.auth.PERMISSIONS``, and ``yes`` exactly where the role holds the permission.
* **Command states.** The states table (header ``| State |``) has one row per state of
  ``headend.commands.TRANSITIONS``, and its last column names (as code) exactly the states the
  code allows the command to move to.
* **Examples.** Every ``yaml`` block is a valid head-end configuration
  (``headend.config.parse_config``). Every ``amr`` command in ``console`` blocks (``$ `` lines) and
  ``sh`` blocks (non-comment lines) parses with ``headend.cli.main.build_parser()``. Every
  ``curl`` call of an ``/api/v1/`` URL in a ``console`` block resolves to a route of the router,
  and its JSON body (``-d``, or a here-document for ``-d @-``) validates against the route's body
  model, unless the answer shown under it is an error: then a body the answer says does not match
  the schema must indeed not validate, and a 404 or 405 shown must be what the router answers.

The last tests feed made-up text to the same functions, to show that each check can fail.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from headend.api.app import build_router
from headend.api.framework import ApiError, Route, Router
from headend.auth import PERMISSIONS, ROLE_PERMISSIONS
from headend.cli.main import build_parser
from headend.commands import TRANSITIONS
from headend.config import ConfigError, HeadendConfig, parse_config
from tests.support.shell import simple_commands

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "headend.md"
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
ROUTE_NAME = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) (/api/v1/[A-Za-z0-9_.{}/-]*)")
CODE = re.compile(r"`([^`]+)`")
HEREDOC = re.compile(r"<<-?'?\"?(\w+)'?\"?")
REDIRECTIONS = {"<", ">", ">>", ">&", "<&", "&>", "<<"}
PUBLIC = "public"
NOT_THE_SCHEMA = '"message": "the body does not match its schema"'


@dataclass(frozen=True, slots=True)
class Block:
    kind: str
    line: int  # 1-based line of the block's first content line in the document
    text: str


@dataclass(frozen=True, slots=True)
class Command:
    line: int
    text: str  # the command with its continuation lines, without the here-document
    heredoc: str | None  # the here-document's text, if the command has one
    output: str  # what the block shows under it


def blocks(document: str) -> list[Block]:
    """The fenced code blocks of a Markdown document, with their info string's first word."""
    return [
        Block(m.group(1), document.count("\n", 0, m.start(2)) + 1, m.group(2))
        for m in BLOCK.finditer(document)
    ]


def _complete(text: str) -> bool:
    """Whether ``text`` is a whole shell command line: no trailing ``\\``, no open quote."""
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text)
    except ValueError:
        return False
    return True


def console_commands(block: Block) -> list[Command]:
    """The commands of a console block (``$ `` lines) with their continuations and output."""
    lines = block.text.splitlines()
    found: list[Command] = []
    index = 0
    while index < len(lines):
        if not lines[index].startswith("$ "):
            index += 1
            continue
        number = block.line + index
        text = lines[index][2:]
        index += 1
        while not _complete(text) and index < len(lines):
            text = (text[:-1] if text.endswith("\\") else text + "\n") + lines[index]
            index += 1
        heredoc = None
        marker = HEREDOC.search(text)
        if marker is not None:
            body: list[str] = []
            while index < len(lines) and lines[index] != marker.group(1):
                body.append(lines[index])
                index += 1
            index += 1  # the closing marker
            heredoc = "\n".join(body) + "\n"
        output: list[str] = []
        while index < len(lines) and not lines[index].startswith("$ "):
            output.append(lines[index])
            index += 1
        found.append(Command(number, text, heredoc, "\n".join(output)))
    return found


def sh_commands(block: Block) -> list[tuple[int, str]]:
    """(line, command) of an sh block: its non-comment lines, with continuations."""
    lines = block.text.splitlines()
    found: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        line, number = lines[index], block.line + index
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and index < len(lines):
            line = line[:-1] + " " + lines[index]
            index += 1
        found.append((number, line))
    return found


def _arguments(segment: list[str]) -> list[str]:
    args: list[str] = []
    for token in segment[1:]:
        if token in REDIRECTIONS:
            break
        args.append(token)
    return args


def amr_commands(line: str) -> list[list[str]]:
    """The argument lists (after ``amr``) of every ``amr`` command on a shell line."""
    return [
        _arguments(segment)
        for segment in simple_commands(line)
        if segment[0] == "amr" or segment[0].endswith("/amr")
    ]


def command_problem(args: list[str]) -> str | None:
    """None if ``amr ARGS`` parses with the real parser, else what the parser said."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return errors.getvalue().strip() or f"exit status {exc.code}"
    return None


@dataclass(frozen=True, slots=True)
class Curl:
    method: str
    path: str
    data: str | None


def curl_calls(command: Command) -> list[Curl]:
    """The ``curl`` calls of ``/api/v1/`` URLs in a console command."""
    found: list[Curl] = []
    for segment in simple_commands(command.text):
        if segment[0] != "curl":
            continue
        method: str | None = None
        data: str | None = None
        url: str | None = None
        words = iter(segment[1:])
        for word in words:
            if word in ("-X", "--request"):
                method = next(words)
            elif word in ("-d", "--data", "--data-raw", "--data-binary"):
                data = next(words)
            elif word in ("-H", "--header", "-o", "--output", "-w", "--write-out"):
                next(words)
            elif "/api/v1/" in word:
                url = word
        if url is None:
            continue
        if data == "@-":
            data = command.heredoc
        path = "/api/v1/" + url.split("/api/v1/", 1)[1].split("?", 1)[0]
        found.append(Curl(method or ("POST" if data is not None else "GET"), path, data))
    return found


def curl_problem(router: Router, call: Curl, output: str) -> str | None:
    """Why a curl call of the guide does not fit the API (None when it does)."""
    try:
        route, _ = router.resolve(call.method, call.path)
    except ApiError as exc:
        if f'"status": {exc.status}' in output:
            return None  # the guide shows this very refusal
        return f"{call.method} {call.path}: {exc.message}"
    refused = output.lstrip().startswith('{"error"')
    if route.body is None:
        if call.data is not None and not refused:
            return f"{route.label} takes no body, but the example sends one"
        return None
    if call.data is None:
        return None if refused else f"{route.label} needs a body, and the example sends none"
    try:
        document = json.loads(call.data)
    except ValueError as exc:
        return f"{route.label}: the example's body is not JSON ({exc})"
    try:
        route.body.model_validate(document)
    except ValidationError as exc:
        if NOT_THE_SCHEMA in output:
            return None
        return f"{route.label}: the example's body does not validate:\n{exc}"
    if NOT_THE_SCHEMA in output:
        return f"{route.label}: the answer shown refuses a body that validates"
    return None


# -- tables ---------------------------------------------------------------------------------


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def table(document: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, rows of cells) of the table whose header's first cell is ``first_header``."""
    lines = document.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("|") and _cells(line)[0] == first_header:
            rows: list[list[str]] = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            return _cells(line), rows
    raise AssertionError(f"no table with the header '| {first_header} |'")


def _code(cell: str) -> list[str]:
    return CODE.findall(cell)


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in get_args(annotation):
        yield from _models(argument)


def config_settings(model: type[BaseModel] = HeadendConfig, prefix: str = "") -> set[str]:
    """Every leaf setting of the configuration model, as a dotted path."""
    found: set[str] = set()
    for name, info in model.model_fields.items():
        nested = list(_models(info.annotation))
        if not nested:
            found.add(prefix + name)
        for sub in nested:
            found |= config_settings(sub, f"{prefix}{name}.")
    return found


def setting_problems(document: str) -> list[str]:
    _, rows = table(document, "Setting")
    named = [(_code(row[0]) or [row[0]])[0] for row in rows]
    known = config_settings()
    problems = [f"{name}: no such setting" for name in named if name not in known]
    problems += [f"{name}: not in the table" for name in sorted(known - set(named))]
    problems += [
        f"{name}: twice in the table" for name in sorted(set(named)) if named.count(name) > 1
    ]
    return problems


def role_problems(document: str) -> list[str]:
    header, rows = table(document, "Permission")
    roles = [(_code(cell) or [cell])[0] for cell in header[2:]]
    problems = []
    if roles != list(ROLE_PERMISSIONS):
        problems.append(f"roles {roles}, the code has {list(ROLE_PERMISSIONS)}")
    permissions = [(_code(row[0]) or [row[0]])[0] for row in rows]
    if sorted(permissions) != sorted(PERMISSIONS):
        problems.append(f"permissions {permissions}, the code has {list(PERMISSIONS)}")
    for row, permission in zip(rows, permissions, strict=True):
        for role, cell in zip(roles, row[2:], strict=False):
            granted = cell.lower() == "yes"
            if granted != (permission in ROLE_PERMISSIONS.get(role, frozenset())):
                problems.append(f"{role} / {permission}: the table says {cell or 'no'!r}")
    return problems


def state_problems(document: str) -> list[str]:
    _, rows = table(document, "State")
    problems = []
    states = [(_code(row[0]) or [row[0]])[0] for row in rows]
    if sorted(states) != sorted(TRANSITIONS):
        problems.append(f"states {states}, the code has {sorted(TRANSITIONS)}")
    for row, state in zip(rows, states, strict=True):
        moves = set(_code(row[-1]))
        if state in TRANSITIONS and moves != set(TRANSITIONS[state]):
            problems.append(
                f"{state} -> {sorted(moves)}, the code has {sorted(TRANSITIONS[state])}"
            )
    return problems


def named_routes(document: str) -> set[tuple[str, str]]:
    return set(ROUTE_NAME.findall(document))


def route_problems(document: str, routes: list[Route]) -> list[str]:
    """Routes named but not in the router, routes not named, and reference table mistakes."""
    known = {(route.method, route.template): route for route in routes}
    named = named_routes(document)
    problems = [f"{m} {t}: no such route" for m, t in sorted(named) if (m, t) not in known]
    problems += [f"{m} {t}: never named" for m, t in sorted(set(known) - named)]
    _, rows = table(document, "Route")
    seen: list[tuple[str, str]] = []
    for row in rows:
        found = ROUTE_NAME.search(row[0])
        if found is None:
            problems.append(f"reference row {row[0]!r}: not a route")
            continue
        key = (found.group(1), found.group(2))
        seen.append(key)
        route = known.get(key)
        if route is None:
            continue
        written = (_code(row[1]) or [row[1]])[0]
        if written != (route.permission or PUBLIC):
            problems.append(
                f"{route.label}: permission {written!r}, the code has "
                f"{route.permission or PUBLIC!r}"
            )
    problems += [
        f"{m} {t}: no row in the route reference" for m, t in sorted(set(known) - set(seen))
    ]
    problems += [
        f"{m} {t}: twice in the route reference" for m, t in set(seen) if seen.count((m, t)) > 1
    ]
    return problems


def yaml_problems(block: Block) -> list[str]:
    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    if not isinstance(data, dict):
        return [f"not a mapping but {type(data).__name__}"]
    try:
        parse_config(data)
    except ConfigError as exc:
        return exc.problems
    return []


# -- what the guide holds -------------------------------------------------------------------

TEXT = GUIDE.read_text()
BLOCKS = blocks(TEXT)
ROUTER = build_router()
YAML_BLOCKS = [block for block in BLOCKS if block.kind == "yaml"]
CONSOLE = [
    command for block in BLOCKS if block.kind == "console" for command in console_commands(block)
]
AMR_LINES = [(c.line, c.text) for c in CONSOLE] + [
    found for block in BLOCKS if block.kind == "sh" for found in sh_commands(block)
]
AMR = [(number, line, args) for number, line in AMR_LINES for args in amr_commands(line)]
CURLS = [(command, call) for command in CONSOLE for call in curl_calls(command)]


def test_every_route_named_exists_and_every_route_is_named() -> None:
    assert route_problems(TEXT, ROUTER.routes) == []


def test_every_setting_is_in_the_table_and_exists() -> None:
    assert setting_problems(TEXT) == []


def test_the_roles_table_is_the_codes() -> None:
    assert role_problems(TEXT) == []


def test_the_command_states_table_is_the_codes() -> None:
    assert state_problems(TEXT) == []


def test_the_guide_has_examples_of_every_kind() -> None:
    assert len(YAML_BLOCKS) >= 2
    assert {args[0] for _, _, args in AMR} >= {"db", "user", "headend"}
    assert len(CURLS) >= 60, f"only {len(CURLS)} curl calls found"
    shown: set[str] = set()
    for _, call in CURLS:
        with contextlib.suppress(ApiError):
            shown.add(ROUTER.resolve(call.method, call.path)[0].label)
    assert len(shown) >= 45, f"curl examples for only {len(shown)} routes"


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"yaml at line {b.line}" for b in YAML_BLOCKS])
def test_yaml_block_is_a_valid_configuration(block: Block) -> None:
    assert yaml_problems(block) == [], f"{GUIDE.name} line {block.line}"


@pytest.mark.parametrize(
    ("number", "line", "args"), AMR, ids=[f"line {n}: amr {a[0]}" for n, _, a in AMR]
)
def test_amr_command_parses(number: int, line: str, args: list[str]) -> None:
    problem = command_problem(args)
    assert problem is None, f"{GUIDE.name} line {number}: {line}\n{problem}"


@pytest.mark.parametrize(
    ("command", "call"), CURLS, ids=[f"line {c.line}: {k.method} {k.path}" for c, k in CURLS]
)
def test_curl_example_fits_its_route(command: Command, call: Curl) -> None:
    problem = curl_problem(ROUTER, call, command.output)
    assert problem is None, f"{GUIDE.name} line {command.line}: {command.text}\n{problem}"


# -- the checks can fail --------------------------------------------------------------------


def test_a_wrong_route_name_or_permission_is_found() -> None:
    text = TEXT.replace("`GET /api/v1/me` | `read`", "`GET /api/v1/me` | `admin`")
    text = text.replace("GET /api/v1/roles", "GET /api/v1/role")
    problems = route_problems(text, ROUTER.routes)
    assert "GET /api/v1/role: no such route" in problems
    assert "GET /api/v1/roles: never named" in problems
    assert "GET /api/v1/roles: no row in the route reference" in problems
    assert "GET /api/v1/me: permission 'admin', the code has 'read'" in problems
    login = TEXT.replace("`POST /api/v1/login` | public", "`POST /api/v1/login` | `read`")
    assert route_problems(login, ROUTER.routes) == [
        "POST /api/v1/login: permission 'read', the code has 'public'"
    ]


def test_a_wrong_setting_is_found() -> None:
    text = TEXT.replace("| `mqtt.keepalive_s` |", "| `mqtt.keep_alive_s` |")
    assert setting_problems(text) == [
        "mqtt.keep_alive_s: no such setting",
        "mqtt.keepalive_s: not in the table",
    ]
    assert "notify.smtp.host" in config_settings() and "mqtt.tls.ca_file" in config_settings()


def test_a_wrong_role_table_is_found() -> None:
    row = "| `vend.cancel` | cancel a sale not yet sent to the meter | yes | yes | | | | |"
    assert row in TEXT
    text = TEXT.replace(row, row.replace("| yes | yes | | |", "| yes | yes | yes | |", 1))
    assert role_problems(text) == ["cashier / vend.cancel: the table says 'yes'"]


def test_a_wrong_state_table_is_found() -> None:
    text = TEXT.replace(
        "| `sent`, `superseded`, `cancelled`, `expired`, `failed` |",
        "| `sent`, `superseded`, `cancelled`, `expired` |",
    )
    assert state_problems(text) == [
        "queued -> ['cancelled', 'expired', 'sent', 'superseded'], the code has "
        "['cancelled', 'expired', 'failed', 'sent', 'superseded']"
    ]


def test_a_wrong_curl_example_is_found() -> None:
    block = Block(
        "console",
        1,
        '$ curl -s -X POST $AMR/api/v1/vends -H "$AUTH" \\\n'
        '    -d \'{"meter_id": "1", "amount": 5}\'\n'
        '{"id": 1}\n'
        "$ curl -s $AMR/api/v1/tariffs -H \"$AUTH\" -d @- <<'BODY' | jq .\n"
        '{"name": "t", "kind": "step",\n'
        ' "body": {}}\n'
        "BODY\n"
        '{"id": 2}\n'
        '$ curl -s -X PUT "$AMR/api/v1/vends?limit=1"\n'
        '{"id": 3}\n'
        "$ curl -s -X POST $AMR/api/v1/alarms/1/ack -d '{\"comment\": 5}'\n"
        '{"error": {"status": 422, "code": "validation_failed", '
        '"message": "the body does not match its schema"}}\n',
    )
    commands = console_commands(block)
    assert [c.line for c in commands] == [1, 4, 9, 11]
    calls = [(c, k) for c in commands for k in curl_calls(c)]
    assert [(k.method, k.path) for _, k in calls] == [
        ("POST", "/api/v1/vends"),
        ("POST", "/api/v1/tariffs"),
        ("PUT", "/api/v1/vends"),
        ("POST", "/api/v1/alarms/1/ack"),
    ]
    assert calls[1][1].data == '{"name": "t", "kind": "step",\n "body": {}}\n'
    problems = [curl_problem(ROUTER, k, c.output) for c, k in calls]
    assert "amount\n  Extra inputs are not permitted" in str(problems[0])
    assert problems[1] is None
    assert "PUT is not allowed on /api/v1/vends" in str(problems[2])
    assert problems[3] is None
    valid_ack = Curl("POST", "/api/v1/alarms/1/ack", "{}")
    assert "refuses a body that validates" in str(curl_problem(ROUTER, valid_ack, NOT_THE_SCHEMA))
    no_body = Curl("POST", "/api/v1/vends", None)
    assert "needs a body" in str(curl_problem(ROUTER, no_body, '{"id": 1}'))


def test_a_bad_amr_command_or_yaml_is_found() -> None:
    assert amr_commands("amr db upgrade --config h.yaml && .venv/bin/amr user add < pw.txt") == [
        ["db", "upgrade", "--config", "h.yaml"],
        ["user", "add"],
    ]
    assert command_problem(["db", "upgrade", "--config", "h.yaml"]) is None
    assert command_problem(["db", "--config", "h.yaml", "upgrade"]) is None
    assert "invalid choice" in str(command_problem(["db", "--config", "h.yaml", "upgrad"]))
    assert yaml_problems(Block("yaml", 1, "mqtt:\n  hots: broker\n")) == [
        "mqtt.hots: Extra inputs are not permitted"
    ]
    assert yaml_problems(Block("yaml", 1, "- a list\n")) == ["not a mapping but list"]
