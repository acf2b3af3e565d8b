"""``mpc synthetic``: synthetic data commands (a fidelity report, the synthesizers installed here)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from oblv_mpc.cli._console import err, out, plain, print_json
from oblv_mpc.errors import UsageError

app = typer.Typer(help="Differentially private synthetic data: reports, synthesizers.", no_args_is_help=True)


@app.command("report")
def report(
    synthetic: Path = typer.Argument(..., help="The synthetic table you fetched (CSV or Parquet)."),
    against: Path = typer.Option(..., "--against", help="Your own table (CSV or Parquet), which you may see."),
    png: Path | None = typer.Option(None, "--png", help="Also draw the report as a PNG here."),
    ks: str = typer.Option("1,2,3", "--k", help="Marginal sizes to compare, e.g. 1,2,3."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """How close a synthetic table is to your own data: k-way marginal distances, scores, distributions."""
    try:
        sizes = tuple(sorted({int(k) for k in ks.split(",")}))
    except ValueError:
        raise UsageError(f"--k {ks!r}: expected whole numbers separated by commas, e.g. 1,2,3") from None
    if not sizes or min(sizes) < 1 or max(sizes) > 5:
        raise UsageError(f"--k {ks!r}: marginal sizes from 1 to 5")
    from oblv_mpc.synthetic import report as reporting

    figures = reporting.build(synthetic, against, sizes)
    if png is not None:
        from oblv_mpc.synthetic.plot import draw

        draw(figures, png)
        err.print(plain(f"wrote {png}"))
    if as_json:
        print_json(
            {
                "rows": {"yours": figures.rows_real, "synthetic": figures.rows_synthetic},
                "tvd": {str(k): {"mean": m, "worst": w} for k, (m, w) in figures.tvd.items()},
                "k_marginal_score": {str(k): s for k, s in figures.score.items()},
                "columns": {c: [[v, r, s] for v, r, s in values] for c, values in figures.columns.items()},
                "association": {
                    f"{a},{b}": {"yours": r, "synthetic": s} for (a, b), (r, s) in figures.association.items()
                },
            }
        )
        return
    summary = Table(
        title="k-way marginals (total-variation distance: 0 is identical, 1 disjoint)", title_justify="left"
    )
    for heading in ("k", "mean TVD", "worst TVD", "k-marginal score (of 1000)"):
        summary.add_column(heading, justify="right")
    for k, (mean, worst) in sorted(figures.tvd.items()):
        summary.add_row(str(k), f"{mean:.4f}", f"{worst:.4f}", f"{figures.score[k]:.0f}")
    out.print(summary)
    columns = Table(title="per column: share of rows, yours vs synthetic", title_justify="left")
    for heading in ("column", "value", "yours", "synthetic"):
        columns.add_column(heading)
    for column, values in figures.columns.items():
        for value, real, synth in values:
            columns.add_row(
                plain(column), plain("(missing)" if value is None else value), f"{real:.3f}", f"{synth:.3f}"
            )
    out.print(columns)
    pairs = Table(title="pairwise association (Cramér's V)", title_justify="left")
    for heading in ("columns", "yours", "synthetic", "difference"):
        pairs.add_column(heading)
    for (a, b), (real, synth) in sorted(figures.association.items(), key=lambda item: -abs(item[1][0] - item[1][1])):
        pairs.add_row(plain(f"{a} x {b}"), f"{real:.3f}", f"{synth:.3f}", f"{synth - real:+.3f}")
    out.print(pairs)
    out.print(plain(f"rows: yours {figures.rows_real:,}, synthetic {figures.rows_synthetic:,}"))


@app.command("synthesizers")
def synthesizers(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """The synthesizers installed here (plug-ins of the oblv_mpc.synthesizers entry points)."""
    from oblv_mpc.synthetic.registry import Registry

    listed = Registry().listed()
    if as_json:
        print_json([{"name": s.name, "version": s.version, "unavailable": s.unavailable} for s in listed])
        return
    table = Table(title="synthesizers installed here", title_justify="left")
    for heading in ("name", "version", "description", "usable"):
        table.add_column(heading)
    for s in listed:
        table.add_row(plain(s.name), plain(s.version), plain(s.description), plain(s.unavailable or "yes"))
    out.print(table)


def register(root: typer.Typer) -> None:
    """Add ``mpc synthetic ...`` to ``root``."""
    root.add_typer(app, name="synthetic")
