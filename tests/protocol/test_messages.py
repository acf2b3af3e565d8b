"""Request bodies are parsed once into their classes, and every malformed field is named.

A party signs whatever body it likes, so each class must refuse what it does not describe with a
``bad_request`` that says which field, and give back exactly what the client built.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oblv_mpc.enclave.streams import SEQUENCE
from oblv_mpc.errors import EnclaveRefused, ProtocolError
from oblv_mpc.limits import Limits
from oblv_mpc.protocol import refusals
from oblv_mpc.protocol.answers import HttpAnswer, Received, StatusAnswer
from oblv_mpc.protocol.messages import (
    ComputeRequest,
    Digest,
    Frame,
    HttpChunk,
    HttpHead,
    ResultRequest,
    StatusRequest,
    TranscriptRequest,
    UploadChunk,
    parse_request,
)
from oblv_mpc.streaming import ahead, frames

LIMITS = Limits()
STREAM = b"s" * 16
REQUESTS = [
    UploadChunk(Frame(STREAM, 0, False, b"id\n"), "alice.t"),
    UploadChunk(Frame(STREAM, 3, True, b""), "alice.t", Digest("ab" * 32, 10)),
    HttpChunk(Frame(STREAM, 0, True, b"{}"), HttpHead("POST", "/bid", "x=1", (("content-type", "text/plain"),))),
    HttpChunk(Frame(STREAM, 1, False, b"more")),
    StatusRequest(),
    TranscriptRequest(),
    ComputeRequest("common"),
    ResultRequest("common"),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_what_the_client_builds_is_what_the_enclave_reads(message: Any) -> None:
    assert parse_request(message.op, message.to_cbor(), LIMITS) == message


def _refusal(op: str, body: Any) -> EnclaveRefused:
    with pytest.raises(EnclaveRefused) as refused:
        parse_request(op, body, LIMITS)
    return refused.value


UPLOAD = UploadChunk(Frame(STREAM, 0, False, b"x"), "alice.t").to_cbor()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("upload", b"short"),
        ("upload", "s" * 16),
        ("index", -1),
        ("index", True),
        ("index", 1.0),
        ("final", 1),
        ("data", "text, not bytes"),
        ("table", 7),
        ("sha256", 5),
        ("bytes", -3),
    ],
)
def test_a_malformed_upload_field_is_refused_by_name(field: str, value: Any) -> None:
    refused = _refusal("upload", {**UPLOAD, field: value})
    assert refused.code == "bad_request" and repr(field) in refused.reason


@pytest.mark.parametrize("missing", ["upload", "index", "final", "data", "table"])
def test_a_missing_upload_field_is_refused_by_name(missing: str) -> None:
    body = {k: v for k, v in UPLOAD.items() if k != missing}
    refused = _refusal("upload", body)
    assert refused.code == "bad_request" and f"needs {missing!r}" in refused.reason


@pytest.mark.parametrize("op", ["upload", "http", "compute", "result"])
@pytest.mark.parametrize("body", [None, [1, 2], "upload", 5])
def test_a_body_that_is_not_a_map_is_refused(op: str, body: Any) -> None:
    assert "must be a map" in _refusal(op, body).reason


def test_chunk_data_past_the_limit_is_too_large() -> None:
    small = Limits(max_chunk_bytes=10, max_envelope_bytes=100)
    with pytest.raises(EnclaveRefused) as refused:
        parse_request("upload", {**UPLOAD, "data": b"x" * 11}, small)
    assert refused.value.code == "too_large"


def test_a_first_http_chunk_needs_its_head_and_a_later_ones_is_ignored() -> None:
    first = HttpChunk(Frame(STREAM, 0, False, b"")).to_cbor()
    assert "needs 'method'" in _refusal("http", first).reason
    later = {**HttpChunk(Frame(STREAM, 1, False, b"")).to_cbor(), "method": 5}
    assert parse_request("http", later, LIMITS) == HttpChunk(Frame(STREAM, 1, False, b""))


def test_a_computation_named_by_a_number_is_refused_by_name() -> None:
    refused = _refusal("compute", {"computation": 5})
    assert refused.code == "bad_request" and "'computation'" in refused.reason


def test_an_answer_of_the_wrong_shape_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="'received'"):
        Received.from_cbor({"received": "0"})
    with pytest.raises(ProtocolError, match="'status'"):
        HttpAnswer.from_cbor({"status": -1, "headers": [], "body": b""})
    with pytest.raises(ProtocolError, match="privacy"):
        StatusAnswer.from_cbor({"session": "s", "instance": "i", "unauthenticated_refusals": 0})


@given(st.lists(st.binary(max_size=40), max_size=12), st.integers(min_value=1, max_value=16))
def test_a_stream_is_framed_in_order_with_the_digest_of_every_byte(pieces: list[bytes], chunk_bytes: int) -> None:
    sent = list(frames(STREAM, pieces, chunk_bytes))
    whole = b"".join(pieces)
    assert [f.index for f, _ in sent] == list(range(len(sent)))
    assert [f.final for f, _ in sent] == [False] * (len(sent) - 1) + [True]  # one final chunk, the last
    assert b"".join(f.data for f, _ in sent) == whole
    assert all(len(f.data) == chunk_bytes for f, _ in sent[:-1]) and len(sent[-1][0].data) <= chunk_bytes
    assert sent[-1][0].data or not whole  # no empty last chunk unless the stream is empty
    assert [d for _, d in sent[:-1]] == [None] * (len(sent) - 1)
    assert sent[-1][1] == Digest(hashlib.sha256(whole).hexdigest(), len(whole))


def _codes_used() -> set[str]:
    """Every code the package raises a refusal with, or answers with plainly."""
    used = set()
    for path in Path(refusals.__file__).parents[1].rglob("*.py"):
        if path.name == "proxy.py":
            continue  # the local proxy's own refusals (wrong_host, browser_request) never come from the enclave
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            first = node.args[0] if node.args else None
            if name in _RAISERS and isinstance(first, ast.Constant):
                used.add(first.value)
            used |= {k.value.value for k in node.keywords if k.arg == "too_many" and isinstance(k.value, ast.Constant)}
    return used


_RAISERS = ("EnclaveRefused", "RunFailed", "Refusal", "_refused", "plain", "_refuse")


def test_every_refusal_code_in_the_code_is_in_the_one_table() -> None:
    used = _codes_used()
    assert {"bad_request", "too_many_streams", "compute_limit", "cannot_open", "not_provisioned"} <= used  # found
    assert used | {SEQUENCE} <= set(refusals.CODES), used - set(refusals.CODES)


def test_a_stream_read_ahead_and_left_early_does_not_wait_for_its_next_item() -> None:
    """Closing (or collecting) a half-read stream returns at once, while the worker is still
    producing the next item: waiting for it can deadlock when that item needs the closing thread."""
    release = threading.Event()

    def slow() -> Iterator[int]:
        yield 1
        release.wait(timeout=30)  # the next item is stuck until the test lets it go
        yield 2

    stream = ahead(slow())
    assert next(stream) == 1
    closing = threading.Thread(target=stream.close, daemon=True)
    closing.start()
    closing.join(timeout=5)
    stuck = closing.is_alive()
    release.set()
    assert not stuck, "closing the stream waited for the item being produced"
