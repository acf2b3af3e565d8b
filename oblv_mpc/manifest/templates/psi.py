"""``psi`` (the values every input holds) and ``psi_cardinality`` (how many there are)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import InputTable
from oblv_mpc.manifest.naming import quote, table_ref
from oblv_mpc.manifest.specs import PsiParams
from oblv_mpc.manifest.templates._common import Generated, inputs, known_keys, match_columns
from oblv_mpc.manifest.usage import Shape, TableUse, UnitCount, Usage


def _core(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> tuple[PsiParams | None, str, list[InputTable], dict[str, str]]:
    known_keys(params, {"inputs", "column"}, path, problems)
    found = inputs(params, path, tables, problems, minimum=2)
    on = match_columns(found, params.get("column"), path, "column", problems)
    if problems or not found:
        return None, "", [], {}
    output = on[found[0].qualified]
    selects = [
        f"SELECT {quote(on[t.qualified])} AS {quote(output)} FROM {table_ref(t.qualified)} "
        f"WHERE {quote(on[t.qualified])} IS NOT NULL"
        for t in found
    ]
    normalized = PsiParams(tuple(t.qualified for t in found), {t.qualified: on[t.qualified] for t in found})
    return normalized, "\nINTERSECT\n".join(selects), found, on


def psi(params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems) -> Generated | None:
    """The distinct values of one column present in every input (NULL never matches)."""
    normalized, core, found, on = _core(params, path, tables, problems)
    if not core:
        return None
    usage = Usage(Shape.LIST, [TableUse(t.qualified, joins={on[t.qualified]}, listed={on[t.qualified]}) for t in found])
    return Generated(normalized, f"{core}\nORDER BY 1", tuple(t.qualified for t in found), usage)


def psi_cardinality(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    """One row: the number of values present in every input."""
    normalized, core, found, on = _core(params, path, tables, problems)
    if not core:
        return None
    indented = core.replace("\n", "\n  ")
    sql = f'SELECT count(*) AS "intersection_size" FROM (\n  {indented}\n) AS "common"'
    output = on[found[0].qualified]
    usage = Usage(
        Shape.AGGREGATE,
        [TableUse(t.qualified, joins={on[t.qualified]}, aggregates={("count", on[t.qualified])}) for t in found],
    )

    def counted(counts: Sequence[UnitCount]) -> str:
        # Each protected owner's distinct units among its rows whose value is in the intersection.
        helpers = "".join(
            f",\n  (SELECT count(DISTINCT {quote('u')}.{quote(c.unit)}) FROM {table_ref(c.table)} AS {quote('u')} "
            f"WHERE {quote('u')}.{quote(on[c.table])} IN (SELECT {quote(output)} FROM {quote('common')})) "
            f"AS {quote(c.column)}"
            for c in counts
        )
        return f'WITH "common" AS (\n  {indented}\n)\nSELECT count(*) AS "intersection_size"{helpers}\nFROM "common"'

    return Generated(normalized, sql, tuple(t.qualified for t in found), usage, counted)
