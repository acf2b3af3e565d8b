"""``mpc demo``: the whole flow on this machine, in a temporary folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from oblv_mpc.cli._console import out, styled
from oblv_mpc.cli.party import preview
from oblv_mpc.errors import MpcError, UsageError

if TYPE_CHECKING:
    from oblv_mpc.client import Result


def demo(
    parties: int = typer.Option(3, "--parties", help="How many parties: 2 or 3."),
    rows: int = typer.Option(1000, "--rows", help="Rows in each party's table."),
    keep: Path | None = typer.Option(None, "--keep", help="Keep the demo's keys, manifest and data in this folder."),
    synthetic: bool = typer.Option(
        False, "--synthetic", help="Two hospitals receive a differentially private synthetic table instead."
    ),
) -> None:
    """Run a whole session on this machine with generated parties and data, narrating each step."""
    if parties not in (2, 3):
        raise UsageError(f"--parties {parties}: the demo runs with 2 or 3 parties")
    if rows < 1:
        raise UsageError("--rows must be at least 1")
    from oblv_mpc import demo as demo_flow  # the server stack loads only for commands that need it

    started = time.perf_counter()

    def say(line: str) -> None:
        out.print(styled("[bold cyan]demo[/] {line}", line=line))  # lines quote names, refusals, results

    def show(party: str, result: Result) -> None:
        out.print(styled("[bold cyan]demo[/] {party} receives [bold]{name}[/]:", party=party, name=result.computation))
        preview(result, limit=10)

    if synthetic:
        _synthetic(rows, keep, say, show)
        say(f"done in {time.perf_counter() - started:.1f}s")
        return
    outcome = demo_flow.run(parties, rows, keep, say, show)
    if outcome.values_on_wire:
        raise MpcError(f"{outcome.values_on_wire} plaintext values were seen on the wire: this is a bug")
    say(f"done in {time.perf_counter() - started:.1f}s")


def _synthetic(rows: int, keep: Path | None, say: Callable[[str], None], show: Callable[[str, Result], None]) -> None:
    from oblv_mpc.synthetic.registry import Registry

    reasons = [s.unavailable for s in Registry().listed() if s.name == "mst" and s.unavailable]
    if reasons or not any(s.name == "mst" for s in Registry().listed()):
        raise UsageError("mpc demo --synthetic needs OpenDP's synthesizers", hint="pip install 'oblv-mpc[synthetic]'")
    from oblv_mpc import demo_synthetic

    outcome = demo_synthetic.run(rows, keep, say, show)
    if outcome.values_on_wire:
        raise MpcError(f"{outcome.values_on_wire} plaintext values were seen on the wire: this is a bug")


def register(app: typer.Typer) -> None:
    """Add ``mpc demo`` to ``app``."""
    app.command("demo")(demo)
