"""What glibc's trim threshold costs a chunk-sized buffer (oblv_mpc/runtime.py), in one run.

Each setting runs in a process of its own, as the `mpc` command and the enclave set it up:

1. the mmap threshold pinned at 32 MiB, trim threshold left at glibc's 128 KiB (before
   2026-12-08): a chunk freed at the top of the heap goes back to the kernel, the next faults in;
2. `runtime.pin_mmap_threshold()` as it is: the trim threshold at 64 MiB too.

Each process makes, the way an upload chunk goes through sealing, a 2.4 MB bytes object from
another (a copy), encodes it in CBOR (as a request body) and frees both, 400 times, and reports
the milliseconds per chunk and its peak resident memory.

    python benchmarks/allocator.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CHUNK = 2_400_000
ROUNDS = 400


def measure(setting: str) -> dict[str, float]:
    """In this process: set the allocator up as ``setting`` says, then time the chunk round trips."""
    import ctypes
    import ctypes.util

    import cbor2
    from _mpc_parties import peak_kib  # this script's folder, first on sys.path

    from oblv_mpc.runtime import pin_mmap_threshold

    if setting == "mmap-only":
        ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD alone
    else:
        pin_mmap_threshold()
    sources = [os.urandom(CHUNK) for _ in range(4)]
    start = time.perf_counter()
    for i in range(ROUNDS):
        copy = b"".join((b"", sources[i % 4]))
        body = cbor2.dumps({"data": copy, "index": i}, canonical=True)
        del copy, body
    seconds = time.perf_counter() - start
    return {"ms_per_chunk": seconds / ROUNDS * 1000, "peak_mib": peak_kib() / 1024}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2])))
        return 0
    results = {}
    for setting in ("mmap-only", "pinned"):
        command = [sys.executable, __file__, "--measure", setting]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[setting] = json.loads(done.stdout)
    before, after = results["mmap-only"], results["pinned"]
    print(f"{'setting':>34} {'ms per 2.4 MB chunk':>20} {'peak MiB':>9}")
    print(f"{'mmap threshold only':>34} {before['ms_per_chunk']:>20.3f} {before['peak_mib']:>9.0f}")
    print(f"{'mmap + trim (pin_mmap_threshold)':>34} {after['ms_per_chunk']:>20.3f} {after['peak_mib']:>9.0f}")
    ratio = before["ms_per_chunk"] / after["ms_per_chunk"]
    print(f"ratio: {ratio:.1f}x faster per chunk with the trim threshold raised")
    return 0


if __name__ == "__main__":
    sys.exit(main())
