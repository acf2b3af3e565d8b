"""Helpers to run the CLI: through Typer's runner in process, or as a real subprocess."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oblv_mpc.cli import app
from tests.cli.workspace import Runner, runner_in

__all__ = ["Runner"]  # the runner's type, for the tests that take the fixture


@pytest.fixture
def cli() -> Callable[..., object]:
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> object:
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def mpc(tmp_path: Path) -> Runner:
    """Run ``python -m oblv_mpc`` as a real process in ``tmp_path``."""
    return runner_in(tmp_path)
