"""``aggregate`` with ``dp``: the raw statistics a differentially private release needs, as SQL.

Every declared public group appears once (absent groups as zeros) and no other group does; every
summed value is clamped to its bounds. The enclave adds Laplace noise to each statistic and
derives means from the noisy sums and counts (``oblv_mpc.enclave.privacy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import ColumnType, InputTable
from oblv_mpc.manifest.naming import quote, table_ref
from oblv_mpc.manifest.specs import DpSpec, GroupedParams
from oblv_mpc.manifest.templates._common import GROUP_SIZE_COLUMN, Generated
from oblv_mpc.manifest.templates.grouped import grouped
from oblv_mpc.manifest.usage import Shape, Usage

DP_FUNCTIONS = ("count", "sum", "avg")
SUM_SUFFIX = "__sum"
COUNT_SUFFIX = "__count"


def literal(value: Any, column_type: ColumnType) -> str:
    """A public group value as a SQL literal of its column's type (text, integer, boolean)."""
    if column_type is ColumnType.TEXT and isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if column_type is ColumnType.INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if column_type is ColumnType.BOOLEAN and isinstance(value, bool):
        return "true" if value else "false"
    raise ValueError(f"{value!r} is not a {column_type.value} value")


def dp_aggregate(
    params: Mapping[str, Any], dp: DpSpec, path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    """The raw statistics of a differentially private ``aggregate``, as exact SQL."""
    generated = grouped(params, path, tables, problems, join=False)
    if generated is None:
        return None
    assert isinstance(generated.params, GroupedParams)
    inputs = [tables[name] for name in generated.inputs]
    group_by = list(generated.params.group_by)
    aggregates = generated.params.aggregates
    bounds, groups = dp.bounds, dp.groups
    selects: list[str] = []
    outer: list[str] = []
    used: list[str] = list(group_by)
    for out, aggregate in aggregates.items():
        function, column = aggregate.function, aggregate.column
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
    usage = Usage(Shape.DP, generated.usage.tables)
    selects.append(f"count(*) AS {quote(GROUP_SIZE_COLUMN)}")
    outer.append(f"coalesce(s.{quote(GROUP_SIZE_COLUMN)}, 0) AS {quote(GROUP_SIZE_COLUMN)}")
    needed = ", ".join(quote(c) for c in dict.fromkeys(used)) or '1 AS "one"'
    rows = "\n    UNION ALL\n    ".join(f"SELECT {needed} FROM {table_ref(t.qualified)}" for t in inputs)
    source = f'(\n    {rows}\n  ) AS "rows"'
    if not group_by:
        sql = "SELECT " + ", ".join(selects) + f"\nFROM {source}"
        return Generated(generated.params, sql, generated.inputs, usage)
    keys = ", ".join(quote(g) for g in group_by)
    filters = []
    values = []
    for g in group_by:
        declared = inputs[0].column(g)  # an aggregate's inputs share their columns
        assert declared is not None
        literals = [literal(v, declared.type) for v in groups[g]]
        filters.append(f"{quote(g)} IN ({', '.join(literals)})")
        rows_of_values = ", ".join(f"({value})" for value in literals)
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
    return Generated(generated.params, sql, generated.inputs, usage)
