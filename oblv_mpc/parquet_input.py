"""Parquet files as input tables: which column types convert to the manifest's, and as CSV.

``mpc submit data.parquet`` takes a Parquet file where a CSV file goes. By default it is read
with Arrow and sent as record batches (:mod:`oblv_mpc.columnar`, with :func:`check_schema` and
:func:`convert` below); with ``--format csv`` the client converts it: :func:`as_csv`
checks the file's columns against the manifest's (names exactly the declared ones, in any
order; types that convert without loss, below), then writes the table as CSV, batch by batch,
into a private temporary folder (mode 0700, removed afterwards), and the CSV goes through the
same check as any CSV file (:mod:`oblv_mpc.tables`) and is what is uploaded: the receipt's
SHA-256 is that of the CSV, not of the Parquet file. Memory stays bounded by one batch.

Types accepted for each declared type:

- ``text``: strings (also dictionary-encoded) and integers;
- ``integer``: signed and unsigned integers (an unsigned value past 2^63-1 is refused);
- ``float``: floating point numbers, integers and decimals;
- ``boolean``: booleans; ``date``: dates;
- ``timestamp``: timestamps of any unit; one with a time zone is taken in UTC (the manifest's
  convention); a value finer than a microsecond is refused rather than rounded.

As in CSV, an empty string is NULL.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyarrow.types as pat

from oblv_mpc.errors import InputDataError
from oblv_mpc.ingest import ARROW_TYPES, arrow_schema
from oblv_mpc.manifest import ColumnType, InputTable

MAGIC = b"PAR1"
BATCH_ROWS = 64 * 1024
_LINE = re.compile(r"\bline (\d+)")


def is_parquet(path: Path) -> bool:
    """Whether ``path`` is a Parquet file (by its first bytes, whatever its name)."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False  # the CSV reader says why it cannot be read


def _accepts(declared: ColumnType, found: pa.DataType) -> bool:
    if pat.is_dictionary(found):
        found = found.value_type
    checks = {
        ColumnType.TEXT: lambda t: pat.is_string(t) or pat.is_large_string(t) or pat.is_integer(t),
        ColumnType.INTEGER: pat.is_integer,
        ColumnType.FLOAT: lambda t: pat.is_floating(t) or pat.is_integer(t) or pat.is_decimal(t),
        ColumnType.BOOLEAN: pat.is_boolean,
        ColumnType.DATE: pat.is_date,
        ColumnType.TIMESTAMP: pat.is_timestamp,
    }
    return bool(checks[declared](found))


def check_schema(path: Path, schema: pa.Schema, table: InputTable) -> None:
    """Refuse a Parquet schema whose columns are not exactly the declared ones, or whose types do not convert."""
    declared = [c.name for c in table.columns]
    names = list(schema.names)
    missing = [n for n in declared if n not in names]
    extra = [n for n in names if n not in declared]
    if missing or extra or len(set(names)) != len(names):
        parts = [f"missing column(s) {', '.join(missing)}"] if missing else []
        parts += [f"unexpected column(s) {', '.join(extra)}"] if extra else []
        parts += ["a column named twice"] if len(set(names)) != len(names) else []
        raise _fail(table, f"{path.name}: {'; '.join(parts)}; expected exactly {', '.join(declared)}")
    for column in table.columns:
        found = schema.field(column.name).type
        if not _accepts(column.type, found):
            expected = column.type.value
            raise _fail(table, f"{path.name}: column {column.name} is {found} in the file, expected {expected}")


def _fail(table: InputTable, message: str) -> InputDataError:
    return InputDataError(f"{table.qualified}: {message}", hint="fix the file and submit it again; nothing was sent")


def convert(batch: pa.RecordBatch, table: InputTable, path: Path) -> pa.RecordBatch:
    """A batch of the file as the manifest's types, in its column order (after :func:`check_schema`)."""
    arrays = []
    for column in table.columns:
        values = batch.column(column.name)
        if pat.is_dictionary(values.type):
            values = values.dictionary_decode()
        try:
            arrays.append(values.cast(ARROW_TYPES[column.type]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise _fail(table, f"{path.name}: column {column.name}: {exc}") from None
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(table))


def rows_not_lines(error: InputDataError, path: Path) -> InputDataError:
    """A CSV check's error about the converted file, in the Parquet file's terms: line N of the
    CSV (line 1 is its header) is row N-1 of the Parquet file."""
    message = _LINE.sub(lambda m: f"row {int(m.group(1)) - 1}", error.message)
    return InputDataError(message.replace(": row", f": {path.name} row", 1), hint=error.hint)


@contextlib.contextmanager
def as_csv(path: Path, table: InputTable) -> Iterator[Path]:
    """The Parquet file at ``path`` as a CSV file in a private temporary folder, while in use.

    Refuses (:class:`~oblv_mpc.errors.InputDataError`) a file that is not Parquet, whose columns
    are not the declared ones, whose types do not convert, or with more rows than ``max_rows``.
    """
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise _fail(table, f"{path.name}: not a readable Parquet file ({exc})") from None
    with contextlib.closing(parquet):
        check_schema(path, parquet.schema_arrow, table)
        if parquet.metadata.num_rows > table.max_rows:
            raise _fail(
                table, f"{path.name}: {parquet.metadata.num_rows:,} rows, more than max_rows ({table.max_rows:,})"
            )
        target = arrow_schema(table)
        with tempfile.TemporaryDirectory(prefix="mpc-parquet-") as folder:
            converted = Path(folder) / f"{path.stem}.csv"
            try:
                with pacsv.CSVWriter(converted, target) as writer:
                    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=target.names):
                        writer.write_batch(convert(batch, table, path))
            except (OSError, pa.ArrowException) as exc:
                raise _fail(table, f"{path.name}: cannot be read to the end ({exc})") from None
            yield converted
