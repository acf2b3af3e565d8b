"""mpc against cryptographic MPC and against the plaintext limit, on the same data, in one run.

Jobs, at 10k to 50M rows per party (`--sizes`):
- two-party PSI cardinality and PSI (the intersection itself) on an email column, 50% overlap;
- three-party joint mean of a numeric column;
- once, at 1M rows: PSI cardinality over protected tables, to show what the per-owner unit
  counts cost (the other jobs' tables are `release: unrestricted`, as the crypto baselines
  apply no release threshold either).

Systems:
- mpc: end to end on the local enclave (simulated NSM) over real HTTP on loopback, the enclave
  and every party each in a process of their own (benchmarks/_mpc_parties.py): the parties attest
  at once, submit at once (each reads its CSV with Arrow and sends IPC record batches), one
  computes, every reader fetches at once (a large result streamed to a Parquet file); each step
  timed, and the peak memory of the enclave and of each party.
- openmined-psi: ECDH PSI (cardinality and intersection), both roles in one process.
- SPU PSI (secretflow `spu.psi`, RR22 and KKRT): two parties on loopback, when installed.
- MPyC: the joint mean with three local parties (-M3).
- DuckDB on the plain CSV files: the physical limit.

Every system runs in its own process with a time limit; one that is not installed, fails, or
runs out of time is reported as such instead of failing the benchmark (and is not run at larger
sizes). Up to REPEAT_UP_TO rows per party a run takes under a second, of the order of one
run's noise on two shared cores, so every system runs --repeat times there and its median run
is the one reported (every run's seconds are kept in results.json). Prints a table (each time
against DuckDB plain in the same run), mpc's cost per row against 1M rows with its memory,
writes results.json and a log-log plot to --out.

    python benchmarks/mpc_vs_crypto.py [--sizes 10000,...,50000000] [--jobs psi,...] [--systems mpc,duckdb]
        [--out benchmarks/results] [--limit 300] [--dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPEAT_UP_TO = 1_000_000  # rows per party up to which each system runs --repeat times
JOBS = ("psi_cardinality", "psi", "mean3", "psi_cardinality_protected")
PLOTTED = JOBS[:3]
SYSTEMS = {
    "psi_cardinality": ("mpc", "duckdb", "openmined-psi", "spu-rr22", "spu-kkrt"),
    "psi": ("mpc", "duckdb", "openmined-psi", "spu-rr22", "spu-kkrt"),
    "mean3": ("mpc", "duckdb", "mpyc"),
    "psi_cardinality_protected": ("mpc",),  # once, at PROTECTED_ROWS: what the per-owner unit counts cost
}
PROTECTED_ROWS = 1_000_000
ENCLAVE_MEMORY = 16 * 2**30  # DuckDB's memory_limit in the enclave (Limits.compute_memory_bytes): room for 50M rows


# -- data ---------------------------------------------------------------------------------------


def generate(folder: Path, rows: int) -> dict[str, Path]:
    """Emails for two parties (50% overlap) and values for three parties, as CSV."""
    import duckdb

    con = duckdb.connect()
    files = {}
    for party, start in (("alice", 0), ("bob", rows // 2)):
        path = folder / f"emails_{party}_{rows}.csv"
        con.execute(
            f"COPY (SELECT 'user' || i || '@example.com' AS email FROM range({start}, {start + rows}) t(i)) "
            f"TO '{path}' (HEADER)"
        )
        files[f"emails_{party}"] = path
    for index, party in enumerate(("alice", "bob", "carol")):
        path = folder / f"values_{party}_{rows}.csv"
        con.execute(
            f"COPY (SELECT round(((i * 7919 + {index * 104729}) % 100000) / 100.0, 2) AS value "
            f"FROM range({rows}) t(i)) TO '{path}' (HEADER)"
        )
        files[f"values_{party}"] = path
    return files


def _read_column(path: Path) -> list[str]:
    with path.open() as handle:
        next(handle)
        return [line.rstrip("\n") for line in handle]


# -- systems (each runs in its own process) ----------------------------------------------------


def run_duckdb(job: str, files: dict[str, Path]) -> dict[str, Any]:
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect()
    if job == "mean3":
        union = " UNION ALL ".join(
            f"SELECT value FROM read_csv('{files[f'values_{p}']}')" for p in ("alice", "bob", "carol")
        )
        result = con.execute(f"SELECT avg(value) FROM ({union})").fetchone()[0]  # type: ignore[index]
    else:
        a, b = files["emails_alice"], files["emails_bob"]
        common = f"SELECT email FROM read_csv('{a}') INTERSECT SELECT email FROM read_csv('{b}')"
        if job == "psi":
            result = len(con.execute(common).fetchall())
        else:
            result = con.execute(f"SELECT count(*) FROM ({common})").fetchone()[0]  # type: ignore[index]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "result": result, "memory": {"peak_mib": _peak_kib() / 1024}}


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _mpc_document(job: str, identities: dict[str, Any], rows: int) -> dict[str, Any]:
    from oblv_mpc import keys

    parties = ("alice", "bob") if job != "mean3" else ("alice", "bob", "carol")
    column = {"email": "text"} if job != "mean3" else {"value": "float"}
    tables = [f"{p}.data" for p in parties]
    if job == "mean3":
        computation = {"template": "aggregate", "params": {"inputs": tables, "aggregates": {"mean": {"avg": "value"}}}}
    else:
        template = job.removesuffix("_protected")
        computation = {"template": template, "params": {"inputs": tables, "column": "email"}}
    # Cryptographic PSI and MPyC apply no release threshold either: the tables are unrestricted, so
    # both sides compute exactly the same thing. The _protected job measures, once, what the
    # per-owner rules cost: each owner's distinct units behind the released count, counted by the enclave.
    protection: dict[str, Any] = {"release": "unrestricted"}
    if job.endswith("_protected"):
        protection = {
            "unit": "email",
            "min_distinct": 1,
            "join_columns": ["email"],
            "aggregates": {"email": ["count"]},
        }
    return {
        "version": 1,
        "session": f"bench-{job}",
        "parties": {
            p: {"public_key": keys.to_base64(identities[p].public_key()), "roles": ["contributor", "reader"]}
            for p in parties
        },
        "inputs": {
            t: {"columns": column, "max_rows": rows * 2 + 10, "max_bytes": 1 << 40, "protection": protection}
            for t in tables
        },
        "computations": {"answer": {**computation, "readers": list(parties)}},
    }


def run_mpc(job: str, files: dict[str, Path], rows: int, folder: Path) -> dict[str, Any]:
    """End to end, each party a process of its own, the enclave another: see benchmarks/_mpc_parties.py."""
    sys.path.insert(0, str(HERE.parent))
    from _mpc_parties import Enclave, Party, step

    from oblv_mpc import keys

    work = folder / f"mpc-{job}-{rows}"
    work.mkdir(exist_ok=True)
    identities = {p: keys.generate() for p in ("alice", "bob", "carol")}
    document = _mpc_document(job, identities, rows)
    manifest_path = work / "manifest.json"
    manifest_path.write_text(json.dumps(document))
    for name, key in identities.items():
        keys.save_key_pair(key, work, name, force=True)
    names = list(document["parties"])
    enclave = Enclave(manifest_path, folder / "dev-ca", ENCLAVE_MEMORY)
    parties: list[Party] = []
    try:
        for name in names:
            source = files[f"emails_{name}"] if job != "mean3" else files[f"values_{name}"]
            args = [str(manifest_path), str(work / f"{name}_private.der"), str(folder / "dev-ca"), enclave.url]
            parties.append(Party(name, [*args, str(source), str(work)]))
        steps: dict[str, float] = {}
        steps["attest"], _ = step(parties, "attest")
        steps["submit"], receipts = step(parties, "submit")
        steps["compute"], _ = step(parties[:1], "compute")
        steps["fetch"], fetched = step(parties, "fetch")
        peaks = [p["peak_kib"] for p in step(parties, "peak")[1]]
        enclave_kib, idle_kib = enclave.peak_kib(), enclave.idle_kib
    finally:
        for party in parties:
            party.close()
        enclave.close()
    value = fetched[0]["rows"] if job == "psi" else fetched[0]["value"]
    input_bytes = sum(r["bytes"] for r in receipts)
    return {
        "seconds": sum(steps.values()),
        "steps": steps,
        "result": value,
        "memory": {
            "enclave_peak_mib": enclave_kib / 1024,
            "enclave_idle_mib": idle_kib / 1024,
            "clients_peak_mib": [k / 1024 for k in peaks],
            "input_arrow_mib": input_bytes / 2**20,  # the IPC bytes received: the Arrow size of the inputs
            "enclave_bytes_per_input_row": enclave_kib * 1024 / (rows * len(names)),
            "enclave_peak_over_inputs": enclave_kib * 1024 / input_bytes,
        },
    }


def run_openmined(job: str, files: dict[str, Path]) -> dict[str, Any]:
    import private_set_intersection.python as psi  # type: ignore[import-not-found]

    server_items, client_items = _read_column(files["emails_alice"]), _read_column(files["emails_bob"])
    reveal = job == "psi"
    start = time.perf_counter()
    server = psi.server.CreateWithNewKey(reveal)
    client = psi.client.CreateWithNewKey(reveal)
    setup = psi.ServerSetup()
    setup.ParseFromString(
        server.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.GCS).SerializeToString()
    )
    request = client.CreateRequest(client_items)
    response = server.ProcessRequest(request)
    found = client.GetIntersection(setup, response) if reveal else None
    result = len(found) if found is not None else client.GetIntersectionSize(setup, response)
    return {"seconds": time.perf_counter() - start, "result": result}


def run_mpyc(job: str, files: dict[str, Path]) -> dict[str, Any]:
    script = HERE.parent / "_mpyc_mean.py"
    paths = [str(files[f"values_{p}"]) for p in ("alice", "bob", "carol")]
    base = _free_port_block()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), "-M3", "--base-port", str(base), *paths],
        capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    result = float(done.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "result": result}


SPU_PYTHON = HERE.parents[1] / ".venv-spu" / "bin" / "python"


def _free_port_block(size: int = 3) -> int:
    """A base port with ``size`` free ports after it (MPyC's parties take base, base+1, ...)."""
    import random
    import socket

    for _ in range(100):
        base = random.randrange(20000, 60000)
        try:
            sockets = [socket.create_server(("127.0.0.1", base + i)) for i in range(size)]
        except OSError:
            continue
        for sock in sockets:
            sock.close()
        return base
    raise RuntimeError("no free block of ports")


def run_spu(job: str, files: dict[str, Path], protocol: str) -> dict[str, Any]:
    python = Path(os.environ.get("MPC_BENCH_SPU_PYTHON", SPU_PYTHON))
    if not python.exists():
        raise ModuleNotFoundError(f"No module named spu: no SPU venv at {python} (make bench creates it)")
    script = HERE.parent / "_spu_psi.py"
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(script), protocol, job, str(files["emails_alice"]), str(files["emails_bob"])],
        capture_output=True, text=True, check=False, timeout=3600,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError("SPU failed: " + " | ".join(done.stderr.strip().splitlines()[-3:]))
    return {"seconds": seconds, "result": int(done.stdout.strip().splitlines()[-1])}


def run_one(system: str, job: str, rows: int, folder: Path) -> dict[str, Any]:
    files = {p.stem.rsplit("_", 1)[0]: p for p in folder.glob(f"*_{rows}.csv")}
    if system == "mpc":
        return run_mpc(job, files, rows, folder)
    if system == "duckdb":
        return run_duckdb(job, files)
    if system == "openmined-psi":
        return run_openmined(job, files)
    if system == "mpyc":
        return run_mpyc(job, files)
    return run_spu(job, files, system.removeprefix("spu-").upper())


# -- orchestration -----------------------------------------------------------------------------


def _isolated(system: str, job: str, rows: int, folder: Path, limit: float) -> dict[str, Any]:
    """Run one measurement in its own process group; on timeout the whole group is ended."""
    process = subprocess.Popen(
        [sys.executable, str(HERE), "--run", system, job, str(rows), str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the system's own helper processes too
        process.communicate()
        return {"status": f"over the {limit:.0f} s limit"}
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        if "ModuleNotFoundError" in done.stderr or "No module named" in done.stderr:
            return {"status": f"not installed ({last[-80:]})"}
        return {"status": f"failed: {last[-100:]}"}
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    answer["status"] = "ok"
    return answer


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by seconds, with every run's seconds; the first failure if any run failed."""
    failed = next((r for r in runs if r["status"] != "ok"), None)
    if failed is not None:
        return failed
    ordered = sorted(runs, key=lambda r: float(r["seconds"]))
    median = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        median["runs"] = [float(r["seconds"]) for r in runs]
    return median


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--run":
        _, _, system, job, rows, folder = sys.argv
        print(json.dumps(run_one(system, job, int(rows), Path(folder)), default=float))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000,50000000")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds per system, job and size")
    parser.add_argument("--systems", default="", help="comma-separated subset of systems to run")
    parser.add_argument("--jobs", default="", help="comma-separated subset of jobs to run")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the generated data (GBs at 50M rows)")
    repeat_help = f"runs per system and job up to {REPEAT_UP_TO:,} rows per party; the median is kept"
    parser.add_argument("--repeat", type=int, default=3, help=repeat_help)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = set(args.systems.split(",")) if args.systems else None
    jobs = [j for j in JOBS if not args.jobs or j in args.jobs.split(",")]
    results: list[dict[str, Any]] = []
    skip: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        for rows in sizes:
            generate(folder, rows)
            os.sync()  # the files just written are not flushed to disk during the first measurement
            repeat = args.repeat if rows <= REPEAT_UP_TO else 1
            for job in jobs:
                if job.endswith("_protected") and rows != PROTECTED_ROWS:
                    continue
                for system in SYSTEMS[job]:
                    if chosen and system not in chosen:
                        continue
                    if (system, job) in skip:
                        entry = {"status": "skipped: the smaller size already ran out of time"}
                    else:
                        entry = _median([_isolated(system, job, rows, folder, args.limit) for _ in range(repeat)])
                        if entry["status"].startswith("over"):
                            skip.add((system, job))
                    entry.update(system=system, job=job, rows=rows)
                    results.append(entry)
                    _print_row(entry)
            for path in folder.glob(f"*_{rows}.csv"):
                path.unlink()
    _check_agreement(results)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "load_average_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "command": "python benchmarks/mpc_vs_crypto.py " + " ".join(sys.argv[1:]),
    }
    (args.out / "results.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2, default=float)
    )
    print()
    print(render_table(results))
    print()
    print(render_scaling(results))
    _plot(results, args.out / "results.png")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.png'}")
    return 0


def _print_row(entry: dict[str, Any]) -> None:
    if entry["status"] == "ok":
        steps = entry.get("steps")
        detail = ", ".join(f"{k} {v:.2f}s" for k, v in steps.items()) if steps else ""
        memory = entry.get("memory", {})
        if "enclave_peak_mib" in memory:
            detail += f"; enclave peak {memory['enclave_peak_mib']:.0f} MiB"
        if "runs" in entry:
            detail += "; median of " + ", ".join(f"{seconds:.3f}" for seconds in entry["runs"])
        print(
            f"{entry['job']:<26} {entry['rows']:>11,} {entry['system']:<14} {entry['seconds']:>9.3f}s  {detail}",
            flush=True,
        )
    else:
        print(f"{entry['job']:<26} {entry['rows']:>11,} {entry['system']:<14} {entry['status']}", flush=True)


def _find(results: list[dict[str, Any]], system: str, job: str, rows: int) -> dict[str, Any] | None:
    found = next((r for r in results if (r["system"], r["job"], r["rows"]) == (system, job, rows)), None)
    return found if found is not None and found["status"] == "ok" else None


def _check_agreement(results: list[dict[str, Any]]) -> None:
    """Every system that ran must give the same answer as DuckDB on the plain files."""
    for entry in results:
        if entry["status"] != "ok" or entry["system"] == "duckdb":
            continue
        truth = _find(results, "duckdb", entry["job"].removesuffix("_protected"), entry["rows"])
        if truth and abs(float(truth["result"]) - float(entry["result"])) > 1e-6 * max(
            1.0, abs(float(truth["result"]))
        ):
            entry["status"] = f"WRONG: {entry['result']} vs {truth['result']}"


def render_table(results: list[dict[str, Any]]) -> str:
    """Markdown: seconds per system (mpc's steps), each against DuckDB plain in the same run, and against mpc."""
    lines = [
        "| job | rows/party | system | seconds | / DuckDB plain | mpc is x faster |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for entry in results:
        job, rows = entry["job"], entry["rows"]
        if entry["status"] != "ok":
            lines.append(f"| {job} | {rows:,} | {entry['system']} | {entry['status']} | | |")
            continue
        mpc, duck = _find(results, "mpc", job, rows), _find(results, "duckdb", job.removesuffix("_protected"), rows)
        vs_duck = f"{entry['seconds'] / duck['seconds']:.2f}x" if duck and entry["system"] != "duckdb" else ""
        faster = f"{entry['seconds'] / mpc['seconds']:.2f}x" if mpc and entry["system"] != "mpc" else ""
        seconds = f"{entry['seconds']:.3f}"
        if entry.get("steps"):
            seconds += " (" + ", ".join(f"{k} {v:.2f}" for k, v in entry["steps"].items()) + ")"
        lines.append(f"| {job} | {rows:,} | {entry['system']} | {seconds} | {vs_duck} | {faster} |")
    return "\n".join(lines)


def render_scaling(results: list[dict[str, Any]]) -> str:
    """Markdown: mpc's cost per row against its cost at 1M rows, and the enclave's and clients' peak memory."""
    lines = [
        "| job | rows/party | mpc s/M rows | vs 1M | DuckDB s/M rows | enclave peak MiB | per input row | "
        "peak / Arrow inputs | clients' peak MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for entry in results:
        if entry["system"] != "mpc" or entry["status"] != "ok":
            continue
        job, rows = entry["job"], entry["rows"]
        per_row = entry["seconds"] / rows * 1e6
        base = _find(results, "mpc", job, 1_000_000)
        versus = f"{per_row / (base['seconds'] / 1e6 * 1e6):.2f}x" if base else ""
        duck = _find(results, "duckdb", job, rows)
        duck_per_row = f"{duck['seconds'] / rows * 1e6:.3f}" if duck else ""
        memory = entry["memory"]
        clients = ", ".join(f"{m:.0f}" for m in memory["clients_peak_mib"])
        lines.append(
            f"| {job} | {rows:,} | {per_row:.3f} | {versus} | {duck_per_row} | {memory['enclave_peak_mib']:.0f} | "
            f"{memory['enclave_bytes_per_input_row']:.0f} B | {memory['enclave_peak_over_inputs']:.2f}x | {clients} |"
        )
    return "\n".join(lines)


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        return
    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(5 * len(PLOTTED), 4), constrained_layout=True)
    for axis, job in zip(axes, PLOTTED, strict=True):
        for system in SYSTEMS[job]:
            points = [
                (r["rows"], r["seconds"])
                for r in results
                if r["job"] == job and r["system"] == system and r["status"] == "ok"
            ]
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                style = {"linewidth": 2.5} if system in ("mpc", "duckdb") else {"linestyle": "--", "alpha": 0.7}
                axis.plot(xs, ys, marker="o", label=system + (" (plain)" if system == "duckdb" else ""), **style)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(job)
        axis.set_xlabel("rows per party")
        axis.set_ylabel("seconds (end to end)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
