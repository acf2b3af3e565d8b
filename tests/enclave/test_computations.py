"""Computations the parties agree on: SQL, templates, release rules and differential privacy."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import cbor2
import duckdb
import pytest

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.enclave import privacy
from oblv_mpc.errors import EnclaveRefused
from tests.enclave.conftest import PARTIES, World, make_world, session_document


def _world(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    document: dict[str, Any],
    parties: tuple[str, ...] = PARTIES,
) -> World:
    return make_world(tmp_path, all_keys, dev_ca, measurements, parties=parties, document=document, rows=300)


def _submit_all(world: World, parties: tuple[str, ...] = PARTIES) -> None:
    for p in parties:
        world.clients[p].upload("employees", world.files[p])


def _unrestricted(doc: dict[str, Any]) -> dict[str, Any]:
    """Every owner lets any agreed SQL read its table: for tests of the engine, not of the rules."""
    for table in doc["inputs"].values():
        table["protection"] = {"release": "unrestricted"}
    return doc


def _direct(world: World, sql: str, parties: tuple[str, ...]) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    for p in parties:
        con.execute(f"CREATE SCHEMA {p}")
        columns = "{'id': 'VARCHAR', 'level': 'VARCHAR', 'salary': 'DOUBLE'}"
        con.execute(
            f"CREATE TABLE {p}.employees AS SELECT * FROM read_csv('{world.files[p]}', header=true, columns={columns})"
        )
    return con.execute(sql).fetchall()


SQL = {
    "pairs": (
        "SELECT a.level, count(*) AS group_size, sum(b.salary) AS bob_total "
        "FROM alice.employees a JOIN bob.employees b USING (id) GROUP BY a.level ORDER BY 1"
    ),
    "spread": (
        "WITH s AS (SELECT salary FROM alice.employees UNION ALL SELECT salary FROM bob.employees) "
        "SELECT max(salary) - min(salary) AS spread FROM s"
    ),
}


@pytest.mark.parametrize("parties", [PARTIES[:2], PARTIES], ids=["two", "three"])
def test_sql_computations_match_duckdb_directly(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    parties: tuple[str, ...],
) -> None:
    doc = _unrestricted(session_document(all_keys, parties))
    sqls = dict(SQL)
    if len(parties) == 3:
        sqls["everyone"] = (
            "SELECT count(*) AS n FROM alice.employees a JOIN bob.employees USING (id) JOIN carol.employees USING (id)"
        )
    for name, sql in sqls.items():
        doc["computations"][name] = {"sql": sql, "readers": ["alice"]}
    world = _world(tmp_path, all_keys, dev_ca, measurements, doc, parties)
    _submit_all(world, parties)
    for name, sql in sqls.items():
        got = world.clients["alice"].result(name)
        want = _direct(world, sql, parties)
        assert len(got.rows) == len(want), name
        for g, w in zip(got.rows, want, strict=True):
            assert g == pytest.approx(list(w)), name


def test_templates_and_their_sql_give_identical_results(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    doc = _unrestricted(session_document(all_keys, PARTIES))
    generated = manifest.from_data(doc).computations
    for name in list(doc["computations"]):
        doc["computations"][f"{name}_as_sql"] = {
            "sql": generated[name].sql,
            "readers": doc["computations"][name]["readers"],
        }
    world = _world(tmp_path, all_keys, dev_ca, measurements, doc)
    _submit_all(world)
    for name in generated:
        reader = generated[name].readers[0]
        template_result = world.clients[reader].result(name)
        sql_result = world.clients[reader].result(f"{name}_as_sql")
        assert template_result.columns == sql_result.columns
        assert cbor2.dumps(template_result.rows) == cbor2.dumps(sql_result.rows), name
        assert template_result.suppressed_groups == sql_result.suppressed_groups


def _level_doc(all_keys: dict[str, keys.PrivateKey], k: int) -> dict[str, Any]:
    doc = session_document(all_keys, PARTIES[:2])
    for table in doc["inputs"].values():
        table["protection"]["min_distinct"] = k
    doc["computations"] = {
        "levels": {
            "template": "aggregate",
            "params": {
                "inputs": ["alice.employees", "bob.employees"],
                "group_by": ["level"],
                "aggregates": {"n": {"count": "*"}},
            },
            "readers": ["alice"],
        },
    }
    return doc


def _own_counts(world: World, party: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in world.files[party].read_text().splitlines()[1:]:
        level = line.split(",")[1]
        counts[level] = counts.get(level, 0) + 1
    return counts


def test_each_owners_threshold_just_below_and_at_k(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """A level is released iff it holds at least k of *each* owner's own employees."""
    world = _world(tmp_path, all_keys, dev_ca, measurements, _level_doc(all_keys, 1), PARTIES[:2])
    _submit_all(world, PARTIES[:2])
    alice, bob = _own_counts(world, "alice"), _own_counts(world, "bob")
    smallest = {lvl: min(alice.get(lvl, 0), bob.get(lvl, 0)) for lvl in set(alice) | set(bob)}
    assert len(set(smallest.values())) >= 3
    for k in sorted(set(smallest.values()) - {0})[:3]:
        sub = tmp_path / f"k{k}"
        sub.mkdir()
        world_k = _world(sub, all_keys, dev_ca, measurements, _level_doc(all_keys, k), PARTIES[:2])
        _submit_all(world_k, PARTIES[:2])
        result = world_k.clients["alice"].result("levels")
        kept = {row[0] for row in result.rows}
        assert kept == {lvl for lvl, n in smallest.items() if n >= k}  # k of each owner is kept
        assert result.suppressed_groups == sum(1 for n in smallest.values() if 0 < n < k)  # k - 1 is not
        assert result.rules["min_distinct"] == [
            {"table": "alice.employees", "unit": "id", "k": k},
            {"table": "bob.employees", "unit": "id", "k": k},
        ]
        assert [c[0] for c in result.columns] == ["level", "n", "group_size"]  # the helper columns are gone


def test_max_output_rows_withholds_the_result(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    doc = session_document(all_keys, PARTIES)
    doc["computations"]["common"]["max_output_rows"] = 5
    world = _world(tmp_path, all_keys, dev_ca, measurements, doc)
    _submit_all(world)
    with pytest.raises(EnclaveRefused) as info:
        world.clients["alice"].result("common")
    assert info.value.code == "withheld"
    assert info.value.reason == (
        "common: the result has more rows than max_output_rows (5); nothing is released"
    )  # no row count in it
    status = world.clients["bob"].status()
    assert all(status["inputs"][t]["frozen"] for t in world.manifest.computations["common"].inputs)
    assert status["computations"]["common"]["state"] == "refused"
    with pytest.raises(EnclaveRefused) as again:  # the same answer, without running it again
        world.clients["alice"].compute("common")
    assert (again.value.code, again.value.reason) == (info.value.code, info.value.reason)
    withheld = [e.data for e in world.clients["bob"].transcript() if e.kind == "withheld"]
    assert withheld == [{"computation": "common"}]


def test_results_without_dp_are_byte_identical_across_runs(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    doc = session_document(all_keys, PARTIES)
    doc["computations"]["unordered"] = {
        "sql": "SELECT level, avg(salary) AS mean, count(*) AS n FROM alice.employees GROUP BY level",
        "readers": ["alice"],
    }
    outputs = []
    for run in range(2):
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        world = _world(folder, all_keys, dev_ca, measurements, doc)
        _submit_all(world)
        outputs.append(
            {
                name: cbor2.dumps(
                    [world.clients[c.readers[0]].result(name).columns, world.clients[c.readers[0]].result(name).rows]
                )
                for name, c in world.manifest.computations.items()
            }
        )
    assert outputs[0] == outputs[1]


def _dp_doc(all_keys: dict[str, keys.PrivateKey], epsilon: float, budget: float) -> dict[str, Any]:
    doc = session_document(all_keys, PARTIES)
    for table in doc["inputs"].values():
        table["protection"]["allow_dp"] = True
    doc["privacy_budget"] = {"epsilon": budget}
    for name in ("private_a", "private_b"):
        doc["computations"][name] = {
            "template": "aggregate",
            "params": {
                "inputs": [f"{p}.employees" for p in PARTIES],
                "group_by": ["level"],
                "aggregates": {"mean_salary": {"avg": "salary"}, "payroll": {"sum": "salary"}},
            },
            "dp": {
                "epsilon": epsilon,
                "bounds": {"salary": [0, 150000]},
                "groups": {"level": ["A", "B", "C", "D", "E", "Z"]},
            },
            "readers": ["alice", "bob"],
        }
    return doc


def test_dp_release_has_exactly_the_public_groups_and_the_declared_scales(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = _world(tmp_path, all_keys, dev_ca, measurements, _dp_doc(all_keys, 8.0, 16.0))
    _submit_all(world)
    result = world.clients["alice"].result("private_a")
    assert [row[0] for row in result.rows] == ["A", "B", "C", "D", "E", "Z"]  # Z has no rows and still appears
    assert [c[0] for c in result.columns] == ["level", "mean_salary", "payroll", "group_size"]
    dp = result.rules["dp"]
    # 4 statistics per group (mean's sum and count, payroll, group_size): epsilon/4 each
    assert dp["scales"] == pytest.approx(
        {
            "mean_salary__sum": 150000 * 4 / 8,
            "mean_salary__count": 4 / 8,
            "payroll": 150000 * 4 / 8,
            "group_size": 4 / 8,
        }
    )
    # the noisy counts are near the truth (scale 0.5: off by 10 has probability ~1e-9)
    truth = {r[0]: r[3] for r in world.clients["alice"].result("by_level").rows}
    for level, _, _, size in result.rows:
        assert abs(size - truth.get(level, 0)) <= 10 or level not in truth
    # the release is made once: every reader gets the same noisy numbers
    assert world.clients["bob"].result("private_a").rows == result.rows


def test_each_release_is_charged_once_what_opendp_composes(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = _world(tmp_path, all_keys, dev_ca, measurements, _dp_doc(all_keys, 1.0, 2.0))
    _submit_all(world)
    world.clients["alice"].result("private_a")
    world.clients["bob"].result("private_a")  # fetching the same release again spends nothing
    assert world.clients["carol"].status()["privacy"] == {"budget": 2.0, "spent": pytest.approx(1.0)}
    world.clients["alice"].result("private_b")
    spends = [e.data for e in world.clients["bob"].transcript() if e.kind == "privacy_spend"]
    assert [s["computation"] for s in spends] == ["private_a", "private_b"]
    charged = privacy.cost(world.manifest.computations["private_a"])
    assert charged == pytest.approx(1.0) and charged <= 1.0 * (1 + 1e-9)  # OpenDP's sum of the 4 statistics
    assert [s["epsilon"] for s in spends] == [charged, charged]
    assert spends[-1]["spent"] == pytest.approx(2.0)


def test_laplace_noise_has_the_declared_scale() -> None:
    # For Laplace(b), E|X| = b and sd|X| = b: with 10,000 draws the mean absolute value is within
    # 5% of b with probability 1 - 6e-7 (5 standard errors). OpenDP samples from the OS CSPRNG
    # and cannot be seeded, so the bound, not a seed, keeps this test from failing by accident.
    # A wrong scale (epsilon and sensitivity swapped, or k forgotten) is off by 2x or more.
    for scale in (0.5, 4.0):
        draws = [privacy.laplace(100.0, scale) - 100.0 for _ in range(10_000)]
        assert statistics.fmean(abs(d) for d in draws) == pytest.approx(scale, rel=0.05)
        assert abs(statistics.fmean(draws)) < 5 * scale * (2**0.5) / 100  # centred on the value
    # and OpenDP's own accounting agrees: Laplace(b) at sensitivity s costs s/b
    assert privacy.privacy_loss(3.0, 6.0) == pytest.approx(0.5)
