"""YAML text -> validated :class:`Manifest`, every problem reported with its field path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from oblv_mpc import keys, safe_yaml
from oblv_mpc.errors import KeyFileError, ManifestError
from oblv_mpc.manifest import _computations, _fields, _protection
from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.model import (
    SCHEMA_VERSION,
    Column,
    ColumnType,
    InputTable,
    Manifest,
    Party,
    Role,
)

MAX_MANIFEST_BYTES = 1024 * 1024
DEFAULT_MAX_ROWS = 10_000_000
DEFAULT_MAX_BYTES = 1024**3

# Caps on manifest YAML, checked while it is composed, before any object is built (safe_yaml.py).
# A real manifest is a few hundred values, 6 levels deep; at the node cap, parsing takes ~0.4 s.
YAML_LIMITS = safe_yaml.YamlLimits(
    max_bytes=MAX_MANIFEST_BYTES,  # UTF-8 bytes
    max_depth=32,  # nested nodes, root to deepest value
    max_nodes=20_000,  # scalars, sequences and mappings, keys included
)

# Used with fullmatch: `$` would also match before a trailing newline ("alice\n").
_SESSION_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

_TOP = {"version", "session", "description", "parties", "inputs", "computations", "privacy_budget"}
_PARTY = {"public_key", "roles"}
_INPUT = {"columns", "key", "max_rows", "max_bytes", "protection"}


def load_yaml(text: str, *, source: str) -> Any:
    """Parse manifest YAML within :data:`YAML_LIMITS`: no aliases, anchors, tags or duplicate keys."""
    try:
        return safe_yaml.load(text, YAML_LIMITS)
    except safe_yaml.UnsafeYaml as exc:
        raise ManifestError([str(exc)], source=source) from None


def _parties(raw: Any, problems: Problems) -> dict[str, Party]:
    if not isinstance(raw, dict):
        problems.expected("parties", "a mapping of party name -> {public_key, roles}", raw)
        return {}
    parties: dict[str, Party] = {}
    fingerprints: dict[str, str] = {}
    for name, body in raw.items():
        path = f"parties.{name}"
        if not _fields.name(name, path, problems, "a party name"):
            continue
        if not isinstance(body, dict):
            problems.expected(path, "a mapping with public_key and roles", body)
            continue
        _fields.unknown(body, _PARTY, path, problems)
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
        named = _input_name(qualified, path, parties, party_names, problems)
        if named is None:
            continue
        if not isinstance(body, dict):
            problems.expected(path, "a mapping with columns", body)
            continue
        _fields.unknown(body, _INPUT, path, problems)
        columns = _columns(body.get("columns"), path, problems)
        key = _key(body.get("key", []), columns, path, problems)
        max_rows = _fields.positive_int(body, "max_rows", path, problems, DEFAULT_MAX_ROWS)
        max_bytes = _fields.positive_int(body, "max_bytes", path, problems, DEFAULT_MAX_BYTES)
        # YAML mappings are unordered: columns are kept sorted by name, so key order never matters.
        columns.sort(key=lambda c: c.name)
        protection = _protection.parse(
            body.get("protection"), {c.name: c for c in columns}, f"{path}.protection", problems
        )
        if not columns:
            continue  # reported above; a table without columns cannot be checked against any SQL
        party, table = named
        tables[qualified] = InputTable(
            party, table, tuple(columns), tuple(key), max_rows or 1, max_bytes or 1, protection
        )
    return tables


def _input_name(
    qualified: Any, path: str, parties: Mapping[str, Party], party_names: set[str], problems: Problems
) -> tuple[str, str] | None:
    """``party.table`` split, or None when it is no such name; a party that cannot contribute is a problem."""
    if not isinstance(qualified, str) or qualified.count(".") != 1:
        problems.expected(path, "an input named party.table", qualified)
        return None
    party, table = qualified.split(".")
    if not (
        _fields.name(party, path, problems, "a party name") and _fields.name(table, path, problems, "a table name")
    ):
        return None
    if party not in party_names:
        problems.expected(path, f"a table of a declared party (one of: {', '.join(sorted(party_names))})", party)
    elif party in parties and not parties[party].has(Role.CONTRIBUTOR):
        problems.add(path, f"party {party!r} has no contributor role, so it cannot provide a table")
    return party, table


def _columns(raw_columns: Any, path: str, problems: Problems) -> list[Column]:
    """An input's columns: name -> type (or ``{type: ...}``), each name and type checked."""
    columns: list[Column] = []
    if not isinstance(raw_columns, dict) or not raw_columns:
        problems.expected(f"{path}.columns", "a mapping of column name -> type", raw_columns)
        return columns
    for column, spec in raw_columns.items():
        where = f"{path}.columns.{column}"
        if not _fields.column_name(column, where, problems):
            continue
        type_name = spec.get("type") if isinstance(spec, dict) and set(spec) == {"type"} else spec
        if isinstance(type_name, str) and type_name in {t.value for t in ColumnType}:
            columns.append(Column(column, ColumnType(type_name)))
        else:
            problems.expected(where, f"a type among {', '.join(t.value for t in ColumnType)}", type_name)
    return columns


def _key(key: Any, columns: list[Column], path: str, problems: Problems) -> list[str]:
    """An input's key: a column name or a list of them, each a column of the table."""
    if isinstance(key, str):
        key = [key]
    if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
        problems.expected(f"{path}.key", "a column name or a list of column names", key)
        return []
    for k in key:
        if columns and k not in {c.name for c in columns}:
            problems.expected(f"{path}.key", "columns of this table", k)
    return key


def from_data(raw: Any, *, source: str = "<manifest>", complete: bool = True) -> Manifest:
    """Validate parsed YAML. ``complete=False`` allows a draft (no computations, no inputs yet)."""
    problems = Problems()
    if not isinstance(raw, dict):
        raise ManifestError([f"expected a mapping at the top level, found {type(raw).__name__}"], source=source)
    _fields.unknown(raw, _TOP, "", problems)
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
    _fields.no_hidden(description, "description", problems, allow="\n\t")
    raw_parties = raw.get("parties")
    parties = _parties(raw_parties, problems)
    party_names = {p for p in raw_parties if isinstance(p, str)} if isinstance(raw_parties, dict) else set()
    tables = _inputs(raw.get("inputs"), parties, party_names, problems)
    computations = _computations.parse(raw.get("computations"), parties, party_names, tables, problems)
    budget = _computations.budget(raw.get("privacy_budget"), computations, problems)
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
