"""A computation's ``synthetic:`` block -> :class:`SyntheticSpec` and the SQL that feeds it.

The public domain of every column is declared here, never read from the data: categories for
text, integer and boolean columns, bin edges for numbers, dates and timestamps. The inputs are
pooled as the union of several parties' tables with the same columns; the agreed SQL is that
union (checked like every other computation's SQL), and the enclave runs it with one more column
of its own, each row's privacy unit, by which it bounds every unit's contribution
(``oblv_mpc.synthetic.bounding``). Each owner's protection judges the release as it judges a
differentially private aggregate: it must ``allow_dp``, and every synthesized column must be one
of its ``dimensions`` (a column it lets results show).

Which synthesizers exist is not known here: the manifest names one and its version, and the
enclave refuses, before any upload, a manifest naming one that its image does not have
(``oblv_mpc.synthetic.registry``).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from typing import Any

from oblv_mpc.manifest import _fields, usage
from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import ColumnType, InputTable, Release, SyntheticColumn, SyntheticSpec
from oblv_mpc.manifest.naming import quote, table_ref, unit_column

FIELDS = {"inputs", "columns", "max_rows_per_unit", "epsilon", "delta", "synthesizer", "rows"}
_SYNTHESIZER = {"name", "version", "params"}
MAX_EPSILON = 10
MAX_COLUMNS = 64
MAX_LABELS = 1_000  # categories, or bins, of one column
MAX_ROWS_PER_UNIT = 1_000
MAX_ROWS = 250_000  # rows released
MAX_CELLS = 2_000_000  # rows x columns released: one signed result carries them all
MAX_PARAMS = 32

_CATEGORICAL = (ColumnType.TEXT, ColumnType.INTEGER, ColumnType.BOOLEAN)
_BINNED = (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.DATE, ColumnType.TIMESTAMP)


def parse(
    raw: Any, path: str, tables: Mapping[str, InputTable], problems: Problems
) -> tuple[SyntheticSpec, str, str, list[usage.TableUse]] | None:
    """The spec, the agreed SQL, the SQL the enclave runs (with units), and each input's use."""
    if not isinstance(raw, dict):
        problems.expected(path, "a mapping with inputs, columns, max_rows_per_unit, epsilon, synthesizer, rows", raw)
        return None
    before = len(problems.items)
    _fields.unknown(raw, FIELDS, path, problems)
    inputs = _inputs(raw.get("inputs"), f"{path}.inputs", tables, problems)
    columns = _columns(raw.get("columns"), f"{path}.columns", inputs, problems)
    per_unit = raw.get("max_rows_per_unit")
    if isinstance(per_unit, bool) or not isinstance(per_unit, int) or not 1 <= per_unit <= MAX_ROWS_PER_UNIT:
        problems.expected(
            f"{path}.max_rows_per_unit",
            f"how many rows of one privacy unit the enclave keeps: a whole number from 1 to {MAX_ROWS_PER_UNIT}",
            per_unit,
        )
        per_unit = 1
    epsilon: Any = raw.get("epsilon")
    if not _fields.number(epsilon) or not 0 < epsilon <= MAX_EPSILON:
        problems.expected(f"{path}.epsilon", f"a number in (0, {MAX_EPSILON}]", epsilon)
        epsilon = 0.0
    delta = raw.get("delta", 0)
    if delta != 0:
        problems.expected(
            f"{path}.delta",
            "0: every column's domain is declared, so OpenDP releases the marginals with pure epsilon-DP",
            delta,
        )
    rows = raw.get("rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS:
        problems.expected(f"{path}.rows", f"the number of rows to release: 1 to {MAX_ROWS:,}", rows)
        rows = 1
    elif columns and rows * len(columns) > MAX_CELLS:
        problems.add(
            f"{path}.rows",
            f"{rows:,} rows of {len(columns)} columns exceed the {MAX_CELLS:,} values one result may carry",
        )
    synthesizer = _synthesizer(raw.get("synthesizer"), f"{path}.synthesizer", problems)
    if len(problems.items) != before or synthesizer is None or not inputs or not columns:
        return None
    name, version, params = synthesizer
    units = {t.qualified: t.protection.unit if t.protection.release is Release.PROTECTED else None for t in inputs}
    spec = SyntheticSpec(
        inputs=tuple(t.qualified for t in inputs),
        columns=tuple(columns),
        units=units,
        max_rows_per_unit=per_unit,
        epsilon=float(epsilon),
        synthesizer=name,
        version=version,
        rows=rows,
        params=params,
    )
    names = ", ".join(quote(c.name) for c in columns)
    agreed = "\nUNION ALL\n".join(f"SELECT {names} FROM {table_ref(t.qualified)}" for t in inputs)
    run = "\nUNION ALL\n".join(
        f"SELECT {_unit_expression(i, units[t.qualified])} AS {quote(unit_column())}, {names} "
        f"FROM {table_ref(t.qualified)}"
        for i, t in enumerate(inputs)
    )
    uses = [usage.TableUse(t.qualified, dimensions={c.name for c in columns}) for t in inputs]
    return spec, agreed, run, uses


def _unit_expression(index: int, unit: str | None) -> str:
    """Each row's privacy unit, told apart per input: owners' units are their own (docs/synthetic.md)."""
    if unit is None:  # an unrestricted table: every row is a unit of its own
        return f"'{index}:' || CAST(row_number() OVER () AS VARCHAR)"
    return f"'{index}:' || CAST({quote(unit)} AS VARCHAR)"


def _inputs(raw: Any, path: str, tables: Mapping[str, InputTable], problems: Problems) -> list[InputTable]:
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) for v in raw):
        problems.expected(path, "a non-empty list of input tables (party.table), pooled as their union", raw)
        return []
    if len(set(raw)) != len(raw):
        problems.add(path, "lists a table more than once")
        return []
    found = []
    for i, name in enumerate(raw):
        if name not in tables:
            problems.expected(f"{path}[{i}]", f"a declared input (one of: {', '.join(sorted(tables))})", name)
        else:
            found.append(tables[name])
    return found if len(found) == len(raw) else []


def _columns(raw: Any, path: str, inputs: list[InputTable], problems: Problems) -> list[SyntheticColumn]:
    if not isinstance(raw, dict) or not raw:
        problems.expected(path, "a mapping of column -> {categories: [...]} or {bins: [...]}", raw)
        return []
    if len(raw) > MAX_COLUMNS:
        problems.add(path, f"declares {len(raw)} columns; at most {MAX_COLUMNS}")
        return []
    columns = []
    for name, body in raw.items():
        where = f"{path}.{name}"
        if not _fields.column_name(name, where, problems):
            continue
        declared = {t.qualified: t.column(name) for t in inputs}
        types = {c.type for c in declared.values() if c is not None}
        missing = [table for table, c in declared.items() if c is None]
        if missing:
            problems.add(where, f"is not a column of {', '.join(missing)}: every input must have it")
            continue
        if len(types) != 1:
            problems.add(where, f"has different types across inputs: {', '.join(sorted(t.value for t in types))}")
            continue
        column = _domain(name, types.pop(), body, where, problems)
        if column is not None:
            columns.append(column)
    # YAML mappings are unordered: columns are kept sorted by name, so key order never matters.
    return sorted(columns, key=lambda c: c.name) if len(columns) == len(raw) else []


def _domain(name: str, kind: ColumnType, body: Any, where: str, problems: Problems) -> SyntheticColumn | None:
    """The public domain of one column: its categories, or its bin edges."""
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in ("categories", "bins"):
        problems.expected(where, "{categories: [values]} or {bins: [increasing edges]}", body)
        return None
    ((field, values),) = body.items()
    if not isinstance(values, list) or not values or len(values) > MAX_LABELS + (field == "bins"):
        problems.expected(f"{where}.{field}", f"a list of 1 to {MAX_LABELS} public values", values)
        return None
    if field == "categories":
        if kind not in _CATEGORICAL:
            problems.add(f"{where}.categories", f"{kind.value} columns are binned: declare bins (increasing edges)")
            return None
        if not all(_category_fits(v, kind) for v in values):
            problems.add(f"{where}.categories", f"every category must be a {kind.value} value")
            return None
        if any(isinstance(v, str) and not _fields.no_hidden(v, f"{where}.categories", problems) for v in values):
            return None
        if len({(type(v), v) for v in values}) != len(values):
            problems.add(f"{where}.categories", "lists a value more than once")
            return None
        return SyntheticColumn(name, kind, categories=tuple(values))
    if kind not in _BINNED:
        problems.add(f"{where}.bins", f"{kind.value} columns take categories, not bins")
        return None
    edges = [_edge(v, kind) for v in values]
    if len(values) < 2 or any(e is None for e in edges):
        problems.add(
            f"{where}.bins",
            f"needs at least two edges, each a {'number' if kind.numeric else kind.value + ' in ISO form'}",
        )
        return None
    if any(not a < b for a, b in itertools.pairwise(edges)):
        problems.add(f"{where}.bins", "edges must be strictly increasing")
        return None
    return SyntheticColumn(name, kind, bins=tuple(values))


def _category_fits(value: Any, kind: ColumnType) -> bool:
    if kind is ColumnType.BOOLEAN:
        return isinstance(value, bool)
    if kind is ColumnType.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    return isinstance(value, str) and 0 < len(value) <= 200


def _edge(value: Any, kind: ColumnType) -> Any:
    """An edge as a comparable value, or None when it is not one of the column's type."""
    if kind.numeric:
        return value if _fields.number(value) else None
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return dt.date.fromisoformat(value) if kind is ColumnType.DATE else dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _synthesizer(raw: Any, path: str, problems: Problems) -> tuple[str, str, dict[str, Any]] | None:
    if not isinstance(raw, dict):
        problems.expected(path, "{name, version, params}: the synthesizer every party agrees to", raw)
        return None
    _fields.unknown(raw, _SYNTHESIZER, path, problems)
    name, version, params = raw.get("name"), raw.get("version"), raw.get("params", {})
    ok = True
    if not isinstance(name, str) or not _fields.IDENTIFIER.fullmatch(name):
        problems.expected(f"{path}.name", "a synthesizer's name (mpc enclave synthesizers lists them)", name)
        ok = False
    if not isinstance(version, str) or not 0 < len(version) <= 64 or not version.isprintable():
        problems.expected(f"{path}.version", "the synthesizer's version, as text (e.g. '0.16.0')", version)
        ok = False
    if (
        not isinstance(params, dict)
        or len(params) > MAX_PARAMS
        or not all(isinstance(k, str) and _fields.IDENTIFIER.fullmatch(k) for k in params)
        or not all(isinstance(v, str | bool) or _fields.number(v) for v in params.values())
    ):
        problems.expected(f"{path}.params", f"at most {MAX_PARAMS} parameters, each a number, text or boolean", params)
        ok = False
    if ok and any(isinstance(v, str) and not _fields.no_hidden(v, f"{path}.params", problems) for v in params.values()):
        ok = False
    if not ok:
        return None
    assert isinstance(name, str) and isinstance(version, str) and isinstance(params, dict)
    return name, version, dict(sorted(params.items()))
