"""Encrypted upload throughput vs a plaintext POST of the same bytes to the same server.

For each size, in one run: generate a CSV (id, level, salary), start the enclave app with the
simulated NSM in its own process, plus two benchmark-only plaintext routes, then in separate
client processes:

1. plain POST: the file in plaintext; the server hashes it and throws it away (the wire limit);
2. plain POST + load: the file in plaintext; the server runs the same CSV check and DuckDB load
   as the enclave does (what a service without the enclave protocol would do);
3. sealed CSV upload: `EnclaveClient.upload(format="csv")`, sealed and signed 4 MiB chunks of
   the file's text that the enclave opens, authenticates, parses, checks and loads;
4. sealed columnar upload (what `mpc submit` does by default): `EnclaveClient.upload(format=
   "arrow")`, the file read once here with Arrow and sent as sealed Arrow IPC record batches
   that the enclave opens, authenticates, validates fully and loads without parsing text.

Prints MB of the file per second for each, the ratios of (3) and (4) to (1) and to (2), and the
peak resident memory (VmHWM) of each client process and of the server.

    python benchmarks/upload.py [--sizes 100,1000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request  # at module level: FastAPI resolves the route's annotations here

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000


def _peak_kib(pid: int | None = None) -> int:
    """VmHWM of a process (peak resident set), KiB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _manifest(folder: Path, rows: int) -> tuple[Path, Path]:
    from oblv_mpc import keys, manifest

    identities = {p: keys.generate() for p in ("alice", "bob")}
    for party, key in identities.items():
        keys.save_key_pair(key, folder / "keys", party, force=True)
    document = {
        "version": 1,
        "session": "upload-benchmark",
        "parties": {
            p: {"public_key": keys.to_base64(k.public_key()), "roles": ["contributor", "reader"]}
            for p, k in identities.items()
        },
        "inputs": {
            f"{p}.rows": {
                "columns": {"id": "text", "level": "text", "salary": "float"},
                "max_rows": rows * 2 + 10,
                "max_bytes": 1 << 40,
                "protection": {"release": "unrestricted"},  # measures uploads, not release rules
            }
            for p in identities
        },
        "computations": {
            "n": {
                "template": "aggregate",
                "params": {"inputs": ["alice.rows", "bob.rows"], "aggregates": {"n": {"count": "*"}}},
                "readers": ["alice"],
            }
        },
    }
    path = folder / "manifest.yaml"
    manifest.dump_document(document, path)
    return path, folder / "keys" / "alice_private.der"


def _generate(path: Path, megabytes: int) -> int:
    import duckdb

    rows = megabytes * MB // 36
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT 'user-' || i || '@example.com' AS id, 'L' || (i % 7) AS level, "
        f"round(20000 + (i * 7919 % 130000) + (i % 100) / 100.0, 2) AS salary FROM range({rows}) t(i)) "
        f"TO '{path}' (HEADER, DELIMITER ',')"
    )
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(manifest_path: Path, ca_dir: Path, port: int) -> None:
    """The server process: the real enclave app plus a benchmark-only plaintext sink."""
    import uvicorn

    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()  # as `mpc enclave serve` does

    from oblv_mpc import manifest
    from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure
    from oblv_mpc.enclave import create_app

    loaded = manifest.load(manifest_path)
    app = create_app(loaded, SimulatedNsm(DevelopmentCA.load_or_create(ca_dir), measure()))

    @app.post("/bench/plain-load", include_in_schema=False)
    async def plain_load(request: Request) -> dict[str, Any]:
        import duckdb

        from oblv_mpc.tables import CsvIngest

        connection = duckdb.connect(":memory:", config={"enable_external_access": False})
        ingest = CsvIngest(loaded.inputs["bob.rows"], connection, keep=True)
        pending = bytearray()
        async for chunk in request.stream():  # fed in 4 MiB pieces, as the sealed path is
            pending += chunk
            if len(pending) >= 4 * 1024 * 1024:
                ingest.feed(bytes(pending))
                pending.clear()
        ingest.feed(bytes(pending))
        summary = ingest.finish()
        connection.close()
        return {"rows": summary.rows}

    @app.post("/bench/plain", include_in_schema=False)
    async def plain(request: Request) -> dict[str, Any]:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return {"bytes": size, "sha256": digest.hexdigest()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def client(mode: str, url: str, data: Path, manifest_path: Path, key: Path, ca_dir: Path) -> None:
    """A client process: time one upload, report it and this process's peak memory as JSON."""
    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()  # as the mpc command does
    from oblv_mpc import keys, manifest
    from oblv_mpc.attestation import DevelopmentCA, measure
    from oblv_mpc.client import EnclaveClient

    with httpx.Client(base_url=url, timeout=600) as http:
        start = time.perf_counter()
        if mode in ("plain", "plain-load"):

            def chunks() -> Any:
                with data.open("rb") as handle:
                    while piece := handle.read(4 * 1024 * 1024):
                        yield piece

            route = "/bench/plain" if mode == "plain" else "/bench/plain-load"
            response = http.post(route, content=chunks())
            response.raise_for_status()
        else:
            m = manifest.load(manifest_path)
            policy = DevelopmentCA.load_or_create(ca_dir).policy(measure())
            fmt = "arrow" if mode == "sealed-arrow" else "csv"
            EnclaveClient(http, m, keys.load_private_key(key), policy).upload("rows", data, format=fmt)
        elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "peak_kib": _peak_kib()}))


def _run_client(mode: str, url: str, data: Path, manifest_path: Path, key: Path, ca_dir: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--client", mode, url, str(data), str(manifest_path), str(key), str(ca_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} client failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_size(folder: Path, megabytes: int) -> dict[str, Any]:
    data = folder / f"data-{megabytes}mb.csv"
    rows = _generate(data, megabytes)
    manifest_path, key = _manifest(folder, rows)
    ca_dir = folder / "ca"
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(manifest_path), str(ca_dir), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/v1/info", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        idle_kib = _peak_kib(server.pid)
        plain = _run_client("plain", url, data, manifest_path, key, ca_dir)
        after_plain_kib = _peak_kib(server.pid)
        plain_load = _run_client("plain-load", url, data, manifest_path, key, ca_dir)
        sealed = _run_client("sealed", url, data, manifest_path, key, ca_dir)
        arrow = _run_client("sealed-arrow", url, data, manifest_path, key, ca_dir)
        server_kib = _peak_kib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    size = data.stat().st_size
    data.unlink()
    return {
        "size_mb": size / MB,
        "rows": rows,
        "plain_mb_s": size / MB / plain["seconds"],
        "sealed_mb_s": size / MB / sealed["seconds"],
        "plain_load_mb_s": size / MB / plain_load["seconds"],
        "arrow_mb_s": size / MB / arrow["seconds"],
        "ratio": plain["seconds"] / sealed["seconds"],
        "ratio_load": plain_load["seconds"] / sealed["seconds"],
        "ratio_arrow": plain["seconds"] / arrow["seconds"],
        "ratio_arrow_load": plain_load["seconds"] / arrow["seconds"],
        "plain_client_mib": plain["peak_kib"] / 1024,
        "sealed_client_mib": sealed["peak_kib"] / 1024,
        "arrow_client_mib": arrow["peak_kib"] / 1024,
        "server_idle_mib": idle_kib / 1024,
        "server_after_plain_mib": after_plain_kib / 1024,
        "server_peak_mib": server_kib / 1024,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client(sys.argv[2], sys.argv[3], *(Path(a) for a in sys.argv[4:8]))  # type: ignore[arg-type]
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="file sizes in MB, comma-separated")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the generated files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = [measure_size(Path(tmp), int(s)) for s in args.sizes.split(",")]
    header = ["size", "plain POST", "plain+load", "sealed CSV", "vs plain", "vs plain+load"]
    header += ["sealed Arrow", "vs plain", "vs plain+load", "client CSV", "client Arrow", "server peak"]
    print(" ".join(f"{h:>13}" for h in header))
    for r in rows:
        cells = [
            f"{r['size_mb']:.0f}MB",
            f"{r['plain_mb_s']:.1f}MB/s",
            f"{r['plain_load_mb_s']:.1f}MB/s",
            f"{r['sealed_mb_s']:.1f}MB/s",
            f"{r['ratio']:.2f}x",
            f"{r['ratio_load']:.2f}x",
            f"{r['arrow_mb_s']:.1f}MB/s",
            f"{r['ratio_arrow']:.2f}x",
            f"{r['ratio_arrow_load']:.2f}x",
            f"{r['sealed_client_mib']:.0f}MiB",
            f"{r['arrow_client_mib']:.0f}MiB",
            f"{r['server_peak_mib']:.0f}MiB",
        ]
        print(" ".join(f"{c:>13}" for c in cells))
    print(
        "ratios: sealed throughput / plaintext throughput, in MB of the file per second (target for the "
        "sealed Arrow upload >= 0.80 of the plain POST). Server idle "
        + ", ".join(f"{r['server_idle_mib']:.0f}MiB" for r in rows)
        + "; its peak includes the tables held in the enclave's in-memory DuckDB."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
