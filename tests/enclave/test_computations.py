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
    doc = session_document(all_keys, parties)
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
    doc = session_document(all_keys, PARTIES)
    generated = manifest.from_data(doc).computations
    for name in list(doc["computations"]):
        doc["computations"][f"{name}_as_sql"] = {
            "sql": generated[name].sql,
            "readers": doc["computations"][name]["readers"],
            **(
                {"min_group_size": doc["computations"][name]["min_group_size"]}
                if "min_group_size" in doc["computations"][name]
                else {}
            ),
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
    doc["computations"] = {
        "sizes": {
            "sql": (
                "SELECT level, count(*) AS group_size FROM "
                "(SELECT level FROM alice.employees UNION ALL SELECT level FROM bob.employees) GROUP BY level"
            ),
            "readers": ["alice"],
            "min_group_size": k,
        }
    }
    return doc


def test_threshold_just_below_and_at_k(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = _world(tmp_path, all_keys, dev_ca, measurements, _level_doc(all_keys, 1), PARTIES[:2])
    _submit_all(world, PARTIES[:2])
    true_sizes = {row[0]: row[1] for row in world.clients["alice"].result("sizes").rows}
    assert len(set(true_sizes.values())) >= 3
    for k in sorted(set(true_sizes.values()))[:3]:
        sub = tmp_path / f"k{k}"
        sub.mkdir()
        world_k = _world(sub, all_keys, dev_ca, measurements, _level_doc(all_keys, k), PARTIES[:2])
        _submit_all(world_k, PARTIES[:2])
        result = world_k.clients["alice"].result("sizes")
        kept = {row[0] for row in result.rows}
        assert kept == {lvl for lvl, n in true_sizes.items() if n >= k}  # a group of exactly k is kept
        assert result.suppressed_groups == sum(1 for n in true_sizes.values() if n < k)  # k - 1 is not
        assert result.rules["min_group_size"] == k


def test_max_output_rows_withholds_the_result(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    doc = session_document(all_keys, PARTIES)
    doc["computations"]["common"]["max_output_rows"] = 5
    world = _world(tmp_path, all_keys, dev_ca, measurements, doc)
    _submit_all(world)
    with pytest.raises(EnclaveRefused) as info:
        world.clients["alice"].result("common")
    assert info.value.code == "too_many_rows"
    assert "common" not in world.app.state.enclave.session.results
    assert not world.app.state.enclave.session.frozen


def test_results_without_dp_are_byte_identical_across_runs(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    doc = session_document(all_keys, PARTIES)
    doc["computations"]["unordered"] = {
        "sql": "SELECT id FROM alice.employees UNION SELECT id FROM bob.employees",
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
    world = _world(tmp_path, all_keys, dev_ca, measurements, _dp_doc(all_keys, 8.0, 10.0))
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


def test_privacy_budget_is_refused_once_spent(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = _world(tmp_path, all_keys, dev_ca, measurements, _dp_doc(all_keys, 1.0, 1.5))
    _submit_all(world)
    world.clients["alice"].result("private_a")
    world.clients["bob"].result("private_a")  # fetching the same release again spends nothing
    with pytest.raises(EnclaveRefused) as info:
        world.clients["alice"].result("private_b")
    assert info.value.code == "budget_exhausted"
    assert "0.5 of the session's privacy budget 1.5 is left" in info.value.reason
    spends = [e.data for e in world.clients["bob"].transcript() if e.kind == "privacy_spend"]
    assert spends == [{"computation": "private_a", "epsilon": 1.0, "spent": 1.0, "budget": 1.5}]


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
