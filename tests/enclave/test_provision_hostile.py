"""Anyone may call ``POST /v1/provision`` before the operator does: it must not stall the enclave.

The manifest is parsed in a worker thread, one at a time, within ``Limits.max_manifest_bytes``
and the body read deadline, so every other route keeps answering while a slow one is checked.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm
from oblv_mpc.enclave import EnclaveSettings, create_app
from oblv_mpc.enclave.server import ServerThread
from oblv_mpc.limits import KiB, Limits
from tests.conftest import salary_document


def _slow_yaml(size: int) -> bytes:
    """Valid YAML that is no manifest and takes PyYAML a second or more per 200 KiB."""
    rows = size // 26
    return ("version: 1\nitems:\n" + "".join(f"  - [{i}, {i + 1}, {i + 2}]\n" for i in range(rows))).encode()


def _slow_manifest(party_keys: dict[str, keys.PrivateKey], computations: int) -> bytes:
    """A valid manifest within every YAML cap whose check takes seconds: each SQL is bound by DuckDB."""
    document = salary_document(party_keys)
    for i in range(computations):
        document["computations"][f"c{i}"] = {
            "sql": f"SELECT level, count(*) AS n{i} FROM alice.employees GROUP BY level",
            "readers": ["alice"],
        }
    return yaml.safe_dump(document).encode()


@pytest.mark.slow
def test_other_routes_keep_answering_while_a_slow_provision_is_checked(
    dev_ca: DevelopmentCA, measurements: Measurements, party_keys: dict[str, keys.PrivateKey]
) -> None:
    app = create_app(None, SimulatedNsm(dev_ca, measurements))
    body = _slow_manifest(party_keys, 250)
    with ServerThread(app) as server:
        provisioned: list[httpx.Response] = []
        attacker = threading.Thread(
            target=lambda: provisioned.append(httpx.post(f"{server.url}/v1/provision", content=body, timeout=120))
        )
        attacker.start()
        time.sleep(0.5)  # the body is in, the parse has begun
        started = time.monotonic()
        info = httpx.get(f"{server.url}/v1/info", timeout=30)
        waited = time.monotonic() - started
        still_parsing = attacker.is_alive()
        attacker.join(timeout=120)
    assert info.status_code == 503 and info.json()["detail"]["code"] == "not_provisioned"
    assert still_parsing, (
        "/v1/info answered only after the manifest check ended (it waited behind it, or the check was too quick)"
    )
    assert waited < 2, f"/v1/info waited {waited:.1f} s behind the manifest check"
    assert provisioned[0].status_code == 200, provisioned[0].text


def test_a_manifest_past_the_limit_is_refused_before_it_is_read(
    dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    settings = EnclaveSettings(limits=Limits(max_manifest_bytes=64 * KiB))
    app = create_app(None, SimulatedNsm(dev_ca, measurements), settings)
    response = TestClient(app).post("/v1/provision", content=_slow_yaml(100 * KiB))
    assert response.status_code == 413 and response.json()["detail"]["code"] == "too_large"
    assert app.state.enclave is None
