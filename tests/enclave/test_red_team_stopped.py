"""Red team of issue 13, the attacks that are stopped: regression tests (see ``test_red_team.py``).

Same world: the attacker ``mal`` writes the SQL and its own data; ``hr.staff`` is protected (``dept``
the only dimension, ``id`` the key and only join column, sum/avg of ``salary``, 3 distinct ids per
released group), and hr's boss is alone in its department.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.enclave.engine import Engine
from oblv_mpc.errors import EnclaveRefused, InputDataError, ManifestError
from tests.enclave.red_team_world import (
    BOSS_SALARY,
    HR_CSV,
    Enclave,
    Keys,
    attacker_table,
    document,
    hr_staff,
    outcome,
)
from tests.raw_bodies import Raw


@pytest.fixture(scope="module")
def org_keys() -> Keys:
    return {name: keys.generate() for name in ("hr", "mal")}


def _released_values(enclave: Enclave, party: str = "mal") -> list[Any]:
    return [v for row in enclave.clients[party].result("c").rows for v in row]


# -- the threshold counts hr's own units, whatever the SQL names -----------------------------------


def test_an_alias_like_a_helper_in_another_case_does_not_replace_the_enclaves_count(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """The boss's salary, named "__MPC_units_0", would pass k = 3 if the threshold read that column."""
    sql = 'SELECT dept, sum(salary) AS "__MPC_units_0" FROM hr.staff GROUP BY dept'
    enclave = Enclave(document(org_keys, sql), org_keys, dev_ca, measurements)
    enclave.upload("mal", "t", attacker_table([("x", "y")]))
    enclave.upload("hr", "staff", HR_CSV)
    assert _released_values(enclave) == ["eng", 300_003.0]


def test_an_alias_named_like_hrs_schema_does_not_redirect_the_enclaves_count(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """mal.t AS hr, with a column named staff: the helper's hr.staff.id still means hr's ids."""
    doc = document(
        org_keys,
        "SELECT hr.label, sum(staff.salary) AS total FROM hr.staff JOIN mal.t AS hr ON hr.id = staff.id "
        "GROUP BY hr.label",
    )
    doc["inputs"]["mal.t"] = {**doc["inputs"]["mal.t"], "columns": {"id": "text", "staff": "text", "label": "text"}}
    enclave = Enclave(doc, org_keys, dev_ca, measurements)
    enclave.upload("mal", "t", "id,label,staff\ne0,team,a\ne1,team,b\ne2,team,c\nboss,solo,d\n")
    enclave.upload("hr", "staff", HR_CSV)
    assert _released_values(enclave) == ["team", 300_003.0]


def test_a_key_join_with_the_attackers_labels_cannot_split_or_pad_a_group(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    sql = "SELECT a.label, sum(s.salary) AS total FROM hr.staff AS s JOIN mal.t AS a ON s.id = a.id GROUP BY a.label"
    enclave = Enclave(document(org_keys, sql), org_keys, dev_ca, measurements)
    with pytest.raises(InputDataError, match="is not unique"):  # one id in two groups
        enclave.upload("mal", "t", "id,label,ref\ne0,a,-\ne0,b,-\n")
    enclave.upload("mal", "t", "id,label,ref\ne0,team,-\ne1,team,-\ne2,team,-\nboss,solo,-\n")
    enclave.upload("hr", "staff", HR_CSV)
    assert _released_values(enclave) == ["team", 300_003.0]


def test_union_rows_carrying_hrs_ids_do_not_count_as_hrs_units(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """mal's rows in the boss's department carry hr's engineers' ids: still one unit of hr's."""
    mine = {**hr_staff(), "protection": {"release": "unrestricted"}}
    template = {
        "template": "aggregate",
        "params": {
            "inputs": ["hr.staff", "mal.staff"],
            "group_by": ["dept"],
            "aggregates": {"total": {"sum": "salary"}},
        },
    }
    doc = document(org_keys, computation=template, inputs={"mal.staff": mine})
    enclave = Enclave(doc, org_keys, dev_ca, measurements)
    enclave.upload("mal", "t", attacker_table([("x", "y")]))
    enclave.upload("mal", "staff", "dept,email,id,salary\n" + "".join(f"boss,m{i},e{i},0\n" for i in range(3)))
    enclave.upload("hr", "staff", HR_CSV)
    rows = enclave.clients["mal"].result("c").rows
    assert [row[0] for row in rows] == ["eng"] and BOSS_SALARY not in rows[0]


def test_rows_without_a_unit_never_count_toward_k(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """A unit that may be empty (not the key): rows without one count for nobody."""
    doc = document(org_keys, "SELECT dept, count(*) AS n FROM hr.staff GROUP BY dept")
    doc["inputs"]["hr.staff"] = {**hr_staff(unit="email"), "key": []}
    enclave = Enclave(doc, org_keys, dev_ca, measurements)
    enclave.upload("mal", "t", attacker_table([("x", "y")]))
    rows = [f"ops,,o{i},1" for i in range(5)] + [f"eng,e{i}@hr,e{i},1" for i in range(3)]
    enclave.upload("hr", "staff", "dept,email,id,salary\n" + "\n".join(rows) + "\n")
    assert _released_values(enclave) == ["eng", 3]


def test_join_aggregate_grouped_by_its_key_releases_no_single_unit(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    template = {
        "template": "join_aggregate",
        "params": {
            "inputs": ["hr.staff", "mal.t"],
            "join_on": "id",
            "group_by": ["id"],
            "aggregates": {"total": {"sum": "hr.staff.salary"}},
        },
    }
    with pytest.raises(ManifestError, match="'id': its owner allows dept"):
        manifest.from_data(document(org_keys, computation=template))
    doc = document(org_keys, computation=template)
    doc["inputs"]["hr.staff"] = hr_staff(dimensions=["dept", "id"])
    enclave = Enclave(doc, org_keys, dev_ca, measurements)
    enclave.upload("mal", "t", "id,label,ref\ne0,-,-\nboss,-,-\n")
    enclave.upload("hr", "staff", HR_CSV)
    assert _released_values(enclave) == []


def test_psi_cardinality_of_one_guess_says_nothing_about_it(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    template = {"template": "psi_cardinality", "params": {"inputs": ["hr.staff", "mal.t"], "column": "id"}}
    worlds = []
    for boss in (True, False):
        enclave = Enclave(document(org_keys, computation=template), org_keys, dev_ca, measurements)
        enclave.upload("mal", "t", "id,label,ref\nboss,-,-\n")
        enclave.upload("hr", "staff", HR_CSV if boss else HR_CSV.replace("boss,", "chief,"))
        worlds.append((outcome(enclave, "mal", "c"), enclave.readable_by("mal")))
    assert worlds[0] == worlds[1]
    assert worlds[0][0][1] == []  # one matching unit is below hr's 3


# -- shapes the enclave cannot judge --------------------------------------------------------------

_SHAPE = "shape the enclave cannot check"


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("SELECT dept, max(COLUMNS('salary')) AS m FROM hr.staff GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff AS s WHERE s::VARCHAR LIKE '%boss@hr%' GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff GROUP BY ALL", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff GROUP BY 1", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff GROUP BY ROLLUP (dept)", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff GROUP BY dept ORDER BY ALL", _SHAPE),
        ("SELECT dept, count(*) FILTER (WHERE salary > 500000) AS n FROM hr.staff GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff GROUP BY dept HAVING sum(salary) > 0", _SHAPE),
        ("SELECT dept, sum(salary) OVER () AS n FROM hr.staff", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff WHERE dept IN (SELECT ref FROM mal.t) GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff GROUP BY dept LIMIT 1", _SHAPE),
        ("SELECT dept, arg_max(email, salary) AS e FROM hr.staff GROUP BY dept", _SHAPE),
        ("SELECT dept, first(email) AS e FROM hr.staff GROUP BY dept", _SHAPE),
        ("WITH x AS (SELECT * FROM hr.staff) SELECT dept, count(*) AS n FROM x GROUP BY dept", _SHAPE),
        ("SELECT a.label, count(*) AS n FROM hr.staff AS s NATURAL JOIN mal.t AS a GROUP BY a.label", _SHAPE),
        ("SELECT a.label, count(*) AS n FROM hr.staff AS s, mal.t AS a WHERE s.id = a.id GROUP BY a.label", _SHAPE),
        (
            "SELECT a.label, count(*) AS n FROM mal.t AS a LEFT JOIN hr.staff AS s ON s.id = a.id GROUP BY a.label",
            _SHAPE,
        ),
        (
            "SELECT a.label, count(*) AS n FROM hr.staff AS s JOIN mal.t AS a ON s.id = a.id OR s.dept = a.ref "
            "GROUP BY a.label",
            _SHAPE,
        ),
        ("SELECT a.label, count(*) AS n FROM hr.staff AS s POSITIONAL JOIN mal.t AS a GROUP BY a.label", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff GROUP BY dept ORDER BY max(salary)", "max(salary) over hr.staff"),
        (
            "SELECT dept, count(*) AS n FROM hr.staff WHERE len(list_filter([dept], lambda salary: salary = 'x')) > 0 "
            "GROUP BY dept",
            _SHAPE,
        ),
        ("SELECT dept, count(*) AS n FROM hr.staff WHERE email LIKE '%boss%' GROUP BY dept", "'email': its owner"),
        (
            "SELECT a.label, count(*) AS n FROM hr.staff AS s JOIN mal.t AS a ON s.email = a.ref GROUP BY a.label",
            "join",
        ),
        ('SELECT dept, count(*) AS "__mpc_units_0" FROM hr.staff GROUP BY dept', "are the enclave's"),
        (
            "SELECT dept, count(*) AS n FROM hr.staff WHERE CASE WHEN salary > 5e5 THEN true END GROUP BY dept",
            _SHAPE,
        ),
        ("SELECT dept, count(*) AS n FROM hr.staff WHERE dept COLLATE nocase = 'ENG' GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff WHERE dept SIMILAR TO 'e.*' GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff WHERE dept[1:2] = 'en' GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff WHERE dept ^@ 'e' GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff WHERE length(dept || '-') = 4 GROUP BY dept", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff WHERE CAST(dept AS INTEGER) > 0 GROUP BY dept", _SHAPE),
        ("SELECT dept, sum(DISTINCT salary) AS n FROM hr.staff GROUP BY dept", _SHAPE),
        ("SELECT upper(dept) AS d, count(*) AS n FROM hr.staff GROUP BY upper(dept)", _SHAPE),
        ("SELECT 'x' AS d, count(*) AS n FROM hr.staff GROUP BY 'x'", _SHAPE),
        ("SELECT dept, count(*) AS n FROM hr.staff GROUP BY dept ORDER BY length(dept)", _SHAPE),
    ],
)
def test_sql_shapes_the_enclave_cannot_judge_are_refused(org_keys: Keys, sql: str, found: str) -> None:
    with pytest.raises(ManifestError) as info:
        manifest.from_data(document(org_keys, sql))
    assert any(found in problem for problem in info.value.problems), info.value.problems


# -- the SQL the enclave runs means what was judged -----------------------------------------------

_TRICKY_DEPARTMENTS = ["eng", "ENG", "it's", "a\nb", "x'y", "é", "a%b", "n/a", "a_b", ""]


@pytest.mark.parametrize(
    "where",
    [
        "dept = 'it''s'",
        "dept = E'a\\nb'",
        "dept = $$x'y$$",
        "dept NOT LIKE 'a%'",
        "dept ILIKE 'E%'",
        "dept GLOB 'e*'",
        "NOT dept IN ('eng', 'é')",
        "dept IS DISTINCT FROM 'eng'",
        "dept BETWEEN 'a' AND 'f'",
        "dept = 'eng' OR dept = 'n/a' AND dept = 'x'",
        "dept IS NOT NULL AND NOT (dept = 'é' OR dept <> 'eng')",
    ],
)
def test_the_sql_the_enclave_runs_means_what_was_judged(org_keys: Keys, where: str) -> None:
    """run_sql is DuckDB's printout of the edited tree: printed back, it must select the same rows."""
    sql = f"SELECT dept, count(*) AS n, sum(salary) AS total FROM hr.staff AS s WHERE {where} GROUP BY dept"
    doc = document(org_keys, sql)
    doc["inputs"]["hr.staff"] = hr_staff(min_distinct=1)
    loaded = manifest.from_data(doc)
    computation = loaded.computations["c"]
    engine = Engine(loaded)
    for name, csv in (
        ("hr.staff", "dept,email,id,salary\n" + "".join(_csv_row(d, i) for i, d in enumerate(_TRICKY_DEPARTMENTS))),
        ("mal.t", attacker_table([("x", "y")])),
    ):
        ingest = engine.ingest(loaded.inputs[name])
        ingest.feed(csv.encode())
        ingest.finish()
        engine.commit(loaded.inputs[name], ingest)
    agreed = sorted(map(tuple, engine.connection.execute(computation.sql).fetchall()), key=repr)
    run = sorted((row[:3] for row in engine.connection.execute(computation.run_sql).fetchall()), key=repr)
    assert agreed and run == agreed


def _csv_row(dept: str, i: int) -> str:
    quoted = '"' + dept.replace('"', '""') + '"'
    return f"{quoted},e{i}@hr,e{i},{i}\n"


# -- metadata, commitments, freezing --------------------------------------------------------------


def test_identical_reuploads_get_unlinkable_commitments(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """mal cannot tell whether hr re-sent the same file or changed it."""
    enclave = Enclave(
        document(org_keys, "SELECT dept, count(*) AS n FROM hr.staff GROUP BY dept"), org_keys, dev_ca, measurements
    )
    seen = []
    for _ in range(2):
        enclave.upload("hr", "staff", HR_CSV)
        seen.append(enclave.clients["mal"].status()["inputs"]["hr.staff"]["commitment"])
    assert seen[0] != seen[1]
    assert hashlib.sha256(HR_CSV.encode()).hexdigest() not in enclave.readable_by("mal")


def test_an_upload_in_progress_cannot_complete_after_its_table_froze(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    sql = "SELECT a.label, sum(s.salary) AS total FROM hr.staff AS s JOIN mal.t AS a ON s.id = a.id GROUP BY a.label"
    enclave = Enclave(document(org_keys, sql), org_keys, dev_ca, measurements)
    mal = enclave.clients["mal"]
    enclave.upload("mal", "t", "id,label,ref\ne0,team,-\ne1,team,-\ne2,team,-\n")
    enclave.upload("hr", "staff", HR_CSV)
    first, rest = b"id,label,ref\n", b"boss,solo,-\n"
    upload = os.urandom(16)
    mal.call(Raw("upload", {"upload": upload, "table": "mal.t", "index": 0, "final": False, "data": first}))
    released = mal.result("c").rows  # freezes mal.t and hr.staff
    final = {
        "upload": upload,
        "table": "mal.t",
        "index": 1,
        "final": True,
        "data": rest,
        "sha256": hashlib.sha256(first + rest).hexdigest(),
        "bytes": len(first + rest),
    }
    with pytest.raises(EnclaveRefused) as info:
        mal.call(Raw("upload", final))
    assert info.value.code == "frozen"
    assert mal.result("c").rows == released == [["team", 300_003.0]]


def test_a_failed_run_is_one_answer_and_cannot_be_probed_again(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    sql = "SELECT dept, count(*) AS n FROM hr.staff WHERE CAST(dept AS INTEGER) > 0 GROUP BY dept"
    doc = document(org_keys, sql)
    doc["inputs"]["hr.staff"]["protection"] = {"release": "unrestricted"}  # casts only over unrestricted tables
    enclave = Enclave(doc, org_keys, dev_ca, measurements)
    enclave.upload("mal", "t", attacker_table([("x", "y")]))
    enclave.upload("hr", "staff", HR_CSV)
    first = outcome(enclave, "mal", "c")
    assert first == ("compute_failed", "c: the computation failed while running; no detail is given")
    with pytest.raises(EnclaveRefused) as info:
        enclave.upload("hr", "staff", HR_CSV.replace("eng", "1").replace("boss", "2"))
    assert info.value.code == "frozen" and outcome(enclave, "mal", "c") == first


def test_a_dp_release_has_the_same_groups_whatever_the_data(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """Only the public groups appear, each once, present in the data or not."""
    template = {
        "template": "aggregate",
        "params": {"inputs": ["hr.staff"], "group_by": ["dept"], "aggregates": {"n": {"count": "*"}}},
        "dp": {"epsilon": 1.0, "groups": {"dept": ["eng", "ops"]}},
    }
    worlds = []
    for boss in (True, False):
        doc = document(org_keys, computation=template, privacy_budget={"epsilon": 1.0})
        doc["inputs"]["hr.staff"] = hr_staff(allow_dp=True)
        enclave = Enclave(doc, org_keys, dev_ca, measurements)
        enclave.upload("hr", "staff", HR_CSV if boss else HR_CSV.replace("boss,boss", "eng,boss"))
        result = enclave.clients["mal"].result("c")
        worlds.append((result.columns, [row[0] for row in result.rows], enclave.readable_by("mal")))
    assert worlds[0] == worlds[1]
    assert worlds[0][1] == ["eng", "ops"]
