"""Over a join with a protected table, another owner's columns are counted, never summed, unless allowed.

The attacks themselves run against the real app in ``tests/enclave/test_red_team_joined_aggregates.py``;
here: which uses validation refuses and accepts, the owner's field, its words and its hash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oblv_mpc import manifest
from oblv_mpc.errors import ManifestError

Doc = dict[str, Any]
JOINED = "FROM alice.employees AS a JOIN bob.employees AS b ON a.id = b.id"


def _with_sql(doc: Doc, sql: str) -> Doc:
    doc["computations"]["joined"] = {"sql": sql, "readers": ["alice", "bob"]}
    return doc


def _problems(doc: Doc) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        manifest.from_data(doc)
    return caught.value.problems


def test_each_protected_owner_refuses_for_itself(salary_doc: Callable[[], Doc]) -> None:
    """alice's and bob's salaries over their matched rows: each owner's table is refused on its own account."""
    doc = _with_sql(salary_doc(), f"SELECT sum(a.salary) AS mine, avg(b.salary) AS theirs {JOINED}")
    problems = _problems(doc)
    assert len(problems) == 2
    assert "avg(salary) of bob.employees (owner bob) over rows joined with protected alice.employees" in problems[0]
    assert "sum(salary) of alice.employees (owner alice) over rows joined with protected bob.employees" in problems[1]
    doc["inputs"]["alice.employees"]["protection"]["allow_others_aggregates_in_joins"] = True
    [left] = _problems(doc)
    assert "over rows joined with protected bob.employees (owner bob)" in left
    assert "bob would have to declare allow_others_aggregates_in_joins: true" in left
    doc["inputs"]["bob.employees"]["protection"]["allow_others_aggregates_in_joins"] = True
    manifest.from_data(doc)


@pytest.mark.parametrize(
    "select",
    [
        "count(*) AS n",
        "count(b.id) AS n",  # the join column: never NULL in a joined row
        "b.level, count(*) AS n",  # grouped by the other owner's dimension: every group under the threshold
        "a.level, sum(a.salary) AS total",  # alice's own column, as alice allows
    ],
)
def test_counts_of_the_matches_and_groups_need_no_permission(salary_doc: Callable[[], Doc], select: str) -> None:
    """alice's table protected, bob's not (else bob's rule would refuse sums of alice's column)."""
    doc = salary_doc()
    doc["inputs"]["bob.employees"]["protection"] = {"release": "unrestricted"}
    group = f" GROUP BY {select.split(',')[0]}" if "level" in select else ""
    manifest.from_data(_with_sql(doc, f"SELECT {select} {JOINED}{group}"))


def test_an_owners_own_tables_may_be_aggregated_over_each_other(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc["inputs"]["alice.bonus"] = {
        "columns": {"id": "text", "bonus": "float"},
        "key": ["id"],
        "protection": {"release": "unrestricted"},
    }
    sql = "SELECT sum(x.bonus) AS total FROM alice.employees AS a JOIN alice.bonus AS x ON a.id = x.id"
    manifest.from_data(_with_sql(doc, sql))


def test_the_permission_is_true_or_false(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    doc["inputs"]["alice.employees"]["protection"]["allow_others_aggregates_in_joins"] = "yes"
    [problem] = _problems(doc)
    assert problem.startswith("inputs.alice.employees.protection.allow_others_aggregates_in_joins: expected true or")


def test_the_permission_is_in_plain_words_and_in_the_hash(salary_doc: Callable[[], Doc]) -> None:
    doc = salary_doc()
    plain = manifest.from_data(doc)
    doc["inputs"]["alice.employees"]["protection"]["allow_others_aggregates_in_joins"] = False
    assert manifest.from_data(doc).hash == plain.hash  # declared false: as if never declared
    doc["inputs"]["alice.employees"]["protection"]["allow_others_aggregates_in_joins"] = True
    allowed = manifest.from_data(doc)
    assert allowed.hash != plain.hash
    words = allowed.inputs["alice.employees"].protection.describe()
    assert "other parties' columns may be summed, averaged or their min/max taken over rows matched with it" in (
        " ".join(words)
    )
    assert "other parties' columns may be grouped by and counted, never summed" in " ".join(
        plain.inputs["bob.employees"].protection.describe()
    )
