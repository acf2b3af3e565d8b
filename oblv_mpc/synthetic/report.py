"""``mpc synthetic report``: a synthetic table against a party's own data, which it may see.

Both files are read (CSV or Parquet), the party's table is mapped onto the synthetic table's
domain (:func:`oblv_mpc.synthetic.fidelity.infer_domain`: bins from the labels of binned columns,
categories otherwise), and every figure of :mod:`oblv_mpc.synthetic.fidelity` is computed. It
runs on the party's machine only: nothing is sent anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from oblv_mpc.errors import UsageError
from oblv_mpc.manifest.model import ColumnType
from oblv_mpc.synthetic import fidelity

if TYPE_CHECKING:
    import polars as pl

MAX_FILE_BYTES = 2 * 1024**3


def _polars() -> object:
    try:
        import polars
    except ImportError:
        raise UsageError(
            "the report needs polars", hint="install the synthetic extra: pip install 'oblv-mpc[synthetic]'"
        ) from None
    return polars


def read(path: Path, *, as_text: bool) -> pl.DataFrame:
    """A CSV or Parquet file as a table (every column as text when ``as_text``)."""
    _polars()
    import polars as pl

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    if size > MAX_FILE_BYTES:
        raise UsageError(f"{path}: {size:,} bytes; the report reads at most {MAX_FILE_BYTES:,}")
    try:
        if path.suffix.lower() == ".parquet":
            frame = pl.read_parquet(path)
            return frame.select(pl.all().cast(pl.String)) if as_text else frame
        return pl.read_csv(path, infer_schema=not as_text, try_parse_dates=not as_text)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable CSV or Parquet table ({type(exc).__name__})") from None


def build(synthetic_path: Path, real_path: Path, ks: tuple[int, ...] = (1, 2, 3)) -> fidelity.Report:
    """Every fidelity figure of the synthetic table at ``synthetic_path`` against the table at ``real_path``."""
    import polars as pl

    from oblv_mpc.synthetic.domain import to_domain

    synthetic = read(synthetic_path, as_text=True)
    real = read(real_path, as_text=False)
    missing = [c for c in synthetic.columns if c not in real.columns]
    if missing:
        raise UsageError(
            f"{real_path} has no column {', '.join(missing)}",
            hint="compare against the table you submitted for this release",
        )
    domain = fidelity.infer_domain(synthetic)
    real = real.select(
        [
            pl.col(c.name).cast(pl.String)
            if c.type is ColumnType.TEXT
            else pl.col(c.name).cast(pl.Float64)
            if c.type.numeric and real.schema[c.name].is_numeric()
            else pl.col(c.name)
            for c in domain
        ]
    )
    try:
        mapped = to_domain(real, domain)
    except pl.exceptions.PolarsError as exc:
        raise UsageError(
            f"{real_path}: its columns do not compare with the synthetic table's ({type(exc).__name__})",
            hint="binned numbers, dates and times must be numbers, dates and times in your table",
        ) from None
    report = fidelity.compare(mapped, synthetic.select(mapped.columns), ks)
    order = {c.name: {str(label): i for i, label in enumerate(c.labels)} for c in domain}
    for name, values in report.columns.items():  # values in the domain's order, missing last
        values.sort(key=lambda v: order[name].get(str(v[0]), len(order[name])) if v[0] is not None else 1 << 30)
    return report
