"""A result is the same result whether it travels inline or streamed: the same rows, the same
file bytes (CSV, JSON, Parquet), the same release rules applied, batch by batch.

Each case runs the same session twice through the real app, once with every result inline and
once with every result of more than a few cells streamed in small chunks, and compares what a
reader gets.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.errors import EnclaveRefused
from oblv_mpc.protocol.messages import ResultRequest
from oblv_mpc.statements import Result
from tests.enclave.conftest import World, make_world
from tests.enclave.stream_world import INLINE, STREAMED, settings, small_batches, typed_document, uploaded

Build = Callable[..., World]


@pytest.fixture
def build(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> Build:
    """A fresh session in a folder of its own, every party's employees uploaded."""
    count = [0]

    def make(**kwargs: Any) -> World:
        count[0] += 1
        folder = tmp_path / f"world-{count[0]}"
        folder.mkdir()
        return uploaded(folder, all_keys, dev_ca, measurements, **kwargs)

    return make


def _saved(world: World, computation: str, path: Path, fmt: str) -> Result:
    alice = world.clients["alice"]
    result = alice.result(computation, rows=False)
    alice.save_result(result, path, fmt)
    return result


def _parsed(path: Path, fmt: str) -> Any:
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.reader(handle))
    if fmt == "json":
        return json.loads(path.read_text(encoding="utf-8"))
    table = pq.read_table(path)
    return [(field.name, str(field.type)) for field in table.schema], table.to_pylist()


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_a_streamed_result_is_written_exactly_as_the_same_result_inline(
    build: Build, all_keys: dict[str, keys.PrivateKey], tmp_path: Path, fmt: str
) -> None:
    """Dates, timestamps, decimals, 128-bit integers, booleans, nulls and empty text alike, in every format."""
    streamed = build(document=typed_document(all_keys))
    inline = build(document=typed_document(all_keys), inline_cells=INLINE)
    a = _saved(streamed, "typed", tmp_path / f"streamed.{fmt}", fmt)
    b = _saved(inline, "typed", tmp_path / f"inline.{fmt}", fmt)
    assert a.stream is not None and a.stream.chunks > 2 and b.stream is None
    assert a.columns == b.columns
    written, expected = _parsed(tmp_path / f"streamed.{fmt}", fmt), _parsed(tmp_path / f"inline.{fmt}", fmt)
    assert written == expected
    if fmt != "parquet":  # Parquet's footer may differ in nothing that a reader sees; text formats byte for byte
        assert (tmp_path / f"streamed.{fmt}").read_bytes() == (tmp_path / f"inline.{fmt}").read_bytes()
    assert not list(tmp_path.glob(".*.partial"))


def test_every_type_keeps_its_kind_in_each_format(
    build: Build, all_keys: dict[str, keys.PrivateKey], tmp_path: Path
) -> None:
    """Null and empty text stay apart, booleans stay booleans, big integers stay whole, dates stay dates."""
    world = build(document=typed_document(all_keys))
    rows = {row[0]: row for row in world.clients["alice"].result("typed").rows}
    for fmt in ("csv", "json", "parquet"):
        _saved(world, "typed", tmp_path / f"typed.{fmt}", fmt)
    with (tmp_path / "typed.csv").open(newline="", encoding="utf-8") as handle:
        by_id = {line["id"]: line for line in csv.DictReader(handle)}
    assert rows["alice-102"][4] == "" and by_id["alice-102"]["note"] == ""  # empty text
    assert rows["alice-105"][4] is None and by_id["alice-105"]["note"] == ""
    assert (
        '"alice-102",2024-06-09,' in (tmp_path / "typed.csv").read_text()
        and ',"",' in (tmp_path / "typed.csv").read_text()
    )
    assert by_id["alice-10"]["day"] == "" and by_id["alice-10"]["even"] == "true"
    assert by_id["alice-101"]["big"] == "10100000000000000000000" and by_id["alice-101"]["share"] == "12.625"
    objects = {o["id"]: o for o in json.loads((tmp_path / "typed.json").read_text())}
    assert objects["alice-102"]["note"] == "" and objects["alice-105"]["note"] is None
    assert objects["alice-101"]["big"] == 10100000000000000000000 and objects["alice-101"]["even"] is False
    assert objects["alice-101"]["day"] == "2024-06-08" and objects["alice-101"]["share"] == "12.625"
    schema = {f.name: str(f.type) for f in pq.read_table(tmp_path / "typed.parquet").schema}
    assert schema == {
        "id": "string", "day": "date32[day]", "stamp": "timestamp[us]", "even": "bool", "note": "string",
        "share": "decimal128(12, 3)", "big": "decimal128(38, 0)", "n": "int64",
    }  # fmt: skip


# -- release rules, batch by batch ---------------------------------------------------------------

LEVELS = 60  # groups; group L{n} holds 1 + n % 5 distinct ids: those with 1 or 2 are suppressed (k = 3)
SUPPRESSED = sum(1 for n in range(LEVELS) if 1 + n % 5 < 3)


def _grouped_document(all_keys: dict[str, keys.PrivateKey], max_output_rows: int | None) -> dict[str, Any]:
    doc = typed_document(all_keys)
    doc["inputs"]["alice.employees"]["protection"] = {
        "unit": "id",
        "min_distinct": 3,
        "dimensions": ["level"],
        "aggregates": {"salary": ["avg", "sum"]},
        "disclose_suppressed": True,
    }
    doc["computations"] = {
        "levels": {
            "template": "aggregate",
            "params": {
                "inputs": ["alice.employees"],
                "group_by": ["level"],
                "aggregates": {"total": {"sum": "salary"}},
            },
            "readers": ["alice"],
            **({"max_output_rows": max_output_rows} if max_output_rows else {}),
        }
    }
    return doc


def _grouped_world(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements,
    inline_cells: int, max_output_rows: int | None,
) -> World:  # fmt: skip
    folder = tmp_path / f"grouped-{inline_cells}-{max_output_rows}"
    folder.mkdir()
    doc = _grouped_document(all_keys, max_output_rows)
    world = make_world(folder, all_keys, dev_ca, measurements, settings=settings(inline_cells), document=doc)
    lines = ["id,level,salary"]
    for n in range(LEVELS):
        lines += [f"u{n}-{i},L{n:02d},{1000 + n}.50" for i in range(1 + n % 5)]
    data = folder / "grouped.csv"
    data.write_text("\n".join(lines) + "\n")
    for party, client in world.clients.items():
        client.upload("employees", data if party == "alice" else world.files[party])
    return world


@pytest.mark.parametrize("batch_rows", [1, 4, 7, 1 << 20])
def test_suppressed_groups_straddling_batches_are_suppressed_and_counted_as_inline(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements,
    monkeypatch: pytest.MonkeyPatch, batch_rows: int,
) -> None:  # fmt: skip
    """Thresholds judged batch by batch give the same released groups and the same count as all at once,
    however the batches cut runs of suppressed groups; the helper columns never leave."""
    small_batches(monkeypatch, batch_rows)
    results = [
        _grouped_world(tmp_path, all_keys, dev_ca, measurements, cells, None).clients["alice"].result("levels")
        for cells in (STREAMED, INLINE)
    ]
    streamed, inline = results
    assert streamed.stream is not None and inline.stream is None
    assert streamed.rows == inline.rows and streamed.columns == inline.columns
    assert [name for name, _ in streamed.columns] == ["level", "total", "group_size"]  # no helper column
    assert streamed.suppressed_groups == inline.suppressed_groups == SUPPRESSED
    assert [row[0] for row in streamed.rows] == [f"L{n:02d}" for n in range(LEVELS) if 1 + n % 5 >= 3]


@pytest.mark.parametrize("batch_rows", [4, 7])
@pytest.mark.parametrize("cells", [STREAMED, INLINE])
def test_max_output_rows_crossing_a_batch_boundary_withholds_the_whole_result(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements,
    monkeypatch: pytest.MonkeyPatch, batch_rows: int, cells: int,
) -> None:  # fmt: skip
    """The released rows are counted across batches: one row past the limit in a later batch withholds all."""
    small_batches(monkeypatch, batch_rows)
    released = LEVELS - SUPPRESSED
    exact = _grouped_world(tmp_path, all_keys, dev_ca, measurements, cells, released).clients["alice"]
    assert len(exact.result("levels").rows) == released
    over = _grouped_world(tmp_path, all_keys, dev_ca, measurements, cells, released - 1).clients["alice"]
    with pytest.raises(EnclaveRefused) as info:
        over.result("levels")
    assert info.value.code == "withheld"
    assert f"more rows than max_output_rows ({released - 1})" in info.value.message
    with pytest.raises(EnclaveRefused) as chunk:
        over.call(ResultRequest("levels", 0))
    assert chunk.value.code == "withheld"  # a chunk of a withheld result is the same refusal
