"""Release rules: small policy objects the enclave applies to a result before anything leaves it.

Each rule states what it checks (:meth:`describe`, which ``mpc session show`` prints) and applies
itself to a result (:meth:`apply`): it suppresses rows, or withholds the whole result with a
reason that carries no number derived from the data. A computation's :class:`ReleasePolicy`
holds all of its rules, in order:

1. :class:`MinDistinctUnits`, one per protected input of an aggregate release: every released
   row (group) must hold at least ``k`` distinct privacy units of that owner's table. The count is
   a helper column the enclave adds to the query itself (``oblv_mpc.manifest.naming``), never a
   column the agreed SQL computes, so another party's rows, duplicates or join fan-out cannot pad
   it.
2. The helper columns are dropped.
3. :class:`MaxOutputRows`: a result with more rows is withheld entirely.

How many groups were suppressed is told only if every owner whose threshold applied allows it
(``disclose_suppressed``); otherwise a result says nothing about it, not even zero.

Rules judge a result as Arrow record batches, one after another as the engine reads them (a large
result is never held as Python rows): thresholds and helper columns batch by batch, the row
limit on the rows released so far.

Templates generate SQL; these rules judge results; neither reaches into the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from oblv_mpc.manifest.naming import is_helper

if TYPE_CHECKING:  # Arrow is imported where rules are applied (in the enclave), not where a manifest is read
    import pyarrow as pa


class Withheld(Exception):
    """A rule withholds the whole result. ``reason`` carries no number derived from the data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Judged:
    """A batch of a result on its way out: its columns (name, DuckDB type), its rows, how many
    rows rules suppressed in it, and how many rows of the result were released before it."""

    columns: list[tuple[str, str]]
    batch: pa.RecordBatch
    suppressed: int = 0
    released_before: int = 0


class Rule(Protocol):
    """One release rule."""

    def describe(self) -> str:
        """What the rule checks, in plain words."""

    def apply(self, result: Judged) -> Judged:
        """The result with the rule applied, or :class:`Withheld`."""


@dataclass(frozen=True)
class MinDistinctUnits:
    """Every released group holds at least ``k`` distinct ``unit`` values of ``table``'s own rows."""

    table: str
    unit: str
    k: int
    column: str  # the helper column with the enclave's count for this table

    def describe(self) -> str:
        """The rule in plain words, naming the owner it protects."""
        owner = self.table.split(".", 1)[0]
        return (
            f"{owner}: every released group holds at least {self.k} distinct {self.unit} of {self.table} "
            "(counted by the enclave)"
        )

    def apply(self, result: Judged) -> Judged:
        """Keep the groups with at least ``k`` units (a null count keeps none); count the others as suppressed."""
        import pyarrow as pa  # here, not at the top: see the imports above
        import pyarrow.compute as pc

        index = [name for name, _ in result.columns].index(self.column)
        counts = result.batch.column(index)
        if pa.types.is_integer(counts.type):  # the enclave's own count(DISTINCT ...), always
            kept = result.batch.filter(pc.greater_equal(counts, self.k))  # a null count is dropped
        else:
            kept = result.batch.slice(0, 0)
        suppressed = result.suppressed + result.batch.num_rows - kept.num_rows
        return Judged(result.columns, kept, suppressed, result.released_before)


@dataclass(frozen=True)
class MaxOutputRows:
    """A result with more than ``limit`` rows is withheld entirely."""

    limit: int

    def describe(self) -> str:
        """The rule in plain words."""
        return f"a result with more than {self.limit} rows is withheld entirely"

    def apply(self, result: Judged) -> Judged:
        """The batch unchanged, or :class:`Withheld` when the result has too many rows with it."""
        if result.released_before + result.batch.num_rows > self.limit:
            raise Withheld(f"the result has more rows than max_output_rows ({self.limit}); nothing is released")
        return result


def _drop_helpers(result: Judged) -> Judged:
    keep = [i for i, (name, _) in enumerate(result.columns) if not is_helper(name)]
    if len(keep) == len(result.columns):
        return result
    batch = result.batch.select(keep)
    return Judged([result.columns[i] for i in keep], batch, result.suppressed, result.released_before)


@dataclass(frozen=True)
class Released:
    """A batch that may leave the enclave: its columns and rows, and how many rows rules suppressed from it."""

    columns: list[tuple[str, str]]
    batch: pa.RecordBatch
    suppressed: int


@dataclass(frozen=True)
class ReleasePolicy:
    """All release rules of one computation: thresholds, then helper columns dropped, then row limits."""

    thresholds: tuple[MinDistinctUnits, ...] = ()
    limits: tuple[MaxOutputRows, ...] = ()
    disclose_suppressed: bool = False

    @property
    def rules(self) -> Sequence[Rule]:
        """Every rule, in the order it applies."""
        return (*self.thresholds, *self.limits)

    def describe(self) -> list[str]:
        """Every rule in plain words."""
        lines = [rule.describe() for rule in self.rules]
        if self.thresholds:
            lines.append(
                "the result says how many groups were suppressed"
                if self.disclose_suppressed
                else "the result does not say how many groups were suppressed"
            )
        return lines

    def apply(self, columns: list[tuple[str, str]], batch: pa.RecordBatch, released_before: int = 0) -> Released:
        """Judge one batch of a result (``released_before`` rows of it were released already):
        suppressed rows gone, helper columns gone; or :class:`Withheld`."""
        result = Judged(columns, batch, 0, released_before)
        for threshold in self.thresholds:
            result = threshold.apply(result)
        result = _drop_helpers(result)
        for limit in self.limits:
            result = limit.apply(result)
        return Released(result.columns, result.batch, result.suppressed)

    def disclosed(self, suppressed: int) -> int | None:
        """How many groups the result may say were suppressed: None unless every owner allows it."""
        return suppressed if self.disclose_suppressed or not self.thresholds else None

    def canonical(self) -> dict[str, Any]:
        """The rules as plain data, attached to every signed result."""
        return {
            "min_distinct": [{"table": t.table, "unit": t.unit, "k": t.k} for t in self.thresholds],
            "max_output_rows": self.limits[0].limit if self.limits else None,
            "disclose_suppressed": self.disclose_suppressed,
        }
