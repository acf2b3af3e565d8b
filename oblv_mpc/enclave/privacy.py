"""Differentially private release of an ``aggregate``: Laplace noise from OpenDP.

The template's SQL (``templates.dp_aggregate``) yields, per public group, the raw statistics:
counts, sums of values clamped to their declared bounds, and for each mean its clamped sum and
its count, plus ``group_size``. Each of the k statistics of a group gets an equal share
epsilon/k of the computation's epsilon, and Laplace noise of scale sensitivity / (epsilon/k):
sensitivity 1 for a count, max(|low|, |high|) for a clamped sum (one row added or removed).
Groups are disjoint (the manifest refuses a public group listed twice, whose copies would be
noised independently and could be averaged), so by parallel composition a release costs what
one group's statistics cost together: by basic composition, the sum of the privacy losses
OpenDP computes for each statistic's mechanism (:func:`cost`), which must not exceed the
computation's epsilon; that sum is what the session's budget is charged. Means are then noisy
sum / max(noisy count, 1), and counts are rounded: post-processing, which costs nothing.

OpenDP samples from the operating system's CSPRNG; it cannot be seeded, by design.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oblv_mpc.manifest import Computation
from oblv_mpc.manifest.specs import GroupedParams
from oblv_mpc.manifest.templates import COUNT_SUFFIX, GROUP_SIZE_COLUMN, SUM_SUFFIX

Noise = Callable[[float, float], float]  # (value, scale) -> noisy value


@functools.lru_cache(maxsize=1)
def _opendp() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")  # OpenDP's Laplace mechanism is in its contrib set
    return dp


def laplace(value: float, scale: float) -> float:
    """``value`` plus Laplace noise of ``scale``, from OpenDP."""
    mechanism = _mechanism(scale)
    return float(mechanism(float(value)))


@functools.lru_cache(maxsize=64)
def _mechanism(scale: float) -> Any:
    dp = _opendp()
    return dp.m.make_laplace(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=scale)


def privacy_loss(sensitivity: float, scale: float) -> float:
    """The epsilon OpenDP assigns to a Laplace release of ``scale`` at ``sensitivity``."""
    return float(_mechanism(scale).map(float(sensitivity)))


@dataclass(frozen=True)
class Statistic:
    """One noisy statistic per group: its column, its sensitivity and its noise scale."""

    column: str
    sensitivity: float
    scale: float


def plan(computation: Computation) -> list[Statistic]:
    """The statistics the release adds noise to, each with its share of epsilon."""
    assert computation.dp is not None
    assert isinstance(computation.params, GroupedParams)
    bounds = computation.dp.bounds
    statistics: list[tuple[str, float]] = []
    for out, aggregate in computation.params.aggregates.items():
        function, column = aggregate.function, aggregate.column
        if function == "count":
            statistics.append((out, 1.0))
            continue
        low, high = bounds[column]
        sensitivity = max(abs(low), abs(high))
        if function == "sum":
            statistics.append((out, sensitivity))
        else:
            statistics += [(out + SUM_SUFFIX, sensitivity), (out + COUNT_SUFFIX, 1.0)]
    statistics.append((GROUP_SIZE_COLUMN, 1.0))
    share = computation.dp.epsilon / len(statistics)
    plans = [Statistic(column, sensitivity, sensitivity / share) for column, sensitivity in statistics]
    for statistic in plans:
        # OpenDP's own accounting must agree with the share (up to its conservative rounding).
        if privacy_loss(statistic.sensitivity, statistic.scale) > share * (1 + 1e-9):
            raise RuntimeError(f"OpenDP accounts more than epsilon/k for {statistic.column}")
    return plans


def cost(computation: Computation) -> float:
    """The epsilon a release of ``computation`` spends: OpenDP's losses of its statistics, composed."""
    return sum(privacy_loss(s.sensitivity, s.scale) for s in plan(computation))


def release(
    computation: Computation, columns: list[tuple[str, str]], rows: list[list[Any]], noise: Noise = laplace
) -> tuple[list[tuple[str, str]], list[list[Any]], dict[str, Any]]:
    """Noisy statistics, derived means, helper columns dropped; and what was applied."""
    statistics = plan(computation)
    index = {name: i for i, (name, _) in enumerate(columns)}
    assert isinstance(computation.params, GroupedParams)
    group_by = computation.params.group_by
    noisy_rows = []
    for row in rows:
        noisy = {s.column: noise(float(row[index[s.column]] or 0), s.scale) for s in statistics}
        out: list[Any] = [row[index[g]] for g in group_by]
        for name, aggregate in computation.params.aggregates.items():
            function = aggregate.function
            if function == "avg":
                out.append(noisy[name + SUM_SUFFIX] / max(noisy[name + COUNT_SUFFIX], 1.0))
            elif function == "count":
                out.append(max(round(noisy[name]), 0))
            else:
                out.append(noisy[name])
        out.append(max(round(noisy[GROUP_SIZE_COLUMN]), 0))
        noisy_rows.append(out)
    kinds = {name: aggregate.function for name, aggregate in computation.params.aggregates.items()}
    released = [(g, dict(columns)[g]) for g in group_by]
    released += [(name, "BIGINT" if kind == "count" else "DOUBLE") for name, kind in kinds.items()]
    released.append((GROUP_SIZE_COLUMN, "BIGINT"))
    assert computation.dp is not None
    applied = {
        "mechanism": "laplace (OpenDP)",
        "epsilon": computation.dp.epsilon,
        "charged_epsilon": cost(computation),
        "scales": {s.column: s.scale for s in statistics},
    }
    return released, noisy_rows, applied
