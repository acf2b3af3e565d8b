"""`mpc demo`, the README's first command: a whole session, correct results, nothing on the wire."""

from __future__ import annotations

import csv
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from oblv_mpc import demo
from oblv_mpc.cli import app
from oblv_mpc.client import Result

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("parties", [2, 3])
def test_demo_session_is_correct_and_private(tmp_path: Path, parties: int) -> None:
    shown: list[tuple[str, Result]] = []
    started = time.perf_counter()
    outcome = demo.run(parties, 300, tmp_path / "kept", lambda _line: None, lambda p, r: shown.append((p, r)))
    assert time.perf_counter() - started < 20
    assert outcome.values_on_wire == 0 and outcome.values_checked > 500
    assert "not a reader of shared_employees" in outcome.refused
    # recompute average salary per level from the kept CSV files
    rows: list[dict[str, Any]] = []
    own: dict[str, list[dict[str, Any]]] = {}
    for name in demo.PARTY_NAMES[:parties]:
        with (tmp_path / "kept" / name / "employees.csv").open() as handle:
            own[name] = list(csv.DictReader(handle))
            rows += own[name]
    levels = sorted({r["job_level"] for r in rows})
    expected = {lvl: statistics.fmean(float(r["salary"]) for r in rows if r["job_level"] == lvl) for lvl in levels}
    counts = {lvl: sum(r["job_level"] == lvl for r in rows) for lvl in levels}
    result = outcome.results["alice"]["average_salary"]
    # every employer's own rule: a released level holds at least 5 of its own employees
    kept = {lvl for lvl in levels if all(sum(r["job_level"] == lvl for r in mine) >= 5 for mine in own.values())}
    assert {row[0] for row in result.rows} == kept
    for level, average, size in result.rows:
        assert average == pytest.approx(expected[level]) and size == counts[level]
    assert result.suppressed_groups == len(levels) - len(kept)
    shared = outcome.results["alice"]["shared_employees"].rows[0][0]
    assert shared == len([i for i in range(300) if i % 10 == 0])
    assert {p for p, _ in shown} == set(demo.PARTY_NAMES[:parties])


def test_demo_command(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["demo", "--parties", "2", "--rows", "100"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "attestation verified" in done.stdout
    assert "0 appear in it" in done.stdout
    refused = CliRunner().invoke(app, ["demo", "--parties", "4"])
    assert refused.exit_code == 2


def test_readme_quick_start_has_exactly_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    block = quick.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo: " in makefile and "\ntest: " in makefile
    assert "make test" in (ROOT / ".ci/run").read_text()


@pytest.mark.slow
def test_synthetic_demo_releases_one_table_to_both_hospitals_and_nothing_on_the_wire(tmp_path: Path) -> None:
    from oblv_mpc import demo_synthetic

    lines: list[str] = []
    outcome = demo_synthetic.run(300, tmp_path / "kept", lines.append, lambda _party, _result: None)
    first, second = outcome.results.values()
    assert first.rows == second.rows and len(first.rows) == 600
    assert outcome.values_on_wire == 0 and outcome.values_checked > 1000
    assert any("enclave: " in line for line in lines)  # progress was shown while it generated
    assert all(report.tvd[1][0] < 0.2 for report in outcome.reports.values())
    assert (tmp_path / "kept" / "st_mary" / "synthetic.csv").exists()
