"""The session state machine: inputs, uploads in progress, computations, results, transcript.

All state is in memory. Operations are serialized by one lock (DuckDB and the state change
together); only the check of an upload chunk runs outside it (see :meth:`Session.upload`).
Every method takes an authenticated party name (the envelope's signature was checked before)
and a typed body (:mod:`oblv_mpc.protocol.messages`), returns a typed answer
(:mod:`oblv_mpc.protocol.answers`), and raises :class:`EnclaveRefused`, :class:`InputDataError`
or :class:`NotReady` to refuse; nothing from a refused upload is kept.

What a party can read carries nothing data-dependent about another party's input beyond the
results it may read: status and transcripts show other parties' inputs as salted commitments
(``oblv_mpc.protocol.commitment``), never row counts or plain hashes; a computation's inputs
freeze when it is first attempted, whatever the outcome (released, withheld by a rule, stopped
by a limit), and that outcome is kept, so it cannot be probed again after a re-upload; refusals
and transcript events of withheld or failed runs carry no numbers. Every event carries the time
its request reached the session (:mod:`oblv_mpc.enclave.event_log`), so no two events bracket a
run.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from oblv_mpc import keys
from oblv_mpc.enclave import privacy
from oblv_mpc.enclave.engine import Engine, RunFailed
from oblv_mpc.enclave.event_log import Clock, EventLog
from oblv_mpc.enclave.records import OUTCOME_CODES, InputRecord, Refusal, ResultRecord
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.enclave.synthesis import Start, Synthesis, on_thread
from oblv_mpc.enclave.uploads import Upload, Uploads
from oblv_mpc.errors import EnclaveRefused, NotReady
from oblv_mpc.ingest import IngestSummary
from oblv_mpc.manifest import Manifest
from oblv_mpc.manifest.rules import Withheld
from oblv_mpc.protocol.answers import (
    ComputationState,
    ComputeAnswer,
    InputState,
    Progress,
    ReceiptAnswer,
    Received,
    ResultAnswer,
    ResultChunkAnswer,
    SignedStatement,
    StatusAnswer,
    TranscriptAnswer,
)
from oblv_mpc.protocol.commitment import SALT_BYTES, commit
from oblv_mpc.protocol.envelope import sign_statement
from oblv_mpc.protocol.messages import ComputeRequest, ResultRequest, UploadChunk
from oblv_mpc.protocol.transcript import Event
from oblv_mpc.synthetic import registry as synthesizers
from oblv_mpc.synthetic.run import Release


class Session:
    """One session's state inside the enclave."""

    def __init__(
        self,
        manifest: Manifest,
        signing: keys.PrivateKey,
        instance: bytes,
        settings: EnclaveSettings,
        clock: Clock,
        *,
        registry: synthesizers.Registry | None = None,
        start: Start = on_thread,
    ) -> None:
        registry = registry or synthesizers.Registry()  # the plug-ins installed now, in the image
        # A synthesizer this image lacks, at the agreed version, is refused here: before any upload.
        registry.check_manifest(manifest, source=f"manifest of session {manifest.session}")
        self.manifest = manifest
        self.engine = Engine(manifest, settings)
        self._signing = signing
        self.instance = instance
        self.settings = settings
        self._lock = threading.Lock()
        self.log = EventLog(clock, self._lock)
        self._uploads = Uploads(manifest, settings.limits, self.engine.ingest, self._discarded)
        self.inputs: dict[str, InputRecord] = {}
        self.results: dict[str, ResultRecord | Refusal] = {}
        self.frozen: set[str] = set()
        self._asked: set[tuple[str, str]] = set()  # (party, synthetic release) that asked once: its one fetch event
        self.epsilon_spent = 0.0
        self.unauthenticated_refusals = 0
        self.synthesizers = tuple((s.name, s.version) for s in registry.listed() if not s.unavailable)
        self._synthesis = Synthesis(registry, self._lock, self._finish_synthetic, start)
        self._record("start", {"session": manifest.session, "manifest": manifest.hash, "instance": instance.hex()})

    def uploads_in_progress(self, party: str | None = None) -> int:
        """How many uploads are in progress (``party``'s, if given): started, not yet committed or discarded."""
        with self._lock:
            return self._uploads.in_progress(party)

    # -- helpers -----------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The session clock, in milliseconds since the epoch."""
        return self.log.now_ms()

    @property
    def events(self) -> list[Event]:
        """The transcript's events so far (read them under the session lock)."""
        return self.log.events

    def _request(self, arrived: int | None = None) -> contextlib.AbstractContextManager[None]:
        """The session lock for one request, whose events carry its arrival (:class:`EventLog`)."""
        return self.log.request(arrived)

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        self.log.record(kind, data)

    def _statement(self, kind: str, **fields: Any) -> SignedStatement:
        base = {
            "kind": kind,
            "session": self.manifest.session,
            "manifest": self.manifest.hash,
            "instance": self.instance.hex(),
            "time": self.now_ms(),
        }
        return SignedStatement.from_cbor(sign_statement(self._signing, {**base, **fields}))

    def record_refusal(self, party: str, op: str, code: str) -> None:
        """A party's refused request goes into the transcript (without the refused content).

        A refusal that is a computation's outcome (withheld, stopped by a limit) is not recorded
        as such: every party reads the transcript, and only the computation's readers may learn
        its outcome. The ``fetch`` event already says that the reader asked. A refused session
        operation's event carries the time the request reached the session (:meth:`_request`).
        """
        arrived = self.log.refusal_arrival()
        if code in OUTCOME_CODES:
            return
        with self._request(arrived):
            self._record("refusal", {"party": party, "op": op, "code": code})

    def count_unauthenticated(self) -> None:
        """Requests from no party are only counted: anyone can send them, so they are no events."""
        with self._lock:
            self.unauthenticated_refusals += 1

    def _discarded(self, upload: Upload, reason: str) -> None:
        """An upload was discarded: its data went with it; every party sees that it was (lock held)."""
        table = upload.content.table.qualified
        self._record("upload_aborted", {"party": upload.party, "table": table, "reason": reason})

    # -- operations --------------------------------------------------------------------------

    def upload(self, party: str, chunk: UploadChunk) -> Received | ReceiptAnswer:
        """Take one chunk of an upload; the final chunk commits the table and yields a receipt.

        Under the session lock, the chunk is authorized and placed in its upload (one chunk of an
        upload at a time); without it, its bytes are hashed and checked (the slow part, which
        touches no shared state: other parties' requests go on meanwhile); under the lock again,
        the upload moves on, or, at the end, is committed, unless it was discarded (superseded,
        or another chunk sent out of turn) or its table frozen meanwhile.
        """
        arrived = self.now_ms()
        with self._request(arrived):
            upload = self._uploads.place(party, chunk, self.frozen, self.now_ms())
        try:
            summary = self._uploads.check(upload, chunk)
        except BaseException as exc:
            with self._request(arrived):
                if upload.discarded is None:
                    self._uploads.failed(upload, exc)
                raise
        with self._request(arrived):
            self._uploads.settle(upload, self.now_ms())
            if summary is None:
                return Received(chunk.frame.index)
            self._uploads.complete(upload, chunk.digest, self.frozen)
            record, replaced = self._commit(party, upload, summary)
            self._record(
                "upload",
                {"party": party, "table": record.table, "commitment": record.commitment, "replaced": replaced},
            )
            return ReceiptAnswer(self._receipt(record, replaced))

    def _commit(self, party: str, upload: Upload, summary: IngestSummary) -> tuple[InputRecord, bool]:
        """Make a complete upload the party's table, with a fresh commitment salt (lock held)."""
        table = upload.content.table
        self.engine.commit(table, upload.content.ingest)
        salt = os.urandom(SALT_BYTES)
        commitment = commit(
            session=self.manifest.session,
            manifest_sha256=self.manifest.hash,
            table=table.qualified,
            salt=salt,
            sha256=upload.sha256,
        )
        record = InputRecord(
            party, table.qualified, summary.rows, upload.size, upload.sha256, upload.stream_id, self.now_ms(), salt,
            commitment, upload.content.format,
        )  # fmt: skip
        replaced = table.qualified in self.inputs
        self.inputs[table.qualified] = record
        return record, replaced

    def _receipt(self, record: InputRecord, replaced: bool) -> SignedStatement:
        """The owner's signed receipt: what the enclave took, and the salt that opens its commitment."""
        return self._statement(
            "receipt",
            party=record.party,
            table=record.table,
            rows=record.rows,
            bytes=record.size,
            sha256=record.sha256,
            salt=record.salt.hex(),
            commitment=record.commitment,
            upload=record.upload_id.hex(),
            replaced=replaced,
            format=record.format,
        )

    def _missing(self, name: str) -> list[str]:
        return [t for t in self.manifest.computations[name].inputs if t not in self.inputs]

    def status(self, party: str) -> StatusAnswer:
        """Who has submitted what; what can be computed; what this party may read.

        Another party's input shows as submitted or not, frozen or not, and its commitment; its
        row count and plaintext hash only to its owner.
        """
        with self._lock:
            inputs = {}
            for name, table in self.manifest.inputs.items():
                record = self.inputs.get(name)
                own = record if record is not None and table.party == party else None
                inputs[name] = InputState(
                    party=table.party,
                    submitted=record is not None,
                    commitment=record.commitment if record else None,
                    rows=own.rows if own else None,
                    sha256=own.sha256 if own else None,
                    frozen=name in self.frozen,
                )
            computations = {}
            for name, computation in self.manifest.computations.items():
                missing = self._missing(name)
                outcome = self.results.get(name)
                job = self._synthesis.running(name)
                running = None
                if job is not None:
                    state = "running" if party in computation.readers else "attempted"
                    running = _progress(job.report()) if state == "running" else None
                elif outcome is None:
                    state = "ready" if not missing else "waiting"
                elif party not in computation.readers:
                    state = "attempted"  # released or withheld is for its readers to know
                else:
                    state = "done" if isinstance(outcome, ResultRecord) else "refused"
                readers = tuple(computation.readers)
                computations[name] = ComputationState(state, tuple(missing), readers, party in readers, running)
            budget = self.manifest.privacy_budget
            return StatusAnswer(
                session=self.manifest.session,
                instance=self.instance.hex(),
                unauthenticated_refusals=self.unauthenticated_refusals,
                inputs=inputs,
                computations=computations,
                budget=budget["epsilon"] if budget else None,
                spent=self.epsilon_spent,
                synthesizers=self.synthesizers,
            )

    def _check_reader(self, party: str, name: str) -> None:
        computation = self.manifest.computations.get(name)
        if computation is None:
            raise EnclaveRefused("unknown_computation", f"{name!r} is not a computation of this session")
        if party not in computation.readers:
            raise EnclaveRefused("forbidden", f"party {party!r} is not a reader of {name}")

    def _run(self, name: str) -> ResultRecord:
        """The computation's result: run on first request, then the same answer (or refusal) every time."""
        outcome = self.results.get(name)
        if outcome is None:
            outcome = self._attempt(name)
            self.results[name] = outcome
        if isinstance(outcome, Refusal):
            raise EnclaveRefused(outcome.code, outcome.reason)
        return outcome

    def _attempt(self, name: str) -> ResultRecord | Refusal:
        missing = self._missing(name)
        if missing:
            raise NotReady(f"{name} is waiting for {', '.join(missing)}", hint="try again when every input is in")
        computation = self.manifest.computations[name]
        if computation.dp is not None:
            self._spend(name, privacy.cost(computation))
        # Frozen from the first attempt, whatever its outcome: a party cannot re-upload and try again.
        self.frozen.update(computation.inputs)
        inputs = {t: self.inputs[t].commitment for t in computation.inputs}
        # One event whatever the outcome: every party reads the transcript, only readers the outcome.
        self._record("attempt", {"computation": name, "inputs": inputs})
        try:
            output = self.engine.run(computation)
        except Withheld as exc:
            return Refusal("withheld", f"{name}: {exc.reason}")
        except RunFailed as exc:
            return Refusal(exc.code, f"{name}: {exc.reason}")
        stream = output.stream
        signed = self._statement(
            "result",
            computation=name,
            columns=[list(c) for c in output.columns],
            rows=output.rows if stream is None else None,  # a streamed result: its chunks, bound by `stream`
            suppressed_groups=output.suppressed_groups,
            rules={**computation.rules, "dp": output.dp},
            inputs=inputs,
            **({"stream": stream.describe()} if stream is not None else {}),
        )
        return ResultRecord(signed, output.row_count, output.suppressed_groups, stream)

    def _spend(self, name: str, epsilon: float) -> None:
        """Draw on the session's privacy budget, or refuse to overspend it."""
        budget = self.manifest.privacy_budget
        assert budget is not None  # the manifest requires one when a computation has dp
        if self.epsilon_spent + epsilon > budget["epsilon"] * (1 + 1e-9):
            raise EnclaveRefused(
                "budget_exhausted",
                f"{name} needs epsilon {epsilon:g}, but only {budget['epsilon'] - self.epsilon_spent:g} of the "
                f"session's privacy budget {budget['epsilon']:g} is left",
            )
        self.epsilon_spent += epsilon
        self._record(
            "privacy_spend",
            {"computation": name, "epsilon": epsilon, "spent": self.epsilon_spent, "budget": budget["epsilon"]},
        )

    # -- synthetic releases (oblv_mpc.enclave.synthesis) -----------------------------------------

    def _synthetic_running(self, name: str) -> Progress | None:
        """A synthetic release's progress while it is generated (starting it on first ask); None once it ended.

        Starting it does what every first attempt does, under the lock: inputs complete, budget
        drawn once, inputs frozen, the attempt recorded; then the pooled rows are read, and
        generation goes on in the background.
        """
        if name in self.results:
            return None
        job = self._synthesis.running(name)
        if job is not None:
            return _progress(job.report())
        missing = self._missing(name)
        if missing:
            raise NotReady(f"{name} is waiting for {', '.join(missing)}", hint="try again when every input is in")
        computation = self.manifest.computations[name]
        self._spend(name, computation.epsilon)
        self.frozen.update(computation.inputs)
        self._record("attempt", {"computation": name, "inputs": self._commitments(name)})
        try:
            data = self.engine.pooled(computation)
        except RunFailed as exc:
            self.results[name] = Refusal(exc.code, f"{name}: {exc.reason}")
            return None
        return _progress(self._synthesis.start(computation, data).report())

    def _commitments(self, name: str) -> dict[str, str]:
        return {t: self.inputs[t].commitment for t in self.manifest.computations[name].inputs}

    def _finish_synthetic(self, name: str, outcome: Release | str) -> None:
        """Keep a generation's outcome: a signed result like every other, or a refusal (lock held)."""
        if isinstance(outcome, str):
            self.results[name] = Refusal("compute_failed", f"{name}: {outcome}")
            return
        computation = self.manifest.computations[name]
        signed = self._statement(
            "result",
            computation=name,
            columns=[list(c) for c in outcome.columns],
            rows=outcome.rows,
            suppressed_groups=None,
            rules={**computation.rules, "dp": outcome.applied},
            inputs=self._commitments(name),
        )
        self.results[name] = ResultRecord(signed, len(outcome.rows), None)

    def compute(self, party: str, request: ComputeRequest) -> ComputeAnswer:
        """Run a computation now (a reader of it may ask); idempotent once it ran.

        A synthetic release starts in the background: the answer says how far it has come.
        """
        name = request.computation
        with self._request():
            self._check_reader(party, name)
            if self.manifest.computations[name].synthetic is not None:
                running = self._synthetic_running(name)
                if running is not None:
                    return ComputeAnswer(name, 0, None, running)
            record = self._run(name)
            return ComputeAnswer(name, record.rows, record.suppressed_groups)

    def result(self, party: str, request: ResultRequest) -> ResultAnswer | ResultChunkAnswer:
        """A computation's signed result, for its readers only (runs it on first fetch); or, with
        ``chunk``, that chunk of a streamed result whose statement was fetched."""
        name = request.computation
        with self._request():
            self._check_reader(party, name)
            if request.chunk is not None:
                return self._chunk(name, request.chunk)
            if self.manifest.computations[name].synthetic is not None:
                return self._synthetic_result(party, name)
            if name not in self.results:
                self.results[name] = self._attempt(name)
            self._record("fetch", {"computation": name, "party": party})  # released or refused alike
            return ResultAnswer(self._run(name).signed)

    def _synthetic_result(self, party: str, name: str) -> ResultAnswer:
        """A synthetic release's progress or result; a reader's ``fetch`` event only on its first ask.

        A reader asks again until the generation ends (``mpc fetch`` polls): an event on the ask
        that finds it ended would carry the time it ended, and with the ``attempt`` event bracket
        the run for every party, though how long it took is the readers' to know.
        """
        running = self._synthetic_running(name)  # starts it, or says what it waits for
        if (party, name) not in self._asked:
            self._asked.add((party, name))
            self._record("fetch", {"computation": name, "party": party})  # the time it was first asked
        if running is not None:
            return ResultAnswer(None, running)
        return ResultAnswer(self._run(name).signed)

    def _chunk(self, name: str, index: int) -> ResultChunkAnswer:
        """Chunk ``index`` of a streamed result (lock held; sealing it is the channel's, outside)."""
        if name not in self.results:
            missing = self._missing(name)
            if missing:  # as the statement's fetch says it: a chunk tells nothing the statement would not
                raise NotReady(f"{name} is waiting for {', '.join(missing)}", hint="try again when every input is in")
            raise EnclaveRefused("bad_request", f"{name} has no result yet: fetch its signed statement first")
        stream = self._run(name).stream
        if stream is None:
            raise EnclaveRefused("bad_request", f"{name}'s result is not streamed: its statement holds every row")
        if index >= len(stream.chunks):
            raise EnclaveRefused("bad_request", f"{name}'s result has {len(stream.chunks)} chunks, no chunk {index}")
        return ResultChunkAnswer(name, index, index == len(stream.chunks) - 1, stream.chunks[index])

    def transcript(self, party: str) -> TranscriptAnswer:
        """Every event so far, and the signed head."""
        with self._lock:
            head = self.events[-1].hash
            signed = self._statement("transcript", seq=len(self.events), head=head)
            return TranscriptAnswer(tuple(e.encoded for e in self.events), signed)


def _progress(report: dict[str, float | str]) -> Progress:
    """A job's report as the typed progress of the answers."""
    return Progress(float(report["progress"]), str(report["stage"]))
