"""docs/register-map.md agrees with the profiles it documents, so the two cannot drift apart.

The document's point tables (header ``| Name | Table | Address (0-based) | ...``) must list every
point of ``config/profiles/amr-prepaid-v1.yaml`` exactly once, with its table, 0-based address,
1-based register, type, size, scale, unit, access and (from the section heading) group. Rows marked
``*reserved*`` must not overlap any point. The flag-bit and value-label tables (first header cell
``| `point` bit |`` or ``| `point` value |``) must match the profile's ``flags`` and ``values``. The
Eastron table must match ``eastron-sdm120.yaml``. The ``pycon`` examples must run as doctests.
"""

from __future__ import annotations

import doctest
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
import yaml

from protocols.modbus import Point, Profile, Table, parse_profile

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "register-map.md"
PROFILES = ROOT / "config" / "profiles"

POINT_HEADER = (
    "Name", "Table", "Address (0-based)", "Register (1-based)", "Type", "Regs", "Scale", "Unit",
    "Access", "Meaning",
)  # fmt: skip
EASTRON_HEADER = ("Name", "Eastron register", "Address (0-based)", "Type", "Unit", "Group")
FIRST_REGISTER = {Table.INPUT: 30001, Table.HOLDING: 40001}
NONE = "\N{EM DASH}"
RESERVED = "*reserved*"
RANGE = re.compile(r"^(\d+)(?:\N{EN DASH}(\d+))?$")
MAP_HEADER = re.compile(r"^`([a-z][a-z0-9_]*)` (bit|value)$")
GROUP = re.compile(r"`group: ([a-z][a-z0-9_]*)`")
DELIMITER = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")
PYCON = re.compile(r"^```pycon\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True, slots=True)
class MarkdownTable:
    heading: str  # the nearest heading above the table
    line: int  # 1-based line of the header row
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


def parse_tables(text: str) -> list[MarkdownTable]:
    """Every pipe table of a markdown text, outside code blocks."""
    lines = text.splitlines()
    tables: list[MarkdownTable] = []
    heading = ""
    in_code = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            heading = line
        elif (
            not in_code
            and line.startswith("|")
            and index + 1 < len(lines)
            and DELIMITER.match(lines[index + 1].strip())
        ):
            end = index + 2
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            rows = tuple(_cells(row) for row in lines[index + 2 : end])
            tables.append(MarkdownTable(heading, index + 1, _cells(line), rows))
            index = end
            continue
        index += 1
    return tables


def _plain(cell: str) -> str:
    return cell.strip("`")


def _span(cell: str) -> tuple[int, int] | None:
    """(first, last) of "20", or of "20" EN DASH "21"."""
    match = RANGE.match(cell)
    if match is None:
        return None
    first = int(match.group(1))
    return first, int(match.group(2) or first)


def _scale(cell: str) -> Decimal | None:
    if cell == NONE:
        return Decimal(1)
    try:
        return Decimal(cell)
    except InvalidOperation:
        return None


def _check_point_row(
    row: tuple[str, ...], point: Point, group: str | None, where: str
) -> list[str]:
    _, table, address, register, data_type, regs, scale, unit, access, _ = row
    problems: list[str] = []

    def expect(column: str, got: object, want: object) -> None:
        if got != want:
            problems.append(
                f"{where}: {point.name}: {column} is {got!r}, the profile says {want!r}"
            )

    expect("table", table, point.table.value)
    expect("address", address, str(point.address))
    first = FIRST_REGISTER.get(point.table, 0) + point.address
    expect("register", _span(register), (first, first + point.count - 1))
    expect("type", data_type, point.data_type.value)
    expect("registers", regs, str(point.count))
    expect("scale", _scale(scale), point.scale)
    expect("unit", None if unit == NONE else unit, point.unit)
    expect("access", access, point.access.value)
    expect("group (from the heading)", group, point.group)
    return problems


def _check_reserved_row(row: tuple[str, ...], profile: Profile, where: str) -> list[str]:
    _, table_name, address, register, *_ = row
    span, registers = _span(address), _span(register)
    try:
        table = Table(table_name)
    except ValueError:
        return [f"{where}: reserved row with unknown table {table_name!r}"]
    if span is None or registers is None:
        return [f"{where}: reserved row needs an address and a register (range)"]
    first = FIRST_REGISTER.get(table, 0)
    problems = []
    if registers != (first + span[0], first + span[1]):
        problems.append(f"{where}: reserved {address} is registers {registers}, not {register}")
    if row[5] != str(span[1] - span[0] + 1):
        problems.append(f"{where}: reserved {address} is not {row[5]} registers")
    for point in profile.points:
        if point.table is table and point.address <= span[1] and point.end > span[0]:
            problems.append(f"{where}: reserved {address} overlaps {point.name}")
    return problems


def check_point_tables(text: str, profile: Profile) -> list[str]:
    """Problems of the document's point tables against ``profile`` (empty when they agree)."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for table in parse_tables(text):
        if table.header != POINT_HEADER:
            continue
        found = GROUP.search(table.heading)
        group = found.group(1) if found else None
        for offset, row in enumerate(table.rows, start=1):
            where = f"{DOCUMENT.name} line {table.line + 1 + offset}"
            if len(row) != len(POINT_HEADER):
                problems.append(f"{where}: {len(row)} cells, expected {len(POINT_HEADER)}")
                continue
            if row[0] == RESERVED:
                problems += _check_reserved_row(row, profile, where)
                continue
            name = _plain(row[0])
            if name in seen:
                problems.append(f"{where}: {name} is listed again (first at {seen[name]})")
                continue
            seen[name] = where
            try:
                point = profile.point(name)
            except KeyError:
                problems.append(f"{where}: {name} is not a point of {profile.name}")
                continue
            problems += _check_point_row(row, point, group, where)
    for point in profile.points:
        if point.name not in seen:
            problems.append(f"{point.name} (address {point.address}) is missing from the tables")
    return problems


def check_label_tables(text: str, profile: Profile) -> list[str]:
    """The flag-bit and value-label tables against the profile's ``flags`` and ``values``."""
    problems: list[str] = []
    documented: set[tuple[str, str]] = set()
    for table in parse_tables(text):
        match = MAP_HEADER.match(table.header[0])
        if match is None:
            continue
        name, kind = match.group(1), match.group(2)
        documented.add((name, kind))
        try:
            point = profile.point(name)
        except KeyError:
            problems.append(f"line {table.line}: {name} is not a point of {profile.name}")
            continue
        want = dict(point.flags if kind == "bit" else point.values)
        got: dict[int, str] = {}
        for row in table.rows:
            if not row[0].isdigit():
                problems.append(f"line {table.line}: {name}: {row[0]!r} is not a number")
                continue
            got[int(row[0])] = _plain(row[1])
        if got != want:
            problems.append(f"line {table.line}: {name} {kind}s are {got}, the profile says {want}")
    for point in profile.points:
        for kind, mapping in (("bit", point.flags), ("value", point.values)):
            if mapping and (point.name, kind) not in documented:
                problems.append(f"{point.name}: no table of its {kind}s")
    return problems


def check_eastron_table(text: str, profile: Profile) -> list[str]:
    rows = [row for t in parse_tables(text) if t.header == EASTRON_HEADER for row in t.rows]
    problems: list[str] = []
    listed = {_plain(row[0]): row for row in rows}
    if len(listed) != len(rows):
        problems.append("a point of the Eastron table is listed twice")
    for point in profile.points:
        row = listed.pop(point.name, None)
        if row is None:
            problems.append(f"eastron: {point.name} is missing")
            continue
        want = (str(30001 + point.address), str(point.address), point.data_type.value,
                point.unit or NONE, point.group or NONE)  # fmt: skip
        if row[1:] != want:
            problems.append(f"eastron: {point.name} is {row[1:]}, the profile says {want}")
    problems += [f"eastron: {name} is not a point of the profile" for name in listed]
    return problems


def _profile(name: str) -> Profile:
    return parse_profile(yaml.safe_load((PROFILES / f"{name}.yaml").read_text()), name)


@pytest.fixture(scope="module")
def text() -> str:
    return DOCUMENT.read_text()


@pytest.fixture(scope="module")
def reference() -> Profile:
    return _profile("amr-prepaid-v1")


def test_every_point_is_documented_at_its_address(text: str, reference: Profile) -> None:
    assert check_point_tables(text, reference) == []


def test_flag_bits_and_value_labels_match_the_profile(text: str, reference: Profile) -> None:
    assert check_label_tables(text, reference) == []


def test_the_eastron_table_matches_its_profile(text: str) -> None:
    assert check_eastron_table(text, _profile("eastron-sdm120")) == []


def _edit(text: str, pick: Callable[[tuple[str, ...]], bool], edits: dict[int, str]) -> str:
    """``text`` with cells of the one table row that ``pick`` chooses replaced."""
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith("|") and pick(_cells(line))]
    assert len(hits) == 1, f"the mutation picks {len(hits)} rows"
    cells = list(_cells(lines[hits[0]]))
    for column, value in edits.items():
        cells[column] = value
    lines[hits[0]] = "| " + " | ".join(cells) + " |"
    return "\n".join(lines)


def _point_row(name: str) -> Callable[[tuple[str, ...]], bool]:
    return lambda cells: len(cells) == len(POINT_HEADER) and cells[0] == f"`{name}`"


def _without(name: str) -> Callable[[str], str]:
    return lambda text: "\n".join(line for line in text.splitlines() if f"`{name}`" not in line)


EN = "\N{EN DASH}"
MUTATIONS: dict[str, tuple[Callable[[str], str], Callable[[str, Profile], list[str]], str]] = {
    "wrong address": (
        lambda t: _edit(t, _point_row("energy_import_total"), {2: "21"}),
        check_point_tables,
        "energy_import_total: address",
    ),
    "wrong register": (
        lambda t: _edit(t, _point_row("relay_command"), {3: "40010"}),
        check_point_tables,
        "relay_command: register",
    ),
    "wrong scale": (
        lambda t: _edit(t, _point_row("voltage"), {6: "0.01"}),
        check_point_tables,
        "voltage: scale",
    ),
    "wrong access": (
        lambda t: _edit(t, _point_row("token_entry"), {8: "rw"}),
        check_point_tables,
        "token_entry: access",
    ),
    "missing point": (_without("token_count"), check_point_tables, "token_count (address 55)"),
    "reserved overlaps a point": (
        lambda t: _edit(
            t,
            lambda cells: cells[0] == RESERVED and cells[2] == f"14{EN}19",
            {2: f"13{EN}19", 3: f"30014{EN}30020", 5: "7"},
        ),
        check_point_tables,
        "overlaps sts_key_expiry_number",
    ),
    "wrong label": (
        lambda t: _edit(t, lambda cells: cells[:2] == ("10", "`used`"), {1: "`reused`"}),
        check_label_tables,
        "token_result values",
    ),
    "missing flag table": (
        lambda t: t.replace("| `status_flags` bit |", "| Bit |"),
        check_label_tables,
        "status_flags: no table of its bits",
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_the_checks_catch_a_wrong_document(text: str, reference: Profile, mutation: str) -> None:
    """The checks can fail: each mistake in a copy of the document is reported."""
    mutate, check, expected = MUTATIONS[mutation]
    wrong = mutate(text)
    assert wrong != text
    assert any(expected in problem for problem in check(wrong, reference)), check(wrong, reference)


def test_the_eastron_check_catches_a_wrong_address(text: str) -> None:
    wrong = _edit(
        text, lambda c: len(c) == len(EASTRON_HEADER) and c[0] == "`frequency`", {2: "71"}
    )
    assert any("frequency" in p for p in check_eastron_table(wrong, _profile("eastron-sdm120")))


def test_the_python_examples_run(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples open config/profiles/... relative to the project root
    blocks = PYCON.findall(text)
    assert blocks, "the document has no pycon examples"
    globs: dict[str, object] = {}  # one namespace: later examples use earlier names
    for number, block in enumerate(blocks, start=1):
        test = doctest.DocTestParser().get_doctest(
            block, globs, f"pycon {number}", DOCUMENT.name, 0
        )
        runner = doctest.DocTestRunner()
        result = runner.run(test, out=lambda report: print(report, end=""), clear_globs=False)
        globs.update(test.globs)  # a DocTest works on a copy of the namespace it is given
        assert result.failed == 0, f"{DOCUMENT.name} pycon example {number} failed (see output)"
