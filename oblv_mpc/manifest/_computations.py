"""The ``computations:`` section -> validated :class:`Computation` objects with their release rules.

For each computation: its SQL (a template's, or written) passes the SQL checks
(``oblv_mpc.manifest.sql``); how it uses each input is judged against that input's owner's
protection (``oblv_mpc.manifest.usage``); the enclave's per-owner unit counts are added to the
SQL it runs; and its release policy (``oblv_mpc.manifest.rules``) is assembled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oblv_mpc.manifest import _fields, _synthetic, shape, templates, usage
from oblv_mpc.manifest import sql as sql_check
from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import Computation, InputTable, Party, Role
from oblv_mpc.manifest.naming import unit_count_column
from oblv_mpc.manifest.rules import MaxOutputRows, MinDistinctUnits, ReleasePolicy
from oblv_mpc.manifest.specs import DpSpec

_COMPUTATION = {"description", "template", "params", "sql", "readers", "max_output_rows", "dp", "synthetic"}
_DP = {"epsilon", "delta", "bounds", "groups"}
MAX_EPSILON = 10


def parse(
    raw: Any, parties: Mapping[str, Party], party_names: set[str], tables: Mapping[str, InputTable], problems: Problems
) -> dict[str, Computation]:
    """Every valid computation of ``raw``; a problem for each invalid one."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.expected("computations", "a mapping of name -> computation", raw)
        return {}
    renderer = _LazyRenderer(tables)
    computations: dict[str, Computation] = {}
    try:
        for name, body in raw.items():
            path = f"computations.{name}"
            if not _fields.name(name, path, problems, "a computation name"):
                continue
            if not isinstance(body, dict):
                problems.expected(path, "a mapping with template or sql, and readers", body)
                continue
            computation = _computation(name, body, path, parties, party_names, tables, renderer, problems)
            if computation is not None:
                computations[name] = computation
    finally:
        renderer.close()
    return computations


class _LazyRenderer:
    """A DuckDB connection for editing SQL trees, made only when a computation needs one."""

    def __init__(self, tables: Mapping[str, InputTable]) -> None:
        self.tables = tables
        self._renderer: sql_check.Renderer | None = None

    def get(self) -> sql_check.Renderer:
        if self._renderer is None:
            self._renderer = sql_check.Renderer(self.tables)
        return self._renderer

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()


def _readers(
    body: Mapping[str, Any], path: str, parties: Mapping[str, Party], names: set[str], problems: Problems
) -> list[str]:
    readers = body.get("readers")
    if not isinstance(readers, list) or not readers or not all(isinstance(r, str) for r in readers):
        problems.expected(f"{path}.readers", "a non-empty list of party names", readers)
        return []
    for i, reader in enumerate(readers):
        if reader not in names:
            problems.expected(f"{path}.readers[{i}]", f"a declared party (one of: {', '.join(sorted(names))})", reader)
        elif reader in parties and not parties[reader].has(Role.READER):
            problems.add(f"{path}.readers[{i}]", f"party {reader!r} has no reader role")
    if len(set(readers)) != len(readers):
        problems.add(f"{path}.readers", "names a party more than once")
    return list(readers)


def _computation(
    name: str,
    body: Mapping[str, Any],
    path: str,
    parties: Mapping[str, Party],
    party_names: set[str],
    tables: Mapping[str, InputTable],
    renderer: _LazyRenderer,
    problems: Problems,
) -> Computation | None:
    readers, description = _header(body, path, parties, party_names, problems)
    max_output_rows = _fields.positive_int(body, "max_output_rows", path, problems, None)
    if "synthetic" in body:
        if {"template", "sql", "params", "dp", "max_output_rows"} & set(body):
            problems.add(path, "a synthetic release takes no template, sql, params, dp or max_output_rows")
            return None
        return _synthetic_computation(name, body, path, tuple(readers), description, tables, problems)
    template, sql = body.get("template"), body.get("sql")
    if (template is None) == (sql is None):
        problems.add(path, "needs exactly one of template, sql or synthetic")
        return None
    before = len(problems.items)
    dp = _dp(body.get("dp"), f"{path}.dp", problems) if "dp" in body else None
    where = f"{path}.sql" if template is None else f"{path}.template"
    generated = _generate(template, sql, body, dp, path, tables, problems)
    if generated is None or len(problems.items) != before:
        return None
    # One engine, one set of checks: generated SQL is checked exactly as written SQL is.
    info = sql_check.check(generated.sql, tables, where, problems)
    if info is None:
        return None
    if not info.inputs:
        problems.add(where, "reads none of the declared inputs")
        return None
    names = [c[0] for c in info.columns]
    if len(set(names)) != len(names):
        problems.add(where, f"output columns must have distinct names, found {', '.join(names)}")
        return None
    if template is None:
        tree = info.tree
        generated = templates.Generated(
            None,
            generated.sql,
            info.inputs,
            shape.analyse(tree, info.inputs, tables),
            lambda counts: shape.with_unit_counts(tree, counts, renderer.get()),
        )
    counted = usage.judge(generated.usage, tables, where, problems)
    if len(problems.items) != before:
        return None
    counts = [
        usage.UnitCount(i, use.table, use.alias, str(tables[use.table].protection.unit), unit_count_column(n))
        for n, (i, use) in enumerate((i, generated.usage.tables[i]) for i in counted)
    ]
    run_sql = generated.sql
    if counts:
        assert generated.counted is not None  # an aggregate shape can always be counted
        run_sql = generated.counted(counts)
        expected = (*info.columns, *((c.column, "BIGINT") for c in counts))
        if renderer.get().describe(run_sql) != expected:
            raise RuntimeError(f"{path}: the enclave's unit counts changed the query's output columns")
    policy = ReleasePolicy(
        thresholds=tuple(
            MinDistinctUnits(c.table, c.unit, tables[c.table].protection.min_distinct, c.column) for c in counts
        ),
        limits=(MaxOutputRows(max_output_rows),) if max_output_rows else (),
        disclose_suppressed=all(tables[c.table].protection.disclose_suppressed for c in counts),
    )
    return Computation(
        name=name,
        template=template,
        params=generated.params,
        sql=generated.sql,
        inputs=info.inputs if template is None else generated.inputs,
        readers=tuple(readers),
        description=description,
        max_output_rows=max_output_rows,
        dp=dp,
        columns=info.columns,
        ordered=info.ordered,
        run_sql=run_sql,
        policy=policy,
    )


def _header(
    body: Mapping[str, Any], path: str, parties: Mapping[str, Party], party_names: set[str], problems: Problems
) -> tuple[list[str], str]:
    """What every computation has: known fields, its readers, its description."""
    if "min_group_size" in body:
        problems.add(
            f"{path}.min_group_size",
            "was replaced by each owner's protection rules (inputs.<party.table>.protection.min_distinct): the "
            "enclave now counts each owner's distinct units per group itself, instead of trusting a column the "
            "SQL computes (docs/manifest.md#protection)",
        )
    _fields.unknown({k: v for k, v in body.items() if k != "min_group_size"}, _COMPUTATION, path, problems)
    readers = _readers(body, path, parties, party_names, problems)
    description = body.get("description", "")
    if not isinstance(description, str):
        problems.expected(f"{path}.description", "text", description)
        description = ""
    _fields.no_hidden(description, f"{path}.description", problems, allow="\n\t")
    return readers, description


def _synthetic_computation(
    name: str,
    body: Mapping[str, Any],
    path: str,
    readers: tuple[str, ...],
    description: str,
    tables: Mapping[str, InputTable],
    problems: Problems,
) -> Computation | None:
    """A differentially private synthetic table (``oblv_mpc.manifest._synthetic``)."""
    before = len(problems.items)
    where = f"{path}.synthetic"
    parsed = _synthetic.parse(body["synthetic"], where, tables, problems)
    if parsed is None:
        return None
    spec, agreed, run_sql, uses = parsed
    info = sql_check.check(agreed, tables, where, problems)
    if info is None:
        return None
    usage.judge(usage.Usage(usage.Shape.SYNTHETIC, uses), tables, where, problems)
    if len(problems.items) != before or not readers:
        return None
    return Computation(
        name=name,
        template=None,
        params=None,
        sql=agreed,
        inputs=spec.inputs,
        readers=readers,
        description=description,
        columns=info.columns,
        run_sql=run_sql,
        synthetic=spec,
    )


def _generate(
    template: Any,
    sql: Any,
    body: Mapping[str, Any],
    dp: DpSpec | None,
    path: str,
    tables: Mapping[str, InputTable],
    problems: Problems,
) -> templates.Generated | None:
    """A template's SQL and usage, or a written ``sql:`` as it stands (its usage comes from its tree)."""
    if template is None:
        if "params" in body:
            problems.add(f"{path}.params", "applies only to templates")
        if dp is not None:
            problems.add(f"{path}.dp", "differential privacy applies to the aggregate template, not to sql")
        if not isinstance(sql, str) or not sql.strip():
            problems.expected(f"{path}.sql", "a SELECT statement", sql)
            return None
        return templates.Generated(None, sql.strip(), (), usage.Usage(usage.Shape.OPAQUE, []))
    if not isinstance(template, str) or template not in templates.TEMPLATES:
        problems.expected(f"{path}.template", f"one of {', '.join(templates.TEMPLATES)}", template)
        return None
    params = body.get("params")
    if not isinstance(params, dict):
        problems.expected(f"{path}.params", f"the parameters of template {template}", params)
        return None
    if dp is None:
        return templates.TEMPLATES[template](params, f"{path}.params", tables, problems)
    if template != "aggregate":
        problems.add(f"{path}.dp", f"differential privacy applies to the aggregate template, not {template}")
        return None
    if not _dp_fits(dp, params, tables, f"{path}.dp", problems):
        return None
    return templates.dp_aggregate(params, dp, f"{path}.params", tables, problems)


def _dp(raw: Any, path: str, problems: Problems) -> DpSpec | None:
    """``dp: {epsilon, delta, bounds, groups}`` in normalized form (checked against params later)."""
    if not isinstance(raw, dict):
        problems.expected(path, "a mapping with epsilon, bounds and groups", raw)
        return None
    _fields.unknown(raw, _DP, path, problems)
    epsilon: Any = raw.get("epsilon")
    delta = raw.get("delta", 0)
    if not _fields.number(epsilon) or not 0 < epsilon <= MAX_EPSILON:
        problems.expected(f"{path}.epsilon", f"a number in (0, {MAX_EPSILON}]", epsilon)
    if delta != 0:
        problems.expected(f"{path}.delta", "0: releases use the Laplace mechanism (pure epsilon-DP)", delta)
    bounds = raw.get("bounds", {})
    if not isinstance(bounds, dict) or not all(
        isinstance(v, list) and len(v) == 2 and all(_fields.number(x) for x in v) and v[0] < v[1]
        for v in bounds.values()
    ):
        problems.expected(f"{path}.bounds", "a mapping of column -> [low, high] with low < high", bounds)
        bounds = {}
    groups = raw.get("groups", {})
    if not isinstance(groups, dict) or not all(isinstance(v, list) and v for v in groups.values()):
        problems.expected(f"{path}.groups", "a mapping of group column -> the public list of its values", groups)
        groups = {}
    for column, values in groups.items():
        seen: set[tuple[str, Any]] = set()
        for value in values:
            marker = (type(value).__name__, value if isinstance(value, str | int | float | bool) else repr(value))
            if marker in seen:
                problems.add(
                    f"{path}.groups.{column}",
                    f"lists {value!r} more than once: each public group is released once, or its noise could be "
                    "averaged away",
                )
            seen.add(marker)
    return DpSpec(
        epsilon=float(epsilon) if _fields.number(epsilon) else 0.0,
        bounds={str(k): (float(v[0]), float(v[1])) for k, v in sorted(bounds.items())},
        groups={str(k): tuple(v) for k, v in sorted(groups.items())},
    )


def _dp_fits(
    dp: DpSpec, params: dict[str, Any], tables: Mapping[str, InputTable], path: str, problems: Problems
) -> bool:
    """Bounds for every summed column, and the public values of every group column, typed right."""
    before = len(problems.items)
    raw_aggregates = params.get("aggregates")
    aggregates: dict[str, Any] = raw_aggregates if isinstance(raw_aggregates, dict) else {}
    summed = {
        next(iter(spec.values()))
        for spec in aggregates.values()
        if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in ("sum", "avg")
    }
    for column in sorted(summed):
        if column not in dp.bounds:
            problems.add(f"{path}.bounds", f"needs [low, high] for {column!r}, whose sum or mean is released")
    for column in sorted(set(dp.bounds) - summed):
        problems.add(f"{path}.bounds.{column}", "bounds a column that no sum or mean uses")
    group_by = params.get("group_by", [])
    group_by = [group_by] if isinstance(group_by, str) else group_by if isinstance(group_by, list) else []
    for column in group_by:
        values = dp.groups.get(column)
        if values is None:
            problems.add(f"{path}.groups", f"needs the public list of values of group column {column!r}")
            continue
        inputs = [tables[t] for t in params.get("inputs", []) if isinstance(t, str) and t in tables]
        declared = next((t.column(column) for t in inputs if t.column(column)), None)
        if declared is None:
            continue
        for value in values:
            try:
                templates.literal(value, declared.type)
            except ValueError:
                problems.add(
                    f"{path}.groups.{column}",
                    f"{value!r} is not a {declared.type.value} value (only text, integer and boolean groups)",
                )
    for column in sorted(set(dp.groups) - set(group_by)):
        problems.add(f"{path}.groups.{column}", "lists values of a column that is not grouped by")
    return len(problems.items) == before


def budget(raw: Any, computations: Mapping[str, Computation], problems: Problems) -> dict[str, float] | None:
    """``privacy_budget: {epsilon}``, required by any DP computation, and enough for all of them together."""
    spends = {c.name: c.epsilon for c in computations.values() if c.epsilon > 0}
    if raw is None:
        for name in spends:
            problems.add("privacy_budget", f"required: computation {name} is differentially private")
        return None
    if (
        not isinstance(raw, dict)
        or set(raw) - {"epsilon"}
        or not _fields.number(raw.get("epsilon"))
        or raw["epsilon"] <= 0
    ):
        problems.expected("privacy_budget", "{epsilon: a positive number}", raw)
        return None
    total = sum(spends.values())
    if total > raw["epsilon"] * (1 + 1e-12):
        listed = ", ".join(f"{name} {epsilon:g}" for name, epsilon in sorted(spends.items()))
        problems.add(
            "privacy_budget.epsilon",
            f"{raw['epsilon']:g} is less than the {total:g} that the differentially private computations ask for "
            f"together ({listed}): every release must fit in the budget, so that none can be refused for lack of it",
        )
    return {"epsilon": float(raw["epsilon"])}
