"""``mpc demo``: the whole flow on this machine, in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import typer

from oblv_mpc import demo as demo_flow
from oblv_mpc.cli._console import err
from oblv_mpc.errors import UsageError


def demo(
    parties: int = typer.Option(3, "--parties", help="How many parties: 2 or 3."),
    rows: int = typer.Option(1000, "--rows", help="Rows in each party's table."),
    keep: Path | None = typer.Option(None, "--keep", help="Keep the demo's keys, manifest and data in this folder."),
) -> None:
    """Run a whole session on this machine with generated parties and data, narrating each step."""
    if parties not in (2, 3):
        raise UsageError(f"--parties {parties}: the demo runs with 2 or 3 parties")
    if rows < 1:
        raise UsageError("--rows must be at least 1")
    demo_flow.run(parties, rows, keep, lambda line: err.print(f"[bold cyan]demo[/] {line}"))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
