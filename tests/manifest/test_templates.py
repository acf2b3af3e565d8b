"""The built-in templates' SQL, run by DuckDB, gives the answers computed by hand."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oblv_mpc import manifest
from oblv_mpc.manifest import Manifest
from tests.conftest import salary_document


def _load(m: Manifest, rows: dict[str, list[tuple[Any, ...]]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    for table in m.inputs.values():
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{table.party}"')
        cols = ", ".join(f'"{c.name}" {c.type.sql}' for c in table.columns)
        con.execute(f'CREATE TABLE "{table.party}"."{table.table}" ({cols})')
        names = [c.name for c in table.columns]
        data = [tuple(r[n] for n in names) for r in rows[table.qualified]]  # type: ignore[call-overload]
        if data:
            marks = ", ".join("?" for _ in names)
            con.executemany(f'INSERT INTO "{table.party}"."{table.table}" VALUES ({marks})', data)
    return con


def _employees(rng: random.Random, n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}{rng.randrange(n * 2)}-{i}" if i % 3 else f"shared-{i}",
            "level": rng.choice("ABCD"),
            "salary": rng.uniform(1, 100),
        }
        for i in range(n)
    ]


def test_templates_match_hand_computed_answers(salary_doc: Callable[[], dict[str, Any]]) -> None:
    doc = salary_doc()
    doc["computations"]["ids"] = {
        "template": "psi",
        "params": {"inputs": ["alice.employees", "bob.employees", "carol.employees"], "column": "id"},
        "readers": ["alice"],
    }
    doc["computations"]["per_level"] = {
        "template": "join_aggregate",
        "params": {
            "inputs": ["alice.employees", "bob.employees"],
            "join_on": "id",
            "group_by": ["alice.employees.level"],
            "aggregates": {"total_bob": {"sum": "bob.employees.salary"}, "pairs": {"count": "*"}},
        },
        "readers": ["alice"],
    }
    # bob's salaries summed over the rows matched with alice's: alice lets them be (they show which matched).
    doc["inputs"]["alice.employees"]["protection"]["allow_others_aggregates_in_joins"] = True
    m = manifest.from_data(doc)
    rng = random.Random(7)
    rows = {f"{p}.employees": _employees(rng, 60, p) for p in ("alice", "bob", "carol")}
    con = _load(m, rows)

    everyone = [r for t in rows.values() for r in t]
    expected_avg = {
        level: (
            statistics.fmean(r["salary"] for r in everyone if r["level"] == level),
            sum(r["level"] == level for r in everyone),
        )
        for level in sorted({r["level"] for r in everyone})
    }
    got = con.execute(m.computations["average_salary"].sql).fetchall()
    assert [(lvl, n) for lvl, _, n in got] == [(lvl, n) for lvl, (_, n) in expected_avg.items()]
    for (lvl, avg, _), (_, (want, _)) in zip(got, expected_avg.items(), strict=True):
        assert avg == pytest.approx(want), lvl

    sets = [{r["id"] for r in t} for t in rows.values()]
    common = sorted(sets[0] & sets[1] & sets[2])
    assert common  # the generator shares ids on purpose
    assert [r[0] for r in con.execute(m.computations["ids"].sql).fetchall()] == common
    assert con.execute(m.computations["common_ids"].sql).fetchall() == [(len(common),)]

    bob = {r["id"]: r for r in rows["bob.employees"]}
    joined: dict[str, list[float]] = {}
    for r in rows["alice.employees"]:
        if r["id"] in bob:
            joined.setdefault(r["level"], []).append(bob[r["id"]]["salary"])
    got_join = con.execute(m.computations["per_level"].sql).fetchall()
    assert [(lvl, n, n2) for lvl, n, _, n2 in got_join] == [(lvl, len(v), len(v)) for lvl, v in sorted(joined.items())]
    for (lvl, _, total, _), (_, values) in zip(got_join, sorted(joined.items()), strict=True):
        assert total == pytest.approx(sum(values)), lvl


def test_psi_ignores_nulls_and_duplicates(salary_doc: Callable[[], dict[str, Any]]) -> None:
    m = manifest.from_data(salary_doc())
    rows = {
        "alice.employees": [
            {"id": None, "level": "A", "salary": 1.0},
            {"id": "x", "level": "A", "salary": 1.0},
            {"id": "x", "level": "B", "salary": 2.0},
        ],
        "bob.employees": [{"id": None, "level": "A", "salary": 1.0}, {"id": "x", "level": "A", "salary": 1.0}],
        "carol.employees": [{"id": None, "level": "A", "salary": 1.0}, {"id": "x", "level": "C", "salary": 3.0}],
    }
    con = _load(m, rows)
    assert con.execute(m.computations["common_ids"].sql).fetchall() == [(1,)]


def test_template_sql_quotes_identifiers(salary_doc: Callable[[], dict[str, Any]]) -> None:
    sql = manifest.from_data(salary_doc()).computations["common_ids"].sql
    assert '"alice"."employees"' in sql
    assert '"bob"."employees"' in sql and '"carol"."employees"' in sql
    assert sql.count("INTERSECT") == 2


_PSI_VALUES = {
    "text": st.sampled_from(["a", "A", "a ", "", "b", "\u00e9", "e\u0301", "x" * 40]),
    "integer": st.integers(-3, 3) | st.sampled_from([2**63 - 1, -(2**63)]),
    "float": st.sampled_from([0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf"), 1e-300]),
}


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(sorted(_PSI_VALUES)),
    data=st.data(),
    parties=st.sampled_from([("alice", "bob"), ("alice", "bob", "carol")]),
)
def test_psi_is_the_intersection_of_the_inputs_non_null_values(
    party_keys: dict[str, Any], kind: str, data: st.DataObject, parties: tuple[str, ...]
) -> None:
    """The templates' SQL gives what `INTERSECT` of the inputs' non-NULL values gives, in DuckDB,
    on any values: NULLs, repeats, 0.0 and -0.0, NaN, strings that differ by a space or a case."""
    doc = salary_document(party_keys, parties)
    doc["inputs"] = {
        f"{p}.t": {
            "columns": {"v": kind},
            "max_rows": 100,
            "max_bytes": 100_000,
            "protection": {"release": "unrestricted"},
        }
        for p in parties
    }
    tables = [f"{p}.t" for p in parties]
    doc["computations"] = {
        "common": {"template": "psi", "params": {"inputs": tables, "column": "v"}, "readers": ["alice"]},
        "size": {"template": "psi_cardinality", "params": {"inputs": tables, "column": "v"}, "readers": ["alice"]},
    }
    m = manifest.from_data(doc)
    values = st.lists(st.none() | _PSI_VALUES[kind], max_size=8)
    con = _load(m, {t: [{"v": v} for v in data.draw(values, label=t)] for t in tables})
    reference = " INTERSECT ".join(f'SELECT "v" FROM "{p}"."t" WHERE "v" IS NOT NULL' for p in parties)
    expected = con.execute(f"SELECT * FROM ({reference}) ORDER BY 1").fetchall()
    got = con.execute(m.computations["common"].sql).fetchall()
    assert repr(got) == repr(expected)  # repr: NaN equals itself, and -0.0 stays apart from 0.0
    assert con.execute(m.computations["size"].sql).fetchall() == [(len(expected),)]
