"""``oblv_mpc.provisioning``: the operator gives an awaiting enclave its manifest.

Against the real app in process, and against whatever else could answer at the enclave's
address (the operator, a load balancer, an attacker on the path): nothing it says is taken for
the enclave's word, and an answer that does not report this very manifest's hash is refused.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm
from oblv_mpc.enclave import create_app
from oblv_mpc.errors import EnclaveUnreachable, ManifestError, UnauthenticatedAnswer
from oblv_mpc.provisioning import provision
from tests.enclave.conftest import PARTIES, free_port, session_document


@pytest.fixture
def manifest_file(tmp_path: Path, all_keys: dict[str, keys.PrivateKey]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(session_document(all_keys, PARTIES)))
    return path


@pytest.fixture
def awaiting(dev_ca: DevelopmentCA, measurements: Measurements) -> TestClient:
    return TestClient(create_app(None, SimulatedNsm(dev_ca, measurements)))


def _answering(status: int, body: bytes, seen: list[httpx.Request]) -> httpx.Client:
    """An httpx client whose every request is answered by something other than the enclave."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=body)

    return httpx.Client(base_url="http://enclave.example", transport=httpx.MockTransport(answer))


def test_an_awaiting_enclave_is_provisioned_once(manifest_file: Path, awaiting: TestClient) -> None:
    done = provision(awaiting, manifest_file)
    assert done.manifest_sha256 == manifest.load(manifest_file).hash
    with pytest.raises(UnauthenticatedAnswer, match="unauthenticated") as info:
        provision(awaiting, manifest_file)
    assert info.value.status == 409 and info.value.code == "already_provisioned"


def test_a_success_for_another_manifest_is_refused(manifest_file: Path) -> None:
    seen: list[httpx.Request] = []
    lying = _answering(200, b'{"manifest_sha256": "' + b"0" * 64 + b'"}', seen)
    with pytest.raises(UnauthenticatedAnswer, match="reports manifest '0000") as info:
        provision(lying, manifest_file)
    assert info.value.code == "wrong_manifest" and "another manifest" in (info.value.hint or "")
    assert seen[0].content == manifest_file.read_bytes()  # the bytes on file, exactly


def test_a_success_that_is_not_json_is_refused(manifest_file: Path) -> None:
    with pytest.raises(UnauthenticatedAnswer, match="reports manifest None") as info:
        provision(_answering(200, b"<html>OK</html>", []), manifest_file)
    assert info.value.code == "wrong_manifest"


def test_a_refusal_is_quoted_escaped_never_as_the_enclaves(manifest_file: Path) -> None:
    body = b'{"detail": {"code": "invalid_manifest", "message": "\\u001b[2Jfix line 3"}}'
    with pytest.raises(UnauthenticatedAnswer) as info:
        provision(_answering(400, body, []), manifest_file)
    assert info.value.code == "invalid_manifest" and info.value.status == 400
    assert "\x1b" not in info.value.message and "not from the attested enclave" in info.value.message


def test_an_invalid_manifest_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nsession: [\n")
    seen: list[httpx.Request] = []
    with pytest.raises(ManifestError):
        provision(_answering(200, b"{}", seen), path)
    assert seen == []


def test_nothing_listening_is_unreachable(manifest_file: Path) -> None:
    http = httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=5)
    with (
        http,
        pytest.raises(EnclaveUnreachable, match=r"no answer from the enclave at http://127\.0\.0\.1:\d+: could not"),
    ):
        provision(http, manifest_file)
