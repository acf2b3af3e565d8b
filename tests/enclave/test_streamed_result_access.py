"""Who may fetch the chunks of a streamed result, which chunks exist, and what every party sees of it.

A streamed result's chunks are guarded exactly as its signed statement: a non-reader is refused
with the same words whatever chunk it names (so it learns neither the chunk count nor the size),
a reader naming a chunk that does not exist is refused with a clear error, and a chunk asked for
before the result exists gets the answer the statement's fetch would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.client import EnclaveClient
from oblv_mpc.errors import EnclaveRefused, MpcError, NotReady
from oblv_mpc.protocol.messages import ResultRequest
from tests.enclave.conftest import World, make_world
from tests.enclave.stream_world import session_of, settings, uploaded


@dataclass(frozen=True)
class _RawResult:
    """A ``result`` request whose body is whatever a hostile client puts there."""

    body: Any

    @property
    def op(self) -> str:
        return "result"

    def to_cbor(self) -> Any:
        return self.body


@pytest.fixture
def streamed(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> World:
    """Every party's data in; alice has fetched ``common`` (her PSI, streamed in several chunks)."""
    world = uploaded(tmp_path, all_keys, dev_ca, measurements)
    result = world.clients["alice"].result("common", rows=False)
    assert result.stream is not None and result.stream.chunks >= 2
    return world


def _refusal(client: EnclaveClient, body: Any) -> MpcError:
    with pytest.raises(MpcError) as info:
        client.call(_RawResult(body))
    return info.value


def test_a_non_reader_asking_any_chunk_is_refused_exactly_as_for_the_statement(streamed: World) -> None:
    """bob does not read ``common``: chunk 0, the last, one past it, a huge one: the same refusal, no number."""
    bob = streamed.clients["bob"]
    count = streamed.clients["alice"].result("common", rows=False).stream.chunks  # type: ignore[union-attr]
    statement = _refusal(bob, {"computation": "common"})
    assert isinstance(statement, EnclaveRefused) and statement.code == "forbidden"
    for index in (0, count - 1, count, 2**63 - 1):
        refused = _refusal(bob, {"computation": "common", "chunk": index})
        assert (type(refused), refused.message, refused.hint) == (type(statement), statement.message, statement.hint)
        assert str(count) not in refused.message


def test_a_non_reader_learns_nothing_from_chunks_before_the_result_exists(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """Before and after the result exists, with inputs missing or not: bob's refusal never changes."""
    world = make_world(tmp_path, all_keys, dev_ca, measurements, settings=settings())
    bob = world.clients["bob"]
    seen = set()
    for step in ("nothing in", "all in", "fetched"):
        if step == "all in":
            for party, client in world.clients.items():
                client.upload("employees", world.files[party])
        if step == "fetched":
            world.clients["alice"].result("common", rows=False)
        for body in ({"computation": "common"}, {"computation": "common", "chunk": 0}):
            refused = _refusal(bob, body)
            seen.add((type(refused).__name__, refused.message))
    assert seen == {("EnclaveRefused", "party 'bob' is not a reader of common (forbidden)")}


@pytest.mark.parametrize(
    ("chunk", "words"),
    [
        (-1, "'chunk' must be a whole number or null"),
        (2**63 - 1, "has 2 chunks, no chunk 9223372036854775807"),
        (2**64, "'chunk' must be a whole number or null"),
        ("1", "'chunk' must be a whole number or null"),
        (1.0, "'chunk' must be a whole number or null"),
        (True, "'chunk' must be a whole number or null"),
        ([0], "'chunk' must be a whole number or null"),
    ],
    ids=["minus one", "huge", "past 64 bits", "text", "float", "boolean", "list"],
)
def test_a_reader_asking_a_chunk_that_cannot_exist_is_refused_clearly(streamed: World, chunk: Any, words: str) -> None:
    refused = _refusal(streamed.clients["alice"], {"computation": "common", "chunk": chunk})
    assert isinstance(refused, EnclaveRefused) and refused.code == "bad_request"
    assert words in refused.message, refused.message


def test_a_reader_asking_the_chunk_one_past_the_last_is_refused_with_the_count(streamed: World) -> None:
    alice = streamed.clients["alice"]
    count = alice.result("common", rows=False).stream.chunks  # type: ignore[union-attr]
    assert alice.call(ResultRequest("common", count - 1))["final"] is True
    refused = _refusal(alice, {"computation": "common", "chunk": count})
    assert isinstance(refused, EnclaveRefused) and refused.code == "bad_request"
    assert refused.message == f"common's result has {count} chunks, no chunk {count} (bad_request)"


def test_a_chunk_of_an_inline_result_is_refused_as_not_streamed(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = uploaded(tmp_path, all_keys, dev_ca, measurements, inline_cells=1_000_000)
    alice = world.clients["alice"]
    assert alice.result("common").stream is None
    refused = _refusal(alice, {"computation": "common", "chunk": 0})
    assert isinstance(refused, EnclaveRefused) and refused.code == "bad_request" and "not streamed" in refused.message


def test_a_chunk_asked_before_the_inputs_are_in_says_what_the_statement_would(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """Waiting for inputs: the same NotReady as the statement's fetch; nothing runs, nothing freezes."""
    world = make_world(tmp_path, all_keys, dev_ca, measurements, settings=settings())
    alice = world.clients["alice"]
    alice.upload("employees", world.files["alice"])
    statement = _refusal(alice, {"computation": "common"})
    chunk = _refusal(alice, {"computation": "common", "chunk": 0})
    assert isinstance(statement, NotReady) and isinstance(chunk, NotReady)
    assert (chunk.message, chunk.hint) == (statement.message, statement.hint)
    assert not session_of(world).frozen and "common" not in session_of(world).results


def test_a_chunk_asked_before_the_statement_runs_nothing_and_says_to_fetch_the_statement(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    world = uploaded(tmp_path, all_keys, dev_ca, measurements)
    refused = _refusal(world.clients["alice"], {"computation": "common", "chunk": 0})
    assert isinstance(refused, EnclaveRefused) and refused.code == "bad_request"
    assert "fetch its signed statement first" in refused.message
    assert not session_of(world).frozen and "common" not in session_of(world).results


def test_a_streamed_result_is_the_same_bytes_at_every_fetch_and_for_every_reader(streamed: World) -> None:
    """Fetched twice by alice: the same statement and chunks; status and transcript say it ran once."""
    alice = streamed.clients["alice"]
    first, again = alice.result("common"), alice.result("common")
    assert first.signed == again.signed and first.rows == again.rows and len(first.rows) == first.stream.rows  # type: ignore[union-attr]
    chunks = [alice.call(ResultRequest("common", i))["data"] for i in range(first.stream.chunks)]  # type: ignore[union-attr]
    assert chunks == [alice.call(ResultRequest("common", i))["data"] for i in range(len(chunks))]
    assert chunks == list(session_of(streamed).results["common"].stream.chunks)  # type: ignore[union-attr]
    assert first.statement["rows"] is None and first.statement["stream"]["chunks"] == len(chunks)
    assert alice.status()["computations"]["common"]["state"] == "done"
    assert streamed.clients["bob"].status()["computations"]["common"]["state"] == "attempted"
    events = alice.transcript()
    kinds = [(e.kind, e.data.get("computation")) for e in events if e.data.get("computation") == "common"]
    assert kinds == [("attempt", "common"), ("fetch", "common"), ("fetch", "common"), ("fetch", "common")]
    assert not [e for e in events if e.kind == "refusal"]  # chunks fetched are no events, and none was refused
