"""A streamed result that was tampered with is refused, and nothing of it is left on disk.

Two attackers: a malicious operator or network between the reader and the enclave (it sees the
sealed answers go by, and can alter, replay, reorder, drop them or answer in the enclave's place),
and, deeper, an enclave whose kept chunks no longer match the statement it signed (the reader's
last line of defence: every byte is checked against the signed digest). Either way
``save_result`` raises and leaves neither the target file nor its hidden partial file behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave.records import ResultRecord
from oblv_mpc.errors import EnclaveUnreachable, MpcError, ProtocolError, UnauthenticatedAnswer
from tests.enclave.conftest import World
from tests.enclave.stream_world import session_of, typed_document, uploaded

# What a result answer is, seen from the path: the n-th POST /v1/result (0: the statement, 1...: chunks).
Tamper = Callable[[int, httpx.Response], httpx.Response]
_FORWARDED = {"content-type", "x-mpc-enclave-key"}


@pytest.fixture
def world(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> World:
    """Every party's data in; ``common`` (alice's) and ``typed`` stream in several chunks each."""
    return uploaded(tmp_path, all_keys, dev_ca, measurements, document=typed_document(all_keys))


def _through(world: World, tamper: Tamper) -> EnclaveClient:
    """alice, whose requests pass a path that forwards them to the real enclave and hands her
    answers to ``tamper`` first."""
    seen = [0]

    def handle(request: httpx.Request) -> httpx.Response:
        real = world.http.request(
            request.method,
            request.url.path,
            params=request.url.params,
            content=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() in _FORWARDED},
        )
        answer = httpx.Response(
            real.status_code, headers={"content-type": real.headers["content-type"]}, content=real.content
        )
        if request.method == "POST" and request.url.path == "/v1/result":
            seen[0] += 1
            return tamper(seen[0] - 1, answer)
        return answer

    http = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://enclave.example")
    return EnclaveClient(http, world.manifest, world.keys["alice"], world.policy)


def _save_refused(client: EnclaveClient, folder: Path, computation: str = "typed") -> MpcError:
    """save_result of ``computation`` as CSV must raise; no file, no partial file, is left."""
    target = folder / "out.csv"
    result = client.result(computation, rows=False)
    assert result.stream is not None and result.stream.chunks >= 3
    with pytest.raises(MpcError) as info:
        client.save_result(result, target, "csv")
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith((".out", "out"))) == []
    return info.value


def _flip(content: bytes, at: int) -> bytes:
    return content[:at] + bytes([content[at] ^ 0x01]) + content[at + 1 :]


def _chunks(world: World, computation: str = "typed") -> list[httpx.Response]:
    """The sealed answers to chunk 0, 1, ... of ``computation`` as they went by once, recorded."""
    recorded: list[httpx.Response] = []

    def record(n: int, answer: httpx.Response) -> httpx.Response:
        if n:
            recorded.append(answer)
        return answer

    alice = _through(world, record)
    alice.result(computation)
    return recorded


# -- on the path ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, "last"])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_one_byte_altered_in_a_sealed_chunk_is_refused_and_nothing_is_kept(
    world: World, tmp_path: Path, chunk: int | str, where: str
) -> None:
    count = world.clients["alice"].result("typed", rows=False).stream.chunks  # type: ignore[union-attr]
    target = count if chunk == "last" else chunk

    def alter(n: int, answer: httpx.Response) -> httpx.Response:
        if n != target:
            return answer
        at = {"start": 0, "middle": len(answer.content) // 2, "end": len(answer.content) - 1}[where]
        return httpx.Response(200, headers=answer.headers, content=_flip(answer.content, at))

    error = _save_refused(_through(world, alter), tmp_path)
    assert isinstance(error, ProtocolError), error


def test_chunks_replayed_out_of_order_are_refused(world: World, tmp_path: Path) -> None:
    """The path answers the request for chunk 0 with chunk 1's recorded answer, and so on."""
    recorded = _chunks(world)
    swapped = [recorded[1], recorded[0], *recorded[2:]]
    error = _save_refused(_through(world, lambda n, answer: swapped[n - 1] if n else answer), tmp_path)
    assert isinstance(error, ProtocolError)


def test_the_same_chunks_replayed_from_an_earlier_fetch_are_refused(world: World, tmp_path: Path) -> None:
    """Every answer is sealed to the reply key of one request: last time's answers open for nobody."""
    recorded = _chunks(world)
    error = _save_refused(_through(world, lambda n, answer: recorded[n - 1] if n else answer), tmp_path)
    assert isinstance(error, ProtocolError)


def test_a_chunk_from_another_computation_is_refused(world: World, tmp_path: Path) -> None:
    other = _chunks(world, "common")
    error = _save_refused(_through(world, lambda n, answer: other[0] if n == 2 else answer), tmp_path)
    assert isinstance(error, ProtocolError)


def test_a_chunk_from_another_session_is_refused(
    world: World,
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
) -> None:
    (tmp_path / "other").mkdir()
    elsewhere = uploaded(tmp_path / "other", all_keys, dev_ca, measurements, document=typed_document(all_keys))
    other = _chunks(elsewhere)
    (tmp_path / "out").mkdir()
    error = _save_refused(_through(world, lambda n, answer: other[n - 1] if n == 3 else answer), tmp_path / "out")
    assert isinstance(error, ProtocolError)


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(502, text="Bad Gateway"), httpx.Response(200, content=b""), None],
    ids=["502", "empty 200", "connection reset"],
)
def test_the_last_chunk_dropped_on_the_path_leaves_nothing(
    world: World, tmp_path: Path, answer: httpx.Response | None
) -> None:
    count = world.clients["alice"].result("typed", rows=False).stream.chunks  # type: ignore[union-attr]

    def drop(n: int, real: httpx.Response) -> httpx.Response:
        if n != count:
            return real
        if answer is None:
            raise httpx.ReadError("connection reset by peer")
        return answer

    error = _save_refused(_through(world, drop), tmp_path)
    assert isinstance(error, UnauthenticatedAnswer | ProtocolError | EnclaveUnreachable), error


# -- inside: chunks kept that are not what the statement signed ---------------------------------


def _keep(world: World, computation: str, chunks: list[bytes]) -> None:
    """Play a compromised enclave: serve ``chunks`` (signed and sealed as ever) under the signed statement."""
    session = session_of(world)
    record = session.results[computation]
    assert isinstance(record, ResultRecord) and record.stream is not None
    session.results[computation] = dataclasses.replace(
        record, stream=dataclasses.replace(record.stream, chunks=tuple(chunks))
    )


def _kept(world: World, computation: str = "typed") -> list[bytes]:
    record = session_of(world).results[computation]
    assert isinstance(record, ResultRecord) and record.stream is not None
    return list(record.stream.chunks)


@pytest.mark.parametrize("offset", [-1, -9, -40])  # the end marker, a batch's last value, its body
def test_one_byte_altered_in_the_kept_last_chunk_is_refused_after_the_rest_was_written(
    world: World, tmp_path: Path, offset: int
) -> None:
    """The Arrow data may still decode: only the digest tells; the partial file goes."""
    alice = world.clients["alice"]
    alice.result("typed", rows=False)
    chunks = _kept(world)
    chunks[-1] = _flip(chunks[-1], len(chunks[-1]) + offset)
    _keep(world, "typed", chunks)
    error = _save_refused(alice, tmp_path)
    assert isinstance(error, ProtocolError)


@pytest.mark.parametrize("a", [0, 1])
def test_two_kept_chunks_swapped_are_refused(world: World, tmp_path: Path, a: int) -> None:
    alice = world.clients["alice"]
    alice.result("typed", rows=False)
    chunks = _kept(world)
    chunks[a], chunks[a + 1] = chunks[a + 1], chunks[a]
    _keep(world, "typed", chunks)
    assert isinstance(_save_refused(alice, tmp_path), ProtocolError)


def test_the_kept_last_chunk_missing_is_refused(world: World, tmp_path: Path) -> None:
    """The enclave keeps one chunk fewer than it signed: the one before the last says it is the last."""
    alice = world.clients["alice"]
    alice.result("typed", rows=False)
    _keep(world, "typed", _kept(world)[:-1])
    error = _save_refused(alice, tmp_path)
    assert isinstance(error, ProtocolError) and "says it is the last" in error.message


def test_a_kept_chunk_of_the_same_computation_in_another_session_is_refused(
    world: World,
    tmp_path: Path,
    all_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
) -> None:
    """Same schema, same shape: valid Arrow, signed and sealed; only the digest tells them apart."""
    (tmp_path / "other").mkdir()
    other_data = typed_document(all_keys)
    other_data["computations"]["typed"]["sql"] = other_data["computations"]["typed"]["sql"].replace("n % 2", "n % 3")
    elsewhere = uploaded(tmp_path / "other", all_keys, dev_ca, measurements, document=other_data)
    elsewhere.clients["alice"].result("typed", rows=False)
    alice = world.clients["alice"]
    alice.result("typed", rows=False)
    chunks, theirs = _kept(world), _kept(elsewhere)
    assert chunks != theirs  # other data
    chunks[1] = theirs[1]
    _keep(world, "typed", chunks)
    (tmp_path / "out").mkdir()
    assert isinstance(_save_refused(alice, tmp_path / "out"), ProtocolError)


def test_kept_chunks_of_another_computation_are_refused(world: World, tmp_path: Path) -> None:
    alice = world.clients["alice"]
    alice.result("typed", rows=False)
    alice.result("common", rows=False)
    _keep(world, "typed", _kept(world, "common"))
    error = _save_refused(alice, tmp_path)
    assert isinstance(error, ProtocolError) and "streams columns" in error.message


def test_rows_fetched_into_memory_are_refused_the_same_way(world: World) -> None:
    """result(rows=True) reads the same stream: a kept chunk altered is refused, no rows are returned."""
    alice = world.clients["alice"]
    alice.result("typed", rows=False)
    chunks = _kept(world)
    chunks[-1] = _flip(chunks[-1], len(chunks[-1]) - 9)
    _keep(world, "typed", chunks)
    with pytest.raises(ProtocolError, match="do not match the signed statement"):
        alice.result("typed")
