"""Manifest text that a terminal would act on instead of showing is refused, naming field and position.

The attack: a computation's SQL releases ``string_agg(a.email, ',')`` on a line whose comment
holds ``ESC [2K ESC [1G`` (erase the line, go to its start), so ``mpc session show`` prints the
comment's tail over it and the reviewing party never sees the release, though the hash covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from oblv_mpc import manifest
from oblv_mpc.errors import ManifestError

Doc = dict[str, Any]
ERASE_LINE = "\x1b[2K\x1b[1G"
HIDDEN_RELEASE = (
    "SELECT a.level, count(*) AS group_size,\n"
    f"  string_agg(a.email, ',') AS emails -- {ERASE_LINE}  count(*) AS n,\n"
    "FROM alice.employees a JOIN bob.employees b ON a.id = b.id GROUP BY a.level"
)


def _with_sql(doc: Doc, sql: str) -> Doc:
    doc["inputs"]["alice.employees"]["columns"]["email"] = "text"
    doc["computations"]["by_level"] = {"sql": sql, "readers": ["alice", "bob"]}
    return doc


def _problems(doc: Doc) -> list[str]:
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    return info.value.problems


def test_session_check_refuses_sql_whose_comment_erases_its_own_line(
    cli: Any, tmp_path: Path, salary_doc: Callable[[], Doc]
) -> None:
    path = tmp_path / "hidden.yaml"
    path.write_text(yaml.safe_dump(_with_sql(salary_doc(), HIDDEN_RELEASE)))  # YAML writes ESC as "\e"
    assert "\x1b" not in path.read_text()
    done = cli("session", "check", str(path))
    assert done.exit_code == 3
    assert (
        "computations.by_level.sql: contains U+001B (ESC) at line 2, column 41 (character 81), which a terminal "
        "acts on instead of showing" in done.output
    )
    assert "\x1b" not in done.output  # the refusal itself shows nothing raw
    shown = cli("session", "show", str(path))
    assert shown.exit_code == 3 and "\x1b" not in shown.output


@pytest.mark.parametrize(
    ("name", "char", "where"),
    [
        ("a lone carriage return overwrites the line", "\r", "U+000D (CR) at line 1, column 10"),
        ("a right-to-left override reverses what follows", "\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("a C1 CSI acts as ESC [ on some terminals", "\x9b", "U+009B (CSI, a C1 control)"),
        ("a backspace deletes what came before", "\x08", "U+0008 (BS)"),
        ("a zero-width space hides a difference", "\u200b", "U+200B (ZERO WIDTH SPACE)"),
        ("a bidi isolate reorders text", "\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
        ("a line separator breaks lines on some terminals", "\u2028", "U+2028 (LINE SEPARATOR)"),
    ],
)
def test_sql_with_a_hiding_character_is_refused(
    salary_doc: Callable[[], Doc], name: str, char: str, where: str
) -> None:
    sql = f"SELECT id{char} FROM alice.employees"
    problems = _problems(_with_sql(salary_doc(), sql))
    assert len(problems) == 1, name
    assert problems[0].startswith("computations.by_level.sql: contains U+"), name
    assert where in problems[0], name


def test_sql_may_use_tabs_newlines_and_crlf_line_ends(salary_doc: Callable[[], Doc]) -> None:
    sql = "SELECT\tlevel,\r\n  count(*) AS n\nFROM alice.employees\nGROUP BY level"
    loaded = manifest.from_data(_with_sql(salary_doc(), sql))
    assert loaded.computations["by_level"].sql == sql


def test_template_parameters_cannot_smuggle_hiding_characters_into_generated_sql(
    salary_doc: Callable[[], Doc],
) -> None:
    doc = salary_doc()
    doc["computations"]["average_salary"]["params"]["aggregates"] = {f"avg{ERASE_LINE}": {"avg": "salary"}}
    problems = _problems(doc)
    assert any("U+001B (ESC)" in p for p in problems), problems


@pytest.mark.parametrize("field", ["description", "computations/average_salary/description"])
def test_descriptions_with_hiding_characters_are_refused(salary_doc: Callable[[], Doc], field: str) -> None:
    doc = salary_doc()
    node = doc
    *parents, last = field.split("/")
    for part in parents:
        node = node[part]
    node[last] = f"average salary{ERASE_LINE}nothing else"
    problems = _problems(doc)
    assert problems == [
        f"{field.replace('/', '.')}: contains U+001B (ESC) at line 1, column 15 (character 15), which a terminal "
        "acts on instead of showing; remove it"
    ]


def test_a_multi_line_description_is_fine(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc["description"] = "Average salary per level.\n\tNothing else is released."
    assert manifest.from_data(doc).description == doc["description"]


@pytest.mark.parametrize(
    ("name", "apply", "path"),
    [
        ("party", lambda d: d["parties"].update({"mallory\n": d["parties"].pop("carol")}), "parties.mallory\n"),
        ("session", lambda d: d.update(session="salaries\n"), "session"),
        (
            "column",
            lambda d: d["inputs"]["alice.employees"]["columns"].update({"email\n": "text"}),
            "inputs.alice.employees.columns.email\n",
        ),
    ],
)
def test_a_name_with_a_trailing_newline_is_refused(
    salary_doc: Callable[[], Doc], name: str, apply: Callable[[Doc], None], path: str
) -> None:
    # a regex ending in `$` matches before a final newline: names are checked with fullmatch
    doc = salary_doc()
    apply(doc)
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    assert any(p.startswith(path + ":") for p in info.value.problems), (name, info.value.problems)
    assert "\n  - " + path.replace("\n", "\\n") in info.value.message  # one line per problem, escaped


def test_a_manifest_error_message_escapes_the_keys_it_quotes(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc[f"colour{ERASE_LINE}"] = "blue"
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    assert info.value.problems[0].startswith(f"colour{ERASE_LINE}: unknown field")  # raw, for programs
    assert "colour\\x1b[2K\\x1b[1G: unknown field" in info.value.message  # escaped, for people
    assert "\x1b" not in info.value.diagnostics()
