"""The fidelity report drawn as a PNG: per-column distributions, and pairwise association."""

from __future__ import annotations

import math
from pathlib import Path

from oblv_mpc.errors import UsageError
from oblv_mpc.synthetic.fidelity import Report


def draw(report: Report, path: Path) -> None:
    """Bars of each column's value shares (real vs synthetic), then Cramér's V of every pair in each."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("drawing needs matplotlib", hint="pip install 'oblv-mpc[synthetic]'") from None
    import numpy as np

    columns = list(report.columns)
    per_row = 3
    rows = math.ceil(len(columns) / per_row) + 1
    figure = plt.figure(figsize=(5 * per_row, 3.6 * rows), constrained_layout=True)
    grid = figure.add_gridspec(rows, per_row)
    for i, column in enumerate(columns):
        axis = figure.add_subplot(grid[i // per_row, i % per_row])
        values = report.columns[column]
        labels = ["(missing)" if v is None else str(v)[:28] for v, _, _ in values]
        x = np.arange(len(values))
        axis.bar(x - 0.2, [r for _, r, _ in values], width=0.4, label="yours")
        axis.bar(x + 0.2, [s for _, _, s in values], width=0.4, label="synthetic")
        axis.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        axis.set_title(column, fontsize=10)
        axis.set_ylabel("share of rows", fontsize=8)
        if i == 0:
            axis.legend(fontsize=8)
    for j, (title, which) in enumerate((("yours: Cramér's V", 0), ("synthetic: Cramér's V", 1))):
        axis = figure.add_subplot(grid[rows - 1, j])
        matrix = np.eye(len(columns))
        for (a, b), pair in report.association.items():
            ia, ib = columns.index(a), columns.index(b)
            matrix[ia, ib] = matrix[ib, ia] = pair[which]
        image = axis.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        axis.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(columns)), columns, fontsize=7)
        axis.set_title(title, fontsize=10)
        figure.colorbar(image, ax=axis, shrink=0.8)
    summary = figure.add_subplot(grid[rows - 1, 2])
    summary.axis("off")
    lines = [f"rows: yours {report.rows_real:,}, synthetic {report.rows_synthetic:,}"]
    lines += [
        f"{k}-way TVD mean {mean:.4f}, worst {worst:.4f}; score {report.score[k]:.0f}/1000"
        for k, (mean, worst) in sorted(report.tvd.items())
    ]
    summary.text(0, 1, "\n".join(lines), va="top", fontsize=9, family="monospace")
    figure.savefig(path, dpi=110)
    plt.close(figure)
