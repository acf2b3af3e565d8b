"""The enclave's request log (`mpc enclave serve`): one line per request, nothing a caller sent in it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import create_app
from tests.enclave.conftest import PARTIES, session_document


def test_each_request_is_one_line_without_bodies_queries_or_control_characters(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey]
) -> None:
    agreed = manifest.from_data(session_document(all_keys, PARTIES))
    ca = DevelopmentCA.load_or_create(tmp_path / "ca")
    lines: list[str] = []
    app = create_app(agreed, SimulatedNsm(ca, measure()), log=lines.append)
    http = TestClient(app)
    secret = os.urandom(16).hex()
    client = EnclaveClient(http, agreed, all_keys["alice"], ca.policy(measure()))
    client.connect()
    client.status()
    http.post("/v1/status", content=b"sealed? no: " + secret.encode())  # from no party: refused plain
    http.get("/v1/%1b[2Kforged%0aline")  # the server decodes the path: ESC and a line feed
    assert len(lines) == 4, lines
    assert re.fullmatch(r"GET /v1/attestation 200 - 0 B in, [\d,]+ B out, \d+ ms", lines[0]), lines[0]
    assert re.fullmatch(r"POST /v1/status 200 alice [\d,]+ B in, [\d,]+ B out, \d+ ms", lines[1]), lines[1]
    assert lines[2].startswith("POST /v1/status 400 - ") and lines[2].endswith(", refused cannot_open")
    assert lines[3].startswith("GET /v1/\\x1b[2Kforged\\nline 404 - ")  # escaped, one line
    joined = "\n".join(lines)
    assert "nonce=" not in joined and secret not in joined and "\x1b" not in joined
    assert all("\n" not in line for line in lines)
