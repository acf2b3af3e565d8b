"""What a computation does with each table it reads, judged against each owner's protection.

Templates say what they do from their parameters; a ``sql:`` computation's use is read from
DuckDB's parse tree (``oblv_mpc.manifest.shape``). Either way the same :func:`judge` decides,
at validation, whether every owner's rules allow it: columns grouped by or filtered on must be
the owner's dimensions, columns matched on its join columns, values listed its list columns,
and every aggregate one the owner allows on that column. SQL whose shape the enclave cannot
analyse (subqueries, set operations, window functions ...) may read only tables whose owners
marked them ``release: unrestricted``.

A join with a protected table releases, besides what that owner's rules allow, nothing of another
owner's columns but counts of the matches: the joined rows are exactly the protected table's
units that matched, so a sum, average, min or max of a column whose values another party chose
(2^i for its i-th candidate: the total is a bitmask of which candidates are the owner's units)
tells which units matched, one by one. The protected table's owner may allow it
(``allow_others_aggregates_in_joins``).

:func:`judge` also says which inputs the enclave must count units of, per released group, to
apply each owner's ``min_distinct`` (``oblv_mpc.manifest.rules``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import InputTable, Release


class Shape(enum.StrEnum):
    """The kind of release a computation makes."""

    AGGREGATE = "aggregate"  # one row per group: thresholds apply
    LIST = "list"  # values released one by one (a set intersection): list columns only
    DP = "dp"  # differentially private aggregates over public groups: no threshold, owners must allow dp
    SYNTHETIC = "synthetic"  # a DP synthetic table: owners must allow dp and show its columns (dimensions)
    OPAQUE = "opaque"  # SQL whose shape cannot be analysed: unrestricted tables only


@dataclass
class TableUse:
    """One occurrence of an input in a computation, and which of its columns are used how."""

    table: str  # party.table
    alias: str = ""  # how the SQL refers to it (for the enclave's unit counts)
    dimensions: set[str] = field(default_factory=set)
    joins: set[str] = field(default_factory=set)
    listed: set[str] = field(default_factory=set)
    aggregates: set[tuple[str, str]] = field(default_factory=set)  # (function, column or '*')
    distinct_counts: set[str] = field(default_factory=set)  # count(DISTINCT column): also dimensions


@dataclass
class Usage:
    """How a computation uses its inputs. ``joined``: rows are matched by a JOIN (fan-out possible)."""

    shape: Shape
    tables: list[TableUse]
    joined: bool = False


def judge(usage: Usage, tables: Mapping[str, InputTable], path: str, problems: Problems) -> list[int]:
    """Add a problem for every use an owner does not allow; return the uses whose units to count.

    The returned indexes (into ``usage.tables``) are the protected inputs of an aggregate release:
    the enclave counts their distinct units per group and applies their owners' ``min_distinct``.
    """
    counted: list[int] = []
    protected = any(tables[u.table].protection.release is Release.PROTECTED for u in usage.tables)
    if usage.joined and protected and usage.shape is not Shape.OPAQUE:
        _check_join_keys(usage, tables, path, problems)
    if usage.joined and protected and usage.shape is Shape.AGGREGATE:  # DP releases are noised, and not joined
        _check_others_aggregates(usage, tables, path, problems)
    for index, use in enumerate(usage.tables):
        table = tables[use.table]
        rules = table.protection
        owner = f"{use.table} (owner {table.party})"
        if rules.release is Release.UNRESTRICTED:
            continue
        if rules.release is Release.UNDECLARED:
            problems.add(
                path,
                f"reads {owner}, which declares no protection: its owner must say what may be released "
                "(inputs.<table>.protection, docs/manifest.md) or mark it release: unrestricted",
            )
            continue
        if usage.shape is Shape.OPAQUE:
            problems.add(
                path,
                f"reads protected {owner} with SQL whose shape the enclave cannot check (only SELECT ... FROM "
                "tables [JOIN ...] [WHERE ...] [GROUP BY ...] with plain aggregates is analysed); rewrite it in "
                "that shape, use a template, or its owner must mark it release: unrestricted",
            )
            continue
        _check_columns(use, rules.dimensions, use.dimensions, "group by, filter on or output", owner, path, problems)
        _check_columns(use, rules.join_columns, use.joins, "match or join on", owner, path, problems)
        _check_columns(use, rules.list_columns, use.listed, "list the values of", owner, path, problems)
        for function, column in sorted(use.aggregates):
            if not rules.allows(function, column):
                allowed = ", ".join(sorted(rules.aggregates.get(column, ()))) or "only count"
                problems.add(
                    path, f"{function}({column}) over {owner} is not allowed by its owner (allowed: {allowed})"
                )
        if _check_noise(usage.shape, table, owner, path, problems):
            counted.append(index)
    return counted


def _check_noise(shape: Shape, table: InputTable, owner: str, path: str, problems: Problems) -> bool:
    """A DP release needs the owner's allow_dp (and, for aggregates, one row per unit); True: count units."""
    rules = table.protection
    if shape in (Shape.DP, Shape.SYNTHETIC) and not rules.allow_dp:
        kind = "synthetic release" if shape is Shape.SYNTHETIC else "release"
        problems.add(path, f"a differentially private {kind} may not read {owner}: its owner has no allow_dp")
    elif shape is Shape.DP and table.key != (rules.unit,):
        problems.add(
            path,
            f"a differentially private release needs one row per privacy unit: {owner}'s unit "
            f"{rules.unit!r} must be its key (key: [{rules.unit}])",
        )
    return shape is Shape.AGGREGATE


def _check_join_keys(usage: Usage, tables: Mapping[str, InputTable], path: str, problems: Problems) -> None:
    """Every join must match a key: a value repeated on one side would weight the other side's rows."""
    for use in usage.tables:
        for column in sorted(use.joins):
            if tables[use.table].key != (column,):
                problems.add(
                    path,
                    f"joins {use.table} on {column!r}, which is not its key: a repeated value would count the "
                    f"matching rows of the other tables several times (declare key: [{column}] on {use.table})",
                )


def _check_others_aggregates(usage: Usage, tables: Mapping[str, InputTable], path: str, problems: Problems) -> None:
    """Joined with a protected table, another owner's columns are only counted, unless its owner allows more.

    Each joined row is one of the protected table's units that matched (joins match keys). A sum,
    average, min or max of another owner's column weights each match by a value that owner chose;
    so does ``count(column)`` of a column it leaves NULL but in one row, and ``count(DISTINCT
    column)`` of one it labels apart in one row (a value no group of its own would show: it would
    hold one unit, below the threshold). ``count(*)`` and counts of the columns the join matches
    on count the matches only: what the threshold is for. Grouping by the other owner's columns
    is allowed: every group is a released group, under the threshold.
    """
    for protected in dict.fromkeys(u.table for u in usage.tables):
        table = tables[protected]
        rules = table.protection
        if rules.release is not Release.PROTECTED or rules.allow_others_aggregates_in_joins:
            continue
        for use in usage.tables:
            other = tables[use.table]
            if other.party == table.party:
                continue
            for expression in _weighted(use):
                problems.add(
                    path,
                    f"{expression} of {use.table} (owner {other.party}) over rows joined with protected {protected} "
                    f"(owner {table.party}) is not allowed: it depends on which of {protected}'s units matched, "
                    f"weighted by values {other.party} chose, so only counts of the matches may be released; "
                    f"{table.party} would have to declare allow_others_aggregates_in_joins: true in "
                    f"inputs.{protected}.protection",
                )


def _weighted(use: TableUse) -> list[str]:
    """The aggregates of ``use`` that say more than how many rows matched, as SQL."""
    found = [
        f"{function}({column})"
        for function, column in sorted(use.aggregates)
        if function != "count" or (column != "*" and column not in use.joins)
    ]
    return found + [f"count(DISTINCT {column})" for column in sorted(use.distinct_counts - use.joins)]


def _check_columns(
    use: TableUse, allowed: frozenset[str], used: set[str], verb: str, owner: str, path: str, problems: Problems
) -> None:
    for column in sorted(used - allowed):
        problems.add(
            path,
            f"may not {verb} {owner}'s column {column!r}: its owner allows {', '.join(sorted(allowed)) or 'none'}",
        )


@dataclass(frozen=True)
class UnitCount:
    """A helper column the enclave adds: distinct ``unit`` values of one table occurrence per group."""

    use: int  # index into Usage.tables
    table: str
    alias: str
    unit: str
    column: str  # the helper column's name (oblv_mpc.manifest.naming.unit_count_column)
