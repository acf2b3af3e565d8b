"""The app's plain routes and its OpenAPI description."""

from __future__ import annotations

from tests.enclave.conftest import World


def test_openapi_documents_every_route(world: World) -> None:
    spec = world.http.get("/openapi.json").json()
    paths = spec["paths"]
    for op in ("upload", "status", "compute", "result", "transcript"):
        route = paths[f"/v1/{op}"]["post"]
        assert route["summary"]
        assert "application/octet-stream" in route["requestBody"]["content"]
    assert "nonce" in str(paths["/v1/attestation"]["get"]["parameters"])
    assert "/bench/plain" not in paths


def test_info_is_advisory_and_public(world: World) -> None:
    info = world.http.get("/v1/info").json()
    assert info["manifest_sha256"] == world.manifest.hash
    assert info["development"] is True
    assert info["key_id"] == world.app.state.enclave.key_id
