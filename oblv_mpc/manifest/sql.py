"""Checking the SQL every party agrees to, with DuckDB's own parser and binder.

A computation's SQL (written in the manifest, or generated from a template) must be a single
read-only SELECT (CTEs allowed) that reads only the session's declared tables and columns, in
text a terminal shows as it is (no control or format characters but tab, line feed and CRLF):

1. ``extract_statements`` (DuckDB's parser) must find exactly one statement, of type SELECT;
   COPY, ATTACH, INSTALL/LOAD, PRAGMA, SET, DDL and DML are refused by name.
2. The parsed tree (``json_serialize_sql``) is walked: table functions (``read_csv``, ``range``,
   ``query`` ...), tables outside the declared ``party.table`` inputs (files, system schemas,
   other catalogs), and volatile or environment-reading functions are refused.
3. DuckDB binds the query against empty tables with exactly the declared schema, in a database
   with external access disabled: any undeclared column, or type error, is refused. Binding also
   yields the output columns (``min_group_size`` needs an integer ``group_size`` column).

Nothing here uses regular expressions on SQL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import InputTable
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
    """What checking found: the tables read, the output columns, whether rows are ordered."""

    inputs: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    ordered: bool


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

    from oblv_mpc.manifest.templates import quote

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
    import duckdb

    path = "sql"
    before = len(problems.items)
    connection = _empty_database(tables)
    try:
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
        tree = json.loads(raw[0]) if raw else {}
        if tree.get("error"):
            problems.add(path, f"not a plain SELECT: {tree.get('error_message', 'unsupported')}")
            return None
        ctes = _cte_names(tree)
        used: list[str] = []
        for node in _walk(tree.get("statements", [])):
            kind = node.get("type")
            if kind == "TABLE_FUNCTION":
                function = node.get("function", {}).get("function_name", "?")
                problems.add(path, f"table function {function}() is not allowed: read only the declared tables")
            elif kind == "BASE_TABLE":
                schema, name, catalog = (
                    node.get("schema_name", ""),
                    node.get("table_name", ""),
                    node.get("catalog_name", ""),
                )
                qualified = f"{schema}.{name}" if schema else name
                if catalog:
                    problems.add(path, f"table {catalog}.{qualified}: other catalogs are not allowed")
                elif not schema and name in ctes:
                    continue
                elif qualified not in tables:
                    problems.add(
                        path, f"undeclared table {qualified!r}: only the inputs {', '.join(sorted(tables))} may be read"
                    )
                elif qualified not in used:
                    used.append(qualified)
            elif kind == "FUNCTION" and node.get("function_name", "").lower() in FORBIDDEN_FUNCTIONS:
                problems.add(
                    path,
                    f"function {node['function_name']}() is not allowed: results must not depend on "
                    "the clock, chance or the environment",
                )
            elif kind == "FUNCTION" and node.get("schema", "") not in ("", "main"):
                problems.add(path, f"function {node.get('schema')}.{node.get('function_name')}() is not allowed")
        if len(problems.items) != before:
            return None
        try:
            described = connection.execute(f"DESCRIBE {sql}").fetchall()
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0].removeprefix("Binder Error: ")
            problems.add(path, f"does not bind to the declared tables (undeclared column or table?): {message}")
            return None
        top = tree["statements"][0]["node"]
        ordered = any(m.get("type") == "ORDER_MODIFIER" for m in top.get("modifiers", []))
        return SqlInfo(tuple(used), tuple((str(r[0]), str(r[1])) for r in described), ordered)
    finally:
        connection.close()
