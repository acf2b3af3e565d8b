"""A fetched result written to a file: CSV, JSON or Parquet.

Values are those the signed result carries (dates as ISO text). Parquet columns take the type
the enclave names (``VARCHAR``, ``BIGINT``, ``DOUBLE``, ``BOOLEAN``); any other column is written
with the type Arrow infers from its values.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("csv", "json", "parquet")
_ARROW_TYPES = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}


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
