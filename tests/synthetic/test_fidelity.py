"""The fidelity figures: known answers on small tables."""

from __future__ import annotations

import polars as pl
import pytest

from oblv_mpc.manifest.model import ColumnType
from oblv_mpc.synthetic import fidelity


def test_identical_tables_score_perfectly_and_disjoint_ones_score_zero() -> None:
    real = pl.DataFrame({"a": ["x", "y", "x", "y"], "b": ["p", "p", "q", "q"]})
    same = fidelity.compare(real, real.sample(fraction=1.0, shuffle=True, seed=1))
    assert same.tvd[1] == (0.0, 0.0) and same.tvd[2] == (0.0, 0.0) and same.score[2] == 1000
    other = pl.DataFrame({"a": ["z"] * 4, "b": ["r"] * 4})
    apart = fidelity.compare(real, other)
    assert apart.tvd[1][0] == pytest.approx(1.0) and apart.score[2] == pytest.approx(0.0)
    assert 3 not in apart.tvd  # only two columns


def test_independent_columns_keep_one_way_marginals_and_lose_the_relation() -> None:
    real = pl.DataFrame({"a": ["x"] * 50 + ["y"] * 50, "b": ["p"] * 50 + ["q"] * 50})  # b follows a exactly
    shuffled = real.with_columns(pl.Series("b", ["p", "q"] * 50))  # b independent of a
    report = fidelity.compare(real, shuffled)
    assert report.tvd[1][0] == pytest.approx(0.0)
    assert report.tvd[2][0] == pytest.approx(0.5)
    assert report.association[("a", "b")][0] == pytest.approx(1.0)
    assert report.association[("a", "b")][1] == pytest.approx(0.0)


def test_bins_are_read_back_from_their_labels() -> None:
    synthetic = pl.DataFrame({"age": ["[0, 18]", "(18, 65]", None], "when": ["[2024-01-01, 2024-07-01]"] * 3})
    age, when = fidelity.infer_domain(synthetic)
    assert age.bins == (0.0, 18.0, 65.0) and age.type is ColumnType.FLOAT
    assert when.bins == ("2024-01-01", "2024-07-01") and when.type is ColumnType.DATE
