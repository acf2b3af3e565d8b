"""A hostile party attacks with valid signatures: streams, uploads, malformed heads, replays.

These requests pass every check a non-party fails, so what they may cost is bounded per party
(``Limits``), and a malformed field is a sealed refusal, never a server error.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import EnclaveService, EnclaveSettings, create_app
from oblv_mpc.errors import EnclaveRefused
from oblv_mpc.limits import Limits
from oblv_mpc.protocol.envelope import ENCLAVE_KEY_HEADER, open_response, seal_request
from tests.enclave.conftest import World, make_world, session_document
from tests.raw_bodies import Raw


def _world(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], ca: DevelopmentCA, m: Measurements, **kw: Any
) -> World:
    return make_world(tmp_path, all_keys, ca, m, settings=EnclaveSettings(limits=Limits(**kw)))


def _chunk(index: int = 0, *, final: bool = False, stream: bytes | None = None, **head: Any) -> dict[str, Any]:
    body = {"stream": stream or os.urandom(16), "index": index, "final": final, "data": b"x" * 100}
    return {**body, "method": "POST", "path": "/x", **head} if index == 0 else body


def test_a_party_opening_more_fastenclaves_streams_than_allowed_is_refused(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = _world(tmp_path, all_keys, dev_ca, measurements, max_streams_per_party=3)
    alice, bob = world.clients["alice"], world.clients["bob"]
    for _ in range(3):
        assert alice.call(Raw("http", _chunk())) == {"received": 0}
    with pytest.raises(EnclaveRefused) as refused:
        alice.call(Raw("http", _chunk()))
    assert refused.value.code == "too_many_streams"
    assert bob.call(Raw("http", _chunk())) == {"received": 0}  # another party is not held back


def test_a_partys_unfinished_bodies_are_bounded_in_bytes(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = _world(tmp_path, all_keys, dev_ca, measurements, max_inflight_bytes_per_party=250, max_http_body_bytes=200)
    alice = world.clients["alice"]
    first = _chunk()
    alice.call(Raw("http", first))
    alice.call(Raw("http", _chunk(1, stream=first["stream"])))  # 200 bytes held in one body
    with pytest.raises(EnclaveRefused) as refused:
        alice.call(Raw("http", _chunk()))  # 100 more in another: past the party's 250
    assert refused.value.code == "busy"
    with pytest.raises(EnclaveRefused) as too_large:
        alice.call(Raw("http", _chunk(2, stream=first["stream"])))  # past one body's 200
    assert too_large.value.code == "too_large"
    assert world.app.state.inflight.used == 0  # the discarded bodies gave their bytes back


@pytest.mark.parametrize(
    "headers",
    [5, "content-type: text/plain", {"a": "b"}, [1, 2], [["a"]], [["a", 1]], [["bad name", "v"]], [["a", "\x1b[2K"]]],
    ids=["int", "str", "map", "ints", "single", "non-text", "space-in-name", "control-chars"],
)
def test_a_malformed_headers_field_is_a_clean_refusal(world: World, headers: Any) -> None:
    with pytest.raises(EnclaveRefused) as refused:
        world.clients["alice"].call(Raw("http", _chunk(headers=headers, final=True)))
    assert refused.value.code == "bad_request"


@pytest.mark.parametrize("head", [{"method": "GET /x HTTP/1.1\r\n"}, {"path": "/x\n"}, {"path": 7}, {"query": ["a"]}])
def test_a_malformed_request_head_is_a_clean_refusal(world: World, head: dict[str, Any]) -> None:
    with pytest.raises(EnclaveRefused) as refused:
        world.clients["alice"].call(Raw("http", _chunk(final=True, **head)))
    assert refused.value.code == "bad_request"


def _two_tables(all_keys: dict[str, keys.PrivateKey]) -> dict[str, Any]:
    document = session_document(all_keys, ("alice", "bob", "carol"))
    document["inputs"]["alice.extra"] = document["inputs"]["alice.employees"]
    return document


def _first_chunk(table: str) -> dict[str, Any]:
    return {"upload": os.urandom(16), "table": table, "index": 0, "final": False, "data": b"id,level,salary\n"}


def test_a_party_starting_more_uploads_than_allowed_is_refused(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    settings = EnclaveSettings(limits=Limits(max_uploads_per_party=1))
    world = make_world(tmp_path, all_keys, dev_ca, measurements, settings=settings, document=_two_tables(all_keys))
    alice = world.clients["alice"]
    assert alice.call(Raw("upload", _first_chunk("alice.employees"))) == {"received": 0}
    with pytest.raises(EnclaveRefused) as refused:
        alice.call(Raw("upload", _first_chunk("alice.extra")))
    assert refused.value.code == "too_many_uploads"
    # restarting the same table supersedes its upload: not one more
    assert alice.call(Raw("upload", _first_chunk("alice.employees"))) == {"received": 0}
    # making an upload fail ends it, and only then may another start
    with pytest.raises(EnclaveRefused):
        alice.call(Raw("upload", {**_first_chunk("alice.employees"), "index": 5}))
    receipt = alice.upload("employees", world.files["alice"])
    assert receipt.rows == 200
    assert alice.call(Raw("upload", _first_chunk("alice.extra"))) == {"received": 0}


def test_failing_uploads_on_purpose_does_not_get_past_the_limit(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    settings = EnclaveSettings(limits=Limits(max_uploads_per_party=1))
    world = make_world(tmp_path, all_keys, dev_ca, measurements, settings=settings, document=_two_tables(all_keys))
    alice = world.clients["alice"]
    started = _first_chunk("alice.employees")
    alice.call(Raw("upload", started))
    bogus = _first_chunk("alice.employees")  # refused before it starts: the first upload still runs
    with pytest.raises(EnclaveRefused):
        alice.call(Raw("upload", {**bogus, "data": 5}))
    with pytest.raises(EnclaveRefused):
        alice.call(Raw("upload", {**bogus, "index": 1}))  # a chunk of the upload that never started
    with pytest.raises(EnclaveRefused) as refused:
        alice.call(Raw("upload", _first_chunk("alice.extra")))
    assert refused.value.code == "too_many_uploads"


class _Clocks:
    """A wall clock the host can set, and a monotonic clock it cannot.

    The wall clock starts at the real time: the simulated NSM's certificates are made at it.
    """

    def __init__(self) -> None:
        self.wall = dt.datetime.now(dt.UTC)
        self.monotonic = 1000.0

    def now(self) -> dt.datetime:
        return self.wall


def _replay_app(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], ca: DevelopmentCA, m: Measurements, **limits: Any
) -> tuple[TestClient, EnclaveClient, _Clocks]:
    clocks = _Clocks()
    loaded = manifest.from_data(session_document(all_keys, ("alice", "bob", "carol")))
    settings = EnclaveSettings(limits=Limits(**limits))
    service = EnclaveService(
        loaded, SimulatedNsm(ca, m), settings, clock=clocks.now, monotonic=lambda: clocks.monotonic
    )
    http = TestClient(create_app(loaded, service.attestor, service=service))
    client = EnclaveClient(http, loaded, all_keys["alice"], ca.policy(m), clock=clocks.now)
    return http, client, clocks


def _status(client: EnclaveClient, clocks: _Clocks, alice: keys.PrivateKey) -> tuple[bytes, Any]:
    """A status request signed by alice at the wall clock's time, kept to be sent again."""
    connection = client.connection or client.connect()
    time_ms = int(clocks.wall.timestamp() * 1000)
    envelope, reply, request_id = seal_request(connection.context, "status", "alice", alice, None, time_ms=time_ms)
    return envelope, (connection, reply, request_id)


def _send(http: TestClient, envelope: bytes, opener: Any) -> Any:
    connection, reply, request_id = opener
    headers = {ENCLAVE_KEY_HEADER: connection.key_id}
    response: httpx.Response = http.post("/v1/status", content=envelope, headers=headers)
    return open_response(connection.context, reply, "status", request_id, response.content, connection.signing_key)


def _refusal(http: TestClient, envelope: bytes, opener: Any) -> str:
    with pytest.raises(EnclaveRefused) as refused:
        _send(http, envelope, opener)
    return refused.value.code


def test_a_replay_after_the_wall_clock_jumps_forward_then_back_is_still_refused(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    http, client, clocks = _replay_app(tmp_path, all_keys, dev_ca, measurements)
    client.connect()
    envelope, opener = _status(client, clocks, all_keys["alice"])
    assert _send(http, envelope, opener)["inputs"]
    clocks.wall += dt.timedelta(hours=1)  # the host moves the clock forward...
    assert _refusal(http, envelope, opener) == "stale"
    again = _status(client, clocks, all_keys["alice"])
    assert _send(http, *again)["inputs"]  # (a request then made the enclave tidy up)
    clocks.wall -= dt.timedelta(hours=1)  # ...and back: the request is in its window again
    assert _refusal(http, envelope, opener) == "replayed"


def test_a_replay_after_the_enclave_forgot_the_request_is_still_refused(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    http, client, clocks = _replay_app(tmp_path, all_keys, dev_ca, measurements)
    client.connect()
    envelope, opener = _status(client, clocks, all_keys["alice"])
    _send(http, envelope, opener)
    clocks.monotonic += 3600  # long enough that the id is forgotten; the wall clock was set back meanwhile
    clocks.wall += dt.timedelta(milliseconds=1)
    fresh, fresh_opener = _status(client, clocks, all_keys["alice"])
    assert _send(http, fresh, fresh_opener)["inputs"]  # an honest request still passes
    assert _refusal(http, envelope, opener) in {"stale", "replayed"}


def test_the_replay_memory_is_bounded_and_forgets_safely(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    http, client, clocks = _replay_app(tmp_path, all_keys, dev_ca, measurements, max_replay_entries_per_party=4)
    client.connect()
    sent = []
    for _ in range(10):
        clocks.wall += dt.timedelta(milliseconds=1)
        envelope, opener = _status(client, clocks, all_keys["alice"])
        _send(http, envelope, opener)
        sent.append((envelope, opener))
    service = http.app.state.enclave  # type: ignore[attr-defined]
    assert len(service.replay) == 4
    assert _refusal(http, *sent[0]) == "stale"  # forgotten, and still refused
    assert _refusal(http, *sent[-1]) == "replayed"
