"""The hostile-load benchmark in its quick mode, so that it cannot rot unnoticed.

4 parties upload 5 MB each at once, twice: alone, then while 10 hostile connections trickle
bodies and send oversized sealed requests. The benchmark itself checks every receipt and both
results, and fails if any attack was answered 200 or 500.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "hostile_load.py"


@pytest.mark.slow
def test_honest_uploads_complete_and_verify_while_the_enclave_is_attacked(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("without attackers") for line in lines), done.stdout
    assert any(line.strip().startswith("with 10 attackers") for line in lines), done.stdout
    outcomes = next(line for line in lines if line.startswith("attackers' outcomes:"))
    assert "bomb 400" in outcomes and "declared 413" in outcomes, outcomes
