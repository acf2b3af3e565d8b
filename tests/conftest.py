"""Shared fixtures: real keys and real manifests, no mocks."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oblv_mpc import keys


@pytest.fixture(scope="session", autouse=True)
def _own_mpc_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the user's ``~/.mpc`` (its development CA was made under another clock)."""
    previous = os.environ.get("MPC_HOME")
    os.environ["MPC_HOME"] = str(tmp_path_factory.mktemp("mpc-home"))
    yield
    if previous is None:
        os.environ.pop("MPC_HOME", None)
    else:
        os.environ["MPC_HOME"] = previous


@pytest.fixture(scope="session")
def party_keys() -> dict[str, keys.PrivateKey]:
    """One Ed25519 identity key per party name used in tests."""
    return {name: keys.generate() for name in ("alice", "bob", "carol", "mallory")}


def salary_document(
    party_keys: dict[str, keys.PrivateKey], parties: tuple[str, ...] = ("alice", "bob", "carol")
) -> dict[str, Any]:
    """A complete, valid three-party manifest as raw data (what YAML parses into)."""
    return {
        "version": 1,
        "session": "salaries",
        "description": "average salary per level",
        "parties": {
            p: {"public_key": keys.to_base64(party_keys[p].public_key()), "roles": ["contributor", "reader"]}
            for p in parties
        },
        "inputs": {
            f"{p}.employees": {
                "columns": {"id": "text", "level": "text", "salary": "float"},
                "key": ["id"],
                "max_rows": 1000,
                "max_bytes": 1_000_000,
                "protection": {
                    "unit": "id",
                    "min_distinct": 2,
                    "dimensions": ["level"],
                    "join_columns": ["id"],
                    "list_columns": ["id"],
                    "aggregates": {"salary": ["avg", "sum"]},
                },
            }
            for p in parties
        },
        "computations": {
            "average_salary": {
                "template": "aggregate",
                "params": {
                    "inputs": [f"{p}.employees" for p in parties],
                    "group_by": ["level"],
                    "aggregates": {"average_salary": {"avg": "salary"}},
                },
                "readers": list(parties),
            },
            "common_ids": {
                "template": "psi_cardinality",
                "params": {"inputs": [f"{p}.employees" for p in parties], "column": "id"},
                "readers": [parties[0]],
            },
        },
    }


@pytest.fixture
def salary_doc(party_keys: dict[str, keys.PrivateKey]) -> Callable[[], dict[str, Any]]:
    """A factory for fresh copies of :func:`salary_document`."""
    base = salary_document(party_keys)
    return lambda: copy.deepcopy(base)
