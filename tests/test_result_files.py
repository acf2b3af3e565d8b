"""Inline result rows are typed back into exactly the Arrow types DuckDB gives the same columns,
so a result file does not depend on whether its result travelled inline or streamed."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oblv_mpc import result_files

# One value of every type a result may carry (manifest/sql.py, _OUTPUT_TYPES), and a null of each.
EVERY_TYPE = (
    "SELECT * FROM (VALUES "
    "(true, 1::TINYINT, 2::SMALLINT, 3::INTEGER, 4::BIGINT, "
    "-99999999999999999999999999999999999999::HUGEINT, 5::UTINYINT, 6::USMALLINT, 7::UINTEGER, "
    "18446744073709551615::UBIGINT, 99999999999999999999999999999999999999::UHUGEINT, 1.5::FLOAT, 2.25::DOUBLE, "
    "'', DATE '2024-02-29', TIME '23:59:59.123456', TIMESTAMP '2024-01-01 12:30:00.000001', "
    "123.450::DECIMAL(10, 3), NULL), "
    "(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    ") AS t(b, ti, si, i, bi, hi, uti, usi, ui, ubi, uhi, f, d, v, day, tm, ts, dec, nothing)"
)


@pytest.fixture(scope="module")
def duckdb_result() -> tuple[list[tuple[str, str]], pa.RecordBatch]:
    relation = duckdb.connect().sql(EVERY_TYPE)
    columns = [(str(n), str(t)) for n, t in zip(relation.columns, relation.types, strict=True)]
    return columns, relation.to_arrow_table().combine_chunks().to_batches()[0]


def test_every_output_type_maps_to_the_arrow_type_duckdb_gives_it(
    duckdb_result: tuple[list[tuple[str, str]], pa.RecordBatch],
) -> None:
    columns, batch = duckdb_result
    assert [result_files.arrow_type(kind) for _, kind in columns] == list(batch.schema.types)


def test_plain_rows_typed_back_are_the_batch_duckdb_gave(
    duckdb_result: tuple[list[tuple[str, str]], pa.RecordBatch],
) -> None:
    columns, batch = duckdb_result
    rebuilt = result_files.to_batch(columns, result_files.plain_rows([batch], columns))
    assert rebuilt.equals(batch.cast(rebuilt.schema)) and rebuilt.schema == batch.schema


@pytest.mark.parametrize("fmt", result_files.FORMATS)
def test_inline_and_streamed_writes_give_the_same_file(
    duckdb_result: tuple[list[tuple[str, str]], pa.RecordBatch], tmp_path: Path, fmt: str
) -> None:
    columns, batch = duckdb_result
    result_files.write(columns, result_files.plain_rows([batch], columns), tmp_path / f"inline.{fmt}", fmt)
    writer = result_files.BatchWriter(tmp_path / f"streamed.{fmt}", fmt, batch.schema, columns)
    for row in range(batch.num_rows):
        writer.write(batch.slice(row, 1))
    writer.commit()
    if fmt == "parquet":  # row groups follow the batches written; what a reader reads is the same
        inline, streamed = (pq.read_table(tmp_path / f"{name}.{fmt}") for name in ("inline", "streamed"))
        assert inline.schema == streamed.schema and inline.to_pylist() == streamed.to_pylist()
        assert inline.schema == batch.schema
    else:
        assert (tmp_path / f"inline.{fmt}").read_bytes() == (tmp_path / f"streamed.{fmt}").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"inline.{fmt}", f"streamed.{fmt}"]


def test_an_unknown_format_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        result_files.write([("a", "BIGINT")], [[1]], tmp_path / "out.xml", "xml")
    assert not list(tmp_path.iterdir())
