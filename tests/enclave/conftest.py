"""A real enclave app with the simulated NSM, real keys and real clients, in process or on loopback."""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import AttestationPolicy, DevelopmentCA, Measurements, SimulatedNsm, measure
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import EnclaveSettings, create_app
from oblv_mpc.enclave.server import ServerThread
from oblv_mpc.manifest import Manifest

PARTIES = ("alice", "bob", "carol")


def session_document(party_keys: dict[str, keys.PrivateKey], parties: tuple[str, ...]) -> dict[str, Any]:
    """Every built-in template over the parties' tables (employees with id, level, salary).

    Each computation gets its own list: yaml.safe_dump would write a shared one as an anchor and
    aliases, which manifests refuse.
    """
    tables = [f"{p}.employees" for p in parties]
    document: dict[str, Any] = {
        "version": 1,
        "session": f"test-{len(parties)}",
        "parties": {
            p: {"public_key": keys.to_base64(party_keys[p].public_key()), "roles": ["contributor", "reader"]}
            for p in parties
        },
        "inputs": {
            t: {
                "columns": {"id": "text", "level": "text", "salary": "float"},
                "key": ["id"],
                "max_rows": 5000,
                "max_bytes": 1_000_000,
                "protection": {
                    "unit": "id",
                    "min_distinct": 3,
                    "dimensions": ["level"],
                    "join_columns": ["id"],
                    "list_columns": ["id"],
                    "aggregates": {"salary": ["avg", "max", "sum"]},
                    "disclose_suppressed": True,
                },
            }
            for t in tables
        },
        "computations": {
            "common": {"template": "psi", "params": {"inputs": [*tables], "column": "id"}, "readers": [parties[0]]},
            "common_count": {
                "template": "psi_cardinality",
                "params": {"inputs": [*tables], "column": "id"},
                "readers": list(parties),
            },
            "by_level": {
                "template": "aggregate",
                "params": {
                    "inputs": [*tables],
                    "group_by": ["level"],
                    "aggregates": {"avg_salary": {"avg": "salary"}, "top": {"max": "salary"}},
                },
                "readers": list(parties),
            },
            "joined": {
                "template": "join_aggregate",
                "params": {
                    "inputs": tables[:2],
                    "join_on": "id",
                    "group_by": [f"{parties[0]}.employees.level"],
                    "aggregates": {"total": {"sum": f"{parties[1]}.employees.salary"}},
                },
                "readers": [parties[1]],
            },
        },
    }
    # `joined` sums the second party's salaries over the rows matched with the first's: which of
    # the first's ids matched is then no secret, and its owner says so.
    document["inputs"][tables[0]]["protection"]["allow_others_aggregates_in_joins"] = True
    return document


def write_employees(path: Path, party: str, rows: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["id,level,salary"]
    for i in range(rows):
        ident = f"shared-{i}" if i % 4 == 0 else f"{party}-{i}"
        level = "ABCDE"[min(int(rng.expovariate(0.9)), 4)]  # E is rare: tests suppression
        lines.append(f"{ident},{level},{rng.uniform(20_000, 150_000):.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class World:
    """One running session: manifest, app, policy, keys, and data files per party."""

    manifest: Manifest
    app: FastAPI
    policy: AttestationPolicy
    keys: dict[str, keys.PrivateKey]
    files: dict[str, Path]
    http: httpx.Client
    clients: dict[str, EnclaveClient] = field(default_factory=dict)

    def client(self, party: str, **kwargs: Any) -> EnclaveClient:
        return EnclaveClient(self.http, self.manifest, self.keys[party], self.policy, **kwargs)


@pytest.fixture(scope="session")
def all_keys() -> dict[str, keys.PrivateKey]:
    return {name: keys.generate() for name in (*PARTIES, "mallory")}


@pytest.fixture(scope="session")
def dev_ca(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentCA:
    return DevelopmentCA.load_or_create(tmp_path_factory.mktemp("enclave-ca") / "dev-ca")


@pytest.fixture(scope="session")
def measurements() -> Measurements:
    return measure()


def make_world(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    parties: tuple[str, ...] = PARTIES,
    settings: EnclaveSettings | None = None,
    rows: int = 200,
    document: dict[str, Any] | None = None,
) -> World:
    m = manifest.from_data(document or session_document(all_keys, parties))
    app = create_app(m, SimulatedNsm(dev_ca, measurements), settings)
    files = {p: write_employees(tmp_path / f"{p}.csv", p, rows, seed=i) for i, p in enumerate(parties)}
    world = World(m, app, dev_ca.policy(measurements), all_keys, files, TestClient(app))
    world.clients = {p: world.client(p) for p in parties}
    return world


@pytest.fixture
def world(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> World:
    return make_world(tmp_path, all_keys, dev_ca, measurements)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 on a free port; yield its URL; stop it."""
    with ServerThread(app) as server:
        yield server.url
