"""mpc against cryptographic MPC and against the plaintext limit, on the same data, in one run.

Jobs, at 10k, 100k and 1M rows per party (`--sizes`):
- two-party PSI cardinality and PSI (the intersection itself) on an email column, 50% overlap;
- three-party joint mean of a numeric column.

Systems:
- mpc: end to end on the local enclave (simulated NSM) over real HTTP on loopback: every party
  attests, every party submits, the enclave computes, every reader fetches; each step timed.
- openmined-psi: ECDH PSI (cardinality and intersection), both roles in one process.
- SPU PSI (secretflow `spu.psi`, RR22 and KKRT): two parties on loopback, when installed.
- MPyC: the joint mean with three local parties (-M3).
- DuckDB on the plain CSV files: the physical limit.

Every system runs in its own process with a time limit; one that is not installed, fails, or
runs out of time is reported as such instead of failing the benchmark. Prints a table, writes
results.json and a PNG plot to --out.

    python benchmarks/mpc_vs_crypto.py [--sizes 10000,100000,1000000] [--out benchmarks/results] [--limit 300]
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
JOBS = ("psi_cardinality", "psi", "mean3")
SYSTEMS = {
    "psi_cardinality": ("mpc", "duckdb", "openmined-psi", "spu-rr22", "spu-kkrt"),
    "psi": ("mpc", "duckdb", "openmined-psi", "spu-rr22", "spu-kkrt"),
    "mean3": ("mpc", "duckdb", "mpyc"),
}


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
    return {"seconds": time.perf_counter() - start, "result": result}


def _mpc_document(job: str, identities: dict[str, Any], rows: int) -> dict[str, Any]:
    from oblv_mpc import keys

    parties = ("alice", "bob") if job != "mean3" else ("alice", "bob", "carol")
    column = {"email": "text"} if job != "mean3" else {"value": "float"}
    tables = [f"{p}.data" for p in parties]
    if job == "mean3":
        computation = {"template": "aggregate", "params": {"inputs": tables, "aggregates": {"mean": {"avg": "value"}}}}
    else:
        computation = {"template": job, "params": {"inputs": tables, "column": "email"}}
    return {
        "version": 1,
        "session": f"bench-{job}",
        "parties": {
            p: {"public_key": keys.to_base64(identities[p].public_key()), "roles": ["contributor", "reader"]}
            for p in parties
        },
        # Cryptographic PSI and MPyC apply no release threshold either: the tables are unrestricted, so
        # both sides compute exactly the same thing (per-owner rules add one distinct count per table).
        "inputs": {
            t: {
                "columns": column,
                "max_rows": rows * 2 + 10,
                "max_bytes": 1 << 34,
                "protection": {"release": "unrestricted"},
            }
            for t in tables
        },
        "computations": {"answer": {**computation, "readers": list(parties)}},
    }


def run_mpc(job: str, files: dict[str, Path], rows: int, folder: Path) -> dict[str, Any]:
    import httpx

    from oblv_mpc import keys, manifest
    from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure
    from oblv_mpc.client import EnclaveClient
    from oblv_mpc.enclave import create_app
    from oblv_mpc.enclave.server import ServerThread
    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()
    identities = {p: keys.generate() for p in ("alice", "bob", "carol")}
    loaded = manifest.from_data(_mpc_document(job, identities, rows))
    ca = DevelopmentCA.load_or_create(folder / "dev-ca")
    measurements = measure()
    steps: dict[str, float] = {}
    with ServerThread(create_app(loaded, SimulatedNsm(ca, measurements))) as server:
        clients = {}
        start = time.perf_counter()
        for party in loaded.parties:
            http = httpx.Client(base_url=server.url, timeout=600)
            clients[party] = EnclaveClient(http, loaded, identities[party], ca.policy(measurements))
            clients[party].connect()
        steps["attest"] = time.perf_counter() - start
        start = time.perf_counter()
        for party in loaded.parties:
            source = files[f"emails_{party}"] if job != "mean3" else files[f"values_{party}"]
            clients[party].upload("data", source)
        steps["submit"] = time.perf_counter() - start
        start = time.perf_counter()
        clients["alice"].compute("answer")
        steps["compute"] = time.perf_counter() - start
        start = time.perf_counter()
        results = [clients[party].result("answer") for party in loaded.parties]
        steps["fetch"] = time.perf_counter() - start
        for client in clients.values():
            client.http.close()
    rows_out = results[0].rows
    value = len(rows_out) if job == "psi" else rows_out[0][0]
    return {"seconds": sum(steps.values()), "steps": steps, "result": value}


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


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--run":
        _, _, system, job, rows, folder = sys.argv
        print(json.dumps(run_one(system, job, int(rows), Path(folder)), default=float))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds per system, job and size")
    parser.add_argument("--systems", default="", help="comma-separated subset of systems to run")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = set(args.systems.split(",")) if args.systems else None
    results: list[dict[str, Any]] = []
    skip: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in sizes:
            generate(folder, rows)
            for job in JOBS:
                for system in SYSTEMS[job]:
                    if chosen and system not in chosen:
                        continue
                    if (system, job) in skip:
                        entry = {"status": "skipped: the smaller size already ran out of time"}
                    else:
                        entry = _isolated(system, job, rows, folder, args.limit)
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
        "python": platform.python_version(),
        "command": "python benchmarks/mpc_vs_crypto.py " + " ".join(sys.argv[1:]),
    }
    (args.out / "results.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2, default=float)
    )
    print()
    print(render_table(results))
    _plot(results, args.out / "results.png")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.png'}")
    return 0


def _print_row(entry: dict[str, Any]) -> None:
    if entry["status"] == "ok":
        steps = entry.get("steps")
        detail = ", ".join(f"{k} {v:.2f}s" for k, v in steps.items()) if steps else ""
        print(
            f"{entry['job']:<16} {entry['rows']:>9,} {entry['system']:<14} {entry['seconds']:>9.3f}s  {detail}",
            flush=True,
        )
    else:
        print(f"{entry['job']:<16} {entry['rows']:>9,} {entry['system']:<14} {entry['status']}", flush=True)


def _check_agreement(results: list[dict[str, Any]]) -> None:
    """Every system that ran must give the same answer as DuckDB on the plain files."""
    for entry in results:
        if entry["status"] != "ok" or entry["system"] == "duckdb":
            continue
        truth = next(
            (r for r in results if r["system"] == "duckdb" and r["job"] == entry["job"] and r["rows"] == entry["rows"]),
            None,
        )
        if (
            truth
            and truth["status"] == "ok"
            and abs(float(truth["result"]) - float(entry["result"])) > 1e-6 * max(1.0, abs(float(truth["result"])))
        ):
            entry["status"] = f"WRONG: {entry['result']} vs {truth['result']}"


def render_table(results: list[dict[str, Any]]) -> str:
    """Markdown: seconds per system, and mpc's speed-up over each baseline."""
    lines = ["| job | rows/party | system | seconds | mpc is x faster |", "| --- | ---: | --- | ---: | ---: |"]
    for entry in results:
        mpc = next(
            (r for r in results if r["system"] == "mpc" and r["job"] == entry["job"] and r["rows"] == entry["rows"]),
            None,
        )
        if entry["status"] != "ok":
            lines.append(f"| {entry['job']} | {entry['rows']:,} | {entry['system']} | {entry['status']} | |")
            continue
        ratio = ""
        if mpc and mpc["status"] == "ok" and entry["system"] != "mpc":
            ratio = f"{entry['seconds'] / mpc['seconds']:.2f}x"
        seconds = f"{entry['seconds']:.3f}"
        if entry.get("steps"):
            seconds += " (" + ", ".join(f"{k} {v:.2f}" for k, v in entry["steps"].items()) + ")"
        lines.append(f"| {entry['job']} | {entry['rows']:,} | {entry['system']} | {seconds} | {ratio} |")
    return "\n".join(lines)


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        return
    figure, axes = plt.subplots(1, len(JOBS), figsize=(5 * len(JOBS), 4), constrained_layout=True)
    for axis, job in zip(axes, JOBS, strict=True):
        for system in SYSTEMS[job]:
            points = [
                (r["rows"], r["seconds"])
                for r in results
                if r["job"] == job and r["system"] == system and r["status"] == "ok"
            ]
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                axis.plot(xs, ys, marker="o", label=system)
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
