"""The built-in computations, each generated as the exact SQL the enclave runs.

Every template reads the parties' tables by their qualified names (``alice.customers`` is table
``customers`` in schema ``alice``) and quotes every identifier. The SQL is part of the manifest's
hash, so every party agrees to exactly the text shown by ``mpc session show``.

- ``psi``: the distinct values of one column present in every input (NULLs never match).
- ``psi_cardinality``: the number of such values, and nothing else.
- ``aggregate``: aggregates over the union of inputs with the same columns, per group, with the
  group's row count as ``group_size`` (what ``min_group_size`` is checked against).
- ``join_aggregate``: the inputs joined on a key column, then aggregated as above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import ColumnType, InputTable

AGGREGATE_FUNCTIONS = ("count", "sum", "avg", "min", "max")
GROUP_SIZE_COLUMN = "group_size"


@dataclass(frozen=True)
class Generated:
    """What a template makes of its parameters."""

    params: dict[str, Any]
    sql: str
    inputs: tuple[str, ...]


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def table_ref(qualified: str) -> str:
    party, table = qualified.split(".", 1)
    return f"{quote(party)}.{quote(table)}"


def _known_keys(raw: Mapping[str, Any], allowed: set[str], path: str, problems: Problems) -> None:
    for key in raw:
        if key not in allowed:
            problems.add(f"{path}.{key}", f"unknown parameter (expected one of: {', '.join(sorted(allowed))})")


def _inputs(
    raw: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems, minimum: int
) -> list[InputTable]:
    value = raw.get("inputs")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.expected(f"{path}.inputs", f"a list of at least {minimum} input tables (party.table)", value)
        return []
    if len(value) < minimum:
        problems.expected(f"{path}.inputs", f"at least {minimum} input tables", f"{len(value)}")
    if len(set(value)) != len(value):
        problems.add(f"{path}.inputs", "lists a table more than once")
    found = []
    for i, name in enumerate(value):
        if name not in tables:
            problems.expected(f"{path}.inputs[{i}]", f"a declared input (one of: {', '.join(sorted(tables))})", name)
        else:
            found.append(tables[name])
    return found


def _column_list(raw: Mapping[str, Any], key: str, path: str, problems: Problems) -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.expected(f"{path}.{key}", "a column name or a list of column names", value)
        return []
    return list(value)


def _match_columns(inputs: list[InputTable], raw_on: Any, path: str, field: str, problems: Problems) -> dict[str, str]:
    """``field``: one column name for all inputs, or a mapping input -> column."""
    path = f"{path}.{field}"
    if isinstance(raw_on, str):
        on = {t.qualified: raw_on for t in inputs}
    elif isinstance(raw_on, dict) and all(isinstance(v, str) for v in raw_on.values()):
        on = {str(k): v for k, v in raw_on.items()}
        for name in on:
            if name not in {t.qualified for t in inputs}:
                problems.expected(f"{path}.{name}", "one of this computation's inputs", name)
        for t in inputs:
            if t.qualified not in on:
                problems.add(path, f"names no column for input {t.qualified}")
    else:
        problems.expected(path, "a column name, or a mapping of input -> column name", raw_on)
        return {}
    types: set[ColumnType] = set()
    for t in inputs:
        column_name = on.get(t.qualified)
        if column_name is None:
            continue
        column = t.column(column_name)
        if column is None:
            problems.expected(
                path, f"a column of {t.qualified} (one of: {', '.join(c.name for c in t.columns)})", column_name
            )
        else:
            types.add(column.type)
    if len(types) > 1:
        problems.add(path, f"the matched columns have different types: {', '.join(sorted(x.value for x in types))}")
    return on


def _psi_core(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> tuple[dict[str, Any], str, tuple[str, ...]]:
    _known_keys(params, {"inputs", "column"}, path, problems)
    inputs = _inputs(params, path, tables, problems, minimum=2)
    on = _match_columns(inputs, params.get("column"), path, "column", problems)
    if problems or not inputs:
        return {}, "", ()
    output = on[inputs[0].qualified]
    selects = [
        f"SELECT {quote(on[t.qualified])} AS {quote(output)} FROM {table_ref(t.qualified)} "
        f"WHERE {quote(on[t.qualified])} IS NOT NULL"
        for t in inputs
    ]
    normalized = {"inputs": [t.qualified for t in inputs], "column": {t.qualified: on[t.qualified] for t in inputs}}
    return normalized, "\nINTERSECT\n".join(selects), tuple(t.qualified for t in inputs)


def _psi(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    normalized, core, inputs = _psi_core(params, path, tables, problems)
    if not core:
        return None
    return Generated(normalized, f"{core}\nORDER BY 1", inputs)


def _psi_cardinality(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    normalized, core, inputs = _psi_core(params, path, tables, problems)
    if not core:
        return None
    indented = core.replace("\n", "\n  ")
    return Generated(normalized, f'SELECT count(*) AS "intersection_size" FROM (\n  {indented}\n) AS "common"', inputs)


def _aggregates(params: Mapping[str, Any], path: str, problems: Problems) -> dict[str, tuple[str, str]]:
    raw = params.get("aggregates")
    if not isinstance(raw, dict) or not raw:
        problems.expected(f"{path}.aggregates", "a mapping of output name -> {function: column}", raw)
        return {}
    result: dict[str, tuple[str, str]] = {}
    for out, spec in raw.items():
        where = f"{path}.aggregates.{out}"
        if not isinstance(spec, dict) or len(spec) != 1:
            problems.expected(where, "one function: column pair, e.g. {avg: salary} or {count: '*'}", spec)
            continue
        function, column = next(iter(spec.items()))
        if function not in AGGREGATE_FUNCTIONS:
            problems.expected(where, f"a function among {', '.join(AGGREGATE_FUNCTIONS)}", function)
            continue
        if not isinstance(column, str) or (column == "*" and function != "count"):
            problems.expected(where, "a column name ('*' only with count)", column)
            continue
        if out == GROUP_SIZE_COLUMN:
            problems.add(where, f"'{GROUP_SIZE_COLUMN}' is reserved for the group's row count")
            continue
        result[str(out)] = (function, column)
    # YAML mappings are unordered: output columns follow the aggregates' names, sorted.
    return dict(sorted(result.items()))


def _resolve(
    column: str, inputs: list[InputTable], aliases: dict[str, str], path: str, problems: Problems, *, union: bool
) -> tuple[str, ColumnType] | None:
    """Resolve a column reference to (SQL expression, type) over the inputs."""
    if union:
        types = set()
        for t in inputs:
            c = t.column(column)
            if c is None:
                problems.expected(path, f"a column present in every input; {t.qualified} has none named so", column)
                return None
            types.add(c.type)
        if len(types) > 1:
            problems.add(path, f"column {column!r} has different types across inputs: {sorted(x.value for x in types)}")
            return None
        return quote(column), types.pop()
    if column.count(".") == 2:
        qualified, name = column.rsplit(".", 1)
        table = next((t for t in inputs if t.qualified == qualified), None)
        c = table.column(name) if table else None
        if table is None or c is None:
            problems.expected(path, "a column of one of the joined inputs", column)
            return None
        return f"{quote(aliases[qualified])}.{quote(name)}", c.type
    owners = [t for t in inputs if t.column(column) is not None]
    if not owners:
        problems.expected(path, "a column of one of the joined inputs", column)
        return None
    if len(owners) > 1:
        problems.add(path, f"column {column!r} is in several inputs; qualify it as party.table.{column}")
        return None
    owner = owners[0]
    c = owner.column(column)
    assert c is not None
    return f"{quote(aliases[owner.qualified])}.{quote(column)}", c.type


def _grouped(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems, *, join: bool
) -> Generated | None:
    allowed = {"inputs", "group_by", "aggregates"} | ({"join_on"} if join else set())
    _known_keys(params, allowed, path, problems)
    inputs = _inputs(params, path, tables, problems, minimum=2 if join else 1)
    group_by = _column_list(params, "group_by", path, problems)
    aggregates = _aggregates(params, path, problems)
    if problems or not inputs:
        return None
    aliases = {t.qualified: f"t{i + 1}" for i, t in enumerate(inputs)}
    on = ""
    if join:
        raw_on = params.get("join_on")
        if not isinstance(raw_on, str):
            problems.expected(f"{path}.join_on", "the name of the key column the inputs are joined on", raw_on)
            return None
        _match_columns(inputs, raw_on, path, "join_on", problems)
        if problems:
            return None
        on = raw_on
    outputs: list[str] = []
    used: list[str] = []
    names: set[str] = set()
    for i, column in enumerate(group_by):
        if join and column == on:
            resolved: tuple[str, ColumnType] | None = (quote(on), ColumnType.TEXT)
        else:
            resolved = _resolve(column, inputs, aliases, f"{path}.group_by[{i}]", problems, union=not join)
        if resolved:
            out = column.rsplit(".", 1)[-1]
            if out in names:
                problems.add(f"{path}.group_by[{i}]", f"output column {out!r} appears twice")
            names.add(out)
            outputs.append(resolved[0] if resolved[0] == quote(out) else f"{resolved[0]} AS {quote(out)}")
            used.append(column)
    for out, (function, column) in aggregates.items():
        where = f"{path}.aggregates.{out}"
        if out in names:
            problems.add(where, f"output column {out!r} appears twice")
        names.add(out)
        if column == "*":
            outputs.append(f"count(*) AS {quote(out)}")
            continue
        resolved = _resolve(column, inputs, aliases, where, problems, union=not join)
        if resolved is None:
            continue
        expression, column_type = resolved
        if function in ("sum", "avg") and not column_type.numeric:
            problems.add(where, f"{function} needs a numeric column; {column!r} is {column_type.value}")
        outputs.append(f"{function}({expression}) AS {quote(out)}")
        used.append(column)
    if problems:
        return None
    outputs.append(f"count(*) AS {quote(GROUP_SIZE_COLUMN)}")
    if join:
        first, *rest = inputs
        source = f"{table_ref(first.qualified)} AS {quote(aliases[first.qualified])}" + "".join(
            f"\n  JOIN {table_ref(t.qualified)} AS {quote(aliases[t.qualified])} USING ({quote(on)})" for t in rest
        )
    else:
        needed = list(dict.fromkeys(c for c in used))
        columns = ", ".join(quote(c) for c in needed) if needed else '1 AS "one"'
        source = (
            "(\n    "
            + "\n    UNION ALL\n    ".join(f"SELECT {columns} FROM {table_ref(t.qualified)}" for t in inputs)
            + '\n  ) AS "rows"'
        )
    sql = "SELECT " + ", ".join(outputs) + f"\nFROM {source}"
    if group_by:
        keys = ", ".join(str(i + 1) for i in range(len(group_by)))
        sql += f"\nGROUP BY {keys}\nORDER BY {keys}"
    normalized: dict[str, Any] = {
        "inputs": [t.qualified for t in inputs],
        "group_by": group_by,
        "aggregates": {out: {fn: col} for out, (fn, col) in aggregates.items()},
    }
    if join:
        normalized["join_on"] = on
    return Generated(normalized, sql, tuple(t.qualified for t in inputs))


def _aggregate(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    return _grouped(params, path, tables, problems, join=False)


def _join_aggregate(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    return _grouped(params, path, tables, problems, join=True)


TEMPLATES: dict[str, Callable[[Mapping[str, Any], str, Mapping[str, InputTable], Problems], Generated | None]] = {
    "psi": _psi,
    "psi_cardinality": _psi_cardinality,
    "aggregate": _aggregate,
    "join_aggregate": _join_aggregate,
}


# -- differential privacy ---------------------------------------------------------------------

DP_FUNCTIONS = ("count", "sum", "avg")
SUM_SUFFIX = "__sum"
COUNT_SUFFIX = "__count"


def _literal(value: Any, column_type: ColumnType) -> str:
    if column_type is ColumnType.TEXT and isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if column_type is ColumnType.INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if column_type is ColumnType.BOOLEAN and isinstance(value, bool):
        return "true" if value else "false"
    raise ValueError(f"{value!r} is not a {column_type.value} value")


def dp_aggregate(
    params: Mapping[str, Any], dp: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    """The raw statistics an ``aggregate`` with differential privacy needs, as exact SQL.

    Every declared group appears once (absent groups as zeros) and no other group does; every
    summed value is clamped to its bounds. The enclave adds Laplace noise to each statistic and
    derives means from the noisy sums and counts (``oblv_mpc.enclave.privacy``).
    """
    generated = _aggregate(params, path, tables, problems)
    if generated is None:
        return None
    inputs = [tables[name] for name in generated.inputs]
    group_by: list[str] = generated.params["group_by"]
    aggregates: dict[str, dict[str, str]] = generated.params["aggregates"]
    bounds, groups = dp["bounds"], dp["groups"]
    selects: list[str] = []
    outer: list[str] = []
    used: list[str] = list(group_by)
    for out, spec in aggregates.items():
        ((function, column),) = spec.items()
        if function not in DP_FUNCTIONS:
            problems.add(
                f"{path}.aggregates.{out}",
                f"{function} has no differentially private release here; use {', '.join(DP_FUNCTIONS)}",
            )
            continue
        if function == "count":
            selects.append(f"count({'*' if column == '*' else quote(column)}) AS {quote(out)}")
            outer.append(f"coalesce(s.{quote(out)}, 0) AS {quote(out)}")
            if column != "*":
                used.append(column)
            continue
        low, high = bounds[column]
        clamped = f"least(greatest({quote(column)}, {float(low)!r}), {float(high)!r})"
        used.append(column)
        if function == "sum":
            selects.append(f"sum({clamped}) AS {quote(out)}")
            outer.append(f"coalesce(s.{quote(out)}, 0) AS {quote(out)}")
        else:
            for suffix, expression in ((SUM_SUFFIX, f"sum({clamped})"), (COUNT_SUFFIX, f"count({quote(column)})")):
                selects.append(f"{expression} AS {quote(out + suffix)}")
                outer.append(f"coalesce(s.{quote(out + suffix)}, 0) AS {quote(out + suffix)}")
    if problems:
        return None
    selects.append(f"count(*) AS {quote(GROUP_SIZE_COLUMN)}")
    outer.append(f"coalesce(s.{quote(GROUP_SIZE_COLUMN)}, 0) AS {quote(GROUP_SIZE_COLUMN)}")
    needed = ", ".join(quote(c) for c in dict.fromkeys(used)) or '1 AS "one"'
    rows = "\n    UNION ALL\n    ".join(f"SELECT {needed} FROM {table_ref(t.qualified)}" for t in inputs)
    source = f'(\n    {rows}\n  ) AS "rows"'
    if not group_by:
        sql = "SELECT " + ", ".join(selects) + f"\nFROM {source}"
        return Generated(generated.params, sql, generated.inputs)
    keys = ", ".join(quote(g) for g in group_by)
    filters = []
    values = []
    for g in group_by:
        declared = inputs[0].column(g)  # an aggregate's inputs share their columns
        assert declared is not None
        literals = [_literal(v, declared.type) for v in groups[g]]
        filters.append(f"{quote(g)} IN ({', '.join(literals)})")
        rows_of_values = ", ".join(f"({literal})" for literal in literals)
        values.append(f"(VALUES {rows_of_values}) AS {quote('g_' + g)}({quote(g)})")
    inner = (
        f"SELECT {keys}, "
        + ", ".join(selects)
        + f"\n  FROM {source}\n  WHERE "
        + " AND ".join(filters)
        + "\n  GROUP BY ALL"
    )
    order = ", ".join(str(i + 1) for i in range(len(group_by)))
    sql = (
        "SELECT "
        + ", ".join(f"{quote('g_' + g)}.{quote(g)}" for g in group_by)
        + ", "
        + ", ".join(outer)
        + "\nFROM "
        + "\n  CROSS JOIN ".join(values)
        + f"\n  LEFT JOIN (\n  {inner}\n) AS s USING ({keys})\nORDER BY {order}"
    )
    return Generated(generated.params, sql, generated.inputs)
