"""YAML text -> validated :class:`Manifest`, every problem reported with its field path."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from oblv_mpc import keys, safe_yaml, terminal_text
from oblv_mpc.errors import KeyFileError, ManifestError
from oblv_mpc.manifest import sql as sql_check
from oblv_mpc.manifest import templates
from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import (
    SCHEMA_VERSION,
    Column,
    ColumnType,
    Computation,
    InputTable,
    Manifest,
    Party,
    Role,
)

MAX_MANIFEST_BYTES = 1024 * 1024
# Caps on manifest YAML, checked while it is composed, before any object is built (safe_yaml.py).
# A real manifest is a few hundred values, 6 levels deep; at the node cap, parsing takes ~0.4 s.
YAML_LIMITS = safe_yaml.YamlLimits(
    max_bytes=MAX_MANIFEST_BYTES,  # UTF-8 bytes
    max_depth=32,  # nested nodes, root to deepest value
    max_nodes=20_000,  # scalars, sequences and mappings, keys included
)
DEFAULT_MAX_ROWS = 10_000_000
DEFAULT_MAX_BYTES = 1024**3

# Used with fullmatch: `$` would also match before a trailing newline ("alice\n").
_SESSION_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Names that DuckDB or SQL give a meaning of their own; a party or table may not take them.
_RESERVED = {"main", "temp", "system", "information_schema", "pg_catalog", "memory", "select", "from", "where", "table"}

_TOP = {"version", "session", "description", "parties", "inputs", "computations", "privacy_budget"}
_PARTY = {"public_key", "roles"}
_INPUT = {"columns", "key", "max_rows", "max_bytes"}
_COMPUTATION = {"description", "template", "params", "sql", "readers", "min_group_size", "max_output_rows", "dp"}
_DP = {"epsilon", "delta", "bounds", "groups"}


def load_yaml(text: str, *, source: str) -> Any:
    """Parse manifest YAML within :data:`YAML_LIMITS`: no aliases, anchors, tags or duplicate keys."""
    try:
        return safe_yaml.load(text, YAML_LIMITS)
    except safe_yaml.UnsafeYaml as exc:
        raise ManifestError([str(exc)], source=source) from None


def _no_hidden(value: str, path: str, problems: Problems, *, allow: str = "") -> bool:
    """Refuse text holding a character a terminal acts on (ESC, CR, bidi overrides ...): it could
    show a reviewer something other than what the hash covers (oblv_mpc/terminal_text.py)."""
    hidden = terminal_text.find_hidden(value, allow=allow)
    if hidden is None:
        return True
    problems.add(path, f"contains {hidden.describe()}, which a terminal acts on instead of showing; remove it")
    return False


def _name(value: Any, path: str, problems: Problems, what: str) -> bool:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        problems.expected(path, f"{what}: lowercase letters, digits and _, starting with a letter or _", value)
        return False
    if value in _RESERVED:
        problems.add(path, f"{value!r} is reserved; choose another {what}")
        return False
    return True


def _unknown(raw: Mapping[Any, Any], allowed: set[str], path: str, problems: Problems) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            problems.add(where, f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def _positive_int(raw: Mapping[str, Any], key: str, path: str, problems: Problems, default: int | None) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.expected(f"{path}.{key}", "a positive whole number", value)
        return None
    return value


def _parties(raw: Any, problems: Problems) -> dict[str, Party]:
    if not isinstance(raw, dict):
        problems.expected("parties", "a mapping of party name -> {public_key, roles}", raw)
        return {}
    parties: dict[str, Party] = {}
    fingerprints: dict[str, str] = {}
    for name, body in raw.items():
        path = f"parties.{name}"
        if not _name(name, path, problems, "a party name"):
            continue
        if not isinstance(body, dict):
            problems.expected(path, "a mapping with public_key and roles", body)
            continue
        _unknown(body, _PARTY, path, problems)
        public_key = None
        encoded = body.get("public_key")
        if not isinstance(encoded, str):
            problems.expected(f"{path}.public_key", "the party's base64 public key", encoded)
        else:
            try:
                public_key = keys.public_key_from_base64(encoded, source=f"{path}.public_key")
            except KeyFileError as exc:
                problems.add(f"{path}.public_key", exc.message.split(": ", 1)[-1])
        roles: set[Role] = set()
        raw_roles = body.get("roles")
        if not isinstance(raw_roles, list) or not raw_roles:
            problems.expected(
                f"{path}.roles", f"a non-empty list of roles ({', '.join(r.value for r in Role)})", raw_roles
            )
        else:
            for i, role in enumerate(raw_roles):
                try:
                    roles.add(Role(role))
                except ValueError:
                    problems.expected(f"{path}.roles[{i}]", f"one of {', '.join(r.value for r in Role)}", role)
        if public_key is not None:
            fp = keys.fingerprint(public_key)
            if fp in fingerprints:
                problems.add(
                    f"{path}.public_key",
                    f"is the same key as parties.{fingerprints[fp]}; every party needs its own key",
                )
            fingerprints[fp] = name
            parties[name] = Party(name, public_key, frozenset(roles))
    return parties


def _inputs(raw: Any, parties: Mapping[str, Party], party_names: set[str], problems: Problems) -> dict[str, InputTable]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.expected("inputs", "a mapping of party.table -> {columns, ...}", raw)
        return {}
    tables: dict[str, InputTable] = {}
    for qualified, body in raw.items():
        path = f"inputs.{qualified}"
        if not isinstance(qualified, str) or qualified.count(".") != 1:
            problems.expected(path, "an input named party.table", qualified)
            continue
        party, table = qualified.split(".")
        if not (_name(party, path, problems, "a party name") and _name(table, path, problems, "a table name")):
            continue
        if party not in party_names:
            problems.expected(path, f"a table of a declared party (one of: {', '.join(sorted(party_names))})", party)
        elif party in parties and not parties[party].has(Role.CONTRIBUTOR):
            problems.add(path, f"party {party!r} has no contributor role, so it cannot provide a table")
        if not isinstance(body, dict):
            problems.expected(path, "a mapping with columns", body)
            continue
        _unknown(body, _INPUT, path, problems)
        columns: list[Column] = []
        raw_columns = body.get("columns")
        if not isinstance(raw_columns, dict) or not raw_columns:
            problems.expected(f"{path}.columns", "a mapping of column name -> type", raw_columns)
        else:
            for column, spec in raw_columns.items():
                where = f"{path}.columns.{column}"
                if not isinstance(column, str) or not _IDENTIFIER.fullmatch(column):
                    problems.expected(where, "a column name: lowercase letters, digits and _", column)
                    continue
                type_name = spec.get("type") if isinstance(spec, dict) and set(spec) == {"type"} else spec
                if isinstance(type_name, str) and type_name in {t.value for t in ColumnType}:
                    columns.append(Column(column, ColumnType(type_name)))
                else:
                    problems.expected(where, f"a type among {', '.join(t.value for t in ColumnType)}", type_name)
        key = body.get("key", [])
        if isinstance(key, str):
            key = [key]
        if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
            problems.expected(f"{path}.key", "a column name or a list of column names", key)
            key = []
        for k in key:
            if columns and k not in {c.name for c in columns}:
                problems.expected(f"{path}.key", "columns of this table", k)
        max_rows = _positive_int(body, "max_rows", path, problems, DEFAULT_MAX_ROWS)
        max_bytes = _positive_int(body, "max_bytes", path, problems, DEFAULT_MAX_BYTES)
        # YAML mappings are unordered: columns are kept sorted by name, so key order never matters.
        columns.sort(key=lambda c: c.name)
        tables[qualified] = InputTable(party, table, tuple(columns), tuple(key), max_rows or 1, max_bytes or 1)
    return tables


def _computations(
    raw: Any, parties: Mapping[str, Party], party_names: set[str], tables: Mapping[str, InputTable], problems: Problems
) -> dict[str, Computation]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.expected("computations", "a mapping of name -> computation", raw)
        return {}
    computations: dict[str, Computation] = {}
    for name, body in raw.items():
        path = f"computations.{name}"
        if not _name(name, path, problems, "a computation name"):
            continue
        if not isinstance(body, dict):
            problems.expected(path, "a mapping with template or sql, and readers", body)
            continue
        _unknown(body, _COMPUTATION, path, problems)
        readers = body.get("readers")
        if not isinstance(readers, list) or not readers or not all(isinstance(r, str) for r in readers):
            problems.expected(f"{path}.readers", "a non-empty list of party names", readers)
            readers = []
        for i, reader in enumerate(readers):
            if reader not in party_names:
                problems.expected(
                    f"{path}.readers[{i}]", f"a declared party (one of: {', '.join(sorted(party_names))})", reader
                )
            elif reader in parties and not parties[reader].has(Role.READER):
                problems.add(f"{path}.readers[{i}]", f"party {reader!r} has no reader role")
        if len(set(readers)) != len(readers):
            problems.add(f"{path}.readers", "names a party more than once")
        min_group_size = _positive_int(body, "min_group_size", path, problems, None)
        max_output_rows = _positive_int(body, "max_output_rows", path, problems, None)
        description = body.get("description", "")
        if not isinstance(description, str):
            problems.expected(f"{path}.description", "text", description)
            description = ""
        _no_hidden(description, f"{path}.description", problems, allow="\n\t")
        template, sql = body.get("template"), body.get("sql")
        if (template is None) == (sql is None):
            problems.add(path, "needs exactly one of template or sql")
            continue
        before = len(problems.items)
        dp = _dp(body.get("dp"), f"{path}.dp", problems) if "dp" in body else None
        generated: templates.Generated | None
        if template is not None:
            if not isinstance(template, str) or template not in templates.TEMPLATES:
                problems.expected(f"{path}.template", f"one of {', '.join(templates.TEMPLATES)}", template)
                continue
            params = body.get("params")
            if not isinstance(params, dict):
                problems.expected(f"{path}.params", f"the parameters of template {template}", params)
                continue
            if template in ("psi", "psi_cardinality") and min_group_size is not None:
                problems.add(f"{path}.min_group_size", f"does not apply to {template} (its output has no groups)")
            if dp is not None:
                if template != "aggregate":
                    problems.add(
                        f"{path}.dp", f"differential privacy applies to the aggregate template, not {template}"
                    )
                    continue
                if min_group_size is not None:
                    problems.add(
                        f"{path}.min_group_size", "cannot be combined with dp: suppressing on true counts leaks"
                    )
                if not _dp_fits(dp, params, tables, f"{path}.dp", problems):
                    continue
                generated = templates.dp_aggregate(params, dp, f"{path}.params", tables, problems)
            else:
                generated = templates.TEMPLATES[template](params, f"{path}.params", tables, problems)
        else:
            if "params" in body:
                problems.add(f"{path}.params", "applies only to templates")
            if dp is not None:
                problems.add(f"{path}.dp", "differential privacy applies to the aggregate template, not to sql")
            if not isinstance(sql, str) or not sql.strip():
                problems.expected(f"{path}.sql", "a SELECT statement", sql)
                continue
            generated = templates.Generated({}, sql.strip(), ())
        if generated is None or len(problems.items) != before:
            continue
        # One engine, one set of checks: generated SQL is checked exactly as written SQL is.
        info = sql_check.check(
            generated.sql, tables, f"{path}.sql" if template is None else f"{path}.template", problems
        )
        if info is None:
            continue
        if not info.inputs:
            problems.add(f"{path}.sql", "reads none of the declared inputs")
            continue
        names = [c[0] for c in info.columns]
        if len(set(names)) != len(names):
            problems.add(f"{path}.sql", f"output columns must have distinct names, found {', '.join(names)}")
            continue
        if min_group_size is not None:
            size = dict(info.columns).get(templates.GROUP_SIZE_COLUMN)
            if size not in ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT"):
                problems.add(
                    f"{path}.min_group_size",
                    f"needs an integer output column {templates.GROUP_SIZE_COLUMN!r}: the number of input rows each "
                    "output row stands for, e.g. count(*) AS group_size",
                )
                continue
        computations[name] = Computation(
            name=name,
            template=template,
            params=generated.params,
            sql=generated.sql,
            inputs=info.inputs if template is None else generated.inputs,
            readers=tuple(readers),
            min_group_size=min_group_size,
            description=description,
            max_output_rows=max_output_rows,
            dp=dp,
            columns=info.columns,
            ordered=info.ordered,
        )
    return computations


def _number(value: Any) -> bool:
    """A finite int or float: not NaN or .inf, and no int too large to become a float (10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _dp(raw: Any, path: str, problems: Problems) -> dict[str, Any] | None:
    """``dp: {epsilon, delta, bounds, groups}`` in normalized form (checked against params later)."""
    if not isinstance(raw, dict):
        problems.expected(path, "a mapping with epsilon, bounds and groups", raw)
        return None
    _unknown(raw, _DP, path, problems)
    epsilon: Any = raw.get("epsilon")
    delta = raw.get("delta", 0)
    if not _number(epsilon) or not 0 < epsilon <= 10:
        problems.expected(f"{path}.epsilon", "a number in (0, 10]", epsilon)
    if delta != 0:
        problems.expected(f"{path}.delta", "0: releases use the Laplace mechanism (pure epsilon-DP)", delta)
    bounds = raw.get("bounds", {})
    if not isinstance(bounds, dict) or not all(
        isinstance(v, list) and len(v) == 2 and all(_number(x) for x in v) and v[0] < v[1] for v in bounds.values()
    ):
        problems.expected(f"{path}.bounds", "a mapping of column -> [low, high] with low < high", bounds)
        bounds = {}
    groups = raw.get("groups", {})
    if not isinstance(groups, dict) or not all(isinstance(v, list) and v for v in groups.values()):
        problems.expected(f"{path}.groups", "a mapping of group column -> the public list of its values", groups)
        groups = {}
    return {
        "epsilon": float(epsilon) if _number(epsilon) else 0.0,
        "delta": 0,
        "bounds": {str(k): [float(v[0]), float(v[1])] for k, v in sorted(bounds.items())},
        "groups": {str(k): list(v) for k, v in sorted(groups.items())},
    }


def _dp_fits(
    dp: dict[str, Any], params: dict[str, Any], tables: Mapping[str, InputTable], path: str, problems: Problems
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
        if column not in dp["bounds"]:
            problems.add(f"{path}.bounds", f"needs [low, high] for {column!r}, whose sum or mean is released")
    for column in sorted(set(dp["bounds"]) - summed):
        problems.add(f"{path}.bounds.{column}", "bounds a column that no sum or mean uses")
    group_by = params.get("group_by", [])
    group_by = [group_by] if isinstance(group_by, str) else group_by if isinstance(group_by, list) else []
    for column in group_by:
        values = dp["groups"].get(column)
        if values is None:
            problems.add(f"{path}.groups", f"needs the public list of values of group column {column!r}")
            continue
        inputs = [tables[t] for t in params.get("inputs", []) if isinstance(t, str) and t in tables]
        declared = next((t.column(column) for t in inputs if t.column(column)), None)
        if declared is None:
            continue
        for value in values:
            try:
                templates._literal(value, declared.type)
            except ValueError:
                problems.add(
                    f"{path}.groups.{column}",
                    f"{value!r} is not a {declared.type.value} value (only text, integer and boolean groups)",
                )
    for column in sorted(set(dp["groups"]) - set(group_by)):
        problems.add(f"{path}.groups.{column}", "lists values of a column that is not grouped by")
    return len(problems.items) == before


def _budget(raw: Any, problems: Problems) -> dict[str, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"epsilon"} or not _number(raw.get("epsilon")) or raw["epsilon"] <= 0:
        problems.expected("privacy_budget", "{epsilon: a positive number}", raw)
        return None
    return {"epsilon": float(raw["epsilon"])}


def from_data(raw: Any, *, source: str = "<manifest>", complete: bool = True) -> Manifest:
    """Validate parsed YAML. ``complete=False`` allows a draft (no computations, no inputs yet)."""
    problems = Problems()
    if not isinstance(raw, dict):
        raise ManifestError([f"expected a mapping at the top level, found {type(raw).__name__}"], source=source)
    _unknown(raw, _TOP, "", problems)
    version = raw.get("version")
    if version != SCHEMA_VERSION:
        problems.expected("version", f"{SCHEMA_VERSION} (this tool's manifest schema)", version)
    session = raw.get("session")
    if not isinstance(session, str) or not _SESSION_ID.fullmatch(session):
        problems.expected("session", "a session id: lowercase letters, digits, - and _, at most 64", session)
        session = ""
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.expected("description", "text", description)
        description = ""
    _no_hidden(description, "description", problems, allow="\n\t")
    raw_parties = raw.get("parties")
    parties = _parties(raw_parties, problems)
    party_names = {p for p in raw_parties if isinstance(p, str)} if isinstance(raw_parties, dict) else set()
    tables = _inputs(raw.get("inputs"), parties, party_names, problems)
    computations = _computations(raw.get("computations"), parties, party_names, tables, problems)
    budget = _budget(raw.get("privacy_budget"), problems)
    for computation in computations.values():
        if computation.dp is None:
            continue
        where = f"computations.{computation.name}.dp.epsilon"
        if budget is None:
            problems.add("privacy_budget", f"required: computation {computation.name} is differentially private")
        elif computation.dp["epsilon"] > budget["epsilon"]:
            problems.add(
                where, f"{computation.dp['epsilon']} exceeds the session's privacy_budget of {budget['epsilon']}"
            )
    if complete:
        if len(party_names) < 2:
            problems.add("parties", f"a session needs at least two parties, found {len(party_names)}")
        for party in parties.values():
            if party.has(Role.CONTRIBUTOR) and not any(t.party == party.name for t in tables.values()):
                problems.add(f"parties.{party.name}.roles", "contributor, but no input table of this party is declared")
        if not isinstance(raw.get("computations"), dict) or not raw.get("computations"):
            problems.add("computations", "a session needs at least one computation")
    if problems:
        raise ManifestError(problems.items, source=source)
    return Manifest(
        session=session,
        description=description,
        parties=parties,
        inputs=tables,
        computations=computations,
        privacy_budget=budget,
    )
