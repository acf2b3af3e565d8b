"""Checking the SQL every party agrees to, with DuckDB's own parser and binder.

A computation's SQL (written in the manifest, or generated from a template) must be a single
read-only SELECT (CTEs allowed) that reads only the session's declared tables and columns, in
text a terminal shows as it is (no control or format characters but tab, line feed and CRLF):

1. ``extract_statements`` (DuckDB's parser) must find exactly one statement, of type SELECT;
   COPY, ATTACH, INSTALL/LOAD, PRAGMA, SET, DDL and DML are refused by name.
2. The parsed tree (``json_serialize_sql``) is walked: table functions (``read_csv``, ``range``,
   ``query`` ...), tables outside the declared ``party.table`` inputs (files, system schemas,
   other catalogs), sampling (``USING SAMPLE``, ``TABLESAMPLE``), the clock keywords
   (``current_date``, ``localtimestamp`` ...) and every function whose value depends on the
   clock, chance, the session or the environment are refused: our own list, plus every function
   DuckDB itself does not mark consistent (``duckdb_functions().stability``).
3. DuckDB binds the query against empty tables with exactly the declared schema, in a database
   with external access disabled: any undeclared column, or type error, is refused. Binding also
   yields the output columns, whose types must be ones a signed result can carry (no INTERVAL,
   STRUCT, LIST, MAP, BLOB ...), and whose names may not take the enclave's ``__mpc`` prefix.

Nothing here uses regular expressions on SQL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import InputTable
from oblv_mpc.manifest.naming import HELPER_PREFIX, quote
from oblv_mpc.terminal_text import find_hidden

# Functions whose value depends on the environment, the clock or chance: results would not be
# reproducible, and some read configuration. Table functions are refused as a class.
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "random",
        "setseed",
        "uuid",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "nextval",
        "currval",
        "now",
        "current_timestamp",
        "current_date",
        "current_time",
        "get_current_time",
        "get_current_timestamp",
        "transaction_timestamp",
        "today",
        "current_localtime",
        "current_localtimestamp",
        "txid_current",
        "sleep_ms",
        "error",
        "write_log",
    }
)
# Spelled without parentheses these parse as column references, which DuckDB binds to the clock
# or the session when no column has the name (so no declared column may take one of them).
CLOCK_KEYWORDS = frozenset(
    {
        "current_date",
        "current_time",
        "current_timestamp",
        "localtime",
        "localtimestamp",
        "current_user",
        "current_role",
        "session_user",
        "user",
        "current_catalog",
        "current_schema",
    }
)
# Output types a signed result carries faithfully (CBOR integers, floats, text; dates and
# decimals as text). Anything else is refused at validation, never a failure after inputs froze.
_OUTPUT_TYPES = frozenset(
    {
        "BOOLEAN",
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "DOUBLE",
        "VARCHAR",
        "DATE",
        "TIME",
        "TIMESTAMP",
        '"NULL"',
    }
)
_STATEMENT_NAMES = {
    "COPY": "COPY (reads or writes files)",
    "ATTACH": "ATTACH (opens another database)",
    "DETACH": "DETACH",
    "LOAD": "INSTALL/LOAD (extensions)",
    "PRAGMA": "PRAGMA",
    "SET": "SET (configuration)",
    "VARIABLE_SET": "SET VARIABLE",
    "CREATE": "CREATE (DDL)",
    "DROP": "DROP (DDL)",
    "ALTER": "ALTER (DDL)",
    "INSERT": "INSERT (DML)",
    "UPDATE": "UPDATE (DML)",
    "DELETE": "DELETE (DML)",
    "EXPORT": "EXPORT DATABASE (writes files)",
    "CALL": "CALL",
}


@dataclass(frozen=True)
class SqlInfo:
    """What checking found: the tables read, the output columns, whether rows are ordered, the tree."""

    inputs: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    ordered: bool
    tree: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)


def _output_type_ok(name: str) -> bool:
    return name in _OUTPUT_TYPES or (name.startswith("DECIMAL(") and name.endswith(")"))


@functools.lru_cache(maxsize=1)
def _inconsistent_functions() -> frozenset[str]:
    """Functions DuckDB itself says may differ between calls or queries (no consistent overload)."""
    import duckdb

    connection = duckdb.connect(":memory:", config={"enable_external_access": False})
    try:
        rows = connection.execute(
            "SELECT function_name FROM duckdb_functions() GROUP BY function_name "
            "HAVING bool_and(stability IN ('VOLATILE', 'CONSISTENT_WITHIN_QUERY'))"
        ).fetchall()
    finally:
        connection.close()
    return frozenset(str(r[0]).lower() for r in rows)


class Renderer:
    """DuckDB's own SQL <-> parse tree conversion, for the enclave's edits of agreed SQL."""

    def __init__(self, tables: Mapping[str, InputTable]) -> None:
        self._connection = _empty_database(tables)

    def serialize(self, sql: str) -> str:
        """DuckDB's JSON parse tree of ``sql``."""
        row = self._connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        return str(row[0]) if row else "{}"

    def deserialize(self, tree: str) -> str:
        """The SQL text of a JSON parse tree."""
        row = self._connection.execute("SELECT json_deserialize_sql(?::JSON)", [tree]).fetchone()
        return str(row[0]) if row else ""

    def describe(self, sql: str) -> tuple[tuple[str, str], ...]:
        """The result columns of ``sql``: name and DuckDB type, in order."""
        return tuple((str(r[0]), str(r[1])) for r in self._connection.execute(f"DESCRIBE {sql}").fetchall())

    def close(self) -> None:
        """Close the empty database."""
        self._connection.close()


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _cte_names(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in _walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            names.update(entry["key"] for entry in cte_map.get("map", []) if isinstance(entry, dict))
    return names


def _empty_database(tables: Mapping[str, InputTable]) -> Any:
    import duckdb  # loaded only when a manifest is checked

    from oblv_mpc.manifest.naming import quote

    connection = duckdb.connect(":memory:", config={"enable_external_access": False})
    for table in tables.values():
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.party)}")
        columns = ", ".join(f"{quote(c.name)} {c.type.sql}" for c in table.columns)
        connection.execute(f"CREATE TABLE {quote(table.party)}.{quote(table.table)} ({columns})")
    connection.execute("SET lock_configuration = true")
    return connection


def check(sql: str, tables: Mapping[str, InputTable], path: str, problems: Problems) -> SqlInfo | None:
    """Check ``sql`` against the declared ``tables``; add each problem found at ``path``."""
    # 0. Text a terminal acts on (ESC [2K erases a line, a lone CR overwrites it, U+202E reverses
    #    it) could hide part of the agreed SQL from whoever reviews it; the hash would cover it.
    hidden = find_hidden(sql, allow="\t\n", allow_crlf=True)
    if hidden is not None:
        problems.add(
            path,
            f"contains {hidden.describe()}, which a terminal acts on instead of showing, so it could hide part of "
            "the SQL from whoever reviews it; remove it (tabs, line feeds and CRLF line ends are fine)",
        )
        return None
    signature = tuple(sorted((t.qualified, t.columns) for t in tables.values()))
    info, messages = _check_cached(sql, signature, _Tables(tables))
    for message in messages:
        problems.add(path, message)
    return info


class _Tables:
    """The declared tables, carried past the cache key (their signature is the key)."""

    def __init__(self, tables: Mapping[str, InputTable]) -> None:
        self.tables = tables

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Tables)


@functools.lru_cache(maxsize=256)
def _check_cached(sql: str, signature: tuple[Any, ...], holder: _Tables) -> tuple[SqlInfo | None, tuple[str, ...]]:
    problems = Problems()
    info = _check(sql, holder.tables, problems)
    return info, tuple(item.split(": ", 1)[1] for item in problems.items)


def _check(sql: str, tables: Mapping[str, InputTable], problems: Problems) -> SqlInfo | None:
    """Every check of one computation's SQL, in stages; each stage runs only if those before it passed."""
    path = "sql"
    before = len(problems.items)
    connection = _empty_database(tables)
    try:
        tree = _select_tree(connection, sql, path, problems)
        if tree is None:
            return None
        ctes = _cte_names(tree)
        _check_cte_names(connection, ctes, path, problems)
        if len(problems.items) != before:
            return None
        used = _check_nodes(tree, tables, ctes, path, problems)
        if len(problems.items) != before:
            return None
        columns = _output_columns(connection, sql, path, problems)
        if columns is None or len(problems.items) != before:
            return None
        top = tree["statements"][0]["node"]
        ordered = any(m.get("type") == "ORDER_MODIFIER" for m in top.get("modifiers", []))
        return SqlInfo(tuple(used), columns, ordered, tree)
    finally:
        connection.close()


def _select_tree(connection: Any, sql: str, path: str, problems: Problems) -> dict[str, Any] | None:
    """DuckDB's parse tree of ``sql`` if it is exactly one plain SELECT; else the problem is added."""
    import duckdb

    try:
        statements = connection.extract_statements(sql)
    except duckdb.Error as exc:
        problems.add(path, f"not valid SQL: {str(exc).splitlines()[0]}")
        return None
    if len(statements) != 1:
        problems.add(path, f"must be exactly one statement, found {len(statements)}")
        return None
    kind = statements[0].type.name
    if kind != "SELECT":
        problems.add(path, f"{_STATEMENT_NAMES.get(kind, kind)} is not allowed: only a single read-only SELECT")
        return None
    raw = connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree: dict[str, Any] = json.loads(raw[0]) if raw else {}
    if tree.get("error"):
        problems.add(path, f"not a plain SELECT: {tree.get('error_message', 'unsupported')}")
        return None
    return tree


def _check_cte_names(connection: Any, ctes: set[str], path: str, problems: Problems) -> None:
    import duckdb

    for cte in sorted(ctes):
        # A reference outside a CTE's scope would read the catalog object of that name (say
        # duckdb_views, which lists every party's data): a CTE may not take such a name.
        try:
            connection.execute(f"DESCRIBE SELECT * FROM {quote(cte)}")
        except duckdb.Error:
            continue
        problems.add(path, f"CTE name {cte!r} is the name of a built-in table; choose another")


def _check_nodes(
    tree: dict[str, Any], tables: Mapping[str, InputTable], ctes: set[str], path: str, problems: Problems
) -> list[str]:
    """Check every node of the tree; returns the declared tables it reads, in order of first use."""
    used: list[str] = []
    forbidden = FORBIDDEN_FUNCTIONS | _inconsistent_functions()
    for node in _walk(tree.get("statements", [])):
        if node.get("sample") is not None:
            problems.add(path, "USING SAMPLE / TABLESAMPLE is not allowed: results must not depend on chance")
        problem = _node_problem(node, tables, ctes, forbidden, used)
        if problem is not None:
            problems.add(path, problem)
    return used


def _node_problem(
    node: dict[str, Any], tables: Mapping[str, InputTable], ctes: set[str], forbidden: frozenset[str], used: list[str]
) -> str | None:
    """What is wrong with one node of the tree, if anything; a declared table it reads goes into ``used``."""
    kind = node.get("type")
    names = [str(n).lower() for n in node.get("column_names", [])] if kind == "COLUMN_REF" else []
    if len(names) == 1 and names[0] in CLOCK_KEYWORDS:
        return f"{node['column_names'][0]} is not allowed: results must not depend on the clock or the session"
    if kind == "TABLE_FUNCTION":
        function = node.get("function", {}).get("function_name", "?")
        return f"table function {function}() is not allowed: read only the declared tables"
    if kind == "BASE_TABLE":
        return _table_problem(node, tables, ctes, used)
    if kind == "FUNCTION" and node.get("function_name", "").lower() in forbidden:
        return (
            f"function {node['function_name']}() is not allowed: results must not depend on "
            "the clock, chance or the environment"
        )
    if kind == "FUNCTION" and node.get("schema", "") not in ("", "main"):
        return f"function {node.get('schema')}.{node.get('function_name')}() is not allowed"
    return None


def _table_problem(
    node: dict[str, Any], tables: Mapping[str, InputTable], ctes: set[str], used: list[str]
) -> str | None:
    """A table reference may name a CTE or a declared input, nothing else."""
    schema, name, catalog = node.get("schema_name", ""), node.get("table_name", ""), node.get("catalog_name", "")
    qualified = f"{schema}.{name}" if schema else name
    if catalog:
        return f"table {catalog}.{qualified}: other catalogs are not allowed"
    if not schema and name in ctes:
        return None
    if qualified not in tables:
        if not tables:
            return f"undeclared table {qualified!r}: the manifest declares no input yet (mpc session add-input)"
        return f"undeclared table {qualified!r}: only the inputs {', '.join(sorted(tables))} may be read"
    if qualified not in used:
        used.append(qualified)
    return None


def _output_columns(connection: Any, sql: str, path: str, problems: Problems) -> tuple[tuple[str, str], ...] | None:
    """The result's columns (name, DuckDB type) if the SQL binds; each one a result can carry."""
    import duckdb

    try:
        described = connection.execute(f"DESCRIBE {sql}").fetchall()
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0].removeprefix("Binder Error: ")
        problems.add(path, f"does not bind to the declared tables (undeclared column or table?): {message}")
        return None
    columns = tuple((str(r[0]), str(r[1])) for r in described)
    for name, kind in columns:
        if not _output_type_ok(kind):
            problems.add(
                path,
                f"output column {name!r} has type {kind}, which a result cannot carry: cast it to text or a "
                "number (allowed: integers, floats, decimals, text, boolean, date, time, timestamp)",
            )
        if name.startswith(HELPER_PREFIX):
            problems.add(path, f"output column {name!r}: names starting with {HELPER_PREFIX} are the enclave's")
    return columns
