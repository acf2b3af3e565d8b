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
    ("the date", "SELECT current_date AS d FROM alice.employees", "current_date is not allowed"),
    ("the local time", "SELECT localtimestamp AS t FROM alice.employees", "localtimestamp is not allowed"),
    ("sampling", "SELECT level FROM alice.employees USING SAMPLE 10%", "USING SAMPLE / TABLESAMPLE"),
    ("table sample", "SELECT level FROM alice.employees TABLESAMPLE 10%", "USING SAMPLE / TABLESAMPLE"),
    ("a transaction id", "SELECT txid_current() AS t FROM alice.employees", "function txid_current() is not"),
    ("sleeping", "SELECT sleep_ms(100) AS s FROM alice.employees", "function sleep_ms() is not allowed"),
    ("an error quoting data", "SELECT error(id) AS e FROM alice.employees", "function error() is not allowed"),
    ("a query id", "SELECT current_query() AS q FROM alice.employees", "function current_query() is not"),
    ("an interval", "SELECT INTERVAL 1 DAY AS i FROM alice.employees", "has type INTERVAL"),
    ("a struct", "SELECT {'a': level} AS s FROM alice.employees", "has type STRUCT"),
    ("a list", "SELECT list(level) AS l FROM alice.employees", "has type VARCHAR[]"),
    ("a nested timestamp", "SELECT [TIMESTAMP '2020-01-01'] AS t FROM alice.employees", "has type TIMESTAMP[]"),
    ("a blob", "SELECT level::BLOB AS b FROM alice.employees", "has type BLOB"),
    ("the enclave's names", "SELECT level AS __mpc_units_0 FROM alice.employees", "are the enclave's"),
]


@pytest.mark.parametrize(("name", "sql", "message"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_forbidden_sql_is_refused_naming_it(salary_doc: Callable[[], Doc], name: str, sql: str, message: str) -> None:
    doc = salary_doc()
    doc["computations"]["custom"] = {"sql": sql, "readers": ["alice"]}
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    hits = [p for p in info.value.problems if p.startswith("computations.custom.sql: ") and message in p]
    assert hits, f"{name}: {info.value.problems}"


def _unrestricted(doc: Doc) -> Doc:
    for table in doc["inputs"].values():
        table["protection"] = {"release": "unrestricted"}
    return doc


def test_allowed_sql_with_ctes_and_joins(salary_doc: Callable[[], Doc]) -> None:
    doc = _unrestricted(salary_doc())  # SQL of any shape reads only unrestricted tables
    doc["computations"]["custom"] = {
        "sql": (
            "WITH paid AS (SELECT level, salary FROM alice.employees "
            "UNION ALL SELECT level, salary FROM bob.employees) "
            "SELECT p.level, avg(p.salary) AS mean, count(*) AS group_size FROM paid p "
            "WHERE p.level IN (SELECT level FROM carol.employees) GROUP BY p.level"
        ),
        "readers": ["alice", "bob"],
    }
    custom = manifest.from_data(doc).computations["custom"]
    assert custom.inputs == ("alice.employees", "bob.employees", "carol.employees")
    assert custom.columns == (("level", "VARCHAR"), ("mean", "DOUBLE"), ("group_size", "BIGINT"))
    assert not custom.ordered


def test_min_group_size_is_refused_pointing_to_the_owners_rules(salary_doc: Callable[[], Doc]) -> None:
    """A threshold over a column the SQL computes could be padded by any party: it is gone, and says so."""
    doc = salary_doc()
    doc["computations"]["custom"] = {
        "sql": "SELECT level, count(*) AS group_size FROM alice.employees GROUP BY level",
        "readers": ["alice"],
        "min_group_size": 3,
    }
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    assert info.value.problems == [
        "computations.custom.min_group_size: was replaced by each owner's protection rules "
        "(inputs.<party.table>.protection.min_distinct): the enclave now counts each owner's distinct units per "
        "group itself, instead of trusting a column the SQL computes (docs/manifest.md#protection)"
    ]


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
    ("delta", lambda c: c["dp"].update(delta=1e-6), "Laplace mechanism"),
    ("with min_group_size", lambda c: c.update(min_group_size=3), "was replaced by each owner's protection"),
    (
        "a public group listed twice",
        lambda c: c["dp"]["groups"].update(level=["A", "B", "A"]),
        "lists 'A' more than once",
    ),
    (
        "max not private",
        lambda c: c["params"]["aggregates"].update(top={"max": "salary"}),
        "no differentially private release",
    ),
    ("epsilon far too large", lambda c: c["dp"].update(epsilon=11), "a number in (0, 10]"),
    ("over the session's budget", lambda c: c["dp"].update(epsilon=2.5), "is less than the 2.5 that"),
]


def _dp_doc(salary_doc: Callable[[], Doc]) -> Doc:
    doc = salary_doc()
    for table in doc["inputs"].values():
        table["protection"]["allow_dp"] = True
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


def test_dp_releases_together_must_fit_the_budget(salary_doc: Callable[[], Doc]) -> None:
    """Each fits alone; together they would overspend: refused before any enclave runs them."""
    doc = _dp_doc(salary_doc)
    doc["computations"]["private_mean_again"] = dict(doc["computations"]["private_mean"])
    doc["computations"]["private_mean_again"]["dp"] = {**doc["computations"]["private_mean"]["dp"], "epsilon": 1.5}
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    assert info.value.problems == [
        "privacy_budget.epsilon: 2 is less than the 2.5 that the differentially private computations ask for "
        "together (private_mean 1, private_mean_again 1.5): every release must fit in the budget, so that none "
        "can be refused for lack of it"
    ]


def test_dp_needs_each_owner_to_allow_it(salary_doc: Callable[[], Doc]) -> None:
    doc = _dp_doc(salary_doc)
    del doc["inputs"]["bob.employees"]["protection"]["allow_dp"]
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    assert info.value.problems == [
        "computations.private_mean.template: a differentially private release may not read bob.employees "
        "(owner bob): its owner has no allow_dp"
    ]
