"""The typed objects a validated session manifest parses into."""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from oblv_mpc import keys
from oblv_mpc.manifest.rules import ReleasePolicy
from oblv_mpc.manifest.specs import DpSpec, TemplateParams

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
        """The DuckDB type the column is stored as."""
        return _SQL_TYPES[self]

    @property
    def numeric(self) -> bool:
        """Whether the type holds numbers (integer or float)."""
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
        """The party's public key fingerprint."""
        return keys.fingerprint(self.public_key)

    def has(self, role: Role) -> bool:
        """Whether the party holds ``role``."""
        return role in self.roles


@dataclass(frozen=True)
class Column:
    """A typed column of an input table."""

    name: str
    type: ColumnType


class Release(enum.StrEnum):
    """How far an owner lets results derived from its table go."""

    PROTECTED = "protected"  # only what its protection rules allow
    UNRESTRICTED = "unrestricted"  # anything the agreed SQL computes: flagged loudly everywhere
    UNDECLARED = "undeclared"  # the owner said nothing: nothing derived from it may be released


AGGREGATE_FUNCTIONS = ("count", "sum", "avg", "min", "max")


@dataclass(frozen=True)
class Protection:
    """What an input's owner requires before anything derived from its rows leaves the enclave.

    Modelled on AWS Clean Rooms' aggregation analysis rule: ``unit`` is the privacy unit (a column
    of this table); every released group must hold at least ``min_distinct`` distinct units of
    this table, counted by the enclave itself; ``dimensions`` may be output, grouped by and
    filtered on; ``join_columns`` may be matched against other tables, never output;
    ``list_columns`` may be released value by value (a set intersection); ``aggregates`` names
    the functions allowed on each column (``count`` is always allowed); ``allow_dp`` lets a
    differentially private release (noise instead of the threshold) read the table;
    ``disclose_suppressed`` lets a result say how many groups the threshold withheld;
    ``allow_others_aggregates_in_joins`` lets a computation that joins this table sum, average or
    take the min or max of another party's columns (whose totals say which of this table's
    units matched: ``oblv_mpc.manifest.usage``).
    """

    release: Release = Release.UNDECLARED
    unit: str | None = None
    min_distinct: int = 1
    dimensions: frozenset[str] = frozenset()
    join_columns: frozenset[str] = frozenset()
    list_columns: frozenset[str] = frozenset()
    aggregates: Mapping[str, frozenset[str]] = field(default_factory=dict)
    allow_dp: bool = False
    disclose_suppressed: bool = False
    allow_others_aggregates_in_joins: bool = False

    def allows(self, function: str, column: str) -> bool:
        """Whether ``function(column)`` may be computed over this table's rows."""
        if self.release is Release.UNRESTRICTED:
            return True
        if function == "count":
            return True
        return function in self.aggregates.get(column, frozenset())

    def canonical(self) -> dict[str, Any]:
        """The rules as plain data, sets sorted (part of the manifest hash)."""
        if self.release is not Release.PROTECTED:
            return {"release": self.release.value}
        return {
            "release": self.release.value,
            "unit": self.unit,
            "min_distinct": self.min_distinct,
            "dimensions": sorted(self.dimensions),
            "join_columns": sorted(self.join_columns),
            "list_columns": sorted(self.list_columns),
            "aggregates": {c: sorted(f) for c, f in sorted(self.aggregates.items())},
            "allow_dp": self.allow_dp,
            "disclose_suppressed": self.disclose_suppressed,
            # Only when declared: a manifest without it hashes as before the field existed.
            **({"allow_others_aggregates_in_joins": True} if self.allow_others_aggregates_in_joins else {}),
        }

    def describe(self) -> list[str]:
        """The rules in plain words, one sentence each (``mpc session show``)."""
        if self.release is Release.UNRESTRICTED:
            return ["UNRESTRICTED: its owner lets any agreed computation release anything derived from its rows"]
        if self.release is Release.UNDECLARED:
            return ["no protection declared: no computation may release anything derived from its rows"]
        lines = [f"every released group holds at least {self.min_distinct} distinct {self.unit} of this table"]
        lines.append("may be grouped by: " + (", ".join(sorted(self.dimensions)) or "nothing"))
        if self.join_columns:
            lines.append("may be matched on (never shown): " + ", ".join(sorted(self.join_columns)))
        if self.list_columns:
            lines.append("values may be listed (set intersection): " + ", ".join(sorted(self.list_columns)))
        allowed = [f"{c}: {', '.join(sorted(f))}" for c, f in sorted(self.aggregates.items())]
        lines.append("aggregates allowed: count of anything" + ("; " + "; ".join(allowed) if allowed else ""))
        if self.join_columns:
            lines.append(
                "other parties' columns may be summed, averaged or their min/max taken over rows matched with it "
                "(such totals show which of its units matched)"
                if self.allow_others_aggregates_in_joins
                else "over rows matched with it, other parties' columns may be grouped by and counted, never summed, "
                "averaged or their min/max taken"
            )
        if self.allow_dp:
            lines.append("differentially private releases may read it (noise instead of the threshold)")
        lines.append(
            "results may say how many groups were suppressed"
            if self.disclose_suppressed
            else "results do not say how many groups were suppressed"
        )
        return lines


@dataclass(frozen=True)
class InputTable:
    """A table one party contributes, with its schema, limits and its owner's protection rules."""

    party: str
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    max_rows: int
    max_bytes: int
    protection: Protection = field(default_factory=Protection)

    @property
    def qualified(self) -> str:
        """``party.table``, as the manifest and the SQL name it."""
        return f"{self.party}.{self.table}"

    def column(self, name: str) -> Column | None:
        """The column named ``name``, if the table has one."""
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class SyntheticColumn:
    """One column of a synthetic release and its public domain, declared in the manifest.

    Exactly one of ``categories`` (the values a text, integer or boolean column may take) and
    ``bins`` (increasing edges for a number, date or timestamp column; dates as ISO text) is set.
    A binned column is released as the label of its bin: ``[e0, e1]`` for the first bin and
    ``(e_i, e_i+1]`` for the others (left-open, as OpenDP's cuts).
    """

    name: str
    type: ColumnType
    categories: tuple[str | int | bool, ...] | None = None
    bins: tuple[int | float | str, ...] | None = None

    @property
    def labels(self) -> tuple[str | int | bool, ...]:
        """The values this column may take in the release (besides null: missing or outside the domain)."""
        if self.categories is not None:
            return self.categories
        assert self.bins is not None
        edges = [_edge(e) for e in self.bins]
        return tuple(
            f"{'[' if i == 0 else '('}{low}, {high}]" for i, (low, high) in enumerate(itertools.pairwise(edges))
        )

    def canonical(self) -> dict[str, Any]:
        """The column's domain as plain data (part of the manifest hash)."""
        if self.categories is not None:
            return {"type": self.type.value, "categories": list(self.categories)}
        return {"type": self.type.value, "bins": list(self.bins or ())}


def _edge(value: int | float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


@dataclass(frozen=True)
class SyntheticSpec:
    """A differentially private synthetic table made from the pooled rows of ``inputs``.

    The enclave keeps at most ``max_rows_per_unit`` rows of each privacy unit of each input
    (``units``: the owner's unit column, or None for an unrestricted table, whose every row is a
    unit), maps every column onto its declared domain, and hands the rows to the synthesizer
    ``synthesizer`` at ``version``, which spends ``epsilon`` (pure DP: ``delta`` is 0) and yields
    exactly ``rows`` rows.
    """

    inputs: tuple[str, ...]
    columns: tuple[SyntheticColumn, ...]
    units: Mapping[str, str | None]
    max_rows_per_unit: int
    epsilon: float
    synthesizer: str
    version: str
    rows: int
    params: Mapping[str, Any] = field(default_factory=dict)
    delta: float = 0.0

    def describe(self) -> list[str]:
        """The release in plain words (``mpc session show``)."""
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        lines = [
            f"a differentially private synthetic table of {self.rows:,} rows by {self.synthesizer} {self.version}"
            + (f" ({params})" if params else "")
            + f", epsilon {self.epsilon:g} (pure DP)",
            f"each privacy unit of each input contributes at most {self.max_rows_per_unit} row(s), "
            "chosen at random by the enclave",
        ]
        for column in self.columns:
            kind = "categories" if column.categories is not None else "bins"
            values = ", ".join(str(v) for v in column.labels)
            lines.append(f"{column.name} ({kind}): {values}, or missing")
        return lines

    def canonical(self) -> dict[str, Any]:
        """The release as plain data (part of the manifest hash, attached to its signed result)."""
        return {
            "inputs": list(self.inputs),
            "columns": {c.name: c.canonical() for c in self.columns},
            "units": dict(sorted(self.units.items())),
            "max_rows_per_unit": self.max_rows_per_unit,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "synthesizer": {"name": self.synthesizer, "version": self.version, "params": _plain(self.params)},
            "rows": self.rows,
        }


@dataclass(frozen=True)
class Computation:
    """A computation every party agreed to: the exact SQL, who reads it, how its result is released."""

    name: str
    template: str | None  # None for a `sql:` computation
    params: TemplateParams | None  # None for a `sql:` computation (or a synthetic release)
    sql: str  # what every party agreed to (part of the hash)
    inputs: tuple[str, ...]  # qualified names of the tables it reads
    readers: tuple[str, ...]
    description: str = ""
    max_output_rows: int | None = None
    dp: DpSpec | None = None  # a differentially private aggregate's release parameters
    columns: tuple[tuple[str, str], ...] = ()  # output columns of the SQL, as DuckDB binds them
    ordered: bool = True  # whether the SQL orders its rows (else the enclave sorts them)
    run_sql: str = ""  # ``sql`` plus the enclave's own helper columns (per-owner unit counts)
    policy: ReleasePolicy = field(default_factory=ReleasePolicy)
    synthetic: SyntheticSpec | None = None  # a synthetic release instead of the SQL's rows

    @property
    def rules(self) -> dict[str, Any]:
        """The release rules, as attached to every signed result."""
        rules = {**self.policy.canonical(), "dp": self.dp.canonical() if self.dp else None}
        if self.synthetic is not None:
            rules["synthetic"] = self.synthetic.canonical()
        return rules

    @property
    def epsilon(self) -> float:
        """What the computation asks of the session's privacy budget (0: none)."""
        if self.synthetic is not None:
            return self.synthetic.epsilon
        return self.dp.epsilon if self.dp is not None else 0.0


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
                    "protection": t.protection.canonical(),
                }
                for t in self.inputs.values()
            },
            "computations": {
                c.name: {
                    "description": c.description,
                    "template": c.template,
                    "params": c.params.canonical() if c.params is not None else {},
                    "sql": c.sql,
                    "inputs": list(c.inputs),
                    "readers": sorted(c.readers),
                    "max_output_rows": c.max_output_rows,
                    "dp": c.dp.canonical() if c.dp else None,
                    # Only when present, so that the hash of every other manifest stays as it was.
                    **({"synthetic": c.synthetic.canonical()} if c.synthetic else {}),
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
        """The input tables ``party`` contributes."""
        return [t for t in self.inputs.values() if t.party == party]

    def readable_by(self, party: str) -> list[Computation]:
        """The computations whose results ``party`` may read."""
        return [c for c in self.computations.values() if party in c.readers]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
