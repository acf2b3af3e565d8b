"""``mpc demo``: a whole session on this machine, narrated step by step.

In a temporary folder: a key per party, the session manifest, each party's generated table;
the enclave app with the simulated NSM on a free loopback port, reached through a relay that
records every byte (the operator's view); each party verifies the attestation, submits its
table sealed, and fetches the results it may read; one party is refused a result it may not
read; finally the operator's recording is searched for the parties' rows.
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

import httpx

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure, write_pcr_file
from oblv_mpc.client import EnclaveClient, Result
from oblv_mpc.enclave import create_app
from oblv_mpc.enclave.server import ServerThread
from oblv_mpc.errors import EnclaveRefused
from oblv_mpc.manifest import Manifest
from oblv_mpc.relay import RecordingRelay, csv_values, found_in

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
                # Each employer's own rule: a released level holds at least 5 of its own employees.
                "protection": {
                    "unit": "employee_id",
                    "min_distinct": 5,
                    "dimensions": ["job_level"],
                    "join_columns": ["employee_id"],
                    "aggregates": {"salary": ["avg"]},
                    "disclose_suppressed": True,
                },
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
            },
            "shared_employees": {
                "description": "How many employee ids appear at every party (people on several payrolls).",
                "template": "psi_cardinality",
                "params": {"inputs": [f"{p}.employees" for p in parties], "column": "employee_id"},
                "readers": [parties[0]],
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


@dataclass(frozen=True)
class DemoOutcome:
    """What the demo showed, for its caller and its tests."""

    setup: DemoSetup
    results: dict[str, dict[str, Result]]
    refused: str
    wire_bytes: int
    values_checked: int
    values_on_wire: int


def run_session(setup: DemoSetup, say: Callable[[str], None], show: Callable[[str, Result], None]) -> DemoOutcome:
    """Serve the enclave and play every party's part against it, over real HTTP on loopback."""
    folder, loaded = setup.folder, setup.manifest
    ca = DevelopmentCA.load_or_create(folder / "dev-ca")
    measurements = measure()
    policy = ca.policy(measurements)
    write_pcr_file(policy, folder / "enclave-pcrs.yaml", description="demo enclave (development)")
    app = create_app(loaded, SimulatedNsm(ca, measurements))
    results: dict[str, dict[str, Result]] = {}
    with ServerThread(app) as server, RecordingRelay(server.port) as relay:
        say(f"operator: enclave running at {server.url} (simulated NSM), PCR0 {measurements.pcr0.hex()[:16]}...")
        say(f"operator: parties reach it through {relay.url}, where every byte is recorded")
        clients = {}
        for party in setup.parties:
            http = httpx.Client(base_url=relay.url, timeout=60)
            identity = keys.load_private_key(setup.key_files[party].private)
            clients[party] = EnclaveClient(http, loaded, identity, policy)
            connection = clients[party].connect()
            say(
                f"{party}: attestation verified (chain to the pinned development root, PCR0-2 match, fresh nonce, "
                f"manifest {loaded.hash[:12]}... bound)"
            )
            assert connection.attestation.development
        for party in setup.parties:
            receipt = clients[party].upload("employees", setup.data_files[party])
            say(f"{party}: submitted {receipt.rows:,} rows sealed; signed receipt SHA-256 {receipt.sha256[:16]}...")
        for party in setup.parties:
            results[party] = {}
            for computation in loaded.readable_by(party):
                result = clients[party].result(computation.name)
                results[party][computation.name] = result
                show(party, result)
        outsider = setup.parties[-1]
        refused = ""
        try:
            clients[outsider].result("shared_employees")
        except EnclaveRefused as exc:
            refused = exc.reason
            say(f"{outsider}: asked for shared_employees and was refused: {exc.reason}")
        for client in clients.values():
            client.http.close()
    wire = bytes(relay.captured)
    secrets = csv_values(setup.data_files.values())
    say(f"operator: searching the {len(wire):,} recorded bytes for the parties' {len(secrets):,} values...")
    leaked = len(found_in(wire, secrets))
    say(
        f"operator: recorded {len(wire):,} bytes on the wire; of {len(secrets):,} values from the parties' files, "
        f"{leaked} appear in it"
    )
    return DemoOutcome(setup, results, refused, len(wire), len(secrets), leaked)


def run(
    party_count: int,
    rows: int,
    keep: Path | None,
    say: Callable[[str], None],
    show: Callable[[str, Result], None],
) -> DemoOutcome:
    """Run the demo; keep its folder at ``keep`` if given, else remove it afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="mpc-demo-"))
    try:
        setup = prepare(folder, party_count, rows, say)
        outcome = run_session(setup, say, show)
        if keep is not None:
            if keep.exists():
                shutil.rmtree(keep)
            shutil.copytree(folder, keep)
            say(f"kept keys, manifest, data and PCR file in {keep}")
        return outcome
    finally:
        shutil.rmtree(folder, ignore_errors=True)
