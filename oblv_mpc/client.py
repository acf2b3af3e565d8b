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
import dataclasses
import datetime as dt
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import httpx
import pyarrow as pa

from oblv_mpc import keys, result_files
from oblv_mpc.attestation import AttestationPolicy, VerifiedAttestation, verify
from oblv_mpc.columnar import ColumnarFile
from oblv_mpc.errors import (
    EnclaveRefused,
    InputDataError,
    KeyFileError,
    MpcError,
    PolicyError,
    ProtocolError,
    StillRunning,
    UnauthenticatedAnswer,
    UsageError,
)
from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.manifest import Manifest
from oblv_mpc.network import unreachable
from oblv_mpc.protocol.answers import (
    ComputeAnswer,
    ReceiptAnswer,
    Received,
    ResultAnswer,
    ResultChunkAnswer,
    StatusAnswer,
    TranscriptAnswer,
)
from oblv_mpc.protocol.binding import EnclaveBinding, sha256
from oblv_mpc.protocol.envelope import ENCLAVE_KEY_HEADER, Context, open_response, seal_request, verify_statement
from oblv_mpc.protocol.hpke import KeyPair, SuiteName
from oblv_mpc.protocol.messages import (
    ARROW,
    CSV,
    STREAM_ID_BYTES,
    ComputeRequest,
    Digest,
    Frame,
    Outgoing,
    ResultRequest,
    StatusRequest,
    TranscriptRequest,
    UploadChunk,
)
from oblv_mpc.protocol.refusals import plain_hint, sealed_error
from oblv_mpc.protocol.transcript import Event, verify_chain
from oblv_mpc.result_files import plain_rows
from oblv_mpc.result_reader import fetcher, read_stream
from oblv_mpc.statements import Receipt, Result, read_receipt, read_result
from oblv_mpc.streaming import Sent, ahead, frames, whole_frames

__all__ = ["Connection", "EnclaveClient", "Receipt", "Result", "Sent", "claims"]

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
_PREVIEW_ROWS = 100
QUOTED_CHARS = 300  # how much of an unauthenticated answer an error quotes
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
        """SHA-256 of the enclave's HPKE public key, hex."""
        return self.context.enclave_sha256.hex()


@dataclass(frozen=True)
class _Sealed:
    op: str
    envelope: bytes
    reply: KeyPair
    request_id: bytes


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
            raise KeyFileError(f"this key belongs to party {found.name}, not to {party!r}")
        self.party = found
        self.connection: Connection | None = None

    # -- transport ---------------------------------------------------------------------------

    def _http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(exc, str(self.http.base_url)) from None

    def _unauthenticated(self, response: httpx.Response, *, hint: str | None = None) -> UnauthenticatedAnswer:
        """A non-200 answer: whatever answered said it, not the attested enclave. Quoted, escaped."""
        code, claimed = claims(response)
        return UnauthenticatedAnswer(
            response.status_code,
            code,
            claimed,
            origin=str(self.http.base_url),
            hint=hint or plain_hint(code) or _DEFAULT_HINT,
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

    def _seal(self, message: Outgoing) -> _Sealed:
        connection = self.connection or self.connect()
        time_ms = int(self.clock().timestamp() * 1000)
        envelope, reply, request_id = seal_request(
            connection.context, message.op, self.party.name, self._identity, message.to_cbor(), time_ms=time_ms
        )
        return _Sealed(message.op, envelope, reply, request_id)

    def call(self, message: Outgoing) -> Any:
        """Send one request, sealed and signed; the enclave's answer, opened and verified, as plain
        data (its class in :mod:`oblv_mpc.protocol.answers` reads it). Raises the enclave's refusal."""
        return self._send(self._seal(message))

    def _send(self, sealed: _Sealed) -> Any:
        connection = self.connection
        assert connection is not None
        op, envelope, reply, request_id = sealed.op, sealed.envelope, sealed.reply, sealed.request_id
        response = self._http(
            "POST",
            f"/v1/{op}",
            content=envelope,
            headers={"content-type": "application/octet-stream", ENCLAVE_KEY_HEADER: connection.key_id},
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
            raise sealed_error(exc.code, exc.reason) from None

    def send_stream(
        self,
        chunk: Callable[[Frame, Digest | None], Outgoing],
        pieces: Iterable[bytes],
        *,
        chunk_bytes: int | None = None,
        whole: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Sent:
        """Send bytes (in ``pieces`` of any size) as one chunked stream, each chunk sealed on its own.

        ``chunk`` makes each chunk's message from its :class:`Frame` (and, for the last one, the
        :class:`Digest` of the whole stream). ``whole``: each piece is one chunk, as it is (whole
        Arrow IPC messages); else pieces are cut into chunks of ``chunk_bytes``. Every chunk but
        the last must be acknowledged in order; the answer to the last is returned with the
        digest. ``progress`` is told each chunk's size once it was taken. Reading and sealing run
        one chunk ahead of sending.
        """
        self.connection or self.connect()
        stream_id = os.urandom(STREAM_ID_BYTES)
        size = chunk_bytes or self.chunk_bytes
        if whole:
            chunks = whole_frames(stream_id, pieces, self.limits.max_chunk_bytes)
        else:
            chunks = frames(stream_id, pieces, size)
        for frame, digest, envelope in ahead((f, d, self._seal(chunk(f, d))) for f, d in chunks):
            answer = self._send(envelope)
            if progress:
                progress(len(frame.data))
            if digest is not None:
                return Sent(answer, digest)
            if Received.from_cbor(answer).index != frame.index:
                raise ProtocolError(f"the enclave acknowledged another chunk than chunk {frame.index}")
        raise AssertionError("a stream always ends with a final chunk")

    def upload(
        self,
        table: str,
        source: Path | IO[bytes],
        *,
        progress: Callable[[int], None] | None = None,
        format: str = CSV,
        compression: str | None = None,
    ) -> Receipt:
        """Stream a table to the enclave in sealed chunks; return the verified receipt.

        ``format="csv"`` sends the file's bytes as they are (the enclave parses them);
        ``format="arrow"`` reads the file (CSV or Parquet, a path) here with Arrow, once, checks
        it as the enclave will, and sends Arrow IPC record batches, ``compression`` (``lz4`` or
        ``zstd``) or not; ``progress`` is then told how many bytes of the file were read. The
        receipt binds the bytes sent (their SHA-256 and size) and, for Arrow, the rows.
        """
        table = self._own_table(table)
        if format == ARROW:
            if not isinstance(source, Path):
                raise UsageError("an Arrow upload reads a file: give its path")
            return self._upload_columnar(table, source, progress, compression)
        if format != CSV:
            raise UsageError(f"format {format!r}: expected {CSV} or {ARROW}")
        handle = source.open("rb") if isinstance(source, Path) else source
        try:
            sent = self.send_stream(
                lambda frame, digest: UploadChunk(frame, table, digest),
                iter(partial(handle.read, self.chunk_bytes), b""),
                progress=progress,
            )
        finally:
            if isinstance(source, Path):
                handle.close()
        return self._receipt(table, sent, rows=None)

    def _own_table(self, table: str) -> str:
        if table not in self.manifest.inputs:
            qualified = f"{self.party.name}.{table}"
            if qualified not in self.manifest.inputs:
                mine = ", ".join(t.table for t in self.manifest.inputs_of(self.party.name)) or "none"
                raise UsageError(f"{table!r} is not an input of session {self.manifest.session} (yours: {mine})")
            table = qualified
        return table

    def _upload_columnar(
        self, table: str, path: Path, progress: Callable[[int], None] | None, compression: str | None
    ) -> Receipt:
        stream = ColumnarFile(
            path, self.manifest.inputs[table], chunk_bytes=self.chunk_bytes, compression=compression, limits=self.limits
        )
        reported = [0]

        def read(_: int) -> None:
            if progress is not None:
                progress(stream.read_bytes - reported[0])
            reported[0] = stream.read_bytes

        try:
            sent = self.send_stream(
                lambda frame, digest: UploadChunk(frame, table, digest, ARROW),
                stream.pieces(),
                whole=True,
                progress=read,
            )
        except InputDataError as exc:
            if reported[0]:  # chunks went: the enclave keeps nothing of an upload without its last one
                raise
            raise InputDataError(exc.message, hint="fix the file and submit it again; nothing was sent") from None
        assert stream.summary is not None
        return self._receipt(table, sent, rows=stream.summary.rows)

    def _receipt(self, table: str, sent: Sent, *, rows: int | None) -> Receipt:
        assert self.connection is not None
        signed = ReceiptAnswer.from_cbor(sent.answer).receipt.to_cbor()
        statement = verify_statement(self.connection.signing_key, signed, "receipt", limits=self.limits)
        return read_receipt(statement, signed, self.manifest, self.party.name, table, sent.digest, rows=rows)

    def status(self) -> dict[str, Any]:
        """Which inputs are in, which computations are ready or done, what this party may read.

        Checked as a :class:`~oblv_mpc.protocol.answers.StatusAnswer`; given as plain data.
        """
        return StatusAnswer.from_cbor(self.call(StatusRequest())).to_cbor()

    def compute(self, computation: str) -> dict[str, Any]:
        """Ask the enclave to run a computation (for its readers); the answer as plain data."""
        return ComputeAnswer.from_cbor(self.call(ComputeRequest(computation))).to_cbor()

    def result(self, computation: str, *, rows: bool = True) -> Result:
        """Fetch, verify and decode a computation's result (:class:`StillRunning` while it is generated).

        A streamed (large) result's rows are fetched into memory too, unless ``rows=False``:
        then :meth:`save_result` writes them to a file without holding them.
        """
        answer = ResultAnswer.from_cbor(self.call(ResultRequest(computation)))
        assert self.connection is not None
        if answer.running is not None:
            raise StillRunning(computation, answer.running.fraction, answer.running.stage)
        assert answer.result is not None
        signed = answer.result.to_cbor()
        statement = verify_statement(self.connection.signing_key, signed, "result", limits=self.limits)
        result = read_result(statement, signed, self.manifest, computation)
        if result.stream is None or not rows:
            return result
        return dataclasses.replace(result, rows=plain_rows(list(self.stream_batches(result)), result.columns))

    def stream_batches(self, result: Result) -> Iterator[pa.RecordBatch]:
        """A streamed result's record batches, fetched one chunk ahead, every byte verified
        (:func:`oblv_mpc.result_reader.read_stream`: it raises at the end if they do not match)."""
        assert result.stream is not None, "the result is not streamed"

        def fetch(index: int) -> ResultChunkAnswer:
            return ResultChunkAnswer.from_cbor(self.call(ResultRequest(result.computation, index)))

        return read_stream(result, ahead(fetcher(fetch, result.stream.chunks)), self.limits)

    def save_result(
        self, result: Result, path: Path, fmt: str, *, progress: Callable[[int], None] | None = None
    ) -> list[list[Any]]:
        """Write ``result`` to ``path`` as ``fmt`` (:data:`oblv_mpc.result_files.FORMATS`); return its first rows.

        Either way the file is the same (:mod:`oblv_mpc.result_files`). A streamed result whose rows
        were not fetched goes straight from its chunks to the file, which appears only once every
        byte was verified; ``progress`` is told the rows written. At most 100 rows are returned,
        for a preview.
        """
        if result.stream is None or result.rows:  # inline, or streamed and already fetched (and verified)
            result_files.write(result.columns, result.rows, path, fmt)
            return result.rows[:_PREVIEW_ROWS]
        batches = self.stream_batches(result)
        first = next(batches, None)
        if first is None:  # unreachable: a streamed result has a schema and rows
            raise ProtocolError(f"the result of {result.computation} streamed no rows")
        writer = result_files.BatchWriter(path, fmt, first.schema, result.columns)
        try:
            for batch in itertools.chain([first], batches):
                writer.write(batch)
                if progress is not None:
                    progress(batch.num_rows)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
        return plain_rows([first.slice(0, _PREVIEW_ROWS)], result.columns)

    def wait_for_result(
        self,
        computation: str,
        *,
        on_progress: Callable[[float, str], None] | None = None,
        poll_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        rows: bool = True,
    ) -> Result:
        """:meth:`result`, asked again every ``poll_s`` seconds while the enclave is generating it."""
        while True:
            try:
                return self.result(computation, rows=rows)
            except StillRunning as running:
                if on_progress is not None:
                    on_progress(running.progress, running.stage)
                sleep(poll_s)

    def transcript(self) -> list[Event]:
        """The session's event log, every link and the signed head verified."""
        answer = TranscriptAnswer.from_cbor(self.call(TranscriptRequest()))
        assert self.connection is not None
        events, head = list(answer.events), answer.head.to_cbor()
        return verify_chain(events, head, self.connection.signing_key, limits=self.limits)
