"""Which computations run on several DuckDB threads, and that doing so changes no byte of a result.

Only a computation whose result cannot depend on the plan runs in parallel
(``engine.exact_in_parallel``: a built-in template without noise over inputs without
floating-point columns); its signed result, streamed or inline, must be the same bytes on one
thread or two, run after run (docs/adr/0004-reproducible-results.md).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import cbor2
import pytest

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.enclave import engine
from oblv_mpc.enclave.engine import Engine, exact_in_parallel
from oblv_mpc.manifest import Manifest
from oblv_mpc.synthetic.example import HOSPITALS, hospitals_document
from tests.conftest import salary_document
from tests.enclave.conftest import PARTIES, session_document
from tests.enclave.stream_world import session_of, uploaded

EXACT = ("common", "common_count", "by_level", "joined")  # psi, psi_cardinality, aggregate, join_aggregate


def _integer_salaries(document: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    for table in doc["inputs"].values():
        table["columns"]["salary"] = "integer"
    return doc


def _manifest(document: dict[str, Any]) -> Manifest:
    return manifest.from_data(document)


def test_every_exact_template_over_integer_inputs_runs_in_parallel(all_keys: dict[str, keys.PrivateKey]) -> None:
    m = _manifest(_integer_salaries(session_document(all_keys, PARTIES)))
    assert {c.template for c in m.computations.values()} == {"psi", "psi_cardinality", "aggregate", "join_aggregate"}
    assert {name: exact_in_parallel(c, m) for name, c in m.computations.items()} == dict.fromkeys(EXACT, True)


@pytest.mark.parametrize("computation", EXACT)
def test_a_float_column_in_any_input_keeps_a_computation_on_one_thread(
    all_keys: dict[str, keys.PrivateKey], computation: str
) -> None:
    """Even a float column the computation never reads: sums over floats depend on the order of addition."""
    doc = _integer_salaries(session_document(all_keys, PARTIES))
    doc["inputs"]["carol.employees"]["columns"]["bonus"] = "float"  # read by nothing
    m = _manifest(doc)
    uses_carol = "carol.employees" in m.computations[computation].inputs
    assert exact_in_parallel(m.computations[computation], m) is not uses_carol
    assert not exact_in_parallel(m.computations[computation], _manifest(session_document(all_keys, PARTIES)))


def test_sql_written_in_the_manifest_runs_on_one_thread(all_keys: dict[str, keys.PrivateKey]) -> None:
    doc = _integer_salaries(session_document(all_keys, PARTIES))
    for table in doc["inputs"].values():
        table["protection"] = {"release": "unrestricted"}
    doc["computations"]["custom"] = {"sql": "SELECT count(*) AS n FROM alice.employees", "readers": ["alice"]}
    m = _manifest(doc)
    assert not exact_in_parallel(m.computations["custom"], m)


def test_a_differentially_private_aggregate_runs_on_one_thread(all_keys: dict[str, keys.PrivateKey]) -> None:
    doc = _integer_salaries(salary_document(all_keys))
    for table in doc["inputs"].values():
        table["protection"]["allow_dp"] = True
    doc["privacy_budget"] = {"epsilon": 2.0}
    doc["computations"]["private_total"] = {
        "template": "aggregate",
        "params": {"inputs": ["alice.employees"], "group_by": ["level"], "aggregates": {"total": {"sum": "salary"}}},
        "dp": {"epsilon": 1.0, "bounds": {"salary": [0, 200000]}, "groups": {"level": ["A", "B", "C"]}},
        "readers": ["alice"],
    }
    m = _manifest(doc)
    assert not exact_in_parallel(m.computations["private_total"], m)
    undp = dataclasses.replace(m.computations["private_total"], dp=None)
    assert exact_in_parallel(undp, m)  # the noise alone is what keeps it on one thread


def test_a_synthetic_release_runs_on_one_thread() -> None:
    m = _manifest(hospitals_document({h: keys.to_base64(keys.generate().public_key()) for h in HOSPITALS}))
    synthetic = [c for c in m.computations.values() if c.synthetic is not None]
    assert synthetic and not any(exact_in_parallel(c, m) for c in synthetic)


# -- through the real app -------------------------------------------------------------------------


def _spy_connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which database each run reads from: 'parallel' or 'single'."""
    used: list[str] = []
    read = Engine._read

    def spy(self: Engine, connection: Any, sql: str, ordered: bool) -> Any:
        used.append("parallel" if connection is self.parallel and self.parallel is not self.connection else "single")
        return read(self, connection, sql, ordered)

    monkeypatch.setattr(Engine, "_read", spy)
    return used


def _signed_content(statement: dict[str, Any]) -> bytes:
    """What a result statement says of the result: all but the run's instance, time and salted commitments."""
    return cbor2.dumps({k: v for k, v in statement.items() if k not in ("instance", "time", "inputs")}, canonical=True)


@pytest.mark.parametrize("inline_cells", [10, 1_000_000], ids=["streamed", "inline"])
def test_exact_results_are_the_same_bytes_on_one_thread_or_two_run_after_run(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    monkeypatch: pytest.MonkeyPatch,
    inline_cells: int,
) -> None:
    monkeypatch.setattr(engine, "_BATCH_ROWS", 64)  # many batches: any reordering across them would show
    used = _spy_connections(monkeypatch)
    doc = _integer_salaries(session_document(all_keys, PARTIES))
    seen: dict[str, set[bytes]] = {name: set() for name in EXACT}
    chunks: dict[str, set[tuple[bytes, ...]]] = {name: set() for name in EXACT}
    for run, threads in enumerate((1, 2, 1, 2)):
        folder = tmp_path / f"run-{run}"
        folder.mkdir()
        world = uploaded(
            folder,
            all_keys,
            dev_ca,
            measurements,
            inline_cells=inline_cells,
            threads=threads,
            rows=2000,
            document=doc,
            whole_salaries=True,
        )
        for name in EXACT:
            reader = world.manifest.computations[name].readers[0]
            seen[name].add(_signed_content(world.clients[reader].result(name, rows=False).statement))
            stream = session_of(world).results[name].stream  # type: ignore[union-attr]
            chunks[name].add(stream.chunks if stream is not None else ())
    assert all(len(statements) == 1 for statements in seen.values()), {k: len(v) for k, v in seen.items()}
    assert all(len(kept) == 1 for kept in chunks.values())
    assert used == ["single"] * len(EXACT) + ["parallel"] * len(EXACT) + ["single"] * len(EXACT) + ["parallel"] * len(
        EXACT
    )
    if inline_cells == 10:
        assert all(next(iter(kept)) for name, kept in chunks.items() if name in ("common", "by_level"))


def test_float_inputs_are_read_on_one_thread_even_with_two(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used = _spy_connections(monkeypatch)
    world = uploaded(tmp_path, all_keys, dev_ca, measurements, threads=2)  # salaries are floats here
    assert session_of(world).engine.parallel is not session_of(world).engine.connection
    for name in EXACT:
        world.clients[world.manifest.computations[name].readers[0]].result(name, rows=False)
    assert used == ["single"] * len(EXACT)
