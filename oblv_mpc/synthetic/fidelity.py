"""How close a synthetic table is to real data: the figures used for DP synthetic data.

Both tables are categorical over the same columns (a real table is first mapped onto the
synthetic table's domain, :func:`infer_domain`). For a set of k columns, the *marginal* is the
share of rows holding each combination of their values (null is a value: missing or outside the
domain).

- **k-way marginal total-variation distance**: TVD(p, q) = ½ Σ |p(x) - q(x)| between the real and
  the synthetic k-way marginals, from 0 (identical) to 1 (disjoint), averaged (and the worst) over
  every set of k columns.
- **k-marginal score** in the style of the NIST Collaborative Research Cycle (SDNist's
  "k-marginal" metric): 1000 x (1 - mean TVD over the k-way marginals), so 1000 is a perfect
  match and 0 a disjoint one. SDNist samples 3-way marginals; here every one is used (at most
  :data:`MAX_SUBSETS`, then an even sample).
- **per-column distributions**: each value's share in the real and the synthetic table.
- **pairwise association**: Cramér's V of every pair of columns (0: independent, 1: one decides
  the other), in each table; its difference shows which relations the synthesis kept.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oblv_mpc.manifest.model import ColumnType, SyntheticColumn

if TYPE_CHECKING:
    import polars as pl

MAX_SUBSETS = 500
_BIN = re.compile(r"[\[(](?P<low>[^,\[\]()]+), (?P<high>[^,\[\]()]+)\]")


@dataclass(frozen=True)
class Report:
    """Every figure of one comparison."""

    rows_real: int
    rows_synthetic: int
    tvd: dict[int, tuple[float, float]]  # k -> (mean, worst) TVD over the k-way marginals
    score: dict[int, float]  # k -> NIST CRC-style k-marginal score (0 to 1000)
    columns: dict[str, list[tuple[Any, float, float]]]  # column -> [(value, real share, synthetic share)]
    association: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (a, b) -> (real, synth) V


def marginal(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """The share of rows holding each combination of ``columns``' values (column ``p``)."""
    import polars as pl

    counts = frame.group_by(list(columns)).len()
    total = max(frame.height, 1)
    return counts.with_columns((pl.col("len") / total).alias("p")).drop("len")


def tvd(real: pl.DataFrame, synthetic: pl.DataFrame, columns: Sequence[str]) -> float:
    """Total-variation distance between the two tables' marginals over ``columns``."""
    import polars as pl

    joined = marginal(real, columns).join(
        marginal(synthetic, columns), on=list(columns), how="full", nulls_equal=True, suffix="_s"
    )
    differences = (pl.col("p").fill_null(0.0) - pl.col("p_s").fill_null(0.0)).abs()
    return float(joined.select(differences.sum()).item()) / 2


def subsets(columns: Sequence[str], k: int) -> list[tuple[str, ...]]:
    """Every set of k columns, or an even sample of :data:`MAX_SUBSETS` of them (always the same)."""
    every = list(itertools.combinations(columns, k))
    if len(every) <= MAX_SUBSETS:
        return every
    step = len(every) / MAX_SUBSETS
    return [every[int(i * step)] for i in range(MAX_SUBSETS)]


def tvd_k(real: pl.DataFrame, synthetic: pl.DataFrame, k: int) -> tuple[float, float]:
    """Mean and worst TVD over the k-way marginals (k at most the number of columns)."""
    distances = [tvd(real, synthetic, s) for s in subsets(real.columns, k)]
    return (sum(distances) / len(distances), max(distances)) if distances else (0.0, 0.0)


def cramers_v(frame: pl.DataFrame, a: str, b: str) -> float:
    """Cramér's V of columns ``a`` and ``b`` (null is a category; 0 when either is constant)."""
    import numpy as np

    table = frame.group_by([a, b]).len().pivot(on=b, index=a, values="len").fill_null(0)
    counts = table.drop(a).to_numpy().astype(float)
    n = counts.sum()
    if n == 0 or min(counts.shape) < 2:
        return 0.0
    expected = np.outer(counts.sum(axis=1), counts.sum(axis=0)) / n
    chi2 = float((((counts - expected) ** 2) / np.where(expected > 0, expected, 1)).sum())
    return math.sqrt(chi2 / (n * (min(counts.shape) - 1)))


def distributions(real: pl.DataFrame, synthetic: pl.DataFrame, column: str) -> list[tuple[Any, float, float]]:
    """Each value of ``column``: its share in the real table and in the synthetic one."""
    joined = marginal(real, [column]).join(
        marginal(synthetic, [column]), on=column, how="full", nulls_equal=True, suffix="_s", coalesce=True
    )
    rows = [(r[column], r["p"] or 0.0, r["p_s"] or 0.0) for r in joined.iter_rows(named=True)]
    return sorted(rows, key=lambda r: (r[0] is None, str(r[0])))


def compare(real: pl.DataFrame, synthetic: pl.DataFrame, ks: Sequence[int] = (1, 2, 3)) -> Report:
    """Every figure, for tables with the same columns, both already on one domain."""
    if sorted(real.columns) != sorted(synthetic.columns):
        raise ValueError(f"the tables have different columns: {real.columns} and {synthetic.columns}")
    synthetic = synthetic.select(real.columns)
    usable = [k for k in ks if 1 <= k <= len(real.columns)]
    tvds = {k: tvd_k(real, synthetic, k) for k in usable}
    pairs = list(itertools.combinations(real.columns, 2))
    return Report(
        rows_real=real.height,
        rows_synthetic=synthetic.height,
        tvd=tvds,
        score={k: 1000 * (1 - mean) for k, (mean, _) in tvds.items()},
        columns={c: distributions(real, synthetic, c) for c in real.columns},
        association={(a, b): (cramers_v(real, a, b), cramers_v(synthetic, a, b)) for a, b in pairs},
    )


def infer_domain(synthetic: pl.DataFrame) -> list[SyntheticColumn]:
    """Each synthetic column's domain, from its values: bins from their labels, else categories."""
    import polars as pl

    domain = []
    for name in synthetic.columns:
        series = synthetic[name]
        values = series.drop_nulls().unique().to_list()
        bins = _bins([str(v) for v in values]) if series.dtype == pl.String and values else None
        if bins is not None:
            kind, edges = bins
            domain.append(SyntheticColumn(name, kind, bins=tuple(edges)))
            continue
        kind = ColumnType.BOOLEAN if series.dtype == pl.Boolean else ColumnType.TEXT
        if series.dtype.is_integer():
            kind = ColumnType.INTEGER
        domain.append(SyntheticColumn(name, kind, categories=tuple(sorted(values, key=str))))
    return domain


def _bins(labels: list[str]) -> tuple[ColumnType, list[Any]] | None:
    """Edges from bin labels such as ``[0, 18]`` and ``(18, 40]``, when every label is one."""
    pairs = []
    for label in labels:
        match = _BIN.fullmatch(label)
        if match is None:
            return None
        pairs.append((match["low"], match["high"]))
    kind, parse = _edge_kind(pairs[0][0])
    try:
        edges = sorted({parse(x) for pair in pairs for x in pair})
    except ValueError:
        return None
    return kind, [e if kind.numeric else str(e) for e in edges]


def _edge_kind(text: str) -> tuple[ColumnType, Any]:
    import datetime as dt

    try:
        float(text)
        return ColumnType.FLOAT, float
    except ValueError:
        pass
    if len(text) == 10:
        return ColumnType.DATE, dt.date.fromisoformat
    return ColumnType.TIMESTAMP, dt.datetime.fromisoformat
