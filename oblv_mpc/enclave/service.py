"""The enclave service: its keys, its attestation binding, and the objects that answer requests.

Keys are made at start and never leave memory: an HPKE key (requests are sealed to it) and an
Ed25519 signing key (responses, receipts, results, the transcript head). Both are bound into
every attestation document through ``user_data`` (and, for X25519, ``public_key``). A restart
makes new keys and an empty session; clients notice because their requests no longer open.

:class:`EnclaveService` puts together three objects, each with its own lock:

- :class:`~oblv_mpc.enclave.channel.Channel`: opens a sealed request, admits it once, parses its
  body into a typed message, seals the answer;
- :class:`~oblv_mpc.enclave.session.Session`: the sealed operations (upload, status, compute,
  result, transcript) on the session's state;
- :class:`~oblv_mpc.enclave.http_requests.HttpRequests`: FastEnclaves requests being
  reassembled from their chunks, for the user's routes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from oblv_mpc import keys
from oblv_mpc.attestation import Attestor
from oblv_mpc.enclave.bodies import ByteBudget
from oblv_mpc.enclave.channel import Answer, Call, Channel, Clock, Reply, utcnow
from oblv_mpc.enclave.http_requests import HttpRequest, HttpRequests
from oblv_mpc.enclave.replay import Monotonic, ReplayGuard
from oblv_mpc.enclave.session import Session
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.errors import EnclaveRefused, MpcError
from oblv_mpc.manifest import Manifest
from oblv_mpc.protocol import hpke
from oblv_mpc.protocol.answers import Received
from oblv_mpc.protocol.binding import EnclaveBinding, sha256
from oblv_mpc.protocol.envelope import Context, Request
from oblv_mpc.protocol.hpke import SuiteName
from oblv_mpc.protocol.messages import (
    ComputeRequest,
    HttpChunk,
    ResultRequest,
    StatusRequest,
    TranscriptRequest,
    UploadChunk,
)
from oblv_mpc.protocol.refusals import refusal_of

__all__ = ["OPERATIONS", "Clock", "EnclaveService", "HttpCall", "Reply", "utcnow"]

OPERATIONS = ("upload", "status", "compute", "result", "transcript")
HTTP_OPERATION = "http"  # a FastEnclaves request to the user's routes (oblv_mpc.fastenclave)


@dataclass(frozen=True)
class HttpCall:
    """A complete, verified request for the user's routes, and the request to answer it on."""

    request: Request
    http: HttpRequest


class EnclaveService:
    """One running enclave: keys, attestation, the channel, the session, FastEnclaves requests.

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
        self.inflight = inflight or ByteBudget(self.limits.max_inflight_bytes)
        self.instance = os.urandom(16)
        self._hpke = hpke.generate(self.settings.suite)
        signing = keys.generate(keys.KeyType.ED25519)
        self.signing_public_der = keys.spki_der(signing.public_key())
        self.binding = EnclaveBinding(
            manifest_sha256=bytes.fromhex(manifest.hash),
            suite=self.settings.suite,
            hpke_sha256=self._hpke.public_sha256,
            signing_sha256=sha256(self.signing_public_der),
            instance=self.instance,
        )
        self.session = Session(manifest, signing, self.instance, self.settings, clock)
        self.channel = Channel(
            manifest,
            self.settings,
            self._hpke,
            signing,
            clock=clock,
            monotonic=monotonic,
            on_unauthenticated=self.session.count_unauthenticated,
            on_refusal=self.session.record_refusal,
        )
        self.http_requests = HttpRequests(self.limits, self.inflight)

    @property
    def context(self) -> Context:
        """What a client agrees on with this enclave once it verified it."""
        return self.channel.context

    @property
    def replay(self) -> ReplayGuard:
        """The request ids remembered per party."""
        return self.channel.replay

    @property
    def hpke_public(self) -> bytes:
        """The HPKE public key requests are sealed to."""
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

    def handle(self, op: str, envelope: bytes) -> Reply:
        """Open, authenticate and answer one sealed request for a session operation."""
        if op not in OPERATIONS:
            return Reply.plain("unknown_operation", f"no operation {op!r}")
        call = self.channel.open(op, envelope)
        if isinstance(call, Reply):
            return call
        try:
            return self.channel.answer(call.request, self._operate(call))
        except MpcError as exc:
            refusal = refusal_of(exc)
            if refusal is None:
                raise
            return self.channel.refuse(call.request, *refusal)

    def _operate(self, call: Call) -> Answer:
        session, party, body = self.session, call.party, call.body
        if isinstance(body, UploadChunk):
            return session.upload(party, body)
        if isinstance(body, StatusRequest):
            return session.status(party)
        if isinstance(body, ComputeRequest):
            return session.compute(party, body)
        if isinstance(body, ResultRequest):
            return session.result(party, body)
        if isinstance(body, TranscriptRequest):
            return session.transcript(party)
        raise EnclaveRefused("unknown_operation", f"no operation {call.request.op!r}")

    def open_http(self, envelope: bytes) -> Reply | HttpCall:
        """One sealed chunk of a request for the user's routes: a reply, or the complete call."""
        call = self.channel.open(HTTP_OPERATION, envelope)
        if isinstance(call, Reply):
            return call
        assert isinstance(call.body, HttpChunk)
        try:
            complete = self.http_requests.take(call.party, call.body, self.channel.now_ms())
        except EnclaveRefused as exc:
            return self.channel.refuse(call.request, exc.code, exc.reason)
        if complete is None:
            return self.channel.answer(call.request, Received(call.body.frame.index))
        return HttpCall(call.request, complete)

    def answer(self, request: Request, body: Answer) -> Reply:
        """A sealed, signed answer to an authenticated request."""
        return self.channel.answer(request, body)
