"""A fetched result written to a file: CSV, JSON or Parquet, the same bytes however it travelled.

A result comes either inline in its signed statement (plain values: dates, times and decimals
as text, 128-bit integers whole, :func:`plain`) or streamed as Arrow record batches. Both are
written by one :class:`BatchWriter`: inline rows are first typed back into the Arrow types
DuckDB gives the same columns (:func:`to_batch`, :func:`arrow_type`), so that a result written
to a file does not depend on whether it was small enough to travel inline
(``Limits.max_inline_result_cells``, docs/adr/0004-reproducible-results.md).

:class:`BatchWriter` never holds a result whole: it writes to a hidden partial file beside the
target, renamed onto it only once every byte was verified (:meth:`BatchWriter.commit`), deleted
otherwise (:meth:`BatchWriter.abort`). Its CSV has a header quoted only where needed and rows
from Arrow's CSV writer (text quoted,
booleans ``true``/``false``, a null empty and an empty text ``""``, timestamps
``2024-01-01 12:30:00.000000``); its Parquet keeps the Arrow types; its JSON one object per row,
values as :func:`plain` gives them.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = ("csv", "json", "parquet")
# DuckDB's 128-bit integers reach Arrow as decimal128(38, 0); a signed result carries them as integers.
_WHOLE = {"HUGEINT", "UHUGEINT"}
# The Arrow type DuckDB gives each output type a result may have (manifest/sql.py, _OUTPUT_TYPES).
_ARROW_TYPES = {
    "BOOLEAN": pa.bool_(),
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "HUGEINT": pa.decimal128(38, 0),
    "UTINYINT": pa.uint8(),
    "USMALLINT": pa.uint16(),
    "UINTEGER": pa.uint32(),
    "UBIGINT": pa.uint64(),
    "UHUGEINT": pa.decimal128(38, 0),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
    "TIMESTAMP": pa.timestamp("us"),
    '"NULL"': pa.null(),
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def plain(value: Any, duckdb_type: str) -> Any:
    """A result value as a signed statement carries it: dates, times and decimals as text, 128-bit integers whole."""
    if isinstance(value, decimal.Decimal):
        return int(value) if duckdb_type in _WHOLE else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def plain_rows(batches: Sequence[pa.RecordBatch], columns: Sequence[tuple[str, str]]) -> list[list[Any]]:
    """Record batches as plain rows (:func:`plain`), in order."""
    kinds = [kind for _, kind in columns]
    rows: list[list[Any]] = []
    for batch in batches:
        values = [column.to_pylist() for column in batch.columns]
        rows.extend([plain(v, kinds[i]) for i, v in enumerate(row)] for row in zip(*values, strict=True))
    return rows


def arrow_type(duckdb_type: str) -> pa.DataType | None:
    """The Arrow type DuckDB gives a result column of ``duckdb_type`` (None: one no result has)."""
    decimal_type = _DECIMAL.fullmatch(duckdb_type)
    if decimal_type:
        return pa.decimal128(int(decimal_type.group(1)), int(decimal_type.group(2)))
    return _ARROW_TYPES.get(duckdb_type)


def _typed(value: Any, kind: pa.DataType) -> Any:
    """A :func:`plain` value back as the Python value Arrow takes for ``kind``."""
    if value is None or not isinstance(value, str | int):
        return value
    if pa.types.is_decimal(kind):
        return decimal.Decimal(value)
    if isinstance(value, int):
        return value
    if pa.types.is_date(kind):
        return dt.date.fromisoformat(value)
    if pa.types.is_timestamp(kind):
        return dt.datetime.fromisoformat(value)
    if pa.types.is_time(kind):
        return dt.time.fromisoformat(value)
    return value


def to_batch(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    """Inline rows (:func:`plain` values) as a record batch of the Arrow types DuckDB gives ``columns``."""
    arrays = []
    for i, (_, duckdb_type) in enumerate(columns):
        kind = arrow_type(duckdb_type)
        values = [row[i] for row in rows]
        arrays.append(pa.array(values) if kind is None else pa.array([_typed(v, kind) for v in values], kind))
    return pa.RecordBatch.from_arrays(arrays, names=[name for name, _ in columns])


def write(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]], path: Path, fmt: str) -> None:
    """Write inline ``rows`` under ``columns`` (name, type) to ``path`` as ``fmt`` (one of :data:`FORMATS`),
    exactly as :class:`BatchWriter` writes the same result streamed."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    batch = to_batch(columns, rows)
    writer = BatchWriter(path, fmt, batch.schema, columns)
    try:
        writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    writer.commit()


class BatchWriter:
    """A streamed result written batch by batch to ``path`` as ``fmt`` (see the module docstring)."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, columns: Sequence[tuple[str, str]]) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self._fmt = fmt
        self._columns = list(columns)
        self._csv: pacsv.CSVWriter | None = None
        self._csv_file: IO[bytes] | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._json: IO[str] | None = None
        self._first = True
        if fmt == "csv":
            # The header as the csv module quotes it (only where needed), the values by Arrow (text quoted).
            header = io.StringIO()
            csv.writer(header).writerow(schema.names)
            self._csv_file = self.partial.open("wb")
            self._csv_file.write(header.getvalue().encode("utf-8"))
            options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
            self._csv = pacsv.CSVWriter(self._csv_file, schema, write_options=options)
        elif fmt == "parquet":
            self._parquet = pq.ParquetWriter(self.partial, schema)
        else:
            self._json = self.partial.open("w", encoding="utf-8")
            self._json.write("[")

    def write(self, batch: pa.RecordBatch) -> None:
        """Append a batch."""
        if self._csv is not None:
            self._csv.write_batch(batch)
        elif self._parquet is not None:
            self._parquet.write_batch(batch)
        elif self._json is not None:
            names = [name for name, _ in self._columns]
            for row in plain_rows([batch], self._columns):
                self._json.write(("\n  " if self._first else ",\n  ") + json.dumps(dict(zip(names, row, strict=True))))
                self._first = False

    def _close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._csv_file is not None:
            self._csv_file.close()
        if self._parquet is not None:
            self._parquet.close()
        if self._json is not None:
            self._json.write("\n]" if not self._first else "]")
            self._json.close()

    def commit(self) -> None:
        """Every byte was verified: the file takes its name."""
        self._close()
        self.partial.replace(self.path)

    def abort(self) -> None:
        """Something failed: nothing is left behind."""
        with contextlib.suppress(Exception):
            self._close()
        self.partial.unlink(missing_ok=True)
