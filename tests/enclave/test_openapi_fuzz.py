"""Schemathesis throws what the enclave's own OpenAPI allows (and what it does not) at every route.

Whatever a stranger sends, valid by the schema or not, the answer is a refusal, never a server
error: no 500, and a 503 only for the reasons the app gives on purpose (not provisioned yet, or
busy). Both shapes of the app
are fuzzed: provisioned, and awaiting its manifest (when ``/v1/provision`` is open to anyone).
Examples are bounded per route so the whole file stays well under a minute.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm
from oblv_mpc.enclave import create_app
from tests.enclave.conftest import session_document

_DELIBERATE_503 = {"not_provisioned", "busy"}
_BOUNDED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _fuzz_every_route(app: Any) -> list[str]:
    """Run bounded examples against each operation of the app's OpenAPI; return the routes fuzzed."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = st.one_of(operation.as_strategy(mode) for mode in schemathesis.GenerationMode)

        @_BOUNDED
        @given(case=cases)
        def fuzz(case: Any) -> None:
            _no_server_error(case)

        fuzz()
        fuzzed.append(operation.label)
    return fuzzed


def _no_server_error(case: Any) -> None:
    response = case.call()
    if response.status_code < 500:
        return
    code = None
    try:
        detail = response.json()
        code = detail.get("detail", detail).get("code") if isinstance(detail, dict) else None
    except ValueError:
        pass
    assert response.status_code == 503 and code in _DELIBERATE_503, (
        f"{case.method} {case.path}: {response.status_code} {response.text[:200]}"
    )


def test_a_provisioned_enclave_answers_any_request_without_a_server_error(
    all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    loaded = manifest.from_data(session_document(all_keys, ("alice", "bob", "carol")))
    fuzzed = _fuzz_every_route(create_app(loaded, SimulatedNsm(dev_ca, measurements)))
    assert {"POST /v1/upload", "POST /v1/http", "POST /v1/provision", "GET /v1/attestation"} <= set(fuzzed)


def test_an_enclave_awaiting_its_manifest_answers_any_request_without_a_server_error(
    dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    app = create_app(None, SimulatedNsm(dev_ca, measurements))
    assert "POST /v1/provision" in _fuzz_every_route(app)
    assert app.state.enclave is None  # nothing a fuzzer made up was taken as a manifest
