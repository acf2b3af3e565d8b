"""The core around every synthesizer: bounding, domain mapping, and checks on what a plug-in returns."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
from collections.abc import Mapping
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from oblv_mpc.manifest.model import ColumnType, SyntheticColumn, SyntheticSpec
from oblv_mpc.manifest.naming import unit_column
from oblv_mpc.synthetic import Progress, Request, Synthesized
from oblv_mpc.synthetic.bounding import bound, largest_contribution
from oblv_mpc.synthetic.domain import to_domain
from oblv_mpc.synthetic.registry import GROUP, Registry
from oblv_mpc.synthetic.run import SynthesisFailed, release

UNIT = unit_column()
COLUMNS = (
    SyntheticColumn("age", ColumnType.INTEGER, bins=(0, 18, 65, 110)),
    SyntheticColumn("sex", ColumnType.TEXT, categories=("female", "male")),
)


def _spec(**changes: Any) -> SyntheticSpec:
    base: dict[str, Any] = {
        "inputs": ("a.t",),
        "columns": COLUMNS,
        "units": {"a.t": "id"},
        "max_rows_per_unit": 2,
        "epsilon": 1.0,
        "synthesizer": "hostile",
        "version": "1",
        "rows": 10,
    }
    return SyntheticSpec(**{**base, **changes})


def _data() -> pa.Table:
    return pa.table({UNIT: ["0:a"] * 50 + ["0:b", "0:c"], "age": [30] * 50 + [5, 70], "sex": ["male"] * 52})


class Hostile:
    """A plug-in that returns whatever the test tells it to."""

    name, version, description = "hostile", "1", "returns what the test says"

    def __init__(self, table: pa.Table | None = None, spent: float = 1.0, error: Exception | None = None) -> None:
        self.table, self.spent, self.error, self.seen = table, spent, error, None

    def unavailable(self) -> str | None:
        return None

    def check_params(self, params: Mapping[str, Any]) -> list[str]:
        return []

    def synthesize(self, data: pa.Table, request: Request, progress: Progress) -> Synthesized:
        self.seen = data
        if self.error is not None:
            raise self.error
        table = self.table or pa.table({"age": ["[0, 18]"] * request.rows, "sex": ["male"] * request.rows})
        return Synthesized(table, self.spent, "hostile")


def _quiet(fraction: float, stage: str) -> None:
    return None


def test_a_prolific_unit_reaches_the_synthesizer_with_at_most_k_rows_and_without_its_identifier() -> None:
    plugin = Hostile()
    release(_spec(), _data(), plugin, _quiet)
    assert plugin.seen is not None
    assert plugin.seen.column_names == ["age", "sex"]
    assert plugin.seen.num_rows == 2 + 1 + 1  # unit a: 2 of its 50 rows


def test_which_rows_of_a_unit_are_kept_is_random_not_the_first_ones() -> None:
    frame = pl.DataFrame({UNIT: ["u"] * 100, "x": list(range(100))})
    kept = {tuple(bound(frame, UNIT, 3)["x"].sort().to_list()) for _ in range(20)}
    assert len(kept) > 10  # a fixed choice (the first or smallest rows) would be one set
    assert largest_contribution(frame, UNIT) == 100


def test_values_outside_the_declared_domain_become_missing() -> None:
    frame = pl.DataFrame(
        {"age": [0, 18, 19, 110, 111, -1, None], "sex": ["male", "MALE", "female", None, "x", "male", "male"]}
    )
    mapped = to_domain(frame, COLUMNS)
    assert mapped["age"].to_list() == ["[0, 18]", "[0, 18]", "(18, 65]", "(65, 110]", None, None, None]
    assert mapped["sex"].to_list() == ["male", None, "female", None, None, "male", "male"]


def test_dates_are_binned_as_dates() -> None:
    column = SyntheticColumn("d", ColumnType.DATE, bins=("2024-01-01", "2024-07-01", "2025-01-01"))
    frame = pl.DataFrame({"d": [dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2023, 12, 31)]})
    assert to_domain(frame, [column])["d"].to_list() == ["[2024-01-01, 2024-07-01]", "(2024-07-01, 2025-01-01]", None]


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        (Hostile(pa.table({"age": ["[0, 18]"] * 10, "sex": ["secret-value"] * 10})), "outside its declared domain"),
        (Hostile(pa.table({"age": ["[0, 18]"] * 11, "sex": ["male"] * 11})), "returned 11 rows, not the agreed 10"),
        (Hostile(pa.table({"sex": ["male"] * 10, "age": ["[0, 18]"] * 10})), "not the agreed ['age', 'sex']"),
        (Hostile(pa.table({"age": ["[0, 18]"] * 10, "sex": ["male"] * 10, "id": ["0:a"] * 10})), "returned columns"),
        (Hostile(spent=1.5), "accounted epsilon 1.5, more than the agreed 1"),
        (Hostile(error=ValueError("patient 0:a is 30 years old")), "failed (ValueError); no detail is given"),
    ],
)
def test_a_synthesizer_that_breaks_the_agreement_releases_nothing(plugin: Hostile, expected: str) -> None:
    with pytest.raises(SynthesisFailed) as failed:
        release(_spec(), _data(), plugin, _quiet)
    assert expected in failed.value.reason
    assert "0:a" not in failed.value.reason and "30 years" not in failed.value.reason


def _entry(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name, value, GROUP)


def test_broken_misnamed_or_doubly_claimed_plugins_are_listed_and_never_used() -> None:
    registry = Registry(
        lambda: [
            _entry("mst", "oblv_mpc.synthetic.opendp_mbi:MST"),
            _entry("gone", "no_such_module:Thing"),
            _entry("aim", "oblv_mpc.synthetic.opendp_mbi:MST"),  # an object named mst, declared as aim
            _entry("twice", "oblv_mpc.synthetic.opendp_mbi:MST"),
        ]
    )
    listed = {entry.name: entry.unavailable for entry in registry.listed()}
    assert listed["mst"] is None
    assert "could not be loaded" in str(listed["gone"])
    assert "not a synthesizer named as its entry point" in str(listed["aim"])
    for name in ("gone", "aim"):
        with pytest.raises(LookupError):
            registry.get(name, "0.16.0")
    clash = Registry(lambda: [_entry("mst", "oblv_mpc.synthetic.opendp_mbi:MST"), _entry("mst", "other:MST")])
    with pytest.raises(LookupError, match=r"could not be loaded|two packages"):
        clash.get("mst", "0.16.0")


def test_a_synthesizer_at_another_version_than_agreed_is_refused() -> None:
    registry = Registry()
    with pytest.raises(LookupError, match=r"not the agreed 9\.9"):
        registry.get("mst", "9.9")
    assert registry.get("mst", importlib.metadata.version("opendp")).name == "mst"


def test_mst_and_aim_refuse_parameters_opendp_does_not_take() -> None:
    registry = Registry()
    mst = registry.get("mst", importlib.metadata.version("opendp"))
    assert mst.check_params({"num_selections": 3, "measure_split": 0.5}) == []
    problems = mst.check_params({"rounds": 3, "measure_split": 2, "num_selections": 1.5})
    assert len(problems) == 3
    aim = registry.get("aim", importlib.metadata.version("opendp"))
    assert aim.check_params({"queries": 3, "max_size": 20.0}) == []
    assert aim.check_params({"queries": True}) != []
