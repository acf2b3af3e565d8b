"""An input's ``protection:`` block -> :class:`Protection`, every problem with its field path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import AGGREGATE_FUNCTIONS, Column, Protection, Release

_FIELDS = {
    "release",
    "unit",
    "min_distinct",
    "dimensions",
    "join_columns",
    "list_columns",
    "aggregates",
    "allow_dp",
    "disclose_suppressed",
    "allow_others_aggregates_in_joins",
}
MAX_MIN_DISTINCT = 1_000_000


def parse(raw: Any, columns: Mapping[str, Column], path: str, problems: Problems) -> Protection:
    """Validate ``raw`` (absent: the owner declared nothing, and nothing of the table may be released)."""
    if raw is None:
        return Protection()
    if not isinstance(raw, dict):
        problems.expected(path, "a mapping: {unit, min_distinct, dimensions, ...} or {release: unrestricted}", raw)
        return Protection()
    for key in raw:
        if key not in _FIELDS:
            problems.add(f"{path}.{key}", f"unknown field (expected one of: {', '.join(sorted(_FIELDS))})")
    settled = _unless_protected(raw, path, problems)
    if settled is not None:
        return settled
    unit = raw.get("unit")
    if not isinstance(unit, str) or unit not in columns:
        problems.expected(f"{path}.unit", f"the privacy unit: a column of this table ({', '.join(columns)})", unit)
        unit = None
    k = raw.get("min_distinct")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_MIN_DISTINCT:
        problems.expected(f"{path}.min_distinct", f"a whole number from 1 to {MAX_MIN_DISTINCT:,}", k)
        k = 1
    flags = {
        flag: _flag(raw, flag, path, problems)
        for flag in ("allow_dp", "disclose_suppressed", "allow_others_aggregates_in_joins")
    }
    return Protection(
        release=Release.PROTECTED,
        unit=unit,
        min_distinct=k,
        dimensions=_column_list(raw, "dimensions", columns, path, problems),
        join_columns=_column_list(raw, "join_columns", columns, path, problems),
        list_columns=_column_list(raw, "list_columns", columns, path, problems),
        aggregates=_aggregates(raw.get("aggregates", {}), columns, f"{path}.aggregates", problems),
        allow_dp=flags["allow_dp"],
        disclose_suppressed=flags["disclose_suppressed"],
        allow_others_aggregates_in_joins=flags["allow_others_aggregates_in_joins"],
    )


def _unless_protected(raw: dict[str, Any], path: str, problems: Problems) -> Protection | None:
    """The protection when ``release`` is not ``protected``: unrestricted, or (invalid) nothing released."""
    release = raw.get("release", Release.PROTECTED.value)
    if release == Release.UNRESTRICTED.value:
        others = sorted(set(raw) - {"release"})
        if others:
            problems.add(
                path, f"release: unrestricted allows everything, so {', '.join(others)} would mean nothing: remove them"
            )
        return Protection(release=Release.UNRESTRICTED)
    if release != Release.PROTECTED.value:
        problems.expected(f"{path}.release", "protected (the default) or unrestricted", release)
        return Protection()
    return None


def _flag(raw: dict[str, Any], flag: str, path: str, problems: Problems) -> bool:
    value = raw.get(flag, False)
    if not isinstance(value, bool):
        problems.expected(f"{path}.{flag}", "true or false", value)
    return value is True


def _column_list(
    raw: dict[str, Any], key: str, columns: Mapping[str, Column], path: str, problems: Problems
) -> frozenset[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.expected(f"{path}.{key}", "a list of column names", value)
        return frozenset()
    for i, name in enumerate(value):
        if name not in columns:
            problems.expected(f"{path}.{key}[{i}]", f"a column of this table ({', '.join(columns)})", name)
    if len(set(value)) != len(value):
        problems.add(f"{path}.{key}", "names a column more than once")
    return frozenset(value)


def _aggregates(raw: Any, columns: Mapping[str, Column], path: str, problems: Problems) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict):
        problems.expected(path, "a mapping of column -> list of functions (sum, avg, min, max)", raw)
        return {}
    allowed: dict[str, frozenset[str]] = {}
    for column, functions in raw.items():
        where = f"{path}.{column}"
        if column not in columns:
            problems.expected(where, f"a column of this table ({', '.join(columns)})", column)
            continue
        if not isinstance(functions, list) or not functions or not all(f in AGGREGATE_FUNCTIONS for f in functions):
            problems.expected(where, f"a non-empty list of functions among {', '.join(AGGREGATE_FUNCTIONS)}", functions)
            continue
        if any(f in ("sum", "avg") for f in functions) and not columns[column].type.numeric:
            problems.add(where, f"sum and avg need a numeric column; {column!r} is {columns[column].type.value}")
        allowed[str(column)] = frozenset(functions)
    return allowed
