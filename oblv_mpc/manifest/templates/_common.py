"""What every template shares: its output type, parameter checks, and the reserved column names."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import ColumnType, InputTable
from oblv_mpc.manifest.specs import TemplateParams
from oblv_mpc.manifest.usage import UnitCount, Usage

GROUP_SIZE_COLUMN = "group_size"


@dataclass(frozen=True)
class Generated:
    """What a template makes of its parameters.

    ``sql`` is what the parties agree to (part of the hash). ``counted(counts)`` is the same query
    with the enclave's per-owner unit counts added as helper columns; ``None`` when the template's
    release has no groups to count (a list, or differential privacy).
    """

    params: TemplateParams | None  # None: a written ``sql:`` computation has no template parameters
    sql: str
    inputs: tuple[str, ...]
    usage: Usage
    counted: Callable[[Sequence[UnitCount]], str] | None = None


Template = Callable[[Mapping[str, Any], str, Mapping[str, InputTable], Problems], Generated | None]


def known_keys(raw: Mapping[str, Any], allowed: set[str], path: str, problems: Problems) -> None:
    for key in raw:
        if key not in allowed:
            problems.add(f"{path}.{key}", f"unknown parameter (expected one of: {', '.join(sorted(allowed))})")


def inputs(
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


def column_list(raw: Mapping[str, Any], key: str, path: str, problems: Problems) -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.expected(f"{path}.{key}", "a column name or a list of column names", value)
        return []
    return list(value)


def match_columns(inputs: list[InputTable], raw_on: Any, path: str, field: str, problems: Problems) -> dict[str, str]:
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
