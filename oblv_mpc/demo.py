"""``mpc demo``: the whole flow on this machine, narrated step by step.

It makes a key per party, writes and validates the session manifest, and generates each party's
table. Each step prints what it did; the demo says plainly where the project stops today.
"""

from __future__ import annotations

import csv
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oblv_mpc import keys, manifest
from oblv_mpc.manifest import Manifest

PARTY_NAMES = ("alice", "bob", "carol")
LEVELS = ("junior", "mid", "senior", "staff")


@dataclass(frozen=True)
class DemoSetup:
    """What the demo prepared: the folder, each party's files, the manifest."""

    folder: Path
    parties: tuple[str, ...]
    key_files: dict[str, keys.KeyPairFiles]
    data_files: dict[str, Path]
    manifest_path: Path
    manifest: Manifest


def _document(public_keys: dict[str, str], parties: tuple[str, ...], rows: int) -> dict[str, Any]:
    return {
        "version": manifest.SCHEMA_VERSION,
        "session": "demo-salaries",
        "description": "Employers compare salaries per job level; none sees another's employees.",
        "parties": {p: {"public_key": public_keys[p], "roles": ["contributor", "reader"]} for p in parties},
        "inputs": {
            f"{p}.employees": {
                "columns": {"employee_id": "text", "job_level": "text", "salary": "float"},
                "key": ["employee_id"],
                "max_rows": max(rows * 2, 10),
                "max_bytes": 64 * 1024 * 1024 + rows * 64,
            }
            for p in parties
        },
        "computations": {
            "average_salary": {
                "description": "Average salary per job level over all parties' employees.",
                "template": "aggregate",
                "params": {
                    "inputs": [f"{p}.employees" for p in parties],
                    "group_by": ["job_level"],
                    "aggregates": {"average_salary": {"avg": "salary"}},
                },
                "readers": list(parties),
                "min_group_size": 5,
            },
            "shared_employees": {
                "description": "How many employee ids appear at every party (people on several payrolls).",
                "template": "psi_cardinality",
                "params": {"inputs": [f"{p}.employees" for p in parties], "column": "employee_id"},
                "readers": list(parties),
            },
        },
    }


def _write_table(path: Path, party: str, rows: int, rng: random.Random) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["employee_id", "job_level", "salary"])
        for i in range(rows):
            # every tenth employee id is shared by all parties, the rest are the party's own
            employee = f"shared-{i}" if i % 10 == 0 else f"{party}-{i}"
            level = LEVELS[min(int(rng.expovariate(1.2)), len(LEVELS) - 1)]
            base = {"junior": 52_000, "mid": 71_000, "senior": 95_000, "staff": 128_000}[level]
            writer.writerow([employee, level, round(rng.gauss(base, base * 0.12), 2)])


def prepare(folder: Path, party_count: int, rows: int, say: Callable[[str], None], *, seed: int = 1) -> DemoSetup:
    """Keys, manifest and data for ``party_count`` parties in ``folder``."""
    parties = PARTY_NAMES[:party_count]
    rng = random.Random(seed)  # noqa: S311 - made-up demo data, not secrets
    key_files = {}
    public_keys = {}
    for party in parties:
        private = keys.generate()
        key_files[party] = keys.save_key_pair(private, folder / party, party)
        public_keys[party] = keys.to_base64(private.public_key())
        say(f"{party}: made an Ed25519 key, fingerprint {keys.short_fingerprint(private.public_key())}")
    manifest_path = folder / "sessions" / "demo-salaries.yaml"
    manifest_path.parent.mkdir(parents=True)
    manifest.dump_document(_document(public_keys, parties, rows), manifest_path)
    loaded = manifest.load(manifest_path)
    say(f"manifest: {manifest_path.name}, {len(loaded.computations)} computations, hash {loaded.hash[:16]}...")
    data_files = {}
    for party in parties:
        path = folder / party / "employees.csv"
        _write_table(path, party, rows, rng)
        data_files[party] = path
        say(f"{party}: {rows:,} private rows in {path.relative_to(folder)}")
    return DemoSetup(folder, parties, key_files, data_files, manifest_path, loaded)


def run(party_count: int, rows: int, keep: Path | None, say: Callable[[str], None]) -> DemoSetup:
    """Run the demo; keep its folder at ``keep`` if given, else remove it afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="mpc-demo-"))
    try:
        setup = prepare(folder, party_count, rows, say)
        say("stop: the enclave service is not built yet, so the demo ends after the agreement and the data")
        if keep is not None:
            if keep.exists():
                shutil.rmtree(keep)
            shutil.copytree(folder, keep)
            say(f"kept everything in {keep}")
        return setup
    finally:
        shutil.rmtree(folder, ignore_errors=True)
