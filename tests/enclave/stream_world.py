"""Sessions whose results stream with small data: a small ``Limits.max_inline_result_cells``,
small result chunks, and (optionally) small DuckDB batches, through the real app and real keys."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.enclave import EnclaveSettings, engine
from oblv_mpc.enclave.session import Session
from oblv_mpc.limits import Limits
from tests.enclave.conftest import PARTIES, World, make_world, session_document

CHUNK_BYTES = 1024  # a streamed result of a few hundred rows takes several chunks
STREAMED = 10  # max_inline_result_cells: every result below of more than 10 cells streams
INLINE = 1_000_000  # the same results carried inline


def settings(inline_cells: int = STREAMED, threads: int = 1) -> EnclaveSettings:
    """Settings whose results of more than ``inline_cells`` cells stream, in chunks of ``CHUNK_BYTES``."""
    limits = Limits(max_inline_result_cells=inline_cells, result_chunk_bytes=CHUNK_BYTES)
    return EnclaveSettings(limits=limits, compute_threads=threads)


def small_batches(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    """DuckDB hands the engine record batches of ``rows`` rows: rules and streams see many batches."""
    monkeypatch.setattr(engine, "_BATCH_ROWS", rows)


def session_of(world: World) -> Session:
    """The enclave's session object (to read what it keeps, or to play a compromised enclave)."""
    session: Session = world.app.state.enclave.session
    return session


def uploaded(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    *,
    inline_cells: int = STREAMED,
    threads: int = 1,
    rows: int = 400,
    document: dict[str, Any] | None = None,
    parties: tuple[str, ...] = PARTIES,
    whole_salaries: bool = False,
) -> World:
    """A session (every built-in template, or ``document``) with every party's employees uploaded
    (``whole_salaries``: salaries rounded to integers, for a manifest that types them so)."""
    world = make_world(
        tmp_path, all_keys, dev_ca, measurements, parties, settings(inline_cells, threads), rows, document
    )
    if whole_salaries:
        for path in world.files.values():
            lines = path.read_text().splitlines()
            path.write_text("\n".join([lines[0], *(line.rsplit(".", 1)[0] for line in lines[1:])]) + "\n")
    for party, client in world.clients.items():
        client.upload("employees", world.files[party])
    return world


def unrestricted(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every table released without owner rules (SQL of any shape may read it)."""
    doc = copy.deepcopy(document)
    for table in doc["inputs"].values():
        table["protection"] = {"release": "unrestricted"}
    return doc


# A computation whose columns cover the types a result file must keep apart: dates, timestamps,
# decimals, 128-bit integers, booleans, nulls, and empty text beside null text.
TYPED_SQL = (
    "SELECT id, "
    "CASE WHEN n % 5 = 0 THEN NULL ELSE DATE '2024-02-28' + CAST(n AS INTEGER) END AS day, "
    "TIMESTAMP '2024-01-01 12:30:00' + to_seconds(n) AS stamp, "
    "n % 2 = 0 AS even, "
    "CASE WHEN n % 7 = 0 THEN NULL WHEN n % 3 = 0 THEN '' ELSE 'note, \"' || id || '\"' END AS note, "
    "CAST(n / 8 AS DECIMAL(12, 3)) AS share, "
    "CAST(n AS HUGEINT) * 100000000000000000000 AS big, "
    "n AS n "
    "FROM (SELECT id, CAST(regexp_extract(id, '([0-9]+)$', 1) AS BIGINT) AS n FROM alice.employees) "
    "ORDER BY id"
)


def typed_document(all_keys: dict[str, keys.PrivateKey]) -> dict[str, Any]:
    """Every built-in template, plus ``typed`` (:data:`TYPED_SQL`) read by alice, over unrestricted tables."""
    doc = unrestricted(session_document(all_keys, PARTIES))
    doc["computations"]["typed"] = {"sql": TYPED_SQL, "readers": ["alice"]}
    return doc
