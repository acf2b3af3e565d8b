"""One synthetic release, as the enclave makes it: bound, map onto the domain, synthesize, check.

The steps every synthesizer gets, whatever it is:

1. each privacy unit keeps at most ``max_rows_per_unit`` rows (:mod:`.bounding`);
2. each column is mapped onto its declared public domain (:mod:`.domain`);
3. the synthesizer fits and samples (:class:`~.interface.Synthesizer`);
4. what it returned must hold exactly the declared columns, in order, exactly ``rows`` rows, and
   only declared values (or null), and the privacy loss it accounted must not exceed the agreed
   epsilon. Anything else fails the run (:class:`SynthesisFailed`), and nothing is released.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from oblv_mpc.manifest.model import ColumnType, SyntheticSpec
from oblv_mpc.manifest.naming import unit_column
from oblv_mpc.synthetic import bounding, domain
from oblv_mpc.synthetic.interface import Progress, Request, Synthesizer


class SynthesisFailed(Exception):
    """The synthesizer failed, or returned something other than what was agreed. ``reason`` names no data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Release:
    """A synthetic table ready to sign: columns with their types, rows, and what was applied."""

    columns: list[tuple[str, str]]
    rows: list[list[Any]]
    applied: dict[str, Any]


_TYPES = {ColumnType.TEXT: "VARCHAR", ColumnType.INTEGER: "BIGINT", ColumnType.BOOLEAN: "BOOLEAN"}


def output_columns(spec: SyntheticSpec) -> list[tuple[str, str]]:
    """The released columns and their types: a binned column is released as its bin's label (text)."""
    return [(c.name, _TYPES[c.type] if c.categories is not None else "VARCHAR") for c in spec.columns]


def release(spec: SyntheticSpec, data: pa.Table, synthesizer: Synthesizer, progress: Progress) -> Release:
    """Make the release of ``spec`` from ``data`` (the pooled rows, with the unit column)."""
    import polars as pl

    progress(0.02, "keeping at most max_rows_per_unit rows of each privacy unit")
    frame = pl.from_arrow(data)
    assert isinstance(frame, pl.DataFrame)
    mapped = domain.to_domain(bounding.bound(frame, unit_column(), spec.max_rows_per_unit), spec.columns)
    request = Request(
        keys=domain.keys(spec.columns),
        max_rows_per_unit=spec.max_rows_per_unit,
        epsilon=spec.epsilon,
        rows=spec.rows,
        params=dict(spec.params),
    )
    progress(0.05, f"{spec.synthesizer}: starting")
    try:
        made = synthesizer.synthesize(mapped.to_arrow(), request, progress)
    except Exception as exc:
        # The library's message may quote values from the data: only its kind is told.
        raise SynthesisFailed(
            f"synthesizer {spec.synthesizer} failed ({type(exc).__name__}); no detail is given"
        ) from None
    rows = check(made.table, request)
    # Samplers may emit rows grouped by value; the order carries nothing, so it is shuffled.
    secrets.SystemRandom().shuffle(rows)
    if not made.epsilon_spent <= spec.epsilon * (1 + 1e-9):
        raise SynthesisFailed(
            f"synthesizer {spec.synthesizer} accounted epsilon {made.epsilon_spent:g}, more than the agreed "
            f"{spec.epsilon:g}; nothing is released"
        )
    progress(1.0, "done")
    applied = {
        "mechanism": made.mechanism,
        "synthesizer": {"name": spec.synthesizer, "version": spec.version},
        "epsilon": spec.epsilon,
        "charged_epsilon": made.epsilon_spent,
        "max_rows_per_unit": spec.max_rows_per_unit,
        "rows": spec.rows,
    }
    return Release(output_columns(spec), rows, applied)


def check(table: pa.Table, request: Request) -> list[list[Any]]:
    """The rows of ``table``, if it holds exactly the requested columns, row count and values."""
    names = list(request.keys)
    if table.column_names != names:
        raise SynthesisFailed(f"the synthesizer returned columns {table.column_names}, not the agreed {names}")
    if table.num_rows != request.rows:
        raise SynthesisFailed(f"the synthesizer returned {table.num_rows} rows, not the agreed {request.rows}")
    columns = []
    for name in names:
        values = table.column(name).to_pylist()
        allowed = {(type(v), v) for v in request.keys[name]}
        if any(v is not None and (type(v), v) not in allowed for v in values):
            raise SynthesisFailed(f"the synthesizer returned a value of {name} outside its declared domain")
        columns.append(values)
    return [list(row) for row in zip(*columns, strict=True)] if columns else []
