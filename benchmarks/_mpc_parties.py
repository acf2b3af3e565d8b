"""mpc end to end as separate organisations would run it: the enclave in one process, each party in its own.

Used by benchmarks/mpc_vs_crypto.py (`run_mpc`). The enclave app (simulated NSM) serves on a
loopback port in a process of its own; each party is a process that imports everything, connects
nothing, and waits for commands on stdin, so that process start-up is not measured:

    attest   fetch and verify an attestation (EnclaveClient.connect)
    submit   upload the party's file: read with Arrow here, sent as IPC record batches
    compute  ask the enclave to run the computation
    fetch    fetch the result (a streamed one straight to a Parquet file) and verify every byte

Each answers one JSON line. The orchestrator sends a step to every party at once and times the
step until the last one answered, so the parties' uploads (and fetches) run concurrently. At the
end it reads the peak resident memory (VmHWM) of the enclave and of each party.

    python benchmarks/_mpc_parties.py --serve MANIFEST.json CA_DIR MEMORY_BYTES    (prints its URL)
    python benchmarks/_mpc_parties.py --party NAME MANIFEST.json KEY.der CA_DIR URL FILE OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve()


def peak_kib(pid: int | None = None) -> int:
    """VmHWM of a process (its peak resident set), KiB."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def serve(manifest_path: Path, ca_dir: Path, memory: int) -> None:
    """The enclave process: the real app on a free loopback port (printed), as `mpc enclave serve` runs it."""
    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()
    from oblv_mpc import manifest
    from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure
    from oblv_mpc.enclave import EnclaveSettings, create_app
    from oblv_mpc.enclave.server import ServerThread
    from oblv_mpc.limits import Limits

    loaded = manifest.from_data(json.loads(manifest_path.read_text()))
    settings = EnclaveSettings(limits=Limits(compute_memory_bytes=memory))
    app = create_app(loaded, SimulatedNsm(DevelopmentCA.load_or_create(ca_dir), measure()), settings)
    with ServerThread(app, limits=settings.limits) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the orchestrator closes our stdin


def party(name: str, manifest_path: Path, key: Path, ca_dir: Path, url: str, data: Path, out: Path) -> None:
    """A party's process: one command per stdin line, one JSON answer per line."""
    from oblv_mpc.runtime import pin_mmap_threshold

    pin_mmap_threshold()
    import httpx

    from oblv_mpc import keys, manifest
    from oblv_mpc.attestation import DevelopmentCA, measure
    from oblv_mpc.client import EnclaveClient

    loaded = manifest.from_data(json.loads(manifest_path.read_text()))
    policy = DevelopmentCA.load_or_create(ca_dir).policy(measure())
    http = httpx.Client(base_url=url, timeout=3600)
    client = EnclaveClient(http, loaded, keys.load_private_key(key), policy)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        step = line.strip()
        start = time.perf_counter()
        answer: dict[str, Any] = {}
        if step == "attest":
            client.connect()
        elif step == "submit":
            receipt = client.upload("data", data, format="arrow")
            answer = {"rows": receipt.rows, "bytes": receipt.size}
        elif step == "compute":
            client.compute("answer")
        elif step == "fetch":
            result = client.result("answer", rows=False)
            if result.stream is not None:
                client.save_result(result, out / f"answer-{name}.parquet", "parquet")
                answer = {"rows": result.row_count}
            else:
                answer = {"value": result.rows[0][0] if len(result.rows) == 1 else None, "rows": result.row_count}
        elif step == "peak":
            answer = {"peak_kib": peak_kib()}
        answer["seconds"] = time.perf_counter() - start
        print(json.dumps(answer, default=float), flush=True)
    http.close()


class Enclave:
    """The orchestrator's handle on the enclave process."""

    def __init__(self, manifest_path: Path, ca_dir: Path, memory: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE), "--serve", str(manifest_path), str(ca_dir), str(memory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise RuntimeError(f"the enclave did not start (exit {self.process.wait()})")
        self.idle_kib = peak_kib(self.process.pid)

    def peak_kib(self) -> int:
        return peak_kib(self.process.pid)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


class Party:
    """The orchestrator's handle on a party process."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  # its stderr, kept as long as the party
        self.process = subprocess.Popen(
            [sys.executable, str(HERE), "--party", name, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True,
        )  # fmt: skip
        self.answer()  # ready: imports done

    @property
    def _stdin(self) -> IO[str]:
        assert self.process.stdin is not None
        return self.process.stdin

    def send(self, step: str) -> None:
        self._stdin.write(step + "\n")
        self._stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.errors.seek(0)
            last = [text for text in self.errors.read().splitlines() if text.strip()][-1:]
            raise RuntimeError(f"party {self.name} stopped (exit {code}): {' '.join(last)[-300:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        self._stdin.close()
        self.process.wait(timeout=60)


def step(parties: list[Party], name: str) -> tuple[float, list[dict[str, Any]]]:
    """Send ``name`` to every party at once; the wall time until the last answered, and the answers."""
    start = time.perf_counter()
    for p in parties:
        p.send(name)
    answers = [p.answer() for p in parties]
    return time.perf_counter() - start, answers


def main() -> int:
    if sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "--party":
        name, manifest_path, key, ca_dir, url, data, out = sys.argv[2:9]
        party(name, Path(manifest_path), Path(key), Path(ca_dir), url, Path(data), Path(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
