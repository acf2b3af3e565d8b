"""``EnclaveClient``: attest, verify, seal and sign, send, open and verify, over any httpx client.

The client takes an injected :class:`httpx.Client` (FastAPI's ``TestClient`` is one), so tests
run against the real app in process and the CLI against a real server. Nothing is sent to an
enclave before :meth:`EnclaveClient.connect` has verified its attestation document, and every
response, receipt and result is checked against the signing key that document binds.

Errors: transport failures become :class:`EnclaveUnreachable`; the enclave's refusals, which
come sealed to us and signed by its attested key, :class:`EnclaveRefused` (or :class:`NotReady`,
:class:`InputDataError` for those refusals); any other answer (a non-200 status with plain JSON
or HTML, from whatever answered: the enclave's HTTP layer before it can authenticate, a load
balancer, the operator, an attacker on the path) :class:`UnauthenticatedAnswer`, which quotes
what it claims and is never reported as the enclave's; anything that does not open or verify
:class:`ProtocolError` or an :class:`AttestationError`. A claim that the enclave restarted is
unauthenticated too: the client re-attests, and believes the fresh attestation (docs/protocol.md).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from oblv_mpc import keys
from oblv_mpc.attestation import AttestationPolicy, VerifiedAttestation, verify
from oblv_mpc.errors import (
    EnclaveRefused,
    EnclaveUnreachable,
    InputDataError,
    KeyFileError,
    MpcError,
    NotReady,
    PolicyError,
    ProtocolError,
    StillRunning,
    UnauthenticatedAnswer,
    UsageError,
)
from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.manifest import Manifest
from oblv_mpc.protocol.binding import EnclaveBinding, sha256
from oblv_mpc.protocol.commitment import commit
from oblv_mpc.protocol.envelope import ENCLAVE_KEY_HEADER, Context, open_response, seal_request, verify_statement
from oblv_mpc.protocol.hpke import KeyPair, SuiteName
from oblv_mpc.protocol.transcript import Event, verify_chain

KEY_HEADER = ENCLAVE_KEY_HEADER
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
QUOTED_CHARS = 300  # how much of an unauthenticated answer an error quotes
_UNAUTHENTICATED_HINTS = {
    "cannot_open": "the enclave could not open the request, or something claims so; the client re-attests before "
    "its next request (mpc connect does it now)",
    "unknown_party": "check that your key is the one the manifest lists for you",
    "bad_signature": "check that your key is the one the manifest lists for you",
    "wrong_binding": "check that you hold the manifest the enclave runs (mpc connect re-checks it)",
    "not_provisioned": "if the enclave really waits for its manifest, the operator provisions it "
    "(mpc enclave provision)",
}
_DEFAULT_HINT = (
    "only an answer sealed to you and signed by the attested enclave is the enclave's; check the URL, and whether "
    "something between you and the enclave (a proxy, a load balancer) answers in its place"
)
Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Connection:
    """What :meth:`EnclaveClient.connect` verified about the enclave."""

    attestation: VerifiedAttestation
    document: bytes
    context: Context
    signing_key: keys.PublicKey
    signing_der: bytes
    instance: bytes

    @property
    def key_id(self) -> str:
        return self.context.enclave_sha256.hex()


@dataclass(frozen=True)
class Receipt:
    """The enclave's signed acknowledgement of an upload."""

    party: str
    table: str
    rows: int
    size: int
    sha256: str
    statement: dict[str, Any]
    signed: dict[str, bytes]
    commitment: str = ""  # what the other parties see of this input
    salt: str = ""  # reveal it with the SHA-256 to prove what was used (oblv_mpc.protocol.commitment)
    replaced: bool = False  # this upload replaced an earlier one of the same table


@dataclass(frozen=True)
class Result:
    """A computation's result, with the enclave's signature over it."""

    computation: str
    columns: list[tuple[str, str]]
    rows: list[list[Any]]
    suppressed_groups: int | None  # None: the owners' rules do not let the result say
    rules: dict[str, Any]
    inputs: dict[str, str]
    statement: dict[str, Any]
    signed: dict[str, bytes]


@dataclass(frozen=True)
class _Sealed:
    op: str
    envelope: bytes
    reply: KeyPair
    request_id: bytes


def _ahead(items: Iterator[_Sealed]) -> Iterator[_Sealed]:
    """Produce the next item in a worker thread while the caller uses the current one.

    Sealing a chunk (reading, hashing, signing, encrypting) then overlaps with sending the
    previous one and the enclave's work on it. At most one item waits, so memory stays flat.
    """
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = worker.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = worker.submit(next, items, None)
            yield item


def claims(response: httpx.Response) -> tuple[str | None, str]:
    """The ``code`` and message a plain answer claims (our app's JSON shapes), or its text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    detail = data.get("detail", data) if isinstance(data, dict) else None
    if isinstance(detail, dict) and ("code" in detail or "message" in detail):
        code, text = detail.get("code"), str(detail.get("message", ""))
        return (str(code) if code is not None else None), _clip(text)
    if isinstance(detail, str):
        return None, _clip(detail)
    return None, _clip(response.text) or f"an empty {response.headers.get('content-type', 'untyped')} body"


def _clip(text: str) -> str:
    return text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS] + "..."


def _b64(answer: dict[str, Any], field: str) -> bytes:
    value = answer.get(field)
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        return b""


class EnclaveClient:
    """One party's connection to one enclave session."""

    def __init__(
        self,
        http: httpx.Client,
        manifest: Manifest,
        identity: keys.PrivateKey,
        policy: AttestationPolicy,
        *,
        party: str | None = None,
        clock: Clock = _utcnow,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.http = http
        self.limits = limits  # caps on everything decoded from the enclave's answers
        self.manifest = manifest
        self._identity = identity
        self.policy = policy
        self.clock = clock
        self.chunk_bytes = chunk_bytes
        found = manifest.party_for_key(identity.public_key())
        if found is None:
            raise KeyFileError(
                f"this key (fingerprint {keys.short_fingerprint(identity.public_key())}) belongs to no party of "
                f"session {manifest.session}",
                hint="use the private key whose public half the manifest lists for your party",
            )
        if party is not None and party != found.name:
            raise KeyFileError(f"this key is party {found.name!r}'s, not {party!r}'s")
        self.party = found
        self.connection: Connection | None = None

    # -- transport ---------------------------------------------------------------------------

    def _http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise EnclaveUnreachable(
                f"no answer from the enclave at {self.http.base_url}: {type(exc).__name__}",
                hint="check that the enclave is running and the URL is right",
            ) from None

    def _unauthenticated(self, response: httpx.Response, *, hint: str | None = None) -> UnauthenticatedAnswer:
        """A non-200 answer: whatever answered said it, not the attested enclave. Quoted, escaped."""
        code, claimed = claims(response)
        return UnauthenticatedAnswer(
            response.status_code,
            code,
            claimed,
            origin=str(self.http.base_url),
            hint=hint or _UNAUTHENTICATED_HINTS.get(code or "", _DEFAULT_HINT),
        )

    def _check_restart_claim(self, old: Connection, response: httpx.Response) -> MpcError:
        """A 409 ``enclave_restarted`` is unauthenticated by nature: re-attest, and believe the attestation.

        A fresh, verified attestation with another instance or key proves the restart (the old
        state is gone; the caller reconnects on purpose). The same instance proves the claim false.
        """
        fresh = self.connect()  # every check again, with a fresh nonce; raises if it does not verify
        if fresh.instance != old.instance or fresh.key_id != old.key_id:
            self.connection = None  # what was verified no longer holds: the client forgets it
            return EnclaveRefused(
                "enclave_restarted",
                f"the enclave restarted: a fresh attestation shows instance {fresh.instance.hex()[:12]}..., not "
                f"{old.instance.hex()[:12]}... that this request was sealed to, and everything submitted to it is gone",
                hint="reconnect (mpc connect) and submit your data again",
            )
        return self._unauthenticated(
            response,
            hint="a fresh attestation shows the same enclave instance, so the claim that it restarted is false: "
            "something between you and the enclave answered in its place",
        )

    # -- attestation -------------------------------------------------------------------------

    def connect(self) -> Connection:
        """Fetch a fresh attestation, verify it and its binding to this session; nothing is sent first."""
        nonce = os.urandom(self.limits.client_nonce_bytes)
        response = self._http("GET", "/v1/attestation", params={"nonce": nonce.hex()})
        if response.status_code != 200:
            raise self._unauthenticated(response)
        try:
            answer = response.json()
        except ValueError:
            raise ProtocolError("the attestation answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ProtocolError("the attestation answer is not a JSON object")
        document, hpke_public = _b64(answer, "document"), _b64(answer, "hpke_public_key")
        signing_der, instance = _b64(answer, "signing_public_key"), _b64(answer, "instance")
        try:
            suite = SuiteName(str(answer.get("suite")))
        except ValueError:
            raise ProtocolError(f"unknown HPKE suite {answer.get('suite')!r}") from None
        expected_public = hpke_public if suite is SuiteName.X25519 else None
        verified = verify(document, policy=self.policy, now=self.clock(), nonce=nonce, public_key=expected_public)
        binding = EnclaveBinding.decode(verified.user_data, limits=self.limits)
        ours = self.manifest.hash
        if binding.manifest_sha256.hex() != ours:
            raise PolicyError(
                "manifest",
                f"the enclave runs session manifest {binding.manifest_sha256.hex()[:16]}..., "
                f"you hold {ours[:16]}... ({self.manifest.session})",
                hint="get the manifest every party agreed to, or ask the operator which one it launched",
            )
        checks = (
            ("suite", binding.suite == suite),
            ("hpke key", binding.hpke_sha256 == sha256(hpke_public)),
            ("signing key", binding.signing_sha256 == sha256(signing_der)),
            ("instance", binding.instance == instance),
        )
        for name, ok in checks:
            if not ok:
                raise PolicyError("binding", f"the enclave's {name} is not the one its attestation binds")
        context = Context(self.manifest.session, bytes.fromhex(ours), suite, hpke_public)
        signing = keys.public_key_from_bytes(signing_der, source="the enclave's signing key")
        self.connection = Connection(verified, document, context, signing, signing_der, instance)
        return self.connection

    # -- sealed calls ------------------------------------------------------------------------

    def _seal(self, op: str, body: Any) -> _Sealed:
        connection = self.connection or self.connect()
        time_ms = int(self.clock().timestamp() * 1000)
        envelope, reply, request_id = seal_request(
            connection.context, op, self.party.name, self._identity, body, time_ms=time_ms
        )
        return _Sealed(op, envelope, reply, request_id)

    def _call(self, op: str, body: Any) -> Any:
        return self._send(self._seal(op, body))

    def _send(self, sealed: _Sealed) -> Any:
        connection = self.connection
        assert connection is not None
        op, envelope, reply, request_id = sealed.op, sealed.envelope, sealed.reply, sealed.request_id
        response = self._http(
            "POST",
            f"/v1/{op}",
            content=envelope,
            headers={"content-type": "application/octet-stream", KEY_HEADER: connection.key_id},
        )
        if response.status_code != 200:
            answer = self._unauthenticated(response)
            if answer.code == "enclave_restarted":
                raise self._check_restart_claim(connection, response)
            if answer.code == "cannot_open":
                self.connection = None  # re-attest before the next request: cheap, and it proves what holds
            raise answer
        try:
            # Only what opens with our reply key and carries the attested key's signature is the enclave's.
            return open_response(
                connection.context, reply, op, request_id, response.content, connection.signing_key, limits=self.limits
            )
        except EnclaveRefused as exc:
            if exc.code == "not_ready":
                raise NotReady(exc.reason, hint="try again once every input is in") from None
            if exc.code == "input_invalid":
                raise InputDataError(exc.reason, hint="fix the file and submit it again; nothing was kept") from None
            raise

    def upload(
        self,
        table: str,
        source: Path | IO[bytes],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Receipt:
        """Stream a CSV file to the enclave in sealed chunks; return the verified receipt."""
        if table not in self.manifest.inputs:
            qualified = f"{self.party.name}.{table}"
            if qualified not in self.manifest.inputs:
                mine = ", ".join(t.table for t in self.manifest.inputs_of(self.party.name)) or "none"
                raise UsageError(f"{table!r} is not an input of session {self.manifest.session} (yours: {mine})")
            table = qualified
        self.connection or self.connect()
        handle = source.open("rb") if isinstance(source, Path) else source
        upload_id = os.urandom(16)
        digest = hashlib.sha256()
        sizes: list[int] = []

        def envelopes() -> Iterator[_Sealed]:
            """Read, hash, seal and sign each chunk in order (run one chunk ahead of sending)."""
            current = handle.read(self.chunk_bytes)
            index = 0
            while True:
                following = handle.read(self.chunk_bytes) if current else b""
                final = not following
                digest.update(current)
                sizes.append(len(current))
                body: dict[str, Any] = {
                    "upload": upload_id,
                    "table": table,
                    "index": index,
                    "final": final,
                    "data": current,
                }
                if final:
                    body["sha256"], body["bytes"] = digest.hexdigest(), sum(sizes)
                yield self._seal("upload", body)
                if final:
                    return
                current, index = following, index + 1

        answer: Any = None
        try:
            for index, sealed in enumerate(_ahead(envelopes())):
                answer = self._send(sealed)
                if progress:
                    progress(sizes[index])
        finally:
            if isinstance(source, Path):
                handle.close()
        total = sum(sizes)
        assert self.connection is not None
        if not isinstance(answer, dict):
            raise ProtocolError("the upload answer has no receipt")
        statement = verify_statement(self.connection.signing_key, answer.get("receipt"), "receipt", limits=self.limits)
        expected = {"party": self.party.name, "table": table, "sha256": digest.hexdigest(), "bytes": total}
        for name, value in expected.items():
            if statement.get(name) != value:
                raise ProtocolError(f"the receipt's {name} is {statement.get(name)!r}, expected {value!r}")
        salt = statement.get("salt")
        try:
            committed = commit(
                session=self.manifest.session,
                manifest_sha256=self.manifest.hash,
                table=table,
                salt=bytes.fromhex(salt) if isinstance(salt, str) else b"",
                sha256=digest.hexdigest(),
            )
        except ValueError:
            raise ProtocolError("the receipt carries no valid commitment salt") from None
        if statement.get("commitment") != committed:
            raise ProtocolError("the receipt's commitment does not match its salt and your data's SHA-256")
        return Receipt(
            self.party.name,
            table,
            int(statement["rows"]),
            total,
            digest.hexdigest(),
            statement,
            answer["receipt"],
            commitment=committed,
            salt=str(salt),
            replaced=statement.get("replaced") is True,
        )

    def status(self) -> dict[str, Any]:
        """Which inputs are in, which computations are ready or done, what this party may read."""
        answer = self._call("status", None)
        if not isinstance(answer, dict):
            raise ProtocolError("malformed status")
        return answer

    def compute(self, computation: str) -> dict[str, Any]:
        """Ask the enclave to run a computation (for its readers)."""
        answer = self._call("compute", {"computation": computation})
        if not isinstance(answer, dict):
            raise ProtocolError("malformed compute answer")
        return answer

    def result(self, computation: str) -> Result:
        """Fetch, verify and decode a computation's result (:class:`StillRunning` while it is generated)."""
        answer = self._call("result", {"computation": computation})
        assert self.connection is not None
        running = answer.get("running") if isinstance(answer, dict) else None
        if isinstance(running, dict):
            progress, stage = running.get("progress"), running.get("stage")
            if not isinstance(progress, int | float) or isinstance(progress, bool) or not isinstance(stage, str):
                raise ProtocolError("malformed progress report")
            raise StillRunning(computation, min(max(float(progress), 0.0), 1.0), stage[:200])
        signed = answer.get("result") if isinstance(answer, dict) else None
        statement = verify_statement(self.connection.signing_key, signed, "result", limits=self.limits)
        if statement.get("computation") != computation or statement.get("manifest") != self.manifest.hash:
            raise ProtocolError("the result is for another computation or session")
        assert isinstance(signed, dict)
        return Result(
            computation=computation,
            columns=[(str(n), str(t)) for n, t in statement["columns"]],
            rows=statement["rows"],
            suppressed_groups=(
                None if statement.get("suppressed_groups") is None else int(statement["suppressed_groups"])
            ),
            rules=dict(statement["rules"]),
            inputs=dict(statement["inputs"]),
            statement=statement,
            signed=signed,
        )

    def wait_for_result(
        self,
        computation: str,
        *,
        on_progress: Callable[[float, str], None] | None = None,
        poll_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Result:
        """:meth:`result`, asked again every ``poll_s`` seconds while the enclave is generating it."""
        while True:
            try:
                return self.result(computation)
            except StillRunning as running:
                if on_progress is not None:
                    on_progress(running.progress, running.stage)
                sleep(poll_s)

    def transcript(self) -> list[Event]:
        """The session's event log, every link and the signed head verified."""
        answer = self._call("transcript", None)
        assert self.connection is not None
        if not isinstance(answer, dict):
            raise ProtocolError("malformed transcript")
        return verify_chain(answer.get("events"), answer.get("head"), self.connection.signing_key, limits=self.limits)
