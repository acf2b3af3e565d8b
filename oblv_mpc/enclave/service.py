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


def _utcnow() -> dt.datetime:
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
        clock: Clock = _utcnow,
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

    def handle(self, op: str, envelope: bytes) -> Reply:
        """Open, authenticate and answer one sealed request."""
        if op not in OPERATIONS:
            return Reply(404, {"code": "unknown_operation", "message": f"no operation {op!r}"})
        manifest = self.manifest

        def party_key(name: str) -> keys.PublicKey | None:
            party = manifest.parties.get(name)
            return party.public_key if party else None

        try:
            request = open_request(self.context, self._hpke.private, op, envelope, party_key)
        except ProtocolError as exc:
            self.session.record_refusal(None, op, "cannot_open")
            return Reply(400, {"code": "cannot_open", "message": exc.message})
        except EnclaveRefused as exc:
            self.session.record_refusal(None, op, exc.code)
            return Reply(403, {"code": exc.code, "message": exc.reason})
        try:
            self._check_fresh(request)
            body = self._dispatch(request)
        except EnclaveRefused as exc:
            return self._refuse(request, exc.code, exc.reason)
        except InputDataError as exc:
            return self._refuse(request, "input_invalid", exc.message)
        except NotReady as exc:
            return self._refuse(request, "not_ready", exc.message)
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
