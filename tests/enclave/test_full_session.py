"""Whole sessions for two and three parties, in process and over real HTTP on 127.0.0.1.

Every built-in template's result is compared with an independent plain DuckDB query over the
same CSV files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.errors import NotReady
from tests.enclave.conftest import PARTIES, World, make_world, serve


def _reference(files: dict[str, Path], parties: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect()
    for p in parties:
        columns = "{'id': 'VARCHAR', 'level': 'VARCHAR', 'salary': 'DOUBLE'}"
        con.execute(f"CREATE TABLE {p} AS SELECT * FROM read_csv('{files[p]}', header=true, columns={columns})")
    common = " INTERSECT ".join(f"SELECT id FROM {p}" for p in parties)
    union = " UNION ALL ".join(f"SELECT level, salary, '{p}' AS owner, id FROM {p}" for p in parties)
    a, b = parties[0], parties[1]
    # each owner's rule (min_distinct 3 of its own ids), written independently of the enclave's SQL
    every_owner = " AND ".join(f"count(DISTINCT id) FILTER (WHERE owner = '{p}') >= 3" for p in parties)
    return {
        "common": con.execute(f"SELECT * FROM ({common}) ORDER BY 1").fetchall(),
        "common_count": con.execute(f"SELECT count(*) FROM ({common})").fetchall(),
        "by_level": con.execute(
            f"SELECT level, avg(salary), max(salary), count(*) FROM ({union}) "
            f"GROUP BY level HAVING {every_owner} ORDER BY level"
        ).fetchall(),
        "by_level_all_groups": con.execute(f"SELECT count(DISTINCT level) FROM ({union})").fetchall(),
        "joined": con.execute(
            f"SELECT {a}.level, sum({b}.salary), count(*) FROM {a} JOIN {b} ON {a}.id = {b}.id GROUP BY 1 "
            f"HAVING count(DISTINCT {a}.id) >= 3 AND count(DISTINCT {b}.id) >= 3 ORDER BY 1"
        ).fetchall(),
    }


def _run_session(world: World, parties: tuple[str, ...]) -> None:
    clients = world.clients
    # nothing can be read before every input is in
    with pytest.raises(NotReady, match="waiting for"):
        clients[parties[0]].result("common_count")
    receipts = {p: clients[p].upload("employees", world.files[p]) for p in parties}
    for p, receipt in receipts.items():
        assert receipt.table == f"{p}.employees"
        assert receipt.rows == len(world.files[p].read_text().splitlines()) - 1
    status = clients[parties[-1]].status()
    assert all(entry["submitted"] for entry in status["inputs"].values())
    assert {c["state"] for c in status["computations"].values()} == {"ready"}

    expected = _reference(world.files, parties)
    a, b = parties[0], parties[1]
    common = clients[a].result("common")
    assert [tuple(r) for r in common.rows] == expected["common"]
    assert clients[b].result("common_count").rows == [[expected["common_count"][0][0]]]
    by_level = clients[parties[-1]].result("by_level")
    assert [c[0] for c in by_level.columns] == ["level", "avg_salary", "top", "group_size"]
    assert len(by_level.rows) == len(expected["by_level"])
    for got, want in zip(by_level.rows, expected["by_level"], strict=True):
        assert got[0] == want[0] and got[3] == want[3]
        assert got[1] == pytest.approx(want[1]) and got[2] == pytest.approx(want[2])
    assert by_level.suppressed_groups == expected["by_level_all_groups"][0][0] - len(expected["by_level"])
    assert by_level.rules == {
        "min_distinct": [{"table": f"{p}.employees", "unit": "id", "k": 3} for p in parties],
        "max_output_rows": None,
        "disclose_suppressed": True,
        "dp": None,
    }
    joined = clients[b].result("joined")
    assert [(r[0], r[2]) for r in joined.rows] == [(w[0], w[2]) for w in expected["joined"]]
    assert [r[1] for r in joined.rows] == pytest.approx([w[1] for w in expected["joined"]])

    # inputs are frozen once used
    status = clients[a].status()
    assert all(entry["frozen"] for entry in status["inputs"].values())
    assert {c["state"] for c in status["computations"].values()} == {"done"}
    # the transcript verifies and tells the story
    kinds = [e.kind for e in clients[b].transcript()]
    assert kinds[0] == "start" and kinds.count("upload") == len(parties) and kinds.count("run") == 4
    assert kinds.count("release") == 4
    # the result is signed by the attested enclave over commitments to its inputs
    assert common.inputs == {f"{p}.employees": receipts[p].commitment for p in parties}


@pytest.mark.parametrize("parties", [PARTIES[:2], PARTIES], ids=["two", "three"])
def test_full_session_in_process(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    parties: tuple[str, ...],
) -> None:
    world = make_world(tmp_path, all_keys, dev_ca, measurements, parties=parties)
    _run_session(world, parties)


@pytest.mark.parametrize("parties", [PARTIES[:2], PARTIES], ids=["two", "three"])
def test_full_session_over_http(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    parties: tuple[str, ...],
) -> None:
    world = make_world(tmp_path, all_keys, dev_ca, measurements, parties=parties, rows=3000)
    with serve(world.app) as url, httpx.Client(base_url=url, timeout=30) as http:
        world.http = http
        world.clients = {p: world.client(p, chunk_bytes=16 * 1024) for p in parties}  # many chunks each
        _run_session(world, parties)


def test_post_quantum_hybrid_suite(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    from oblv_mpc.enclave import EnclaveSettings
    from oblv_mpc.protocol.hpke import SuiteName

    world = make_world(
        tmp_path, all_keys, dev_ca, measurements, settings=EnclaveSettings(suite=SuiteName.MLKEM768_X25519)
    )
    connection = world.clients["alice"].connect()
    assert connection.context.suite is SuiteName.MLKEM768_X25519
    assert connection.attestation.public_key is None  # 1216 bytes do not fit; user_data binds its hash
    _run_session(world, PARTIES)
