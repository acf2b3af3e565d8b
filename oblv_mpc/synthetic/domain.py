"""Mapping each column onto its public domain, as declared in the manifest.

A column with ``categories`` keeps the values listed; any other value becomes null. A column
with ``bins`` (edges e0 < e1 < ... < en) becomes the label of its bin: ``[e0, e1]`` for values
from e0 to e1, ``(e_i, e_i+1]`` above that (left-open, as OpenDP's cuts); values below e0 or
above en, and nulls, become null. Dates and timestamps are compared as dates and times.

Every column is then categorical over public keys, so the synthesizer learns nothing about the
domain from the data: OpenDP can release every marginal under pure differential privacy, without
spending part of the budget on discovering keys (opendp/extras/mbi/_table: ``delta must be zero
because keys and cuts span all columns``). This map works row by row with public constants: it
changes no unit's contribution.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oblv_mpc.manifest.model import ColumnType, SyntheticColumn

if TYPE_CHECKING:
    import polars as pl


def keys(columns: Sequence[SyntheticColumn]) -> dict[str, tuple[Any, ...]]:
    """Each column's public values, in the declared order."""
    return {c.name: c.labels for c in columns}


def _edges(column: SyntheticColumn) -> list[Any]:
    assert column.bins is not None
    if column.type is ColumnType.DATE:
        return [dt.date.fromisoformat(str(e)) for e in column.bins]
    if column.type is ColumnType.TIMESTAMP:
        return [dt.datetime.fromisoformat(str(e)) for e in column.bins]
    return [float(e) for e in column.bins]


def to_domain(frame: pl.DataFrame, columns: Sequence[SyntheticColumn]) -> pl.DataFrame:
    """``frame``'s declared columns, each mapped onto its public domain (anything else: null)."""
    import polars as pl

    expressions = []
    for column in columns:
        value = pl.col(column.name)
        if column.categories is not None:
            dtype = {ColumnType.TEXT: pl.String, ColumnType.INTEGER: pl.Int64, ColumnType.BOOLEAN: pl.Boolean}
            categories = pl.Series(column.categories, dtype=dtype[column.type])
            expressions.append(
                pl.when(value.is_in(categories)).then(value).otherwise(None).cast(dtype[column.type]).alias(column.name)
            )
            continue
        edges = _edges(column)
        labels = list(column.labels)
        if column.type.numeric:
            value = value.cast(pl.Float64)
        # The bin of a value: how many inner edges e1..e(n-1) lie strictly below it (left-open bins).
        inner = pl.Series(edges[1:-1], dtype=pl.Float64 if column.type.numeric else frame.schema[column.name])
        index = pl.lit(inner).search_sorted(value, side="left") if len(inner) else pl.lit(0, dtype=pl.UInt32)
        inside = value.is_not_null() & (value >= edges[0]) & (value <= edges[-1])
        mapped = pl.lit(pl.Series(labels, dtype=pl.String)).gather(index)
        expressions.append(pl.when(inside).then(mapped).otherwise(None).alias(column.name))
    return frame.select(expressions)
