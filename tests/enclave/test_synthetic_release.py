"""Synthetic releases through the real app: two hospitals, the simulated NSM, real clients.

One test runs OpenDP's MST for real (the release the issue asks for); the others use the ``spy``
plug-in (tests/synthetic/plugin), found through its entry point like any third-party synthesizer,
which is fast and lets a test see what the enclave handed it, and hold a generation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import create_app
from oblv_mpc.errors import EnclaveRefused, ManifestError, NotReady, StillRunning
from oblv_mpc.manifest import Manifest
from oblv_mpc.manifest.naming import unit_column
from oblv_mpc.synthetic.example import AGE_BINS, DIAGNOSES, HOSPITALS, SEXES, admissions_csv, hospitals_document


def public(private: dict[str, keys.PrivateKey]) -> dict[str, str]:
    return {name: keys.to_base64(key.public_key()) for name, key in private.items()}


PLUGIN = Path(__file__).resolve().parents[1] / "synthetic" / "plugin"
TABLE = "admissions"
COMPUTATION = "admissions_synthetic"


@pytest.fixture(scope="module")
def hospital_keys() -> dict[str, keys.PrivateKey]:
    return {name: keys.generate() for name in HOSPITALS}


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The test plug-in package on sys.path (so its entry point is found); its module, gate open."""
    monkeypatch.syspath_prepend(str(PLUGIN))
    import oblv_test_synthesizers as module

    module.RECEIVED.clear()
    module.GATE.set()
    yield module
    module.GATE.set()


@dataclasses.dataclass
class Hospitals:
    manifest: Manifest
    clients: dict[str, EnclaveClient]
    http: TestClient


def start(m: Manifest, hospital_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements):  # type: ignore[no-untyped-def]
    app = create_app(m, SimulatedNsm(dev_ca, measurements))
    http = TestClient(app)
    policy = dev_ca.policy(measurements)
    return Hospitals(m, {h: EnclaveClient(http, m, hospital_keys[h], policy) for h in HOSPITALS}, http)


def upload_both(world: Hospitals, tmp_path: Path, patients: int = 400, visits: int = 1) -> None:
    for i, h in enumerate(HOSPITALS):
        world.clients[h].upload(TABLE, admissions_csv(tmp_path / f"{h}.csv", h, patients, seed=i, visits=visits))


def wait(client: EnclaveClient, name: str = COMPUTATION) -> Any:
    return client.wait_for_result(name, poll_s=0.05)


def test_two_hospitals_receive_a_synthetic_table_over_exactly_the_declared_domain(
    tmp_path: Path, hospital_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """The real MST: right columns, only declared values, the agreed row count, the budget charged once."""
    m = manifest.from_data(hospitals_document(public(hospital_keys), rows=300))
    world = start(m, hospital_keys, dev_ca, measurements)
    upload_both(world, tmp_path, visits=2)
    results = {h: wait(world.clients[h]) for h in HOSPITALS}
    first, second = results.values()
    assert first.rows == second.rows  # one release, which every reader receives
    assert [c for c, _ in first.columns] == ["admitted", "age", "diagnosis", "sex"]
    assert len(first.rows) == 300
    declared = {
        "age": {"[0, 18]", "(18, 40]", "(40, 65]", "(65, 110]"},
        "sex": set(SEXES),
        "diagnosis": set(DIAGNOSES),
        "admitted": {"[2024-01-01, 2024-07-01]", "(2024-07-01, 2025-01-01]"},
    }
    assert len(declared["age"]) == len(AGE_BINS) - 1
    for i, (column, _) in enumerate(first.columns):
        assert {row[i] for row in first.rows} <= declared[column] | {None}
    assert first.rules["dp"]["mechanism"].startswith("MST (OpenDP")
    assert first.rules["dp"]["charged_epsilon"] <= 1.0
    status = world.clients["st_mary"].status()
    assert status["privacy"]["spent"] == pytest.approx(1.0)
    assert {"name": "mst", "version": "0.16.0"} in status["synthesizers"]
    spends = [e for e in world.clients["st_luke"].transcript() if e.kind == "privacy_spend"]
    assert len(spends) == 1


def test_a_unit_with_more_rows_than_allowed_is_capped_before_any_synthesizer_sees_them(
    tmp_path: Path,
    hospital_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    spy: Any,
) -> None:
    """A hospital whose patient has 50 admissions cannot weigh that patient 50 times."""
    m = manifest.from_data(
        hospitals_document(public(hospital_keys), synthesizer="spy", version="1.0", max_rows_per_unit=2)
    )
    world = start(m, hospital_keys, dev_ca, measurements)
    upload_both(world, tmp_path, patients=30, visits=50)
    wait(world.clients["st_mary"])
    (data, request), *_ = spy.RECEIVED
    assert unit_column() not in data.column_names  # units are the enclave's: never handed on
    assert request.max_rows_per_unit == 2
    assert data.num_rows == 2 * 30 * len(HOSPITALS)  # every patient: at most 2 of 50 rows


def test_a_party_that_does_not_read_the_release_is_refused(
    tmp_path: Path,
    hospital_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    spy: Any,
) -> None:
    m = manifest.from_data(
        hospitals_document(public(hospital_keys), synthesizer="spy", version="1.0", readers=["st_mary"])
    )
    world = start(m, hospital_keys, dev_ca, measurements)
    upload_both(world, tmp_path)
    for ask in (world.clients["st_luke"].compute, world.clients["st_luke"].result):
        with pytest.raises(EnclaveRefused) as refused:
            ask(COMPUTATION)
        assert refused.value.code == "forbidden"
    assert not spy.RECEIVED  # asking did not even start it
    assert len(wait(world.clients["st_mary"]).rows) == 500


def test_a_spent_budget_refuses_the_release(
    tmp_path: Path,
    hospital_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    spy: Any,
) -> None:
    """Validation keeps every release within the budget; the enclave refuses anyway if one is not."""
    m = manifest.from_data(
        hospitals_document(public(hospital_keys), synthesizer="spy", version="1.0", epsilon=1.0, budget=1.0)
    )
    computation = m.computations[COMPUTATION]
    assert computation.synthetic is not None
    greedy = dataclasses.replace(computation, synthetic=dataclasses.replace(computation.synthetic, epsilon=1.5))
    forged = dataclasses.replace(m, computations={COMPUTATION: greedy})
    world = start(forged, hospital_keys, dev_ca, measurements)
    upload_both(world, tmp_path)
    with pytest.raises(EnclaveRefused) as refused:
        world.clients["st_mary"].compute(COMPUTATION)
    assert refused.value.code == "budget_exhausted"
    assert not spy.RECEIVED
    assert world.clients["st_mary"].status()["privacy"]["spent"] == 0


def test_the_enclave_keeps_answering_while_it_generates_and_charges_once(
    tmp_path: Path,
    hospital_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    spy: Any,
) -> None:
    m = manifest.from_data(hospitals_document(public(hospital_keys), synthesizer="spy", version="1.0"))
    world = start(m, hospital_keys, dev_ca, measurements)
    upload_both(world, tmp_path)
    mary, luke = world.clients["st_mary"], world.clients["st_luke"]
    spy.GATE.clear()
    answer = mary.compute(COMPUTATION)
    assert answer["state"] == "running" and 0 <= answer["progress"] < 1
    deadline = time.monotonic() + 30
    while not spy.RECEIVED and time.monotonic() < deadline:
        time.sleep(0.01)
    status = luke.status()  # other requests are answered meanwhile
    assert status["computations"][COMPUTATION]["state"] == "running"
    assert status["computations"][COMPUTATION]["stage"] == "spy: waiting at the gate"
    assert len(luke.transcript()) > 0
    with pytest.raises(StillRunning) as running:
        luke.result(COMPUTATION)
    assert isinstance(running.value, NotReady) and running.value.progress == 0.5
    assert luke.compute(COMPUTATION)["state"] == "running"  # asking again starts nothing new
    with pytest.raises(EnclaveRefused) as frozen:  # inputs froze when generation started
        luke.upload(TABLE, admissions_csv(tmp_path / "again.csv", "st_luke", 10, seed=9))
    assert frozen.value.code == "frozen"
    spy.GATE.set()
    seen: list[float] = []
    result = luke.wait_for_result(COMPUTATION, poll_s=0.05, on_progress=lambda f, s: seen.append(f))
    assert len(result.rows) == 500
    assert mary.compute(COMPUTATION)["state"] == "done"
    assert len(spy.RECEIVED) == 1
    assert luke.status()["privacy"]["spent"] == pytest.approx(1.0)


def test_a_plugin_registered_through_an_entry_point_is_used(
    tmp_path: Path,
    hospital_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    spy: Any,
) -> None:
    m = manifest.from_data(hospitals_document(public(hospital_keys), synthesizer="spy", version="1.0"))
    world = start(m, hospital_keys, dev_ca, measurements)
    assert {"name": "spy", "version": "1.0"} in world.clients["st_mary"].status()["synthesizers"]
    upload_both(world, tmp_path)
    result = wait(world.clients["st_luke"])
    assert result.rules["dp"]["mechanism"] == "spy (tests), Laplace"
    assert result.rules["dp"]["synthesizer"] == {"name": "spy", "version": "1.0"}
    assert result.rules["synthetic"]["synthesizer"]["name"] == "spy"


@pytest.mark.parametrize(
    ("name", "version", "expected"),
    [
        ("spy", "1.0", "is not installed here"),  # the plug-in is not on the path: not in the image
        ("mst", "0.15.0", "not the agreed 0.15.0"),
        ("nosuch", "1", "is not installed here"),
    ],
)
def test_a_synthesizer_not_in_the_enclave_is_refused_before_any_upload(
    hospital_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    name: str,
    version: str,
    expected: str,
) -> None:
    m = manifest.from_data(hospitals_document(public(hospital_keys), synthesizer=name, version=version))
    with pytest.raises(ManifestError) as refused:
        create_app(m, SimulatedNsm(dev_ca, measurements))  # no enclave runs, so nothing can be uploaded
    assert expected in refused.value.message


def test_provisioning_a_manifest_with_a_synthesizer_the_image_lacks_is_refused(
    hospital_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """An enclave launched without a manifest stays unprovisioned: no party can upload to it."""
    import yaml

    app = create_app(None, SimulatedNsm(dev_ca, measurements))
    document = hospitals_document(public(hospital_keys), synthesizer="nosuch", version="1")
    response = TestClient(app).post("/v1/provision", content=yaml.safe_dump(document).encode())
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["code"] == "invalid_manifest"
    assert "synthesizer 'nosuch' is not installed here" in response.json()["detail"]["message"]
    assert app.state.enclave is None


def test_a_non_reader_cannot_time_a_synthetic_generation_from_the_transcript(
    tmp_path: Path,
    hospital_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    spy: Any,
) -> None:
    """mpc fetch asks until a generation ends; the ask that found it ended recorded the reader's
    fetch event at that time, so with the attempt event every party read how long it ran (and
    whether it failed fast), though only st_mary reads it. One clock for the enclave and clients,
    moved on by two minutes while the generation is held."""
    now = [dev_ca.not_before + dt.timedelta(hours=1)]
    document = hospitals_document(public(hospital_keys), synthesizer="spy", version="1.0", readers=["st_mary"])
    m = manifest.from_data(document)
    app = create_app(m, SimulatedNsm(dev_ca, measurements, clock=lambda: now[0]), clock=lambda: now[0])
    http = TestClient(app)
    policy = dev_ca.policy(measurements)
    clients = {h: EnclaveClient(http, m, hospital_keys[h], policy, clock=lambda: now[0]) for h in HOSPITALS}
    upload_both(Hospitals(m, clients, http), tmp_path, patients=50)
    spy.GATE.clear()
    with pytest.raises(StillRunning):
        clients["st_mary"].result(COMPUTATION)  # starts it
    now[0] += dt.timedelta(minutes=2)  # the generation takes two minutes
    spy.GATE.set()
    assert len(clients["st_mary"].wait_for_result(COMPUTATION, poll_s=0.01).rows) == 500
    events = clients["st_luke"].transcript()
    attempt = next(e for e in events if e.kind == "attempt")
    fetches = [e for e in events if e.kind == "fetch"]
    assert len(fetches) == 1 and fetches[0].time_ms == attempt.time_ms
    assert all(e.time_ms == attempt.time_ms for e in events[events.index(attempt) :])
