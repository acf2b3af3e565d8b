"""``EnclaveClient``: attest, verify, seal and sign, send, open and verify, over any httpx client.

The client takes an injected :class:`httpx.Client` (FastAPI's ``TestClient`` is one), so tests
run against the real app in process and the CLI against a real server. Nothing is sent to an
enclave before :meth:`EnclaveClient.connect` has verified its attestation document, and every
response, receipt and result is checked against the signing key that document binds.

Errors: transport failures become :class:`EnclaveUnreachable`; refusals
:class:`EnclaveRefused` (or :class:`NotReady`, :class:`InputDataError` for those refusals);
anything that does not open or verify :class:`ProtocolError` or an :class:`AttestationError`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
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
    NotReady,
    PolicyError,
    ProtocolError,
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

    @staticmethod
    def _refusal(response: httpx.Response) -> EnclaveRefused:
        try:
            data = response.json()
            detail = data.get("detail", data) if isinstance(data, dict) else {}
            code, message = str(detail.get("code")), str(detail.get("message"))
        except ValueError:
            code, message = f"http_{response.status_code}", response.text[:200]
        if code == "enclave_restarted":
            return EnclaveRefused(code, message, hint="reconnect (mpc connect) and submit your data again")
        return EnclaveRefused(code, message)

    # -- attestation -------------------------------------------------------------------------

    def connect(self) -> Connection:
        """Fetch a fresh attestation, verify it and its binding to this session; nothing is sent first."""
        nonce = os.urandom(self.limits.client_nonce_bytes)
        response = self._http("GET", "/v1/attestation", params={"nonce": nonce.hex()})
        if response.status_code != 200:
            raise self._refusal(response)
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
            refusal = self._refusal(response)
            if refusal.code in ("enclave_restarted", "cannot_open"):
                self.connection = None  # what was verified no longer holds
            raise refusal
        try:
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
                raise EnclaveRefused("unknown_table", f"{table!r} is not an input of session {self.manifest.session}")
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
        """Fetch, verify and decode a computation's result."""
        answer = self._call("result", {"computation": computation})
        assert self.connection is not None
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

    def transcript(self) -> list[Event]:
        """The session's event log, every link and the signed head verified."""
        answer = self._call("transcript", None)
        assert self.connection is not None
        if not isinstance(answer, dict):
            raise ProtocolError("malformed transcript")
        return verify_chain(answer.get("events"), answer.get("head"), self.connection.signing_key, limits=self.limits)
