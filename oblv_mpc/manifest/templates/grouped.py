"""``aggregate`` (over the union of inputs with the same columns) and ``join_aggregate``.

Both yield one row per group: the group columns, the aggregates, and ``group_size`` (the group's
row count). ``join_aggregate`` joins its inputs on ``join_on``, which must be every input's key,
so that no row is counted twice. With ``counted``, each protected input's distinct privacy units
per group are added as helper columns, computed from that input's own rows only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import AGGREGATE_FUNCTIONS, ColumnType, InputTable
from oblv_mpc.manifest.naming import HELPER_PREFIX, quote, table_ref
from oblv_mpc.manifest.specs import Aggregate, GroupedParams
from oblv_mpc.manifest.templates._common import (
    GROUP_SIZE_COLUMN,
    Generated,
    column_list,
    inputs,
    known_keys,
    match_columns,
)
from oblv_mpc.manifest.usage import Shape, TableUse, UnitCount, Usage


def aggregates(params: Mapping[str, Any], path: str, problems: Problems) -> dict[str, tuple[str, str]]:
    """``aggregates: {out: {function: column}}``, checked, sorted by output name."""
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
        if str(out).startswith(HELPER_PREFIX):
            problems.add(where, f"names starting with {HELPER_PREFIX} are the enclave's")
            continue
        result[str(out)] = (function, column)
    # YAML mappings are unordered: output columns follow the aggregates' names, sorted.
    return dict(sorted(result.items()))


@dataclass(frozen=True)
class _Column:
    expression: str  # SQL
    type: ColumnType
    owners: tuple[int, ...]  # indexes of the inputs whose column it is
    name: str  # the column's name in its table(s)


def _resolve(
    column: str, found: list[InputTable], aliases: list[str], path: str, problems: Problems, *, union: bool
) -> _Column | None:
    """A column reference over the inputs: its SQL, type, and which inputs it reads."""
    if union:
        types = set()
        for t in found:
            c = t.column(column)
            if c is None:
                problems.expected(path, f"a column present in every input; {t.qualified} has none named so", column)
                return None
            types.add(c.type)
        if len(types) > 1:
            problems.add(path, f"column {column!r} has different types across inputs: {sorted(x.value for x in types)}")
            return None
        return _Column(quote(column), types.pop(), tuple(range(len(found))), column)
    if column.count(".") == 2:
        qualified, name = column.rsplit(".", 1)
        index = next((i for i, t in enumerate(found) if t.qualified == qualified), None)
        c = found[index].column(name) if index is not None else None
        if index is None or c is None:
            problems.expected(path, "a column of one of the joined inputs", column)
            return None
        return _Column(f"{quote(aliases[index])}.{quote(name)}", c.type, (index,), name)
    owners = [i for i, t in enumerate(found) if t.column(column) is not None]
    if not owners:
        problems.expected(path, "a column of one of the joined inputs", column)
        return None
    if len(owners) > 1:
        problems.add(path, f"column {column!r} is in several inputs; qualify it as party.table.{column}")
        return None
    c = found[owners[0]].column(column)
    assert c is not None
    return _Column(f"{quote(aliases[owners[0]])}.{quote(column)}", c.type, (owners[0],), column)


@dataclass(frozen=True)
class _Sources:
    """The template's inputs: their tables, SQL aliases, how the SQL uses each, and the join column."""

    found: list[InputTable]
    aliases: list[str]
    uses: list[TableUse]
    join: bool
    on: str = ""


@dataclass
class _Select:
    """The select list being built: its SQL outputs, the columns they read, the output names taken."""

    outputs: list[str] = field(default_factory=list)
    used: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def name(self, out: str, where: str, problems: Problems) -> None:
        """Take the output name ``out``: a name taken twice is a problem."""
        if out in self.names:
            problems.add(where, f"output column {out!r} appears twice")
        self.names.add(out)


def grouped(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems, *, join: bool
) -> Generated | None:
    """The SQL of ``aggregate`` (``join=False``) or ``join_aggregate``, with how it uses each input."""
    allowed = {"inputs", "group_by", "aggregates"} | ({"join_on"} if join else set())
    known_keys(params, allowed, path, problems)
    found = inputs(params, path, tables, problems, minimum=2 if join else 1)
    group_by = column_list(params, "group_by", path, problems)
    wanted = aggregates(params, path, problems)
    if problems or not found:
        return None
    aliases = [f"t{i + 1}" for i in range(len(found))]
    uses = [TableUse(t.qualified, alias=aliases[i] if join else "") for i, t in enumerate(found)]
    sources = _Sources(found, aliases, uses, join)
    if join:
        on = _join_on(params.get("join_on"), found, path, problems)
        if on is None:
            return None
        sources = _Sources(found, aliases, uses, join, on)
        for use in uses:
            use.joins.add(on)
    select = _Select()
    _group_outputs(group_by, sources, path, problems, select)
    _aggregate_outputs(wanted, sources, path, problems, select)
    if problems:
        return None
    select.outputs.append(f"count(*) AS {quote(GROUP_SIZE_COLUMN)}")
    for use in uses:
        use.aggregates.add(("count", "*"))
    needed = list(dict.fromkeys(select.used))
    keys = ", ".join(str(i + 1) for i in range(len(group_by)))
    tail = f"\nGROUP BY {keys}\nORDER BY {keys}" if group_by else ""

    def build(counts: Sequence[UnitCount]) -> str:
        source, helpers = _join_source(sources, counts) if join else _union_source(sources, needed, counts)
        return "SELECT " + ", ".join(select.outputs + helpers) + f"\nFROM {source}{tail}"

    normalized = GroupedParams(
        tuple(t.qualified for t in found),
        tuple(group_by),
        {out: Aggregate(fn, col) for out, (fn, col) in wanted.items()},
        sources.on if join else None,
    )
    usage = Usage(Shape.AGGREGATE, uses, joined=join)
    return Generated(normalized, build(()), tuple(t.qualified for t in found), usage, build)


def _join_on(raw_on: Any, found: list[InputTable], path: str, problems: Problems) -> str | None:
    """``join_on``: a column every input has, and every input's whole key (so no row counts twice)."""
    if not isinstance(raw_on, str):
        problems.expected(f"{path}.join_on", "the name of the key column the inputs are joined on", raw_on)
        return None
    match_columns(found, raw_on, path, "join_on", problems)
    for t in found:
        if t.key != (raw_on,):
            problems.add(
                f"{path}.join_on",
                f"{raw_on!r} must be the key of {t.qualified} (key: [{raw_on}]): a repeated value would count "
                "the matching rows of the other inputs several times",
            )
    return None if problems else raw_on


def _group_outputs(group_by: list[str], sources: _Sources, path: str, problems: Problems, select: _Select) -> None:
    """The group columns: each a dimension of the inputs it reads."""
    found = sources.found
    for i, column in enumerate(group_by):
        if sources.join and column == sources.on:
            resolved: _Column | None = _Column(quote(sources.on), ColumnType.TEXT, tuple(range(len(found))), sources.on)
        else:
            where = f"{path}.group_by[{i}]"
            resolved = _resolve(column, found, sources.aliases, where, problems, union=not sources.join)
        if resolved:
            out = column.rsplit(".", 1)[-1]
            select.name(out, f"{path}.group_by[{i}]", problems)
            select.outputs.append(
                resolved.expression if resolved.expression == quote(out) else f"{resolved.expression} AS {quote(out)}"
            )
            select.used.append(column)
            for owner in resolved.owners:
                sources.uses[owner].dimensions.add(resolved.name)


def _aggregate_outputs(
    wanted: dict[str, tuple[str, str]], sources: _Sources, path: str, problems: Problems, select: _Select
) -> None:
    """The aggregates: ``count(*)`` over every input, or a function of one column."""
    for out, (function, column) in wanted.items():
        where = f"{path}.aggregates.{out}"
        select.name(out, where, problems)
        if column == "*":
            select.outputs.append(f"count(*) AS {quote(out)}")
            for use in sources.uses:
                use.aggregates.add(("count", "*"))
            continue
        resolved = _resolve(column, sources.found, sources.aliases, where, problems, union=not sources.join)
        if resolved is None:
            continue
        if function in ("sum", "avg") and not resolved.type.numeric:
            problems.add(where, f"{function} needs a numeric column; {column!r} is {resolved.type.value}")
        select.outputs.append(f"{function}({resolved.expression}) AS {quote(out)}")
        select.used.append(column)
        for owner in resolved.owners:
            sources.uses[owner].aggregates.add((function, resolved.name))


def _join_source(sources: _Sources, counts: Sequence[UnitCount]) -> tuple[str, list[str]]:
    """FROM the inputs joined on their key, and the unit counts of each counted input's own rows."""
    found, aliases = sources.found, sources.aliases
    first, *rest = found
    source = f"{table_ref(first.qualified)} AS {quote(aliases[0])}" + "".join(
        f"\n  JOIN {table_ref(t.qualified)} AS {quote(aliases[i + 1])} USING ({quote(sources.on)})"
        for i, t in enumerate(rest)
    )
    helpers = [f"count(DISTINCT {quote(aliases[c.use])}.{quote(c.unit)}) AS {quote(c.column)}" for c in counts]
    return source, helpers


def _union_source(sources: _Sources, needed: list[str], counts: Sequence[UnitCount]) -> tuple[str, list[str]]:
    """FROM the union of the inputs' needed columns, each counted unit a column of its own input's rows only."""
    found = sources.found
    branches = []
    for i, t in enumerate(found):
        columns = [quote(c) for c in needed] or ['1 AS "one"']
        for c in counts:
            unit = f"{HELPER_PREFIX}_unit_{c.use}"
            declared = found[c.use].column(c.unit)
            assert declared is not None
            value = quote(c.unit) if c.use == i else f"CAST(NULL AS {declared.type.sql})"
            columns.append(f"{value} AS {quote(unit)}")
        branches.append(f"SELECT {', '.join(columns)} FROM {table_ref(t.qualified)}")
    source = "(\n    " + "\n    UNION ALL\n    ".join(branches) + '\n  ) AS "rows"'
    helpers = [f"count(DISTINCT {quote(f'{HELPER_PREFIX}_unit_{c.use}')}) AS {quote(c.column)}" for c in counts]
    return source, helpers


def aggregate(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    """Aggregates per group over the union of inputs with the same columns."""
    return grouped(params, path, tables, problems, join=False)


def join_aggregate(
    params: Mapping[str, Any], path: str, tables: Mapping[str, InputTable], problems: Problems
) -> Generated | None:
    """Aggregates per group over the inputs joined on their common key."""
    return grouped(params, path, tables, problems, join=True)
