"""Honest parties upload at once while hostile connections attack the enclave; compare both.

One run, two phases, each against a fresh enclave process (`create_app` + `serve_forever`, the
simulated NSM, default `Limits`) on 127.0.0.1:

1. baseline: N parties (a manifest with N parties, generated CSV data) upload at once, each in
   its own process, through `EnclaveClient.upload`;
2. attacked: the same, while a separate process keeps A hostile connections busy: half trickle
   a body one byte a second (slowloris), half send oversized sealed requests as a non-party
   (a declared 16 MiB body, a 16 MiB chunked body, a 9 MiB array of empty maps sealed to the
   enclave's public key, and the same inside a frame that claims a party's name).

For each phase it prints the honest parties' aggregate throughput, the slowest party's time and
the enclave's peak resident memory (VmHWM from /proc), and the attackers' outcomes. It checks
every receipt (rows, bytes, SHA-256, the enclave's signature) and the computed result against
the data. Bounded: the attack ends with the honest uploads, every phase has a deadline.

    python benchmarks/hostile_load.py                # 20 parties x 50 MB, 40 attackers
    python benchmarks/hostile_load.py --quick        # 4 parties x 5 MB, 10 attackers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

MB = 1_000_000
MiB = 1 << 20
ATTACK_KINDS = ("declared", "chunked", "bomb", "forged")


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- setup ----------------------------------------------------------------------------------------


def _setup(folder: Path, parties: int, megabytes: int) -> tuple[Path, list[str], dict[str, Path]]:
    """Keys, a manifest with ``parties`` parties, and one generated CSV per party."""
    import duckdb

    from oblv_mpc import keys, manifest

    names = [f"p{i:02d}" for i in range(parties)]
    identities = {name: keys.generate() for name in names}
    for name, key in identities.items():
        keys.save_key_pair(key, folder / "keys", name, force=True)
    rows = megabytes * MB // 36
    tables = [f"{name}.rows" for name in names]
    document = {
        "version": 1,
        "session": "hostile-load",
        "parties": {
            n: {"public_key": keys.to_base64(k.public_key()), "roles": ["contributor", "reader"]}
            for n, k in identities.items()
        },
        "inputs": {
            t: {
                "columns": {"id": "text", "level": "text", "salary": "float"},
                "max_rows": rows + 10,
                "max_bytes": 1 << 34,
                "protection": {"release": "unrestricted"},  # measures the boundary, not release rules
            }
            for t in tables
        },
        "computations": {
            "per_level": {
                "template": "aggregate",
                "params": {"inputs": tables, "group_by": ["level"], "aggregates": {"n": {"count": "*"}}},
                "readers": names,
            }
        },
    }
    path = folder / "manifest.yaml"
    manifest.dump_document(document, path)
    files = {}
    con = duckdb.connect()
    for index, name in enumerate(names):
        files[name] = folder / f"{name}.csv"
        con.execute(
            f"COPY (SELECT '{name}-' || i || '@example.com' AS id, 'L' || ((i + {index}) % 7) AS level, "
            f"round(20000 + (i * 7919 % 130000) + (i % 100) / 100.0, 2) AS salary FROM range({rows}) t(i)) "
            f"TO '{files[name]}' (HEADER, DELIMITER ',')"
        )
    return path, names, files


def _expected_counts(files: dict[str, Path]) -> dict[str, int]:
    import duckdb

    listed = ", ".join(f"'{f}'" for f in files.values())
    query = f"SELECT level, count(*) FROM read_csv([{listed}], header=true) GROUP BY level"
    return {str(level): int(n) for level, n in duckdb.connect().execute(query).fetchall()}


# -- the enclave process --------------------------------------------------------------------------


def serve(manifest_path: Path, ca_dir: Path, port: int, read_timeout: float) -> None:
    """The enclave: the real app and server, the simulated NSM, default limits (but the deadline)."""
    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()  # as `mpc enclave serve` does
    from oblv_mpc import manifest
    from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure
    from oblv_mpc.enclave import EnclaveSettings, create_app
    from oblv_mpc.enclave.server import listen, serve_forever
    from oblv_mpc.limits import Limits

    settings = EnclaveSettings(limits=Limits(body_read_timeout_s=read_timeout))
    app = create_app(
        manifest.load(manifest_path), SimulatedNsm(DevelopmentCA.load_or_create(ca_dir), measure()), settings
    )
    serve_forever(app, listen("127.0.0.1", port), settings.limits)


def _start_enclave(manifest_path: Path, ca_dir: Path, read_timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    from oblv_mpc.enclave.server import listen

    with listen("127.0.0.1", 0) as probe:
        port = probe.getsockname()[1]
    args = [sys.executable, __file__, "--serve", str(manifest_path), str(ca_dir), str(port), str(read_timeout)]
    process = subprocess.Popen(args)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/info", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the enclave did not start within 60 s")


# -- an honest party ------------------------------------------------------------------------------


def honest(url: str, manifest_path: Path, key: Path, data: Path, ca_dir: Path, start_at: float) -> None:
    """One party's process: verify the enclave, wait for the common start, upload, report as JSON."""
    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()
    from oblv_mpc import keys, manifest
    from oblv_mpc.attestation import DevelopmentCA, measure
    from oblv_mpc.client import EnclaveClient

    loaded = manifest.load(manifest_path)
    with httpx.Client(base_url=url, timeout=600) as http:
        client = EnclaveClient(
            http, loaded, keys.load_private_key(key), DevelopmentCA.load_or_create(ca_dir).policy(measure())
        )
        client.connect()
        time.sleep(max(0.0, start_at - time.time()))
        started = time.time()
        receipt = client.upload("rows", data)  # verifies the receipt's signature, bytes and SHA-256
        ended = time.time()
    print(
        json.dumps(
            {"start": started, "end": ended, "rows": receipt.rows, "bytes": receipt.size, "sha256": receipt.sha256}
        )
    )


def _result(url: str, manifest_path: Path, key: Path, ca_dir: Path) -> dict[str, int]:
    from oblv_mpc import keys, manifest
    from oblv_mpc.attestation import DevelopmentCA, measure
    from oblv_mpc.client import EnclaveClient

    with httpx.Client(base_url=url, timeout=600) as http:
        loaded = manifest.load(manifest_path)
        client = EnclaveClient(
            http, loaded, keys.load_private_key(key), DevelopmentCA.load_or_create(ca_dir).policy(measure())
        )
        result = client.result("per_level")  # verifies the enclave's signature over the result
    names = [name for name, _ in result.columns]
    return {str(row[names.index("level")]): int(row[names.index("n")]) for row in result.rows}


# -- the attackers --------------------------------------------------------------------------------


async def _status(reader: asyncio.StreamReader, timeout: float) -> str:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (TimeoutError, ConnectionError):
        return "no answer"
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "closed"


async def _slowloris(port: int, stop: asyncio.Event, outcomes: Counter[str]) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST /v1/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {9 * MiB - 1}\r\n\r\n".encode()
            )
            answer = None
            while not stop.is_set() and answer is None:
                writer.write(b"x")  # one byte a second, for as long as the enclave lets it
                await writer.drain()
                try:
                    answer = await asyncio.wait_for(_status(reader, 60), 1)
                except TimeoutError:
                    continue
            outcomes[f"slowloris {answer or 'stopped'}"] += 1
            writer.close()
        except ConnectionError:
            outcomes["slowloris connection reset"] += 1
            await asyncio.sleep(0.1)


async def _oversized(port: int, kind: str, body: bytes, stop: asyncio.Event, outcomes: Counter[str]) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = "POST /v1/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            if kind == "chunked":
                writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
                piece = f"{64 * 1024:x}\r\n".encode() + b"z" * (64 * 1024) + b"\r\n"
                for _ in range(16 * MiB // (64 * 1024)):  # 16 MiB, past the 9 MiB cap
                    writer.write(piece)
                    await writer.drain()
            else:
                size = 16 * MiB if kind == "declared" else len(body)
                writer.write(f"{head}Content-Length: {size}\r\n\r\n".encode())
                writer.write(body if kind != "declared" else b"z" * MiB)
                await writer.drain()
            outcomes[f"{kind} {await _status(reader, 60)}"] += 1
            writer.close()
        except ConnectionError:
            outcomes[f"{kind} cut off"] += 1  # the enclave refused and closed while we still sent


def _bombs(url: str) -> dict[str, bytes]:
    """What a non-party can seal: the enclave's HPKE key is public (/v1/attestation)."""
    import base64
    import hashlib

    import cbor2

    from oblv_mpc import keys
    from oblv_mpc.protocol import hpke
    from oblv_mpc.protocol.envelope import Context

    info = httpx.get(f"{url}/v1/info").json()
    answer = httpx.get(f"{url}/v1/attestation", params={"nonce": os.urandom(32).hex()}).json()
    suite = hpke.SuiteName(answer["suite"])
    context = Context(
        info["session"], bytes.fromhex(info["manifest_sha256"]), suite, base64.b64decode(answer["hpke_public_key"])
    )
    recipient = hpke.public_key(suite, context.enclave_hpke)
    count = 9 * MiB - 4096
    bomb = b"\x9a" + count.to_bytes(4, "big") + b"\xa0" * count  # ~670 MiB once decoded
    header = cbor2.dumps(
        {
            "v": 2,
            "op": "upload",
            "session": context.session,
            "manifest": context.manifest_sha256,
            "enclave": context.enclave_sha256,
            "party": "p00",  # a party's name, signed with a key that is not that party's
            "id": os.urandom(16),
            "time": int(time.time() * 1000),
            "reply": hpke.generate(suite).public_bytes,
            "body": hashlib.sha256(bomb).digest(),
        },
        canonical=True,
    )
    forged = cbor2.dumps([header, bomb, keys.sign(keys.generate(), b"oblv_mpc/1 request\x00" + header)])
    seal = lambda plaintext: hpke.seal(suite, recipient, plaintext, context.info("request", "upload"))  # noqa: E731
    return {"bomb": seal(bomb), "forged": seal(forged), "declared": b"", "chunked": b""}


async def _attack(url: str, connections: int, seconds: float) -> Counter[str]:
    port = int(url.rsplit(":", 1)[1])
    bodies = _bombs(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(seconds, stop.set)
    outcomes: Counter[str] = Counter()
    tasks = [asyncio.create_task(_slowloris(port, stop, outcomes)) for _ in range(connections // 2)]
    for index in range(connections - connections // 2):
        kind = ATTACK_KINDS[index % len(ATTACK_KINDS)]
        tasks.append(asyncio.create_task(_oversized(port, kind, bodies[kind], stop, outcomes)))
    print("attacking", flush=True)
    await stop.wait()
    await asyncio.wait(tasks, timeout=5)
    for task in tasks:
        task.cancel()
    return outcomes


def attack(url: str, connections: int, seconds: float) -> None:
    """The attackers' process: runs until SIGTERM or ``seconds``, then reports outcomes as JSON."""
    print(json.dumps(dict(asyncio.run(_attack(url, connections, seconds)))), flush=True)


# -- the run --------------------------------------------------------------------------------------


def _phase(
    folder: Path,
    manifest_path: Path,
    names: list[str],
    files: dict[str, Path],
    attackers: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    ca_dir = folder / "ca"
    enclave, url = _start_enclave(manifest_path, ca_dir, args.read_timeout)
    attacker = None
    try:
        if attackers:
            attacker = subprocess.Popen(
                [sys.executable, __file__, "--attack", url, str(attackers), str(args.time_limit)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert attacker.stdout is not None
            if attacker.stdout.readline().strip() != "attacking":
                raise RuntimeError("the attackers did not start")
            time.sleep(2)  # let them settle in
        start_at = time.time() + 3 + 0.3 * len(names)  # every party verified the enclave by then
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--honest",
                    url,
                    str(manifest_path),
                    str(folder / "keys" / f"{n}_private.der"),
                    str(files[n]),
                    str(ca_dir),
                    str(start_at),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in names
        ]
        reports = []
        for name, process in zip(names, clients, strict=True):
            out, err = process.communicate(timeout=args.time_limit)
            if process.returncode != 0:
                raise RuntimeError(f"party {name}'s upload failed:\n{err[-1500:]}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        outcomes: dict[str, int] = {}
        if attacker is not None:
            attacker.send_signal(signal.SIGTERM)
            out, _ = attacker.communicate(timeout=60)
            outcomes = json.loads(out.strip().splitlines()[-1])
        counts = _result(url, manifest_path, folder / "keys" / f"{names[0]}_private.der", ca_dir)
        peak = _peak_mib(enclave.pid)
    finally:
        for process in (attacker, enclave):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
    for name, report in zip(names, reports, strict=True):
        size = files[name].stat().st_size
        if report["bytes"] != size or report["rows"] != args.rows:
            raise RuntimeError(f"party {name}'s receipt says {report['rows']} rows, {report['bytes']} bytes")
    window = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    total = sum(f.stat().st_size for f in files.values())
    return {
        "mb_s": total / MB / window,
        "seconds": window,
        "slowest": max(r["end"] - r["start"] for r in reports),
        "peak_mib": peak,
        "counts": counts,
        "outcomes": outcomes,
    }


def main() -> int:
    modes = {"--serve": 4, "--honest": 6, "--attack": 3}
    if len(sys.argv) > 1 and sys.argv[1] in modes:
        a = sys.argv[2:]
        if sys.argv[1] == "--serve":
            serve(Path(a[0]), Path(a[1]), int(a[2]), float(a[3]))
        elif sys.argv[1] == "--honest":
            honest(a[0], Path(a[1]), Path(a[2]), Path(a[3]), Path(a[4]), float(a[5]))
        else:
            attack(a[0], int(a[1]), float(a[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=20)
    parser.add_argument("--mb", type=int, default=50, help="MB of CSV per party")
    parser.add_argument("--attackers", type=int, default=40, help="hostile connections")
    parser.add_argument("--read-timeout", type=float, default=30.0, help="the enclave's body read deadline, s")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds any phase may take")
    parser.add_argument("--quick", action="store_true", help="4 parties x 5 MB, 10 attackers, a 5 s deadline")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the generated files")
    args = parser.parse_args()
    if args.quick:
        args.parties, args.mb, args.attackers, args.read_timeout, args.time_limit = 4, 5, 10, 5.0, 300.0
    args.rows = args.mb * MB // 36
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        manifest_path, names, files = _setup(folder, args.parties, args.mb)
        expected = _expected_counts(files)
        phases = {
            "without attackers": _phase(folder, manifest_path, names, files, 0, args),
            f"with {args.attackers} attackers": _phase(folder, manifest_path, names, files, args.attackers, args),
        }
    for label, phase in phases.items():
        if phase["counts"] != expected:
            raise RuntimeError(f"{label}: the result {phase['counts']} is not {expected}")
    print(f"{args.parties} parties x {args.mb} MB at once; every receipt and both results checked")
    print(f"{'':>22} {'honest MB/s':>12} {'all done in':>12} {'slowest':>9} {'enclave peak':>13}")
    for label, p in phases.items():
        print(f"{label:>22} {p['mb_s']:>12.1f} {p['seconds']:>11.1f}s {p['slowest']:>8.1f}s {p['peak_mib']:>10.0f}MiB")
    attacked = list(phases.values())[1]
    print("attackers' outcomes:", ", ".join(f"{k}: {v}" for k, v in sorted(attacked["outcomes"].items())))
    if any(k.split()[-1] in ("200", "500") for k in attacked["outcomes"]):
        raise RuntimeError("an attack was answered 200 or 500")
    return 0


if __name__ == "__main__":
    sys.exit(main())
