"""Declared sizes are checked before Arrow allocates them: measured in a fresh process.

Arrow's memory pool keeps its peak for the life of the process, so each hostile stream is fed to
the enclave's check (:class:`oblv_mpc.arrow_ingest.ArrowIngest`, as the enclave keeps it) in a
new interpreter, which reports the pool's peak. Had the check come after Arrow's read, the peak
would be the declared size. A schema's names are not the pool's (Arrow copies them into C++
strings): the interpreter also reports how much its peak resident memory grew, and may run under
a cap on its address space, so that a check that regressed fails the test, not the machine.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.arrow_forge import EMPLOYEES, END, edit, employees, schema_dag, write

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, resource, sys
import pyarrow as pa
from oblv_mpc import keys, manifest
from oblv_mpc.arrow_ingest import ArrowIngest
from oblv_mpc.errors import InputDataError
from tests.enclave.conftest import PARTIES, session_document

document = session_document({p: keys.generate() for p in PARTIES}, PARTIES)
table = manifest.from_data(document).inputs["alice.employees"]
check = ArrowIngest(table, keep=True)
stream = open(sys.argv[1], "rb").read()
if len(sys.argv) > 2:  # at most this many more MiB of address space than the interpreter has now
    mapped = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize"))
    cap = mapped * 1024 + int(sys.argv[2]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    check.feed(stream)
    check.finish()
    outcome = "accepted"
except InputDataError as exc:
    outcome = exc.message
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"outcome": outcome, "peak": pa.default_memory_pool().max_memory(), "grown": grown}))
"""


def _bomb(width: int) -> pa.RecordBatch:
    rows = 4000
    level = pa.array(["\0" * width] * rows)
    return pa.record_batch([employees(rows).column(0), level, pa.array([0.0] * rows)], schema=EMPLOYEES)


def _declares(size: int) -> bytes:
    """Ten rows, zstd; the salary buffer declares ``size`` bytes once decompressed."""
    schema, batch, end = write(EMPLOYEES, [employees(10)], compression="zstd")
    forged = edit(batch)
    salary, _ = forged.buffers()[-1]
    struct.pack_into("<q", forged.body, salary, size)
    return schema + forged.bytes() + end


def _huge_metadata() -> bytes:
    schema, batch, end = write(EMPLOYEES, [employees(10)])
    lying = bytearray(batch)
    struct.pack_into("<i", lying, 4, 0x7FFFFFF8)
    return schema + bytes(lying) + end


def _fed(tmp_path: Path, stream: bytes, *, address_space_mib: int | None = None) -> dict[str, Any]:
    path = tmp_path / "stream.arrows"
    path.write_bytes(stream)
    cap = [] if address_space_mib is None else [str(address_space_mib)]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), *cap], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"the check died ({done.returncode}): {done.stderr[-500:]}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(
    ("forge", "says"),
    [
        (lambda: b"".join(write(EMPLOYEES, [_bomb(10_000)], compression="zstd")), "max_bytes (1,000,000 bytes) once"),
        (lambda: b"".join(write(EMPLOYEES, [_bomb(10_000)], compression="lz4")), "max_bytes (1,000,000 bytes) once"),
        (lambda: _declares(48 * MiB), "max_bytes (1,000,000 bytes) once read"),
        (lambda: _declares(1 << 40), "more than 67,108,864"),
        (_huge_metadata, "a metadata length the chunk does not hold"),
    ],
    ids=["zstd_bomb_40mb", "lz4_bomb_40mb", "declares_48mib", "declares_1tib", "metadata_2gib"],
)
def test_a_declared_size_is_refused_before_arrow_allocates_it(tmp_path: Path, forge: Any, says: str) -> None:
    stream = forge()
    assert len(stream) < 1 * MiB
    report = _fed(tmp_path, stream)
    assert report["peak"] < 1 * MiB, f"Arrow's pool peaked at {report['peak']:,} bytes"
    assert says in report["outcome"], report["outcome"]


def test_the_measure_sees_a_table_that_is_read(tmp_path: Path) -> None:
    """The same measure on an accepted upload of ~4 MB once read: the peak does show it."""
    stream = b"".join(write(EMPLOYEES, [_bomb(200).slice(0, 4000)], compression="zstd"))
    report = _fed(tmp_path, stream)
    assert report["outcome"] == "accepted"
    assert report["peak"] > 800_000


@pytest.mark.parametrize(
    ("fields", "name_bytes"),
    [(4096, 16384), (100_000, 500_000)],  # 33 KB for 64 MiB of names (+130 MiB); 900 KB for 46 GiB (abort)
    ids=["33kb", "900kb"],
)
def test_an_arrow_schema_naming_one_field_many_times_costs_the_enclave_no_memory(
    tmp_path: Path, fields: int, name_bytes: int
) -> None:
    """The schema bomb of tests/enclave/test_arrow_upload_hostile.py, measured: refused from its
    size before Arrow copies a name; with 512 MiB of address space to spare, a regression aborts
    the child (std::bad_alloc) instead of taking the machine's memory."""
    stream = schema_dag(fields, name_bytes, share="field") + END
    assert len(stream) < 1_000_000  # within the table's max_bytes
    report = _fed(tmp_path, stream, address_space_mib=512)
    assert "a schema message of" in report["outcome"], report["outcome"]
    assert report["grown"] < 8 * MiB, f"peak resident memory grew by {report['grown'] / MiB:.0f} MiB"
