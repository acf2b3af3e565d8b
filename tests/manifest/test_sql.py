"""`sql:` computations: every forbidden form is refused when the manifest is validated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oblv_mpc import manifest
from oblv_mpc.errors import ManifestError

Doc = dict[str, Any]

FORBIDDEN = [
    ("file read by table function", "SELECT * FROM read_csv('/etc/passwd')", "table function read_csv()"),
    ("file read by path", "SELECT * FROM '/etc/passwd'", "undeclared table '/etc/passwd'"),
    (
        "parquet over the network",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
        "table function read_parquet()",
    ),
    ("COPY", "COPY alice.employees TO '/tmp/out.csv'", "COPY (reads or writes files) is not allowed"),
    ("ATTACH", "ATTACH '/tmp/other.db' AS other", "ATTACH (opens another database) is not allowed"),
    ("INSTALL", "INSTALL httpfs", "INSTALL/LOAD (extensions) is not allowed"),
    ("LOAD", "LOAD httpfs", "INSTALL/LOAD (extensions) is not allowed"),
    ("PRAGMA", "PRAGMA database_list", "PRAGMA is not allowed"),
    ("SET", "SET enable_external_access = true", "SET (configuration) is not allowed"),
    ("table function", "SELECT * FROM range(10)", "table function range()"),
    ("system catalog", "SELECT * FROM duckdb_settings()", "table function duckdb_settings()"),
    ("information schema", "SELECT * FROM information_schema.tables", "undeclared table 'information_schema.tables'"),
    ("undeclared table", "SELECT * FROM dave.employees", "undeclared table 'dave.employees'"),
    ("undeclared column", "SELECT ssn FROM alice.employees", 'Referenced column "ssn" not found'),
    ("two statements", "SELECT 1 FROM alice.employees; SELECT 2 FROM bob.employees", "exactly one statement, found 2"),
    ("DDL", "CREATE TABLE alice.copy AS SELECT * FROM alice.employees", "CREATE (DDL) is not allowed"),
    ("DML", "DELETE FROM alice.employees", "DELETE (DML) is not allowed"),
    ("environment", "SELECT getenv('HOME') AS h FROM alice.employees", "function getenv() is not allowed"),
    ("chance", "SELECT random() AS r FROM alice.employees", "function random() is not allowed"),
    ("not SQL", "SELEKT * FROM alice.employees", "not valid SQL"),
    ("another catalog", "SELECT * FROM other.alice.employees", "other catalogs are not allowed"),
    ("no input read", "SELECT 42 AS answer", "reads none of the declared inputs"),
]


@pytest.mark.parametrize(("name", "sql", "message"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_forbidden_sql_is_refused_naming_it(salary_doc: Callable[[], Doc], name: str, sql: str, message: str) -> None:
    doc = salary_doc()
    doc["computations"]["custom"] = {"sql": sql, "readers": ["alice"]}
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    hits = [p for p in info.value.problems if p.startswith("computations.custom.sql: ") and message in p]
    assert hits, f"{name}: {info.value.problems}"


def test_allowed_sql_with_ctes_and_joins(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc["computations"]["custom"] = {
        "sql": (
            "WITH paid AS (SELECT level, salary FROM alice.employees "
            "UNION ALL SELECT level, salary FROM bob.employees) "
            "SELECT p.level, avg(p.salary) AS mean, count(*) AS group_size FROM paid p "
            "WHERE p.level IN (SELECT level FROM carol.employees) GROUP BY p.level"
        ),
        "readers": ["alice", "bob"],
        "min_group_size": 2,
    }
    custom = manifest.from_data(doc).computations["custom"]
    assert custom.inputs == ("alice.employees", "bob.employees", "carol.employees")
    assert custom.columns == (("level", "VARCHAR"), ("mean", "DOUBLE"), ("group_size", "BIGINT"))
    assert not custom.ordered


def test_min_group_size_on_sql_needs_a_group_size_column(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc["computations"]["custom"] = {
        "sql": "SELECT level, count(*) AS n FROM alice.employees GROUP BY level",
        "readers": ["alice"],
        "min_group_size": 3,
    }
    with pytest.raises(ManifestError, match="needs an integer output column 'group_size'"):
        manifest.from_data(doc)


def test_duplicate_output_names_are_refused(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc["computations"]["custom"] = {"sql": "SELECT level AS x, salary AS x FROM alice.employees", "readers": ["alice"]}
    with pytest.raises(ManifestError, match="distinct names"):
        manifest.from_data(doc)


DP_CASES = [
    (
        "on psi",
        lambda c: c.update(template="psi", params={"inputs": ["alice.employees", "bob.employees"], "column": "id"}),
        "applies to the aggregate template",
    ),
    (
        "on sql",
        lambda c: c.update(sql="SELECT count(*) AS n FROM alice.employees") or (c.pop("template") and c.pop("params")),
        "not to sql",
    ),
    ("missing bounds", lambda c: c["dp"].update(bounds={}), "needs [low, high] for 'salary'"),
    ("bad bounds", lambda c: c["dp"].update(bounds={"salary": [5, 1]}), "low < high"),
    ("missing groups", lambda c: c["dp"].update(groups={}), "public list of values of group column 'level'"),
    ("wrongly typed group", lambda c: c["dp"]["groups"].update(level=[1, 2]), "is not a text value"),
    ("epsilon too large", lambda c: c["dp"].update(epsilon=50), "a number in (0, 10]"),
    ("delta", lambda c: c["dp"].update(delta=1e-6), "Laplace mechanism"),
    ("with min_group_size", lambda c: c.update(min_group_size=3), "cannot be combined with dp"),
    (
        "max not private",
        lambda c: c["params"]["aggregates"].update(top={"max": "salary"}),
        "no differentially private release",
    ),
    ("over budget", lambda c: c["dp"].update(epsilon=5.0), "exceeds the session's privacy_budget"),
]


def _dp_doc(salary_doc: Callable[[], Doc]) -> Doc:
    doc = salary_doc()
    doc["privacy_budget"] = {"epsilon": 2.0}
    doc["computations"]["private_mean"] = {
        "template": "aggregate",
        "params": {
            "inputs": ["alice.employees", "bob.employees"],
            "group_by": ["level"],
            "aggregates": {"mean": {"avg": "salary"}, "n": {"count": "*"}},
        },
        "dp": {"epsilon": 1.0, "bounds": {"salary": [0, 200000]}, "groups": {"level": ["A", "B", "C"]}},
        "readers": ["alice"],
    }
    return doc


@pytest.mark.parametrize(("name", "edit", "message"), DP_CASES, ids=[c[0] for c in DP_CASES])
def test_dp_rules(salary_doc: Callable[[], Doc], name: str, edit: Callable[[Doc], Any], message: str) -> None:
    doc = _dp_doc(salary_doc)
    manifest.from_data(doc)  # valid before the edit
    edit(doc["computations"]["private_mean"])
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_dp_needs_a_budget(salary_doc: Callable[[], Doc]) -> None:
    doc = _dp_doc(salary_doc)
    del doc["privacy_budget"]
    with pytest.raises(ManifestError, match="privacy_budget: required"):
        manifest.from_data(doc)


def test_dp_sql_covers_exactly_the_public_groups(salary_doc: Callable[[], Doc]) -> None:
    computation = manifest.from_data(_dp_doc(salary_doc)).computations["private_mean"]
    assert 'least(greatest("salary", 0.0), 200000.0)' in computation.sql
    assert "(VALUES ('A'), ('B'), ('C'))" in computation.sql
    assert [c[0] for c in computation.columns] == ["level", "mean__sum", "mean__count", "n", "group_size"]
