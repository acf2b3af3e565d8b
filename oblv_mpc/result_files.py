"""A fetched result written to a file: CSV, JSON or Parquet.

A result the signed statement carries inline is written by :func:`write`: values as the
statement carries them (dates as ISO text, :func:`plain`); Parquet columns take the type the
enclave names (``VARCHAR``, ``BIGINT``, ``DOUBLE``, ``BOOLEAN``), any other the type Arrow infers.

A streamed result (record batches, as they arrive) is written by :class:`BatchWriter`, never
held whole: to a hidden partial file beside the target, renamed onto it only once every byte
was verified (:meth:`BatchWriter.commit`), deleted otherwise (:meth:`BatchWriter.abort`). Its
CSV comes from Arrow's CSV writer (text quoted, booleans ``true``/``false``, a null empty and an
empty text ``""``); its Parquet keeps the stream's Arrow types; its JSON is the same as
:func:`write`'s.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = ("csv", "json", "parquet")
_ARROW_TYPES = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}
# DuckDB's 128-bit integers reach Arrow as decimal128(38, 0); a signed result carries them as integers.
_WHOLE = {"HUGEINT", "UHUGEINT"}


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


def write(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]], path: Path, fmt: str) -> None:
    """Write ``rows`` under ``columns`` (name, type) to ``path`` as ``fmt`` (one of :data:`FORMATS`)."""
    names = [name for name, _ in columns]
    if fmt == "parquet":
        arrays = [
            pa.array([row[i] for row in rows], type=_ARROW_TYPES.get(kind)) for i, (_, kind) in enumerate(columns)
        ]
        pq.write_table(pa.Table.from_arrays(arrays, names=names), path)
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        if fmt == "csv":
            writer = csv.writer(handle)
            writer.writerow(names)
            writer.writerows(rows)
        elif fmt == "json":
            json.dump([dict(zip(names, row, strict=True)) for row in rows], handle, indent=2)
        else:
            raise ValueError(f"unknown format {fmt!r}")


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
        self._parquet: pq.ParquetWriter | None = None
        self._json: IO[str] | None = None
        self._first = True
        if fmt == "csv":
            self._csv = pacsv.CSVWriter(self.partial, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
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
