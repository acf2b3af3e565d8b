"""The red team's world: hr's protected staff table, the attacker mal's own table, a running enclave.

``hr.staff``: ``dept`` is the only dimension, ``id`` (the key and privacy unit) the only join
column, ``salary`` may be summed or averaged, and every released group needs 3 distinct ids of
hr's. ``mal.t`` is the attacker's own table (``id`` key, ``ref``, ``label``), unrestricted.
"""

from __future__ import annotations

import io
import re
from typing import Any

from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import EnclaveSettings, create_app
from oblv_mpc.errors import EnclaveRefused

Doc = dict[str, Any]
Keys = dict[str, keys.PrivateKey]

BOSS_SALARY = 987_654.0
HR_CSV = (
    "dept,email,id,salary\n"
    + "".join(f"eng,e{i}@hr,e{i},{100_000 + i}\n" for i in range(3))
    + f"boss,boss@hr,boss,{BOSS_SALARY}\n"
)


def parties(org_keys: Keys, *names: str) -> Doc:
    """Each named party as contributor and reader."""
    return {
        p: {"public_key": keys.to_base64(org_keys[p].public_key()), "roles": ["contributor", "reader"]} for p in names
    }


def hr_staff(**overrides: Any) -> Doc:
    """hr's table and its owner's rules (``overrides`` replace protection fields)."""
    protection = {
        "unit": "id",
        "min_distinct": 3,
        "dimensions": ["dept"],
        "join_columns": ["id"],
        "aggregates": {"salary": ["sum", "avg"]},
        **overrides,
    }
    return {
        "columns": {"id": "text", "dept": "text", "salary": "float", "email": "text"},
        "key": ["id"],
        "protection": protection,
    }


MAL_T = {
    "columns": {"id": "text", "ref": "text", "label": "text"},
    "key": ["id"],
    "protection": {"release": "unrestricted"},
}


def document(org_keys: Keys, sql: str | None = None, *, readers: list[str] | None = None, **extra: Any) -> Doc:
    """A session of hr and mal with one computation ``c``: ``sql``, or a template (``extra``)."""
    computation: Doc = {"sql": sql} if sql is not None else dict(extra.pop("computation"))
    computation["readers"] = readers or ["mal"]
    inputs = {"hr.staff": hr_staff(), "mal.t": MAL_T, **extra.pop("inputs", {})}
    return {
        "version": 1,
        "session": "red-team",
        "parties": parties(org_keys, "hr", "mal"),
        "inputs": inputs,
        "computations": {"c": computation},
        **extra,
    }


def attacker_table(refs: list[tuple[str, str]]) -> str:
    """mal.t with one row per (ref, label), ids x0, x1, ..."""
    return "id,label,ref\n" + "".join(f"x{i},{label},{ref}\n" for i, (ref, label) in enumerate(refs))


class Enclave:
    """A running enclave for one manifest (the real app in process), and a client per party."""

    def __init__(
        self, doc: Doc, org_keys: Keys, ca: DevelopmentCA, m: Measurements, settings: EnclaveSettings | None = None
    ) -> None:
        self.manifest = manifest.from_data(doc)
        self.app = create_app(self.manifest, SimulatedNsm(ca, m), settings)
        http = TestClient(self.app)
        policy = ca.policy(m)
        self.clients = {p: EnclaveClient(http, self.manifest, org_keys[p], policy) for p in doc["parties"]}

    def upload(self, party: str, table: str, csv: str) -> Any:
        return self.clients[party].upload(table, io.BytesIO(csv.encode()))

    def readable_by(self, party: str) -> str:
        """Status and transcript as ``party`` reads them, without times, ids, signatures, commitments.

        Commitments are salted, so they differ between two runs of the same world and carry nothing.
        """
        status = self.clients[party].status()
        status.pop("instance")
        events = [(e.kind, e.data) for e in self.clients[party].transcript() if e.kind != "start"]
        return re.sub(r"[0-9a-f]{64}", "<commitment>", repr([status, events]))


def outcome(enclave: Enclave, party: str, computation: str) -> tuple[Any, ...]:
    """What ``party`` gets when it asks for the result: (columns, rows, suppressed) or (code, reason)."""
    try:
        result = enclave.clients[party].result(computation)
    except EnclaveRefused as exc:
        return (exc.code, exc.reason)
    return (result.columns, result.rows, result.suppressed_groups)
