"""FastEnclaves test fixtures: the session's keys and manifest, and the enclave as a real process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from oblv_mpc import keys, manifest

ROOT = Path(__file__).resolve().parents[2]
PARTIES = ("alice", "bob", "carol")
LOCAL = "http://127.0.0.1:3030"  # a TestClient's base URL: the proxy answers its own loopback address only


def document_of(party_keys: dict[str, keys.PrivateKey]) -> dict[str, Any]:
    """The session: three readers, one table of alice's."""
    return {
        "version": 1,
        "session": "fastenclaves",
        "parties": {
            p: {"public_key": keys.to_base64(party_keys[p].public_key()), "roles": ["reader"]} for p in PARTIES
        },
        "inputs": {},
        "computations": {"none": {"sql": "SELECT 1 AS x FROM alice.t", "readers": ["alice"]}},
    }


@pytest.fixture(scope="module")
def party_keys() -> dict[str, keys.PrivateKey]:
    """Keys of the three parties, and of mallory, who is none of them."""
    return {p: keys.generate() for p in (*PARTIES, "mallory")}


def manifest_of(party_keys: dict[str, keys.PrivateKey]) -> manifest.Manifest:
    """The session's manifest, with alice a contributor of ``alice.t``."""
    doc = document_of(party_keys)
    doc["parties"]["alice"]["roles"] = ["contributor", "reader"]
    doc["inputs"] = {"alice.t": {"columns": {"x": "integer"}, "protection": {"release": "unrestricted"}}}
    return manifest.from_data(doc)


@dataclass
class Enclave:
    """A running `mpc enclave serve` process."""

    url: str
    port: int
    process: subprocess.Popen[str]
    policy_file: Path
    lines: list[str]
    reader: threading.Thread

    def output(self) -> str:
        """What it printed so far (read all along: it logs a line per request)."""
        return "".join(list(self.lines))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=20)
        self.reader.join(timeout=20)
        assert self.process.stdout is not None
        self.process.stdout.close()


def start_enclave(workspace: Path, port: int = 0) -> Enclave:
    """`mpc enclave serve` with both example apps, as a real process."""
    env = {**os.environ, "MPC_HOME": str(workspace / "home"), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "oblv_mpc", "enclave", "serve", "--manifest", "s.yaml", "--port", str(port),
         "--app", "examples.millionaires:router", "--app", "examples.psi_service:router"],
        cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("ready: listening on "):
            url = line.split()[3]
            reader = threading.Thread(target=lines.extend, args=(process.stdout,), daemon=True)
            reader.start()
            return Enclave(url, int(url.rsplit(":", 1)[1]), process, workspace / "enclave-pcrs.yaml", lines, reader)
    raise AssertionError("".join(lines))


@pytest.fixture
def workspace(tmp_path: Path, party_keys: dict[str, keys.PrivateKey]) -> Path:
    """A folder holding the session's manifest as ``s.yaml``."""
    doc = document_of(party_keys)
    doc["parties"]["alice"]["roles"] = ["contributor", "reader"]
    doc["inputs"] = {"alice.t": {"columns": {"x": "integer"}, "protection": {"release": "unrestricted"}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short folder of our own (AF_UNIX paths are limited to 107 bytes; pytest's are long)."""
    path = Path(tempfile.mkdtemp(prefix="mpc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
