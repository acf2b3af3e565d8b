"""The enclave service: its keys, its attestation binding, and the handling of sealed requests.

Keys are made at start and never leave memory: an HPKE key (requests are sealed to it) and an
Ed25519 signing key (responses, receipts, results, the transcript head). Both are bound into
every attestation document through ``user_data`` (and, for X25519, ``public_key``). A restart
makes new keys and an empty session; clients notice because their requests no longer open.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from oblv_mpc import keys
from oblv_mpc.attestation import Attestor
from oblv_mpc.enclave.bodies import ByteBudget
from oblv_mpc.enclave.quotas import UploadQuota
from oblv_mpc.enclave.replay import Monotonic, ReplayGuard
from oblv_mpc.enclave.session import Session
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.errors import EnclaveRefused, InputDataError, NotReady, ProtocolError
from oblv_mpc.manifest import Manifest
from oblv_mpc.protocol import hpke
from oblv_mpc.protocol.binding import EnclaveBinding, sha256
from oblv_mpc.protocol.envelope import Context, Request, open_request, seal_response
from oblv_mpc.protocol.hpke import SuiteName

Clock = Callable[[], dt.datetime]
OPERATIONS = ("upload", "status", "compute", "result", "transcript")
HTTP_OPERATION = "http"  # a FastEnclaves request to the user's routes (oblv_mpc.fastenclave)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
_MAX_HEADERS = 100
_MAX_HEADER_CHARS = 8192
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")  # RFC 9110 §5.6.2


@dataclass
class _HttpStream:
    party: str
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytearray
    next_index: int
    last_ms: int


@dataclass(frozen=True)
class HttpCall:
    """A complete, verified request for the user's routes."""

    request: Request
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


def utcnow() -> dt.datetime:
    """The real wall clock, in UTC: the default wherever a clock is injected."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Reply:
    """What the HTTP layer sends back: a status code, a content type and bytes or JSON."""

    status: int
    content: bytes | dict[str, str]


class EnclaveService:
    """One running enclave: keys, attestation, session, replay protection, per-party quotas.

    ``clock`` is the wall clock (request windows, times in statements); ``monotonic`` measures
    how long request ids are remembered (:mod:`oblv_mpc.enclave.replay`). ``inflight`` is the
    byte budget shared with the HTTP layer (``Limits.max_inflight_bytes``).
    """

    def __init__(
        self,
        manifest: Manifest,
        attestor: Attestor,
        settings: EnclaveSettings | None = None,
        *,
        clock: Clock = utcnow,
        monotonic: Monotonic = time.monotonic,
        inflight: ByteBudget | None = None,
    ) -> None:
        self.manifest = manifest
        self.attestor = attestor
        self.settings = settings or EnclaveSettings()
        self.limits = self.settings.limits
        self._clock = clock
        self.inflight = inflight or ByteBudget(self.limits.max_inflight_bytes)
        self.instance = os.urandom(16)
        self._hpke = hpke.generate(self.settings.suite)
        self._signing = keys.generate(keys.KeyType.ED25519)
        self.signing_public_der = keys.spki_der(self._signing.public_key())
        self.context = Context(
            manifest.session, bytes.fromhex(manifest.hash), self.settings.suite, self._hpke.public_bytes
        )
        self.binding = EnclaveBinding(
            manifest_sha256=bytes.fromhex(manifest.hash),
            suite=self.settings.suite,
            hpke_sha256=self._hpke.public_sha256,
            signing_sha256=sha256(self.signing_public_der),
            instance=self.instance,
        )
        self.session = Session(manifest, self._signing, self.instance, self.settings, clock)
        window_s = self.settings.request_window_s
        self.replay = ReplayGuard(2 * window_s, self.limits.max_replay_entries_per_party, monotonic)
        self._uploads = UploadQuota(self.limits.max_uploads_per_party, self.limits.idle_timeout_s * 1000)
        self._http_lock = threading.Lock()
        self._http: dict[bytes, _HttpStream] = {}

    @property
    def hpke_public(self) -> bytes:
        return self._hpke.public_bytes

    @property
    def key_id(self) -> str:
        """SHA-256 of the HPKE public key, hex: clients send it so a restart is told apart."""
        return self._hpke.public_sha256.hex()

    def attestation(self, nonce: bytes) -> dict[str, Any]:
        """A fresh attestation document binding ``nonce``, this manifest and this enclave's keys."""
        public_key = self._hpke.public_bytes if self.settings.suite is SuiteName.X25519 else None
        document = self.attestor.attest(nonce=nonce, user_data=self.binding.encode(), public_key=public_key)
        return {
            "document": document,
            "suite": self.settings.suite.value,
            "hpke_public_key": self._hpke.public_bytes,
            "signing_public_key": self.signing_public_der,
            "instance": self.instance,
        }

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def _check_fresh(self, request: Request) -> None:
        now = self._now_ms()
        window = self.settings.request_window_s * 1000
        if abs(now - request.time_ms) > window:
            raise EnclaveRefused(
                "stale", f"request time is {abs(now - request.time_ms) // 1000}s away from the enclave's clock"
            )
        self.replay.admit(request.party, request.request_id, request.time_ms)

    def _open(self, op: str, envelope: bytes) -> Request | Reply:
        """Open a sealed request, check its party's signature and its freshness; or the refusal."""

        def party_key(name: str) -> keys.PublicKey | None:
            party = self.manifest.parties.get(name)
            return party.public_key if party else None

        try:
            request = open_request(self.context, self._hpke.private, op, envelope, party_key, limits=self.limits)
        except ProtocolError as exc:
            self.session.count_unauthenticated()
            return Reply(400, {"code": "cannot_open", "message": exc.message})
        except EnclaveRefused as exc:
            self.session.count_unauthenticated()
            return Reply(403, {"code": exc.code, "message": exc.reason})
        try:
            self._check_fresh(request)
        except EnclaveRefused as exc:
            return self._refuse(request, exc.code, exc.reason)
        return request

    def handle(self, op: str, envelope: bytes) -> Reply:
        """Open, authenticate and answer one sealed request."""
        if op not in OPERATIONS:
            return Reply(404, {"code": "unknown_operation", "message": f"no operation {op!r}"})
        request = self._open(op, envelope)
        if isinstance(request, Reply):
            return request
        try:
            body = self._dispatch(request)
        except EnclaveRefused as exc:
            return self._refuse(request, exc.code, exc.reason)
        except InputDataError as exc:
            return self._refuse(request, "input_invalid", exc.message)
        except NotReady as exc:
            return self._refuse(request, "not_ready", exc.message)
        return Reply(200, seal_response(self.context, request, self._signing, body=body))

    def open_http(self, envelope: bytes) -> Reply | HttpCall:
        """One sealed chunk of a request for the user's routes: a reply, or the complete call."""
        request = self._open(HTTP_OPERATION, envelope)
        if isinstance(request, Reply):
            return request
        try:
            return self._http_chunk(request)
        except EnclaveRefused as exc:
            return self._refuse(request, exc.code, exc.reason)

    def _http_chunk(self, request: Request) -> Reply | HttpCall:
        body = request.body
        if not isinstance(body, dict):
            raise EnclaveRefused("bad_request", "http body must be a map")
        stream_id, index, final, data = body.get("stream"), body.get("index"), body.get("final"), body.get("data")
        if (
            not isinstance(stream_id, bytes)
            or isinstance(index, bool)
            or not isinstance(index, int)
            or not isinstance(final, bool)
            or not isinstance(data, bytes)
        ):
            raise EnclaveRefused("bad_request", "http chunk needs stream, index, final and data")
        if len(data) > self.limits.max_chunk_bytes:
            raise EnclaveRefused("too_large", f"chunk of {len(data)} bytes exceeds {self.limits.max_chunk_bytes}")
        now = self._now_ms()
        with self._http_lock:
            idle = self.limits.idle_timeout_s * 1000
            for key in [k for k, s in self._http.items() if now - s.last_ms > idle]:
                self._drop_stream(key)  # a request never finished: its body goes
            stream = self._http.get(stream_id)
            if index == 0:
                if stream is not None:
                    self._drop_stream(stream_id)
                    raise EnclaveRefused("upload_sequence", "first chunk of a request repeated; request discarded")
                stream = self._start_stream(request.party, body, now)
                self._http[stream_id] = stream
            elif stream is None or stream.party != request.party:
                raise EnclaveRefused("upload_sequence", f"chunk {index} of a request that is not in progress")
            if index != stream.next_index:
                self._drop_stream(stream_id)
                raise EnclaveRefused(
                    "upload_sequence", f"chunk {index} arrived, expected {stream.next_index}; request discarded"
                )
            self._hold(stream_id, stream, data)
            stream.body += data
            stream.next_index += 1
            stream.last_ms = now
            if not final:
                return Reply(200, seal_response(self.context, request, self._signing, body={"received": index}))
            self._drop_stream(stream_id)
        return HttpCall(request, stream.method, stream.path, stream.query, stream.headers, bytes(stream.body))

    def _start_stream(self, party: str, body: dict[Any, Any], now: int) -> _HttpStream:
        """A new request for the user's routes: within the party's quota, with a clean head."""
        streams = sum(1 for s in self._http.values() if s.party == party)
        if streams >= self.limits.max_streams_per_party:
            raise EnclaveRefused(
                "too_many_streams",
                f"party {party!r} already has {self.limits.max_streams_per_party} requests in progress; "
                "finish one first",
            )
        method, path, query = body.get("method"), body.get("path"), body.get("query", "")
        if not isinstance(method, str) or not method.isalpha() or len(method) > 16:
            raise EnclaveRefused("bad_request", "the first chunk needs an HTTP method (letters only)")
        if not _clean(path) or not path.startswith("/"):
            raise EnclaveRefused("bad_request", "the first chunk needs an absolute path without control characters")
        if not _clean(query):
            raise EnclaveRefused("bad_request", "the query must be text without control characters")
        return _HttpStream(
            party, method.upper(), path, str(query), _headers(body.get("headers", [])), bytearray(), 0, now
        )

    def _hold(self, stream_id: bytes, stream: _HttpStream, data: bytes) -> None:
        """Count ``data`` against the request's, the party's and everyone's limits, or refuse it."""
        if len(stream.body) + len(data) > self.limits.max_http_body_bytes:
            self._drop_stream(stream_id)
            raise EnclaveRefused("too_large", f"a request body is at most {self.limits.max_http_body_bytes} bytes")
        party_bytes = sum(len(s.body) for s in self._http.values() if s.party == stream.party)
        if party_bytes + len(data) > self.limits.max_inflight_bytes_per_party:
            self._drop_stream(stream_id)
            raise EnclaveRefused(
                "busy", f"your unfinished requests hold {self.limits.max_inflight_bytes_per_party} bytes; finish them"
            )
        if not self.inflight.take(len(data)):
            self._drop_stream(stream_id)
            raise EnclaveRefused("busy", "the enclave holds as many request bytes as it may; retry shortly")

    def _drop_stream(self, stream_id: bytes) -> None:
        """Forget an unfinished (or just finished) request and give its bytes back."""
        stream = self._http.pop(stream_id, None)
        if stream is not None:
            self.inflight.give(len(stream.body))

    def answer(self, request: Request, body: Any) -> Reply:
        """A sealed, signed answer to an authenticated request."""
        return Reply(200, seal_response(self.context, request, self._signing, body=body))

    def _refuse(self, request: Request, code: str, message: str) -> Reply:
        """A refusal sealed to the requester; the transcript records it without content."""
        self.session.record_refusal(request.party, request.op, code)
        return Reply(200, seal_response(self.context, request, self._signing, error=(code, message)))

    def _dispatch(self, request: Request) -> Any:
        session, party, body = self.session, request.party, request.body
        if request.op == "upload":
            return self._upload(request)
        if request.op == "status":
            return session.status(party)
        if request.op == "compute":
            return session.compute(party, body)
        if request.op == "result":
            return session.result(party, body)
        return session.transcript(party)

    def _upload(self, request: Request) -> Any:
        """One upload chunk, counted against the party's uploads in progress."""
        body = request.body
        table = body.get("table") if isinstance(body, dict) else None
        upload_id = body.get("upload") if isinstance(body, dict) else None
        if not isinstance(table, str) or not isinstance(upload_id, bytes):
            return self.session.upload(request.party, body)  # the session refuses it as malformed
        index = body.get("index")
        first, final = index == 0 and not isinstance(index, bool), body.get("final") is True
        replaced = self._uploads.begin(request.party, table, upload_id, self._now_ms()) if first else None
        refusal: str | None = "error"
        try:
            answer = self.session.upload(request.party, body)
            refusal = None
            return answer
        except EnclaveRefused as exc:
            refusal = exc.code
            raise
        except InputDataError:
            refusal = "input_invalid"
            raise
        finally:
            self._uploads.end(
                request.party,
                table,
                upload_id,
                first=first,
                final=final,
                refusal=refusal,
                replaced=replaced,
                now_ms=self._now_ms(),
            )


def _clean(value: object) -> TypeGuard[str]:
    """Text without control characters (what may go into an ASGI scope as a path or query)."""
    return isinstance(value, str) and value.isprintable() and len(value) <= _MAX_HEADER_CHARS


def _headers(raw: object) -> list[tuple[str, str]]:
    """A FastEnclaves request's headers: a list of [name, value] text pairs, or a refusal."""
    if not isinstance(raw, list) or len(raw) > _MAX_HEADERS:
        raise EnclaveRefused("bad_request", f"headers must be a list of at most {_MAX_HEADERS} [name, value] pairs")
    kept = []
    for pair in raw:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise EnclaveRefused("bad_request", "each header must be a [name, value] pair")
        name, value = pair
        if not (isinstance(name, str) and _TOKEN.fullmatch(name) and _clean(value) and value.isascii()):
            raise EnclaveRefused("bad_request", "a header name must be an HTTP token and its value printable ASCII")
        if name.lower() not in _HOP_BY_HOP and not name.lower().startswith("x-mpc"):
            kept.append((name, value))
    return kept
