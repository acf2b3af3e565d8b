"""The shape of a ``sql:`` computation, read from DuckDB's parse tree; and the enclave's unit counts.

A SQL computation over a protected table is accepted only in the shape the enclave can judge
(AWS Clean Rooms' aggregation query structure is the model)::

    SELECT dimension, ..., aggregate(column), ...
    FROM table [AS a] [[INNER] JOIN table [AS b] ON a.x = b.y [AND ...] | USING (x)] ...
    [WHERE condition on dimensions]
    [GROUP BY dimension, ...]
    [ORDER BY output column or position, ...]

with plain ``count(*)``, ``count``, ``sum``, ``avg``, ``min``, ``max`` of one column each. From the
tree :func:`analyse` reads which columns of which table are dimensions, join columns and
aggregated (``oblv_mpc.manifest.usage`` judges them against each owner's rules). Anything else
(CTEs, subqueries, set operations, window functions, HAVING, LIMIT, DISTINCT, expressions inside
aggregates) is *opaque*: allowed only over tables whose owners marked them unrestricted.

:func:`with_unit_counts` then adds, for each protected table, ``count(DISTINCT alias.unit)`` to
the select list, by editing the tree and having DuckDB print it back (``json_deserialize_sql``):
the per-owner counts are computed by SQL the enclave writes, not by the agreed SQL.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oblv_mpc.manifest.model import InputTable
from oblv_mpc.manifest.naming import quote
from oblv_mpc.manifest.usage import Shape, TableUse, UnitCount, Usage

if TYPE_CHECKING:
    from oblv_mpc.manifest.sql import Renderer

_AGGREGATES = {
    "count_star": "count",
    "count": "count",
    "sum": "sum",
    "avg": "avg",
    "mean": "avg",
    "min": "min",
    "max": "max",
}


class _Opaque(Exception):
    """The tree leaves the analysable shape."""


@dataclass
class _Occurrence:
    use: TableUse
    names: tuple[tuple[str, ...], ...]  # how a column reference may name this occurrence
    schema: str
    name: str


def analyse(tree: Mapping[str, Any], inputs: tuple[str, ...], tables: Mapping[str, InputTable]) -> Usage:
    """The computation's use of each table: aggregate shape, or opaque."""
    try:
        return _analyse(tree["statements"][0]["node"], tables)
    except (_Opaque, KeyError, IndexError, TypeError):
        return Usage(Shape.OPAQUE, [TableUse(name) for name in inputs])


def _analyse(node: Mapping[str, Any], tables: Mapping[str, InputTable]) -> Usage:
    _check_plain_select(node)
    occurrences: list[_Occurrence] = []
    _from(node["from_table"], tables, occurrences)
    if not occurrences:
        raise _Opaque
    joined = node["from_table"].get("type") == "JOIN"
    resolve = _Resolver(occurrences, tables)
    grouped = _group_by(node, resolve)
    if node.get("where_clause") is not None:
        _where(node["where_clause"], resolve)
    for expression in node["select_list"]:
        _output(expression, resolve, grouped)
    _order_by(node, resolve, grouped)
    return Usage(Shape.AGGREGATE, [o.use for o in occurrences], joined=joined)


def _check_plain_select(node: Mapping[str, Any]) -> None:
    """One SELECT: no CTE, HAVING, QUALIFY, sample or other aggregate handling."""
    if node.get("type") != "SELECT_NODE" or node["cte_map"]["map"]:
        raise _Opaque
    for key in ("having", "qualify", "sample"):
        if node.get(key) is not None:
            raise _Opaque
    if node.get("aggregate_handling") != "STANDARD_HANDLING":
        raise _Opaque


def _group_by(node: Mapping[str, Any], resolve: _Resolver) -> set[tuple[int, str]]:
    """The grouped columns, each a dimension of its table; no GROUPING SETS, ROLLUP or CUBE."""
    groups = node.get("group_expressions", [])
    if len(node.get("group_sets", [])) > 1 or any(sorted(s) != list(range(len(groups))) for s in node["group_sets"]):
        raise _Opaque  # GROUPING SETS, ROLLUP, CUBE
    grouped = set()
    for expression in groups:
        occurrence, column = resolve(expression)
        occurrence.use.dimensions.add(column)
        grouped.add((id(occurrence), column))
    return grouped


def _where(clause: Mapping[str, Any], resolve: _Resolver) -> None:
    """A WHERE clause of the allowed nodes only; each column it reads is a dimension."""
    for expression in _walk(clause):
        if "class" not in expression:
            continue  # a literal's value, not an expression
        kind = (expression["class"], expression.get("type"))
        if kind == ("FUNCTION", "FUNCTION"):
            if expression.get("function_name") not in _WHERE_FUNCTIONS or expression.get("schema") not in ("", None):
                raise _Opaque
        elif kind not in _WHERE_NODES:
            raise _Opaque  # other functions, casts, CASE, COLUMNS(*), positional #n, subqueries ...
        if expression["class"] == "COLUMN_REF":
            occurrence, column = resolve(expression)
            occurrence.use.dimensions.add(column)


def _order_by(node: Mapping[str, Any], resolve: _Resolver, grouped: set[tuple[int, str]]) -> None:
    """ORDER BY output columns, positions, grouped dimensions or plain aggregates; no LIMIT, no DISTINCT."""
    for modifier in node.get("modifiers", []):
        if modifier.get("type") != "ORDER_MODIFIER":
            raise _Opaque  # LIMIT, DISTINCT
        for order in modifier["orders"]:
            expression = order["expression"]
            if expression.get("class") == "CONSTANT":
                continue
            _output(expression, resolve, grouped, aliases={str(e.get("alias")) for e in node["select_list"]})


# What a WHERE clause over protected tables may hold: comparisons, AND/OR/NOT, IS [NOT] NULL,
# [NOT] IN, BETWEEN and [NOT] LIKE / ILIKE / GLOB of dimension columns and constants. No other
# function, no cast, no CASE: whether a run fails, or how long it takes, must not depend on one
# row (an error oracle); and the enclave still evaluates the clause inside TRY(), so that no
# value can make the run fail (with_unit_counts).
_WHERE_FUNCTIONS = frozenset({"~~", "!~~", "~~*", "!~~*", "~~~"})
_WHERE_NODES = frozenset(
    {
        ("COLUMN_REF", "COLUMN_REF"),
        ("CONSTANT", "VALUE_CONSTANT"),
        ("CONJUNCTION", "CONJUNCTION_AND"),
        ("CONJUNCTION", "CONJUNCTION_OR"),
        ("OPERATOR", "OPERATOR_NOT"),
        ("OPERATOR", "OPERATOR_IS_NULL"),
        ("OPERATOR", "OPERATOR_IS_NOT_NULL"),
        ("OPERATOR", "COMPARE_IN"),
        ("OPERATOR", "COMPARE_NOT_IN"),
        ("BETWEEN", "COMPARE_BETWEEN"),
        *(
            ("COMPARISON", kind)
            for kind in (
                "COMPARE_EQUAL",
                "COMPARE_NOTEQUAL",
                "COMPARE_LESSTHAN",
                "COMPARE_GREATERTHAN",
                "COMPARE_LESSTHANOREQUALTO",
                "COMPARE_GREATERTHANOREQUALTO",
                "COMPARE_DISTINCT_FROM",
                "COMPARE_NOT_DISTINCT_FROM",
            )
        ),
    }
)


def _output(
    expression: Mapping[str, Any], resolve: _Resolver, grouped: set[tuple[int, str]], aliases: set[str] | None = None
) -> None:
    """A selected (or ordered-by) expression: a grouped dimension, or one plain aggregate."""
    kind = expression.get("class")
    if kind == "COLUMN_REF":
        if aliases and len(expression["column_names"]) == 1 and expression["column_names"][0] in aliases:
            return  # ORDER BY an output column by its name
        occurrence, column = resolve(expression)
        if (id(occurrence), column) not in grouped:
            raise _Opaque  # a column neither grouped nor aggregated
        return
    function = _aggregate_name(expression)
    if function is None or expression.get("filter") is not None or expression["order_bys"]["orders"]:
        raise _Opaque
    arguments = [_argument(a) for a in expression.get("arguments", [])]
    if expression["function_name"] == "count_star" and not arguments:
        for occurrence in resolve.occurrences:
            occurrence.use.aggregates.add(("count", "*"))
        return
    if len(arguments) != 1 or arguments[0].get("class") != "COLUMN_REF":
        raise _Opaque
    occurrence, column = resolve(arguments[0])
    if expression.get("distinct"):
        # Whether values within a group repeat is a fact about the values: DISTINCT only for count,
        # and only of a column the owner shows anyway (a dimension) or matches on (a join column).
        if function != "count":
            raise _Opaque
        occurrence.use.dimensions.add(column)
        occurrence.use.distinct_counts.add(column)
        return
    occurrence.use.aggregates.add((function, column))


def _argument(argument: Mapping[str, Any]) -> Mapping[str, Any]:
    """A function argument: DuckDB wraps each as {name, expression}; a named one is not analysed."""
    if "expression" in argument and "class" not in argument:
        if argument.get("name"):
            raise _Opaque
        return dict(argument["expression"])
    return argument


def _aggregate_name(expression: Mapping[str, Any]) -> str | None:
    if expression.get("class") != "FUNCTION" or expression.get("schema", "") not in ("", "main"):
        return None
    name = _AGGREGATES.get(str(expression.get("function_name", "")).lower())
    if name is None and expression.get("function_name") in ("first", "last", "any_value", "arbitrary", "list"):
        raise _Opaque
    return name


def _from(node: Mapping[str, Any], tables: Mapping[str, InputTable], found: list[_Occurrence]) -> None:
    if node.get("sample") is not None:
        raise _Opaque
    if node.get("type") == "BASE_TABLE":
        found.append(_base_table(node, tables))
        return
    if node.get("type") != "JOIN" or node.get("join_type") != "INNER" or node.get("ref_type") != "REGULAR":
        raise _Opaque
    before = len(found)
    _from(node["left"], tables, found)
    middle = len(found)
    _from(node["right"], tables, found)
    sides = (found[before:middle], found[middle:])
    if node.get("using_columns"):
        if node.get("condition") is not None:
            raise _Opaque
        for column in node["using_columns"]:
            _using(column, sides, tables)
        return
    condition = node.get("condition")
    if condition is None:
        raise _Opaque  # a cross join
    resolve = _Resolver(found[before:], tables)
    for comparison in _conjuncts(condition):
        _on(comparison, sides, resolve, tables)


def _base_table(node: Mapping[str, Any], tables: Mapping[str, InputTable]) -> _Occurrence:
    """A declared input, as itself or under an alias (no other catalog, no time travel, no column aliases)."""
    schema, name = node.get("schema_name", ""), node.get("table_name", "")
    qualified = f"{schema}.{name}"
    if node.get("catalog_name") or qualified not in tables or node.get("at_clause") or node["column_name_alias"]:
        raise _Opaque
    alias = node.get("alias") or ""
    names = ((alias,),) if alias else ((name,), (schema, name))
    return _Occurrence(TableUse(qualified, alias=alias), names, schema, name)


def _using(column: str, sides: tuple[list[_Occurrence], list[_Occurrence]], tables: Mapping[str, InputTable]) -> None:
    """``USING (column)``: a column of one type on both sides, a join column of every table that has it."""
    types = set()
    for side in sides:
        having = [o for o in side if tables[o.use.table].column(column) is not None]
        if not having:
            raise _Opaque
        for occurrence in having:
            occurrence.use.joins.add(column)
            declared = tables[occurrence.use.table].column(column)
            assert declared is not None
            types.add(declared.type)
    if len(types) != 1:
        raise _Opaque  # USING columns of different types: a cast in every comparison


def _on(
    comparison: Mapping[str, Any],
    sides: tuple[list[_Occurrence], list[_Occurrence]],
    resolve: _Resolver,
    tables: Mapping[str, InputTable],
) -> None:
    """One equality of an ON condition: a column of the left side = a column of the right, one type."""
    if comparison.get("type") != "COMPARE_EQUAL":
        raise _Opaque
    ends = []
    for side in (comparison["left"], comparison["right"]):
        if side.get("class") != "COLUMN_REF":
            raise _Opaque
        ends.append(resolve(side))
    (first, first_column), (second, second_column) = ends
    # Each equality links one table on the left with one on the right (a.id = a.id links
    # nothing: a cross join), and compares columns of one type (no cast, no collisions).
    left = {id(o) for o in sides[0]}
    if (id(first) in left) == (id(second) in left):
        raise _Opaque
    first_type = tables[first.use.table].column(first_column)
    second_type = tables[second.use.table].column(second_column)
    if first_type is None or second_type is None or first_type.type is not second_type.type:
        raise _Opaque
    first.use.joins.add(first_column)
    second.use.joins.add(second_column)


def _conjuncts(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    if node.get("type") == "CONJUNCTION_AND":
        for child in node["children"]:
            yield from _conjuncts(child)
    else:
        yield node


class _Resolver:
    """Which occurrence of which table a column reference means (as DuckDB's binder would)."""

    def __init__(self, occurrences: list[_Occurrence], tables: Mapping[str, InputTable]) -> None:
        self.occurrences = occurrences
        self.tables = tables

    def __call__(self, expression: Mapping[str, Any]) -> tuple[_Occurrence, str]:
        if expression.get("class") != "COLUMN_REF":
            raise _Opaque
        *prefix, column = (str(n) for n in expression["column_names"])
        if prefix:
            matches = [o for o in self.occurrences if tuple(prefix) in o.names]
        else:
            matches = [o for o in self.occurrences if self.tables[o.use.table].column(column) is not None]
            if len(matches) > 1 and all(column in o.use.joins for o in matches):
                for occurrence in matches:  # a USING column: every side's value is the same
                    occurrence.use.dimensions.add(column)
                return matches[0], column
        if len(matches) != 1 or self.tables[matches[0].use.table].column(column) is None:
            raise _Opaque
        return matches[0], column


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def with_unit_counts(tree: Mapping[str, Any], counts: Sequence[UnitCount], render: Renderer) -> str:
    """The SQL of ``tree`` with ``count(DISTINCT <table>.<unit>) AS <helper>`` added per counted table,
    and its WHERE clause evaluated inside ``TRY()``, so that no row's value can make the run fail.

    ``render`` turns SQL into DuckDB's parse tree and back (``json_serialize_sql`` and
    ``json_deserialize_sql``), so the edit is made on the tree, never on the text.
    """
    edited = copy.deepcopy(dict(tree))
    node = edited["statements"][0]["node"]
    select_list = node["select_list"]
    if node.get("where_clause") is not None:
        wrapper = json.loads(render.serialize("SELECT 1 WHERE TRY(true)"))["statements"][0]["node"]["where_clause"]
        wrapper["children"] = [node["where_clause"]]
        node["where_clause"] = wrapper
    for count in counts:
        schema, name = count.table.split(".", 1)
        target = quote(count.alias) if count.alias else f"{quote(schema)}.{quote(name)}"
        snippet = json.loads(
            render.serialize(f"SELECT count(DISTINCT {target}.{quote(count.unit)}) AS {quote(count.column)}")
        )
        select_list.append(snippet["statements"][0]["node"]["select_list"][0])
    return str(render.deserialize(json.dumps(edited)))
