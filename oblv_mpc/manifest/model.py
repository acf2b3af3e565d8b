"""The typed objects a validated session manifest parses into."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from oblv_mpc import keys

SCHEMA_VERSION = 1


class Role(enum.StrEnum):
    """What a party may do in a session."""

    CONTRIBUTOR = "contributor"  # uploads its own input tables
    READER = "reader"  # may be named as a reader of computations


class ColumnType(enum.StrEnum):
    """Column types of input tables, with the DuckDB type each becomes."""

    TEXT = "text"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"

    @property
    def sql(self) -> str:
        return _SQL_TYPES[self]

    @property
    def numeric(self) -> bool:
        return self in (ColumnType.INTEGER, ColumnType.FLOAT)


_SQL_TYPES = {
    ColumnType.TEXT: "VARCHAR",
    ColumnType.INTEGER: "BIGINT",
    ColumnType.FLOAT: "DOUBLE",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.DATE: "DATE",
    ColumnType.TIMESTAMP: "TIMESTAMP",
}


@dataclass(frozen=True)
class Party:
    """A party: its name, identity public key and roles."""

    name: str
    public_key: keys.PublicKey
    roles: frozenset[Role]

    @property
    def fingerprint(self) -> str:
        return keys.fingerprint(self.public_key)

    def has(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Column:
    """A typed column of an input table."""

    name: str
    type: ColumnType


@dataclass(frozen=True)
class InputTable:
    """A table one party contributes, with its schema and limits."""

    party: str
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    max_rows: int
    max_bytes: int

    @property
    def qualified(self) -> str:
        """``party.table``, as the manifest and the SQL name it."""
        return f"{self.party}.{self.table}"

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Computation:
    """A computation every party agreed to: the exact SQL it runs, who reads it, release rules."""

    name: str
    template: str | None  # None for a `sql:` computation
    params: Mapping[str, Any]
    sql: str
    inputs: tuple[str, ...]  # qualified names of the tables it reads
    readers: tuple[str, ...]
    min_group_size: int | None
    description: str = ""
    max_output_rows: int | None = None
    dp: Mapping[str, Any] | None = None  # {epsilon, delta, bounds, groups}, normalized
    columns: tuple[tuple[str, str], ...] = ()  # output columns of the SQL, as DuckDB binds them
    ordered: bool = True  # whether the SQL orders its rows (else the enclave sorts them)

    @property
    def rules(self) -> dict[str, Any]:
        """The release rules, as attached to every signed result."""
        return {
            "min_group_size": self.min_group_size,
            "max_output_rows": self.max_output_rows,
            "dp": _plain(self.dp) if self.dp else None,
        }


@dataclass(frozen=True)
class Manifest:
    """A validated session manifest. Make it with :func:`oblv_mpc.manifest.load` or ``parse``."""

    session: str
    description: str
    parties: Mapping[str, Party]
    inputs: Mapping[str, InputTable]
    computations: Mapping[str, Computation]
    version: int = SCHEMA_VERSION
    privacy_budget: Mapping[str, float] | None = None  # {epsilon}: what all DP releases may spend
    _hash: str = field(default="", compare=False, repr=False)

    def canonical(self) -> dict[str, Any]:
        """The manifest's meaning as plain data, every default filled in, sets sorted."""
        return {
            "version": self.version,
            "session": self.session,
            "description": self.description,
            "privacy_budget": _plain(self.privacy_budget) if self.privacy_budget else None,
            "parties": {
                p.name: {"public_key": keys.spki_der(p.public_key), "roles": sorted(r.value for r in p.roles)}
                for p in self.parties.values()
            },
            "inputs": {
                t.qualified: {
                    "columns": [[c.name, c.type.value] for c in t.columns],
                    "key": list(t.key),
                    "max_rows": t.max_rows,
                    "max_bytes": t.max_bytes,
                }
                for t in self.inputs.values()
            },
            "computations": {
                c.name: {
                    "description": c.description,
                    "template": c.template,
                    "params": _plain(c.params),
                    "sql": c.sql,
                    "inputs": list(c.inputs),
                    "readers": sorted(c.readers),
                    "min_group_size": c.min_group_size,
                    "max_output_rows": c.max_output_rows,
                    "dp": _plain(c.dp) if c.dp else None,
                }
                for c in self.computations.values()
            },
        }

    def canonical_bytes(self) -> bytes:
        """Deterministic CBOR (RFC 8949 section 4.2.1) of :meth:`canonical`."""
        return cbor2.dumps(self.canonical(), canonical=True)

    @property
    def hash(self) -> str:
        """SHA-256 of :meth:`canonical_bytes`, hex: what every party and the enclave agree on."""
        if not self._hash:
            object.__setattr__(self, "_hash", hashlib.sha256(self.canonical_bytes()).hexdigest())
        return self._hash

    def party_for_key(self, public_key: keys.PublicKey) -> Party | None:
        """The party whose identity key is ``public_key``, if any."""
        wanted = keys.spki_der(public_key)
        return next((p for p in self.parties.values() if keys.spki_der(p.public_key) == wanted), None)

    def inputs_of(self, party: str) -> list[InputTable]:
        return [t for t in self.inputs.values() if t.party == party]

    def readable_by(self, party: str) -> list[Computation]:
        return [c for c in self.computations.values() if party in c.readers]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
