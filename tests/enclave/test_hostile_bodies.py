"""A non-party on the network attacks with bodies: decode bombs, trickles, floods of connections.

Anyone who reaches the port can seal a request (the HPKE key is public): what it may cost the
enclave is bounded before its sender is known. Each test attacks the real app, in process or on
a real loopback port.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import cbor2
import httpx
import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.client import Connection
from oblv_mpc.enclave import EnclaveSettings
from oblv_mpc.enclave.server import ServerThread
from oblv_mpc.limits import Limits, MiB
from oblv_mpc.protocol import hpke
from tests.enclave.conftest import World, make_world

SEALED = {"content-type": "application/octet-stream"}


def _empty_maps(size: int) -> bytes:
    """One CBOR array of empty maps, ``size`` bytes: ~70 bytes of Python objects per byte."""
    count = size - 5
    return b"\x9a" + count.to_bytes(4, "big") + b"\xa0" * count


def _seal(connection: Connection, op: str, plaintext: bytes) -> bytes:
    context = connection.context
    return hpke.seal(
        context.suite, hpke.public_key(context.suite, context.enclave_hpke), plaintext, context.info("request", op)
    )


def _framed(connection: Connection, party: str, identity: keys.PrivateKey, body: bytes) -> bytes:
    """A well-formed request frame around ``body`` bytes, signed by ``identity`` as ``party``."""
    context = connection.context
    header = cbor2.dumps(
        {
            "v": 2,
            "op": "upload",
            "session": context.session,
            "manifest": context.manifest_sha256,
            "enclave": context.enclave_sha256,
            "party": party,
            "id": os.urandom(16),
            "time": int(time.time() * 1000),
            "reply": hpke.generate(context.suite).public_bytes,
            "body": hashlib.sha256(body).digest(),
        },
        canonical=True,
    )
    signature = keys.sign(identity, b"oblv_mpc/1 request\x00" + header)
    return cbor2.dumps([header, body, signature])


def _peak_bytes(world: World, envelope: bytes) -> tuple[httpx.Response, int]:
    tracemalloc.start()
    try:
        response = world.http.post("/v1/upload", content=envelope, headers=SEALED)
        return response, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("shape", ["bare", "unknown_party", "forged_signature"])
def test_a_non_partys_9mib_array_of_empty_maps_is_refused_without_decoding(world: World, shape: str) -> None:
    connection = world.clients["alice"].connect()
    bomb = _empty_maps(9 * MiB - 1024)
    plaintext = {
        "bare": bomb,  # the whole plaintext: not even a frame
        "unknown_party": _framed(connection, "mallory", world.keys["mallory"], bomb),
        "forged_signature": _framed(connection, "alice", world.keys["mallory"], bomb),
    }[shape]
    envelope = _seal(connection, "upload", plaintext)
    assert len(envelope) <= world.app.state.enclave.limits.max_envelope_bytes
    started = time.monotonic()
    response, peak = _peak_bytes(world, envelope)
    elapsed = time.monotonic() - started
    expected = {"bare": (400, "cannot_open"), "unknown_party": (403, "unknown_party")}
    assert (response.status_code, response.json()["code"]) == expected.get(shape, (403, "bad_signature"))
    # decoding it would take ~670 MiB and seconds; the frame and header checks take neither
    assert peak < 3 * len(envelope), f"peak {peak / MiB:.0f} MiB for a {len(envelope) / MiB:.0f} MiB body"
    assert elapsed < 5


def test_an_envelope_past_the_limit_is_refused_before_its_body_is_read(world: World) -> None:
    limit = world.app.state.enclave.limits.max_envelope_bytes

    def declared_only() -> Iterator[bytes]:  # sends nothing: the Content-Length alone is refused
        yield from ()

    response = world.http.post(
        "/v1/upload", content=declared_only(), headers={**SEALED, "content-length": str(limit + 1)}
    )
    assert response.status_code == 413 and response.json()["detail"]["code"] == "too_large"


def _world_with(
    tmp_path: Path, keys_: dict[str, keys.PrivateKey], ca: DevelopmentCA, m: Measurements, **limits: float
) -> World:
    return make_world(tmp_path, keys_, ca, m, settings=EnclaveSettings(limits=Limits(**limits)))  # type: ignore[arg-type]


@pytest.fixture
def quick_deadline(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> World:
    return _world_with(tmp_path, all_keys, dev_ca, measurements, body_read_timeout_s=1.0)


@pytest.fixture
def few_connections(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> World:
    return _world_with(tmp_path, all_keys, dev_ca, measurements, max_connections=8, body_read_timeout_s=30.0)


@pytest.fixture
def small_budget(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> World:
    return _world_with(tmp_path, all_keys, dev_ca, measurements, max_inflight_bytes=4 * MiB, body_read_timeout_s=30.0)


@pytest.fixture
def quick_headers(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> World:
    return _world_with(tmp_path, all_keys, dev_ca, measurements, max_connections=4, header_timeout_s=1.0)


def _open(port: int, declared: int, path: str = "/v1/status") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
    sock.sendall(f"{head}Content-Length: {declared}\r\n\r\n".encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.slow
def test_a_body_trickled_byte_by_byte_is_cut_off_at_the_read_deadline(quick_deadline: World) -> None:
    limits = quick_deadline.app.state.settings.limits
    with ServerThread(quick_deadline.app, limits=limits) as server:
        sock = _open(server.port, 1000)
        started = time.monotonic()
        answer = b""
        with sock:
            sock.settimeout(0.2)
            for _ in range(50):  # one byte every 0.1 s: the body would take 100 s
                try:
                    sock.sendall(b"x")
                except OSError:
                    break  # the enclave closed the connection
                try:
                    if chunk := sock.recv(65536):
                        answer += chunk
                        break
                except TimeoutError:
                    continue
            sock.settimeout(5)
            answer += _answer(sock)  # and then it closes the connection
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and b"read_timeout" in answer, answer[:200]
    assert limits.body_read_timeout_s <= elapsed < limits.body_read_timeout_s + 3


@pytest.mark.slow
def test_more_connections_than_the_limit_are_refused_without_growing_memory(few_connections: World) -> None:
    limits = few_connections.app.state.settings.limits
    with ServerThread(few_connections.app, limits=limits) as server:
        holders = []
        for _ in range(limits.max_connections - 1):  # the last slot is the one that refuses (uvicorn counts it)
            holders.append(_open(server.port, 1000))  # a body that never comes
            time.sleep(0.05)
        tracemalloc.start()
        try:
            refused = 0
            for _ in range(40):
                with _open(server.port, 1000) as extra:
                    extra.settimeout(5)
                    refused += _answer(extra).startswith(b"HTTP/1.1 503")
            grown = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        for sock in holders:
            sock.close()
    assert refused == 40
    assert grown < 4 * MiB, f"the server grew by {grown / MiB:.1f} MiB for 40 refused connections"


@pytest.mark.slow
def test_bodies_past_the_in_flight_budget_are_refused_as_busy(small_budget: World) -> None:
    limits = small_budget.app.state.settings.limits
    with ServerThread(small_budget.app, limits=limits) as server:
        holder = _open(server.port, 6 * MiB)
        holder.sendall(b"x" * (3 * MiB))  # 3 of the 4 MiB budget, held while the rest never comes
        time.sleep(0.3)
        answers: list[httpx.Response] = []

        def send() -> None:
            answers.append(httpx.post(f"{server.url}/v1/status", content=b"y" * (2 * MiB), headers=SEALED))

        sender = threading.Thread(target=send)
        sender.start()
        sender.join(timeout=10)
        holder.close()
    assert answers and answers[0].status_code == 503 and answers[0].json()["detail"]["code"] == "busy"
    assert small_budget.app.state.inflight.used == 0  # every byte given back


def _closed_after(sock: socket.socket, opened: float, wait: float) -> float:
    """Seconds from ``opened`` until the server closed ``sock`` (EOF or reset), at most ``wait`` more."""
    sock.settimeout(wait)
    with sock:
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
    return time.monotonic() - opened


@pytest.mark.slow
def test_connections_that_never_finish_a_requests_headers_are_closed_and_free_their_slots(
    quick_headers: World,
) -> None:
    """Connections that send nothing (or part of a request, or a byte after a response) held every
    slot for good: uvicorn's keep-alive timer starts only after a response, and stops at the first
    byte. Each is now closed at ``header_timeout_s``, and the enclave answers again."""
    limits = quick_headers.app.state.settings.limits
    with ServerThread(quick_headers.app, limits=limits) as server:
        info = f"{server.url}/v1/info"
        stalled = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        stalled.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stalled.recv(65536).startswith(b"HTTP/1.1 200")
        stalled.sendall(b"G")  # the next request's first byte, and nothing more
        opened = {stalled: time.monotonic()}
        partial = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        partial.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")  # headers never ended
        opened[partial] = time.monotonic()
        for _ in range(limits.max_connections - 2):
            opened[socket.create_connection(("127.0.0.1", server.port), timeout=5)] = time.monotonic()  # silent
        assert httpx.get(info, timeout=5).status_code == 503  # every slot is held
        held = [_closed_after(sock, at, limits.header_timeout_s + 5) for sock, at in opened.items()]
        assert httpx.get(info, timeout=5).status_code == 200
    assert all(limits.header_timeout_s - 0.1 <= seconds < limits.header_timeout_s + 3 for seconds in held), held


@pytest.mark.slow
def test_a_connection_answered_before_its_body_ended_cannot_keep_its_slot(quick_headers: World) -> None:
    """A route that reads no body answers at once; one more byte of that body then cancelled
    uvicorn's keep-alive timer for good, and the header deadline, waiting for a next request that
    could never start, did not run: each such connection held a slot until its client went."""
    limits = quick_headers.app.state.settings.limits
    with ServerThread(quick_headers.app, limits=limits) as server:
        held = []
        for _ in range(limits.max_connections):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")  # a body no one reads
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            with contextlib.suppress(OSError):  # the connection may be gone already
                sock.sendall(b"x")
            held.append((sock, time.monotonic()))
        closed = [_closed_after(sock, at, limits.keep_alive_s + limits.header_timeout_s + 5) for sock, at in held]
        assert httpx.get(f"{server.url}/v1/info", timeout=5).status_code == 200
    assert all(seconds < limits.header_timeout_s for seconds in closed), closed
