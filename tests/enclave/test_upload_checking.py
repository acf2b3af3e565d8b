"""Hostile CSV through the real app: checked in linear time, outside the session lock, and the
races that opens (two chunks of one upload at once, an upload discarded or its table frozen
while its last chunk is being checked) all end with nothing half-done."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import EnclaveSettings
from oblv_mpc.errors import EnclaveRefused, InputDataError
from oblv_mpc.limits import Limits
from oblv_mpc.tables import CsvIngest, validate_file
from tests.enclave.conftest import PARTIES, World, make_world, serve, session_document

MiB = 1024 * 1024
HEADER = b"id,level,salary\n"


@pytest.fixture
def big(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> World:
    """A session whose tables take up to 64 MiB (the enclave's chunk limit stays 8 MiB)."""
    document = session_document(all_keys, PARTIES)
    for spec in document["inputs"].values():
        spec["max_bytes"] = 64 * MiB
    return make_world(tmp_path, all_keys, dev_ca, measurements, document=document)


class _Background:
    """A call on its own thread; its outcome is awaited with a time limit."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._outcome.append(call())
        except Exception as exc:  # handed to the test thread by outcome()
            self._outcome.append(exc)

    def outcome(self, timeout: float = 30) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"no answer within {timeout}s"
        return self._outcome[0]


def _within(seconds: float, call: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``call``; its outcome and duration, failing (not hanging) if it takes far too long."""
    start = time.perf_counter()
    outcome = _Background(call).outcome(timeout=max(30, 10 * seconds))
    return outcome, time.perf_counter() - start


class _HeldCheck:
    """Holds the enclave's check of the next chunk until released, as a long parse would.

    The real check runs once released; only the enclave's ingest (it keeps the columns) is held,
    never the client's local check.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self._armed = False
        real = CsvIngest.feed

        def feed(ingest: CsvIngest, data: bytes) -> None:
            if self._armed and ingest.keep:
                self._armed = False
                self.entered.set()
                self.release.wait(20)
            real(ingest, data)

        monkeypatch.setattr(CsvIngest, "feed", feed)

    def arm(self) -> None:
        self.entered.clear()
        self.release.clear()
        self._armed = True


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> _HeldCheck:
    return _HeldCheck(monkeypatch)


@pytest.fixture
def http_world(world: World) -> Iterator[tuple[World, dict[str, EnclaveClient]]]:
    """The world's app on real HTTP; one connected client, with its own connection pool, per party."""
    with serve(world.app) as url:
        pools = [httpx.Client(base_url=url, timeout=10) for _ in PARTIES]
        try:
            clients = {
                p: EnclaveClient(pool, world.manifest, world.keys[p], world.policy)
                for p, pool in zip(PARTIES, pools, strict=True)
            }
            for client in clients.values():
                client.connect()
            yield world, clients
        finally:
            for pool in pools:
                pool.close()


def _chunk(client: EnclaveClient, upload_id: bytes, index: int, data: bytes, whole: bytes | None = None) -> Any:
    """One upload chunk as a misbehaving client sends it (``whole``: this is the final chunk)."""
    body: dict[str, Any] = {"upload": upload_id, "table": f"{client.party.name}.employees", "index": index}
    body |= {"final": whole is not None, "data": data}
    if whole is not None:
        body |= {"sha256": hashlib.sha256(whole).hexdigest(), "bytes": len(whole)}
    return client._call("upload", body)


def _submitted(world: World, party: str = "alice") -> dict[str, Any]:
    """The status of the inputs, as ``party`` (who sees its own tables' rows and hashes) reads it."""
    inputs: dict[str, Any] = world.client(party).status()["inputs"]
    return inputs


# -- linear time ---------------------------------------------------------------------------------


def test_an_open_quote_before_8_mib_of_line_breaks_is_refused_in_linear_time(big: World) -> None:
    alice = big.client("alice", chunk_bytes=8 * MiB)  # one chunk: the hours-long case
    hostile = HEADER + b'"' + b"\n" * (8 * MiB - len(HEADER) - 1)
    assert len(hostile) == 8 * MiB
    refused, seconds = _within(2, lambda: alice.upload("employees", io.BytesIO(hostile)))
    assert isinstance(refused, InputDataError) and "line 2: a quoted field is never closed" in refused.message
    assert seconds < 6, f"8 MiB took {seconds:.2f}s"  # quadratic took hours; linear takes ~0.02 s
    assert not _submitted(big)["alice.employees"]["submitted"]
    assert not big.app.state.enclave.session._uploads


def test_the_same_line_breaks_closed_by_a_quote_are_one_value_accepted_in_linear_time(big: World) -> None:
    alice = big.client("alice", chunk_bytes=8 * MiB)
    tail = b'",A,1\n'
    closed = HEADER + b'"' + b"\n" * (8 * MiB - len(HEADER) - 1 - len(tail)) + tail
    receipt, seconds = _within(2, lambda: alice.upload("employees", io.BytesIO(closed)))
    assert not isinstance(receipt, Exception), receipt
    assert receipt.rows == 1 and receipt.size == 8 * MiB
    assert seconds < 6, f"8 MiB took {seconds:.2f}s"  # quadratic took hours; linear takes ~0.02 s


# -- stray quotes: the client's check and the enclave agree with Arrow ---------------------------


def test_a_stray_quote_passes_the_local_check_and_the_enclave_and_arrives_intact(world: World) -> None:
    pizza = '12" pizza ""deluxe"" (quotes inside a field are characters)'
    for party in PARTIES:
        path = world.files[party]
        path.write_bytes(path.read_bytes() + f"{pizza},A,1.5\n".encode())
        table = world.manifest.inputs[f"{party}.employees"]
        assert validate_file(path, table, block=7).rows == 201  # the client's check, in tiny pieces
        assert world.clients[party].upload("employees", path).rows == 201
    common = world.clients["alice"].result("common")  # the ids that every party holds
    assert [pizza] in common.rows


# -- the session lock is not held while a chunk is checked ---------------------------------------


def test_status_answers_while_another_partys_chunk_is_being_checked(
    http_world: tuple[World, dict[str, EnclaveClient]], held: _HeldCheck
) -> None:
    world, clients = http_world
    held.arm()
    upload = _Background(lambda: clients["alice"].upload("employees", world.files["alice"]))
    assert held.entered.wait(10)
    latencies = []
    begun = time.perf_counter()
    while time.perf_counter() - begun < 3.0:  # alice's check takes at least this long
        start = time.perf_counter()
        status = clients["bob"].status()
        latencies.append(time.perf_counter() - start)
        assert not status["inputs"]["alice.employees"]["submitted"]
    held.release.set()
    receipt = upload.outcome()
    assert not isinstance(receipt, Exception), receipt
    assert receipt.rows == 200
    # Blocked behind the lock, a status would take the whole 3 s; loaded CI machines are slow, not that slow.
    assert max(latencies) < 1.5, f"status took up to {max(latencies):.2f}s while alice's chunk was checked"
    assert clients["alice"].status()["inputs"]["alice.employees"]["sha256"] == receipt.sha256


# -- races opened by checking outside the lock ---------------------------------------------------


def test_a_chunk_sent_while_the_previous_one_is_checked_discards_the_upload(
    http_world: tuple[World, dict[str, EnclaveClient]], held: _HeldCheck
) -> None:
    world, clients = http_world
    alice = clients["alice"]
    data = world.files["alice"].read_bytes()
    upload_id = os.urandom(16)
    held.arm()
    first = _Background(lambda: _chunk(alice, upload_id, 0, data[:100]))
    assert held.entered.wait(10)
    for index in (1, 0):  # the next chunk early, or the same one again
        with pytest.raises(EnclaveRefused) as info:
            _chunk(alice, upload_id, index, data[100:])
        assert info.value.code == "upload_sequence"
    held.release.set()
    late = first.outcome()
    assert isinstance(late, EnclaveRefused) and late.code == "upload_sequence"
    assert "discarded (chunk 1 arrived while chunk 0 was being checked)" in late.reason
    with pytest.raises(EnclaveRefused, match="not in progress"):
        _chunk(alice, upload_id, 1, data[100:], whole=data)
    assert not world.app.state.enclave.session._uploads
    assert not _submitted(world)["alice.employees"]["submitted"]


def test_an_upload_superseded_while_its_last_chunk_is_checked_is_not_committed(
    http_world: tuple[World, dict[str, EnclaveClient]], held: _HeldCheck
) -> None:
    world, clients = http_world
    alice = clients["alice"]
    old = world.files["alice"].read_bytes()
    held.arm()
    superseded = _Background(lambda: _chunk(alice, os.urandom(16), 0, old, whole=old))
    assert held.entered.wait(10)
    newer = old + b"late,B,2\n"
    receipt = alice.upload("employees", io.BytesIO(newer))  # a new upload of the same table
    held.release.set()
    late = superseded.outcome()
    assert isinstance(late, EnclaveRefused) and late.code == "upload_sequence"
    assert "superseded by a new upload" in late.reason
    entry = _submitted(world)["alice.employees"]
    assert entry["sha256"] == receipt.sha256 == hashlib.sha256(newer).hexdigest() and entry["rows"] == 201
    uploads = [e for e in alice.transcript() if e.kind == "upload"]
    assert len(uploads) == 1  # the superseded upload left no event behind


def test_a_table_frozen_while_its_last_chunk_is_checked_is_not_replaced(
    http_world: tuple[World, dict[str, EnclaveClient]], held: _HeldCheck
) -> None:
    world, clients = http_world
    first = {p: clients[p].upload("employees", world.files[p]) for p in PARTIES}
    replacement = world.files["alice"].read_bytes() + b"late,B,2\n"
    held.arm()
    replacing = _Background(lambda: clients["alice"].upload("employees", io.BytesIO(replacement)))
    assert held.entered.wait(10)
    clients["bob"].compute("common_count")  # freezes every input, alice's among them
    held.release.set()
    late = replacing.outcome()
    assert isinstance(late, EnclaveRefused) and late.code == "frozen"
    entry = _submitted(world)["alice.employees"]
    assert entry["frozen"] and entry["sha256"] == first["alice"].sha256
    assert not world.app.state.enclave.session._uploads


def test_an_upload_whose_chunk_is_being_checked_is_not_idle(
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    held: _HeldCheck,
) -> None:
    settings = EnclaveSettings(limits=Limits(idle_timeout_s=1))
    world = make_world(tmp_path, all_keys, dev_ca, measurements, settings=settings)
    with serve(world.app) as url, httpx.Client(base_url=url, timeout=10) as pool, httpx.Client(base_url=url) as other:
        alice = EnclaveClient(pool, world.manifest, world.keys["alice"], world.policy, chunk_bytes=4096)
        bob = EnclaveClient(other, world.manifest, world.keys["bob"], world.policy)
        held.arm()
        slow = _Background(lambda: alice.upload("employees", world.files["alice"]))
        assert held.entered.wait(10)
        time.sleep(1.5)  # longer than the idle limit, spent checking alice's chunk
        bob.upload("employees", world.files["bob"])  # an upload purges idle uploads first
        held.release.set()
        receipt = slow.outcome()
    assert not isinstance(receipt, Exception), receipt
    assert receipt.rows == 200
