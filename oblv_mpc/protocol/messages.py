"""The body of every request and every answer: one frozen dataclass each, parsed once.

A request's body travels as deterministic CBOR inside its envelope (:mod:`.envelope`). The
client builds it from one of these classes (``to_cbor()``); the enclave, once the envelope has
opened, its party's signature verified and the request was admitted as fresh, parses it once
with :func:`parse_request` into the same class, so nothing past that point handles untyped
data. A malformed body is a refusal, sealed to its sender, that names the field:
``bad_request`` (``too_large`` for chunk data over ``Limits.max_chunk_bytes``). Fields a body
does not define are ignored, so a newer client's optional fields do not break an older enclave.

Answers go the other way: the enclave builds them from these classes, and the client parses
the (signed, sealed) answer with ``from_cbor``; an answer of the wrong shape is a
:class:`ProtocolError`.

Chunked streams (table uploads, FastEnclaves requests, later streamed results) share one
:class:`Frame`: which stream, the chunk's index, whether it is the last, its bytes. The wire
names of the stream id differ by operation (``upload`` for uploads, ``stream`` for http), as
they always have. See docs/protocol.md and docs/adr/0010-typed-messages-and-one-stream.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from oblv_mpc.errors import EnclaveRefused
from oblv_mpc.limits import Limits
from oblv_mpc.protocol._fields import Fields, refuse

STREAM_ID_BYTES = 16
CSV, ARROW = "csv", "arrow"
UPLOAD_FORMATS = (CSV, ARROW)  # CSV text; an Arrow IPC stream cut at message boundaries
_MAX_HEADERS = 100
_MAX_TEXT_CHARS = 8192  # a path, a query, a header value


class Outgoing(Protocol):
    """What the client can send: an operation and a body as plain CBOR data."""

    @property
    def op(self) -> str:
        """The operation (the route ``/v1/{op}``, bound into the envelope)."""
        ...

    def to_cbor(self) -> Any:
        """The body as plain data for deterministic CBOR."""
        ...


# -- streams ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One chunk's place in a stream: the stream's id, the chunk's index (0, 1, ...), whether it
    is the last one, and its bytes."""

    stream: bytes
    index: int
    final: bool
    data: bytes

    def to_cbor(self, id_field: str) -> dict[str, Any]:
        """The frame's fields, the stream id under ``id_field``."""
        return {id_field: self.stream, "index": self.index, "final": self.final, "data": self.data}

    @classmethod
    def read(cls, fields: Fields, id_field: str, limits: Limits) -> Frame:
        """The frame of a chunk; ``too_large`` past ``limits.max_chunk_bytes``."""
        frame = cls(
            fields.raw(id_field, STREAM_ID_BYTES), fields.count("index"), fields.flag("final"), fields.raw("data")
        )
        if len(frame.data) > limits.max_chunk_bytes:
            raise EnclaveRefused("too_large", f"chunk of {len(frame.data)} bytes exceeds {limits.max_chunk_bytes}")
        return frame


@dataclass(frozen=True)
class Digest:
    """What the sender says a whole stream was: the SHA-256 (hex) and the size of its bytes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class UploadChunk:
    """One chunk of a table upload; the final one carries the client's :class:`Digest` of the file.

    ``format`` (every chunk): ``csv``, bytes of any size, or ``arrow``, whole Arrow IPC messages
    per chunk (docs/protocol.md, "Uploads"). Absent means ``csv``.
    """

    frame: Frame
    table: str
    digest: Digest | None = None
    format: str = CSV

    @property
    def op(self) -> str:
        """The operation this body belongs to."""
        return "upload"

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        body = {**self.frame.to_cbor("upload"), "table": self.table}
        if self.format != CSV:
            body["format"] = self.format
        if self.digest is not None:
            body |= {"sha256": self.digest.sha256, "bytes": self.digest.size}
        return body

    @classmethod
    def from_cbor(cls, value: Any, limits: Limits) -> UploadChunk:
        """Parse an upload chunk; a missing or malformed digest is left for the digest check."""
        fields = Fields(value, "an upload chunk", refuse)
        frame = Frame.read(fields, "upload", limits)
        table = fields.text("table")
        sha256, size = fields.optional_text("sha256"), fields.optional_count("bytes")
        digest = Digest(sha256, size) if sha256 is not None and size is not None else None
        kind = fields.text("format", CSV)
        if kind not in UPLOAD_FORMATS:
            raise refuse(f"an upload chunk's 'format' must be one of {', '.join(UPLOAD_FORMATS)}")
        return cls(frame, table, digest, kind)


@dataclass(frozen=True)
class HttpHead:
    """The head of a FastEnclaves request: method, path, query and headers, as text."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def read(cls, fields: Fields) -> HttpHead:
        """The head, checked so that it can go into an ASGI scope as it is."""
        method = fields.text("method")
        if not method.isascii() or not method.isalpha() or len(method) > 16:
            raise refuse("the first chunk needs an HTTP method (letters only)")
        path = fields.text("path")
        if not _clean(path) or not path.startswith("/"):
            raise refuse("the first chunk needs an absolute path without control characters")
        query = fields.text("query", "")
        if not _clean(query):
            raise refuse("the query must be text without control characters")
        return cls(method.upper(), path, query, _headers(fields.listed("headers", [])))


def _clean(value: str) -> bool:
    """Text without control characters (what may go into an ASGI scope as a path or query)."""
    return value.isprintable() and len(value) <= _MAX_TEXT_CHARS


def _is_token(name: str) -> bool:
    """An HTTP field name: a token of RFC 9110 §5.6.2."""
    return 0 < len(name) <= 256 and name.isascii() and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name)


def _headers(raw: list[Any]) -> tuple[tuple[str, str], ...]:
    if len(raw) > _MAX_HEADERS:
        raise refuse(f"headers must be a list of at most {_MAX_HEADERS} [name, value] pairs")
    pairs = []
    for pair in raw:
        if not isinstance(pair, list) or len(pair) != 2:
            raise refuse("each header must be a [name, value] pair")
        name, value = pair
        if not (isinstance(name, str) and _is_token(name) and isinstance(value, str)):
            raise refuse("a header name must be an HTTP token and its value printable ASCII")
        if not (_clean(value) and value.isascii()):
            raise refuse("a header name must be an HTTP token and its value printable ASCII")
        pairs.append((name, value))
    return tuple(pairs)


@dataclass(frozen=True)
class HttpChunk:
    """One chunk of a FastEnclaves request; the first one (index 0) carries its :class:`HttpHead`."""

    frame: Frame
    head: HttpHead | None = None

    @property
    def op(self) -> str:
        """The operation this body belongs to."""
        return "http"

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        body = self.frame.to_cbor("stream")
        if self.head is not None:
            head = self.head
            body |= {"method": head.method, "path": head.path, "query": head.query}
            body["headers"] = [[name, value] for name, value in head.headers]
        return body

    @classmethod
    def from_cbor(cls, value: Any, limits: Limits) -> HttpChunk:
        """Parse a chunk; the first must carry a well-formed head, the others' is ignored."""
        fields = Fields(value, "an http chunk", refuse)
        frame = Frame.read(fields, "stream", limits)
        return cls(frame, HttpHead.read(fields) if frame.index == 0 else None)


# -- the other requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRequest:
    """Ask which inputs are in and which computations are ready or done (no body)."""

    @property
    def op(self) -> str:
        """The operation this body belongs to."""
        return "status"

    def to_cbor(self) -> None:
        """This object as plain data for CBOR."""
        return None

    @classmethod
    def from_cbor(cls, value: Any, limits: Limits) -> StatusRequest:
        """Any body is ignored: the request has none."""
        return cls()


@dataclass(frozen=True)
class TranscriptRequest:
    """Ask for the transcript (no body)."""

    @property
    def op(self) -> str:
        """The operation this body belongs to."""
        return "transcript"

    def to_cbor(self) -> None:
        """This object as plain data for CBOR."""
        return None

    @classmethod
    def from_cbor(cls, value: Any, limits: Limits) -> TranscriptRequest:
        """Any body is ignored: the request has none."""
        return cls()


@dataclass(frozen=True)
class ComputeRequest:
    """Run a computation now (its readers may ask)."""

    computation: str

    @property
    def op(self) -> str:
        """The operation this body belongs to."""
        return "compute"

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {"computation": self.computation}

    @classmethod
    def from_cbor(cls, value: Any, limits: Limits) -> ComputeRequest:
        """Parse ``{computation}``."""
        return cls(Fields(value, "a compute request", refuse).text("computation"))


@dataclass(frozen=True)
class ResultRequest:
    """Fetch a computation's signed result (its readers only); with ``chunk``, that chunk of a
    streamed result instead (docs/protocol.md, "Results")."""

    computation: str
    chunk: int | None = None

    @property
    def op(self) -> str:
        """The operation this body belongs to."""
        return "result"

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        body: dict[str, Any] = {"computation": self.computation}
        if self.chunk is not None:
            body["chunk"] = self.chunk
        return body

    @classmethod
    def from_cbor(cls, value: Any, limits: Limits) -> ResultRequest:
        """Parse ``{computation, chunk?}``."""
        fields = Fields(value, "a result request", refuse)
        return cls(fields.text("computation"), fields.optional_count("chunk"))


RequestBody = UploadChunk | HttpChunk | StatusRequest | TranscriptRequest | ComputeRequest | ResultRequest
_REQUESTS: Mapping[str, Callable[[Any, Limits], RequestBody]] = {
    "upload": UploadChunk.from_cbor,
    "http": HttpChunk.from_cbor,
    "status": StatusRequest.from_cbor,
    "transcript": TranscriptRequest.from_cbor,
    "compute": ComputeRequest.from_cbor,
    "result": ResultRequest.from_cbor,
}
OPERATIONS = tuple(_REQUESTS)


def parse_request(op: str, value: Any, limits: Limits) -> RequestBody:
    """The typed body of an ``op`` request, or a refusal (``bad_request``, ``too_large``) naming the field."""
    parse = _REQUESTS.get(op)
    if parse is None:
        raise EnclaveRefused("unknown_operation", f"no operation {op!r}")
    return parse(value, limits)
