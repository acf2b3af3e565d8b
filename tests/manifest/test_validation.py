"""Every manifest validation rule fails on an example that breaks it, naming the field path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from oblv_mpc import keys, manifest
from oblv_mpc.errors import ManifestError

Doc = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _delete(path: str) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[part]
        del node[last]

    return apply


AVG = "computations/average_salary"
PSI = "computations/common_ids"

CASES: list[tuple[str, Callable[[Doc], None], str, str]] = [
    ("unknown top-level field", _set("colour", "blue"), "colour", "unknown field"),
    ("wrong schema version", _set("version", 2), "version", "expected 1"),
    ("bad session id", _set("session", "Has Spaces"), "session", "session id"),
    ("description not text", _set("description", ["x"]), "description", "expected text"),
    ("parties not a mapping", _set("parties", ["alice"]), "parties", "expected a mapping"),
    (
        "bad party name",
        lambda d: d["parties"].update({"Bad-Name": d["parties"]["alice"]}),
        "parties.Bad-Name",
        "party name",
    ),
    (
        "reserved party name",
        lambda d: d["parties"].update({"main": {"public_key": "x", "roles": ["reader"]}}),
        "parties.main",
        "reserved",
    ),
    ("unknown party field", _set("parties/bob/email", "bob@example.com"), "parties.bob.email", "unknown field"),
    ("missing public key", _delete("parties/bob/public_key"), "parties.bob.public_key", "base64 public key"),
    ("garbage public key", _set("parties/bob/public_key", "AAAA"), "parties.bob.public_key", "not a public key"),
    ("public key not base64", _set("parties/bob/public_key", "%%%"), "parties.bob.public_key", "not valid base64"),
    ("no roles", _set("parties/bob/roles", []), "parties.bob.roles", "non-empty list of roles"),
    (
        "unknown role",
        _set("parties/bob/roles", ["contributor", "admin"]),
        "parties.bob.roles[1]",
        "one of contributor, reader",
    ),
    (
        "two parties share a key",
        lambda d: d["parties"]["bob"].update(public_key=d["parties"]["alice"]["public_key"]),
        "parties.bob.public_key",
        "same key as parties.alice",
    ),
    (
        "input not party.table",
        lambda d: d["inputs"].update({"employees": d["inputs"]["alice.employees"]}),
        "inputs.employees",
        "party.table",
    ),
    (
        "input of undeclared party",
        lambda d: d["inputs"].update({"dave.t": {"columns": {"a": "text"}}}),
        "inputs.dave.t",
        "a declared party",
    ),
    (
        "input of a non-contributor",
        _set("parties/carol/roles", ["reader"]),
        "inputs.carol.employees",
        "no contributor role",
    ),
    ("no columns", _set("inputs/bob.employees/columns", {}), "inputs.bob.employees.columns", "column name -> type"),
    (
        "bad column type",
        _set("inputs/bob.employees/columns/salary", "money"),
        "inputs.bob.employees.columns.salary",
        "a type among",
    ),
    (
        "bad column name",
        _set("inputs/bob.employees/columns/Salary Band", "text"),
        "inputs.bob.employees.columns.Salary Band",
        "column name",
    ),
    (
        "key not a column",
        _set("inputs/bob.employees/key", ["ssn"]),
        "inputs.bob.employees.key",
        "columns of this table",
    ),
    (
        "max_rows not positive",
        _set("inputs/bob.employees/max_rows", 0),
        "inputs.bob.employees.max_rows",
        "positive whole number",
    ),
    (
        "max_bytes not a number",
        _set("inputs/bob.employees/max_bytes", "1GB"),
        "inputs.bob.employees.max_bytes",
        "positive whole number",
    ),
    ("unknown input field", _set("inputs/bob.employees/owner", "bob"), "inputs.bob.employees.owner", "unknown field"),
    (
        "reader not a party",
        _set(f"{AVG}/readers", ["alice", "dave"]),
        "computations.average_salary.readers[1]",
        "a declared party",
    ),
    (
        "reader without reader role",
        _set("parties/carol/roles", ["contributor"]),
        "computations.average_salary.readers[2]",
        "no reader role",
    ),
    ("no readers", _set(f"{AVG}/readers", []), "computations.average_salary.readers", "non-empty list"),
    (
        "reader twice",
        _set(f"{AVG}/readers", ["alice", "alice"]),
        "computations.average_salary.readers",
        "more than once",
    ),
    (
        "template and sql",
        _set(f"{AVG}/sql", "SELECT 1"),
        "computations.average_salary",
        "exactly one of template, sql or synthetic",
    ),
    (
        "neither template nor sql",
        _delete(f"{AVG}/template"),
        "computations.average_salary",
        "exactly one of template, sql or synthetic",
    ),
    ("unknown template", _set(f"{AVG}/template", "median"), "computations.average_salary.template", "one of psi"),
    (
        "template without params",
        _delete(f"{AVG}/params"),
        "computations.average_salary.params",
        "parameters of template",
    ),
    (
        "unknown template parameter",
        _set(f"{AVG}/params/where", "salary > 0"),
        "computations.average_salary.params.where",
        "unknown parameter",
    ),
    (
        "template input undeclared",
        _set(f"{AVG}/params/inputs/1", "bob.payroll"),
        "computations.average_salary.params.inputs[1]",
        "a declared input",
    ),
    (
        "psi with one input",
        _set(f"{PSI}/params/inputs", ["alice.employees"]),
        "computations.common_ids.params.inputs",
        "at least 2",
    ),
    (
        "psi column missing",
        _set(f"{PSI}/params/column", "email"),
        "computations.common_ids.params.column",
        "a column of alice.employees",
    ),
    (
        "psi columns of different types",
        _set("inputs/bob.employees/columns/id", "integer"),
        "computations.common_ids.params.column",
        "different types",
    ),
    (
        "aggregate unknown function",
        _set(f"{AVG}/params/aggregates/average_salary", {"median": "salary"}),
        "computations.average_salary.params.aggregates.average_salary",
        "a function among",
    ),
    (
        "sum over text",
        _set(f"{AVG}/params/aggregates/average_salary", {"sum": "level"}),
        "computations.average_salary.params.aggregates.average_salary",
        "needs a numeric column",
    ),
    (
        "aggregate over missing column",
        _set(f"{AVG}/params/aggregates/average_salary", {"avg": "bonus"}),
        "computations.average_salary.params.aggregates.average_salary",
        "present in every input",
    ),
    (
        "group_size reserved",
        _set(f"{AVG}/params/aggregates/group_size", {"count": "*"}),
        "computations.average_salary.params.aggregates.group_size",
        "reserved",
    ),
    (
        "group by missing column",
        _set(f"{AVG}/params/group_by", ["department"]),
        "computations.average_salary.params.group_by[0]",
        "present in every input",
    ),
    (
        "min_group_size, replaced by the owners' rules",
        _set(f"{AVG}/min_group_size", 3),
        "computations.average_salary.min_group_size",
        "was replaced by each owner's protection rules",
    ),
    (
        "max_output_rows not positive",
        _set(f"{AVG}/max_output_rows", -1),
        "computations.average_salary.max_output_rows",
        "positive whole number",
    ),
    (
        "a column named like the clock",
        _set("inputs/alice.employees/columns/current_date", "date"),
        "inputs.alice.employees.columns.current_date",
        "is reserved",
    ),
    (
        "computation name invalid",
        lambda d: d["computations"].update({"Avg Salary": d["computations"]["average_salary"]}),
        "computations.Avg Salary",
        "computation name",
    ),
    ("a single party", lambda d: [d["parties"].pop(p) for p in ("bob", "carol")], "parties", "at least two parties"),
    ("contributor without inputs", _delete("inputs/bob.employees"), "parties.bob.roles", "no input table"),
    ("no computations", _set("computations", {}), "computations", "at least one computation"),
]


@pytest.mark.parametrize(("name", "mutate", "path", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_fails_with_its_field_path(
    salary_doc: Callable[[], Doc], name: str, mutate: Callable[[Doc], None], path: str, message: str
) -> None:
    doc = salary_doc()
    manifest.from_data(doc)  # the unbroken example is valid
    mutate(doc)
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc, source="sessions/test.yaml")
    hits = [p for p in info.value.problems if p.startswith(f"{path}: ") and message in p]
    assert hits, f"no problem at {path!r} mentioning {message!r}; got {info.value.problems}"
    assert "sessions/test.yaml" in str(info.value)


def test_join_aggregate_rules(party_keys: dict[str, keys.PrivateKey], salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc["computations"]["joined"] = {
        "template": "join_aggregate",
        "params": {
            "inputs": ["alice.employees", "bob.employees"],
            "join_on": "id",
            "aggregates": {"s": {"sum": "salary"}},
        },
        "readers": ["alice"],
    }
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    assert any("computations.joined.params.aggregates.s" in p and "qualify it" in p for p in info.value.problems)
    doc["computations"]["joined"]["params"]["aggregates"] = {"s": {"sum": "bob.employees.salary"}}
    doc["computations"]["joined"]["params"]["join_on"] = "missing"
    with pytest.raises(ManifestError, match=r"computations\.joined\.params\.join_on"):
        manifest.from_data(doc)


def test_duplicate_yaml_keys_are_refused(salary_doc: Callable[[], Doc]) -> None:
    text = yaml.safe_dump(salary_doc(), sort_keys=False)
    text = text.replace("session: salaries\n", "session: salaries\nsession: other\n")
    with pytest.raises(ManifestError, match="duplicate key 'session'"):
        manifest.parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [", "not valid YAML"), ("- 1\n- 2\n", "mapping at the top level"), ("", "mapping at the top level")],
)
def test_unparseable_manifests(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        manifest.parse(text)


def test_oversized_manifest_is_refused_before_parsing() -> None:
    with pytest.raises(ManifestError, match="larger than"):
        manifest.parse("a: " + "x" * (manifest._parse.MAX_MANIFEST_BYTES + 1))


def test_every_problem_is_reported_at_once(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc["version"] = 7
    doc["parties"]["bob"]["roles"] = ["boss"]
    doc["inputs"]["alice.employees"]["columns"]["salary"] = "money"
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    paths = {p.split(":")[0] for p in info.value.problems}
    assert {"version", "parties.bob.roles[0]", "inputs.alice.employees.columns.salary"} <= paths


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        manifest.load(tmp_path / "nope.yaml")


def test_the_worked_examples_validate() -> None:
    examples = sorted(Path(__file__).parents[2].joinpath("sessions").glob("*.yaml"))
    assert len(examples) >= 2
    for path in examples:
        loaded = manifest.load(path)
        assert loaded.computations
