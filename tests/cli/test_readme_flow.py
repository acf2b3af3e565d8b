"""The README's manual flow, run exactly as written: three parties in three folders.

The blocks marked ``<!-- readme-flow: NAME -->`` are run by bash with ``set -e`` (the setup, then
the parties), and the operator's block as a background process, as the README tells a newcomer
to run it in a terminal of its own. The only change is the port: 8000 becomes a free one.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.enclave.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _blocks() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"<!-- readme-flow: (\w+) -->\n```sh\n(.*?)```", readme, re.DOTALL)
    return dict(found)


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_readme_flow_runs_as_written(tmp_path: Path) -> None:
    blocks = _blocks()
    assert set(blocks) == {"setup", "enclave", "parties"}, "the README's flow blocks are missing or renamed"
    port = str(free_port())
    bin_dir = str(Path(sys.executable).parent)  # where `mpc` is, as after activating .venv
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MPC_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
    }

    setup = _bash(blocks["setup"], tmp_path, env)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "valid; session salaries" in setup.stdout

    command = shlex.split(blocks["enclave"].split("#")[0].replace("8000", port))
    assert command[:3] == ["mpc", "enclave", "serve"]
    server = subprocess.Popen(
        [str(Path(bin_dir) / "mpc"), *command[1:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("ready:"):
                break
        else:
            raise AssertionError("the enclave never said it was ready")
        parties = _bash(blocks["parties"].replace("8000", port), tmp_path, env)
        assert parties.returncode == 0, parties.stdout + parties.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    with (tmp_path / "alice" / "result.csv").open(newline="", encoding="utf-8") as handle:
        result = list(csv.reader(handle))  # text is quoted (a null and an empty text differ)
    assert result[0][:2] == ["job_level", "average_salary"]
    averages = {line[0]: float(line[1]) for line in result[1:]}
    assert averages == pytest.approx({"junior": 52_666.666666, "senior": 95_666.666666})
    assert parties.stdout.count("rows accepted") == 3
