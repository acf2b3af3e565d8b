"""Launching as a Nitro Enclave would: manifest provisioned at launch, attestor choice, vsock."""

from __future__ import annotations

import datetime as dt
import functools
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements, NitroNsm, SimulatedNsm
from oblv_mpc.cli import app as cli_app
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import create_app
from oblv_mpc.enclave.attestors import AttestorKind, choose
from oblv_mpc.enclave.server import ServerThread, listen_vsock
from oblv_mpc.errors import EnclaveRefused, NsmError, PolicyError, UsageError
from tests.enclave.conftest import PARTIES, session_document


def test_manifest_provisioned_at_launch(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    app = create_app(None, SimulatedNsm(dev_ca, measurements))
    http = TestClient(app)
    assert http.get("/v1/attestation", params={"nonce": "00" * 32}).json()["detail"]["code"] == "not_provisioned"
    assert http.post("/v1/provision", content=b"version: 1\nsession: [").json()["detail"]["code"] == "invalid_manifest"
    doc = session_document(all_keys, PARTIES)
    text = yaml.safe_dump(doc).encode()
    answer = http.post("/v1/provision", content=text).json()
    agreed = manifest.from_data(doc)
    assert answer["manifest_sha256"] == agreed.hash
    again = http.post("/v1/provision", content=text)
    assert again.status_code == 409 and again.json()["detail"]["code"] == "already_provisioned"
    policy = dev_ca.policy(measurements)
    EnclaveClient(http, agreed, all_keys["alice"], policy).connect()  # the agreed manifest connects
    other = dict(doc, session="someone-elses")
    with pytest.raises(PolicyError, match="the enclave runs session manifest"):
        EnclaveClient(http, manifest.from_data(other), all_keys["alice"], policy).connect()


def test_a_provisioned_enclave_keeps_the_injected_clocks(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """A host that sets the machine's clock cannot move a provisioned enclave's: it uses the one given
    to create_app, as an enclave made with its manifest at once does."""
    enclave_time = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)  # another clock than the machine's
    app = create_app(None, SimulatedNsm(dev_ca, measurements), clock=lambda: enclave_time, monotonic=lambda: 7.0)
    http = TestClient(app)
    doc = session_document(all_keys, PARTIES)
    assert http.post("/v1/provision", content=yaml.safe_dump(doc).encode()).status_code == 200
    agreed, policy = manifest.from_data(doc), dev_ca.policy(measurements)
    in_step = EnclaveClient(http, agreed, all_keys["alice"], policy, clock=lambda: enclave_time)
    assert in_step.status()["session"] == agreed.session
    machine_time = EnclaveClient(http, agreed, all_keys["bob"], policy)
    machine_time.connection = in_step.connection  # verified; only its requests' time differs
    with pytest.raises(EnclaveRefused) as refused:
        machine_time.status()
    assert refused.value.code == "stale"
    assert 7190 <= int(refused.value.reason.removeprefix("request time is ").split("s away")[0]) <= 7200


def test_provision_command(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(session_document(all_keys, PARTIES)))
    with ServerThread(create_app(None, SimulatedNsm(dev_ca, measurements))) as server:
        runner = CliRunner()
        done = runner.invoke(cli_app, ["enclave", "provision", "--url", server.url, "--manifest", str(path)])
        assert done.exit_code == 0, done.output
        assert manifest.load(path).hash in done.stdout
        again = runner.invoke(cli_app, ["enclave", "provision", "--url", server.url, "--manifest", str(path)])
        # plain JSON from whatever answers at the URL: shown as unauthenticated (docs/protocol.md, section 7)
        assert again.exit_code == 6 and "already_provisioned" in again.stderr and "unauthenticated" in again.stderr


def test_attestor_choice_never_falls_back_silently(tmp_path: Path) -> None:
    absent = tmp_path / "nsm"
    assert isinstance(choose(AttestorKind.AUTO, vsock=False, ca_dir=tmp_path / "ca", device=absent), SimulatedNsm)
    with pytest.raises(UsageError, match="vsock means running in a Nitro Enclave"):
        choose(AttestorKind.AUTO, vsock=True, ca_dir=tmp_path / "ca", device=absent)
    with pytest.raises(NsmError, match="cannot open"):
        choose(AttestorKind.NSM, vsock=True, ca_dir=tmp_path / "ca", device=absent)
    assert isinstance(choose(AttestorKind.SIMULATED, vsock=True, ca_dir=tmp_path / "ca", device=absent), SimulatedNsm)
    present = tmp_path / "dev-nsm"
    present.write_bytes(b"")  # where the device exists, auto takes the NSM
    chosen = choose(AttestorKind.AUTO, vsock=True, ca_dir=tmp_path / "ca", device=present)
    assert isinstance(chosen, NitroNsm)
    chosen.close()


@functools.cache
def _vsock_loopback_available() -> str | None:
    """None if this kernel offers vsock loopback, else why not."""
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:
        return "this Python has no AF_VSOCK"
    try:
        server = listen_vsock(0)
    except OSError as exc:
        return f"cannot bind an AF_VSOCK socket: {exc}"
    port = server.getsockname()[1]
    client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(1)
    try:
        client.connect((getattr(socket, "VMADDR_CID_LOCAL", 1), port))
    except OSError as exc:
        return f"no vsock loopback in this kernel (the vsock_loopback module is not loaded): {exc}"
    finally:
        client.close()
        server.close()
    return None


@pytest.mark.skipif(_vsock_loopback_available() is not None, reason=str(_vsock_loopback_available()))
def test_serving_on_vsock(
    all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    from oblv_mpc.enclave.server import serve_forever

    app = create_app(manifest.from_data(session_document(all_keys, PARTIES)), SimulatedNsm(dev_ca, measurements))
    sock = listen_vsock(0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=serve_forever, args=(app, sock), daemon=True)
    thread.start()
    time.sleep(0.5)
    client = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect((getattr(socket, "VMADDR_CID_LOCAL", 1), port))
    client.sendall(b"GET /v1/info HTTP/1.1\r\nHost: enclave\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    client.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b'"session":"test-3"' in answer
