"""A result as an Arrow table, and as a pandas or polars DataFrame, for notebooks and scripts.

:meth:`oblv_mpc.statements.Result.to_arrow` (and ``to_pandas``, ``to_polars``) call these
with the result's columns and rows.
A result carries each column's DuckDB type name and plain values (dates, times and decimals as
text, as the enclave signs them); the table is typed back from the names:

- integers (``TINYINT`` ... ``BIGINT``, unsigned too) -> int64 (``UBIGINT``: uint64);
  ``HUGEINT`` (what ``sum`` of integers gives) -> int64 when every value fits, else
  decimal128(38, 0);
- ``DOUBLE``, ``FLOAT``, ``REAL`` -> float64; ``DECIMAL(p,s)`` -> decimal128(p, s);
- ``BOOLEAN`` -> bool; ``VARCHAR`` -> string; ``DATE`` -> date32;
- ``TIMESTAMP`` -> timestamp[us]; ``TIMESTAMP WITH TIME ZONE`` -> timestamp[us, UTC];
- anything else: as Arrow infers it from the values.

pandas and polars are optional: ``pip install pandas`` or ``pip install polars`` to use theirs.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
_TYPES = {
    "TINYINT": pa.int64(),
    "SMALLINT": pa.int64(),
    "INTEGER": pa.int64(),
    "BIGINT": pa.int64(),
    "UTINYINT": pa.int64(),
    "USMALLINT": pa.int64(),
    "UINTEGER": pa.int64(),
    "UBIGINT": pa.uint64(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float64(),
    "REAL": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"),
}


def _arrow_type(kind: str, values: list[Any]) -> pa.DataType | None:
    """The Arrow type of a column of DuckDB type ``kind`` (None: infer from the values)."""
    kind = kind.upper()
    if kind == "HUGEINT":
        fits = all(v is None or _INT64_MIN <= int(v) <= _INT64_MAX for v in values)
        return pa.int64() if fits else pa.decimal128(38, 0)
    decimal = _DECIMAL.fullmatch(kind)
    if decimal:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    return _TYPES.get(kind)


def _column(kind: str, values: list[Any]) -> pa.Array:
    target = _arrow_type(kind, values)
    if target is None:
        return pa.array(values)
    if pa.types.is_timestamp(target) or pa.types.is_date(target) or pa.types.is_decimal(target):
        # signed as ISO 8601 or decimal text: Arrow parses them
        return pa.array([None if v is None else str(v) for v in values], pa.string()).cast(target)
    return pa.array(values, target)


Columns = Sequence[tuple[str, str]]
Rows = Sequence[Sequence[Any]]


def to_arrow(columns: Columns, rows: Rows) -> pa.Table:
    """A result's ``columns`` (name, DuckDB type) and ``rows`` as a typed Arrow table, in order."""
    values = [[row[i] for row in rows] for i in range(len(columns))]
    arrays = [_column(kind, column) for (_, kind), column in zip(columns, values, strict=True)]
    return pa.Table.from_arrays(arrays, names=[name for name, _ in columns])


def _optional(module: str, method: str) -> Any:
    """An optional library, or an ImportError that says how to install it."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"Result.{method}() needs {module}: pip install {module}")
    return importlib.import_module(module)


def to_pandas(columns: Columns, rows: Rows) -> Any:
    """A result as a pandas DataFrame (needs pandas)."""
    _optional("pandas", "to_pandas")
    return to_arrow(columns, rows).to_pandas()


def to_polars(columns: Columns, rows: Rows) -> Any:
    """A result as a polars DataFrame (needs polars)."""
    return _optional("polars", "to_polars").from_arrow(to_arrow(columns, rows))
