"""Typed parameters of computations: a template's normalized parameters, and a ``dp:`` release.

The manifest parser makes these from YAML once; templates, the enclave's privacy code and the
CLI read their fields, never dictionaries. ``canonical()`` gives the plain data the manifest's
hash covers (the same shapes the YAML has).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Aggregate:
    """One output of a grouped template: ``function`` over ``column`` (``*`` with count)."""

    function: str
    column: str


@dataclass(frozen=True)
class PsiParams:
    """``psi`` and ``psi_cardinality``: the inputs and, for each, the column matched."""

    inputs: tuple[str, ...]
    column: Mapping[str, str]  # input (party.table) -> its column

    def canonical(self) -> dict[str, Any]:
        """The parameters as plain data (part of the manifest hash)."""
        return {"inputs": list(self.inputs), "column": dict(self.column)}


@dataclass(frozen=True)
class GroupedParams:
    """``aggregate`` and ``join_aggregate``: inputs, grouping columns, aggregates, the join key."""

    inputs: tuple[str, ...]
    group_by: tuple[str, ...] = ()
    aggregates: Mapping[str, Aggregate] = field(default_factory=dict)  # output name -> aggregate, sorted
    join_on: str | None = None

    def canonical(self) -> dict[str, Any]:
        """The parameters as plain data (part of the manifest hash)."""
        data: dict[str, Any] = {
            "inputs": list(self.inputs),
            "group_by": list(self.group_by),
            "aggregates": {out: {a.function: a.column} for out, a in self.aggregates.items()},
        }
        if self.join_on is not None:
            data["join_on"] = self.join_on
        return data


TemplateParams = PsiParams | GroupedParams


@dataclass(frozen=True)
class DpSpec:
    """``dp:`` of an aggregate: epsilon, the clamping bounds of summed columns, the public groups."""

    epsilon: float
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # column -> (low, high), sorted
    groups: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # group column -> its public values
    delta: float = 0.0  # Laplace: pure epsilon-DP

    def canonical(self) -> dict[str, Any]:
        """The release's parameters as plain data (part of the manifest hash and of signed results)."""
        return {
            "epsilon": self.epsilon,
            "delta": 0 if self.delta == 0 else self.delta,
            "bounds": {column: [low, high] for column, (low, high) in self.bounds.items()},
            "groups": {column: list(values) for column, values in self.groups.items()},
        }
