"""The enclave service: its keys, its attestation binding, and the handling of sealed requests.

Keys are made at start and never leave memory: an HPKE key (requests are sealed to it) and an
Ed25519 signing key (responses, receipts, results, the transcript head). Both are bound into
every attestation document through ``user_data`` (and, for X25519, ``public_key``). A restart
makes new keys and an empty session; clients notice because their requests no longer open.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oblv_mpc import keys
from oblv_mpc.attestation import Attestor
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
    """One running enclave: keys, attestation, session, replay protection."""

    def __init__(
        self,
        manifest: Manifest,
        attestor: Attestor,
        settings: EnclaveSettings | None = None,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.manifest = manifest
        self.attestor = attestor
        self.settings = settings or EnclaveSettings()
        self._clock = clock
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
        self._seen: dict[bytes, int] = {}
        self._seen_lock = threading.Lock()
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

    def _check_fresh(self, request: Request) -> None:
        now = int(self._clock().timestamp() * 1000)
        window = self.settings.request_window_s * 1000
        if abs(now - request.time_ms) > window:
            raise EnclaveRefused(
                "stale", f"request time is {abs(now - request.time_ms) // 1000}s away from the enclave's clock"
            )
        with self._seen_lock:
            for request_id, seen_at in list(self._seen.items()):
                if now - seen_at > 2 * window:
                    del self._seen[request_id]
            if request.request_id in self._seen:
                raise EnclaveRefused("replayed", "this request was already received; a replay is refused")
            self._seen[request.request_id] = now

    def _open(self, op: str, envelope: bytes) -> Request | Reply:
        """Open a sealed request, check its party's signature and its freshness; or the refusal."""

        def party_key(name: str) -> keys.PublicKey | None:
            party = self.manifest.parties.get(name)
            return party.public_key if party else None

        try:
            request = open_request(self.context, self._hpke.private, op, envelope, party_key)
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
            or not isinstance(index, int)
            or not isinstance(final, bool)
            or not isinstance(data, bytes)
        ):
            raise EnclaveRefused("bad_request", "http chunk needs stream, index, final and data")
        now = int(self._clock().timestamp() * 1000)
        with self._seen_lock:
            idle = self.settings.upload_idle_timeout_s * 1000
            for key in [k for k, s in self._http.items() if now - s.last_ms > idle]:
                del self._http[key]  # a request never finished: its body goes
            stream = self._http.get(stream_id)
            if index == 0:
                if stream is not None:
                    del self._http[stream_id]
                    raise EnclaveRefused("upload_sequence", "first chunk of a request repeated; request discarded")
                method, path, query, headers = (
                    body.get("method"),
                    body.get("path"),
                    body.get("query", ""),
                    body.get("headers", []),
                )
                if not isinstance(method, str) or not isinstance(path, str) or not path.startswith("/"):
                    raise EnclaveRefused("bad_request", "the first chunk needs method and an absolute path")
                kept = [
                    (str(k), str(v))
                    for k, v in headers
                    if str(k).lower() not in _HOP_BY_HOP and not str(k).lower().startswith("x-mpc")
                ]
                stream = _HttpStream(request.party, method.upper(), path, str(query), kept, bytearray(), 0, now)
                self._http[stream_id] = stream
            elif stream is None or stream.party != request.party:
                raise EnclaveRefused("upload_sequence", f"chunk {index} of a request that is not in progress")
            if index != stream.next_index:
                del self._http[stream_id]
                raise EnclaveRefused(
                    "upload_sequence", f"chunk {index} arrived, expected {stream.next_index}; request discarded"
                )
            if len(stream.body) + len(data) > self.settings.max_http_body_bytes:
                del self._http[stream_id]
                raise EnclaveRefused(
                    "too_large", f"a request body is at most {self.settings.max_http_body_bytes} bytes"
                )
            stream.body += data
            stream.next_index += 1
            stream.last_ms = now
            if not final:
                return Reply(200, seal_response(self.context, request, self._signing, body={"received": index}))
            del self._http[stream_id]
        return HttpCall(request, stream.method, stream.path, stream.query, stream.headers, bytes(stream.body))

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
            return session.upload(party, body)
        if request.op == "status":
            return session.status(party)
        if request.op == "compute":
            return session.compute(party, body)
        if request.op == "result":
            return session.result(party, body)
        return session.transcript(party)
