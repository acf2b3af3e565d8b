"""`mpc synthetic report` and `mpc synthetic synthesizers`, and fetching a result as Parquet."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from oblv_mpc import result_files
from oblv_mpc.manifest.model import ColumnType, SyntheticColumn
from oblv_mpc.synthetic.domain import to_domain
from oblv_mpc.synthetic.example import admissions_csv

COLUMNS = [
    SyntheticColumn("age", ColumnType.INTEGER, bins=(0, 18, 40, 65, 110)),
    SyntheticColumn("diagnosis", ColumnType.TEXT, categories=("asthma", "diabetes", "fracture", "influenza", "other")),
]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    real = admissions_csv(tmp_path / "mine.csv", "st_mary", 500, seed=3)
    mapped = to_domain(pl.read_csv(real), COLUMNS)
    synthetic = tmp_path / "synthetic.parquet"
    # The relation of age and diagnosis broken on purpose: the report must see it.
    mapped.with_columns(pl.col("diagnosis").shuffle(seed=4)).write_parquet(synthetic)
    return synthetic, real


def test_report_shows_the_figures_and_draws_them(tmp_path: Path, cli: Callable[..., Any]) -> None:
    synthetic, real = _files(tmp_path)
    png = tmp_path / "report.png"
    result = cli("synthetic", "report", str(synthetic), "--against", str(real), "--png", str(png))
    assert result.exit_code == 0, result.output
    assert "k-marginal score" in result.output and "Cramér's V" in result.output
    assert png.read_bytes().startswith(b"\x89PNG")
    as_json = cli("synthetic", "report", str(synthetic), "--against", str(real), "--json", "--k", "1,2")
    figures = json.loads(as_json.output)
    assert figures["tvd"]["1"]["mean"] < 1e-9  # the shares of each column are kept
    assert figures["tvd"]["2"]["mean"] > 0.05  # the relation is not
    pair = figures["association"]["age,diagnosis"]
    assert pair["yours"] > pair["synthetic"] + 0.1


def test_report_refuses_a_table_without_the_synthetic_columns(tmp_path: Path, cli: Callable[..., Any]) -> None:
    synthetic, _ = _files(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n")
    result = cli("synthetic", "report", str(synthetic), "--against", str(other))
    assert result.exit_code == 2 and "has no column age, diagnosis" in result.output
    result = cli("synthetic", "report", str(synthetic), "--against", str(other), "--k", "0")
    assert result.exit_code == 2 and "marginal sizes from 1 to 5" in result.output


def test_synthesizers_lists_mst_and_aim(cli: Callable[..., Any]) -> None:
    result = cli("synthetic", "synthesizers", "--json")
    listed = {entry["name"]: entry for entry in json.loads(result.output)}
    assert listed["mst"]["unavailable"] is None and listed["aim"]["version"] == listed["mst"]["version"]


def test_a_result_written_as_parquet_keeps_its_columns_and_types(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    columns = [("age", "VARCHAR"), ("n", "BIGINT"), ("ok", "BOOLEAN"), ("x", "DOUBLE")]
    result_files.write(columns, [["[0, 18]", 3, True, 1.5], [None, None, None, None]], path, "parquet")
    table = pq.read_table(path)
    assert table.column_names == ["age", "n", "ok", "x"]
    assert [str(t) for t in table.schema.types] == ["string", "int64", "bool", "double"]
    assert table.to_pylist()[0] == {"age": "[0, 18]", "n": 3, "ok": True, "x": 1.5}
