"""The session state machine: inputs, uploads in progress, computations, results, transcript.

All state is in memory. Operations are serialized by one lock (DuckDB and the state change
together); only the CSV check of an upload chunk runs outside it (see :meth:`Session.upload`).
Every method takes an authenticated party name (the envelope's signature was
checked before) and raises :class:`EnclaveRefused`, :class:`InputDataError` or
:class:`NotReady` to refuse; nothing from a refused upload is kept.

What a party can read carries nothing data-dependent about another party's input beyond the
results it may read: status and transcripts show other parties' inputs as salted commitments
(``oblv_mpc.protocol.commitment``), never row counts or plain hashes; a computation's inputs
freeze when it is first attempted, whatever the outcome (released, withheld by a rule, stopped
by a limit), and that outcome is kept, so it cannot be probed again after a re-upload; refusals
and transcript events of withheld or failed runs carry no numbers.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oblv_mpc import keys
from oblv_mpc.enclave import privacy
from oblv_mpc.enclave.engine import Engine, RunFailed
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.enclave.synthesis import Start, Synthesis, on_thread
from oblv_mpc.errors import EnclaveRefused, InputDataError, NotReady
from oblv_mpc.manifest import InputTable, Manifest, Role
from oblv_mpc.manifest.rules import Withheld
from oblv_mpc.protocol.commitment import SALT_BYTES, commit
from oblv_mpc.protocol.envelope import sign_statement
from oblv_mpc.protocol.transcript import GENESIS, Event, make_event
from oblv_mpc.synthetic import registry as synthesizers
from oblv_mpc.synthetic.run import Release
from oblv_mpc.tables import CsvIngest

Clock = Callable[[], dt.datetime]


@dataclass
class _Upload:
    party: str
    table: InputTable
    upload_id: bytes
    ingest: CsvIngest
    next_index: int
    last_ms: int
    # A chunk of it is being checked outside the session lock: this upload's own lock, taken
    # and given back only under the session lock, so taking it never waits.
    checking: bool = False
    discarded: str | None = None  # why it was aborted, for a chunk that was being checked


@dataclass(frozen=True)
class InputRecord:
    """A table that is in: who sent it, how many rows, the SHA-256 of the bytes sent, its commitment."""

    party: str
    table: str
    rows: int
    size: int
    sha256: str  # shown to its owner only
    upload_id: bytes
    time_ms: int
    salt: bytes  # in the owner's receipt only
    commitment: str  # what everyone else sees


@dataclass(frozen=True)
class ResultRecord:
    """A computation that ran: its signed result statement."""

    signed: dict[str, bytes]
    rows: int
    suppressed_groups: int | None  # None: not disclosed


# Refusal codes that are a computation's outcome (data-dependent): told to its readers only.
OUTCOME_CODES = frozenset({"withheld", "compute_limit", "compute_failed"})


@dataclass(frozen=True)
class Refusal:
    """A computation that was attempted and released nothing: the same answer every time."""

    code: str
    message: str


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
        self._clock = clock
        self._lock = threading.Lock()
        self._uploads: dict[bytes, _Upload] = {}
        self._used_upload_ids: set[bytes] = set()
        self.inputs: dict[str, InputRecord] = {}
        self.results: dict[str, ResultRecord | Refusal] = {}
        self.frozen: set[str] = set()
        self.epsilon_spent = 0.0
        self.unauthenticated_refusals = 0
        self.events: list[Event] = []
        self.synthesizers = [{"name": s.name, "version": s.version} for s in registry.listed() if not s.unavailable]
        self._synthesis = Synthesis(registry, self._lock, self._finish_synthetic, start)
        self._record("start", {"session": manifest.session, "manifest": manifest.hash, "instance": instance.hex()})

    # -- helpers -----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        prev = self.events[-1].hash if self.events else GENESIS
        self.events.append(make_event(len(self.events), prev, self.now_ms(), kind, data))

    def _statement(self, kind: str, **fields: Any) -> dict[str, bytes]:
        base = {
            "kind": kind,
            "session": self.manifest.session,
            "manifest": self.manifest.hash,
            "instance": self.instance.hex(),
            "time": self.now_ms(),
        }
        return sign_statement(self._signing, {**base, **fields})

    def record_refusal(self, party: str, op: str, code: str) -> None:
        """A party's refused request goes into the transcript (without the refused content).

        A refusal that is a computation's outcome (withheld, stopped by a limit) is not recorded
        as such: every party reads the transcript, and only the computation's readers may learn
        its outcome. The ``fetch`` event already says that the reader asked.
        """
        if code in OUTCOME_CODES:
            return
        with self._lock:
            self._record("refusal", {"party": party, "op": op, "code": code})

    def count_unauthenticated(self) -> None:
        """Requests from no party are only counted: anyone can send them, so they are no events."""
        with self._lock:
            self.unauthenticated_refusals += 1

    def _purge_idle_uploads(self, now_ms: int) -> None:
        limit = self.settings.upload_idle_timeout_s * 1000
        for upload in list(self._uploads.values()):
            if now_ms - upload.last_ms > limit and not upload.checking:  # a chunk being checked is activity
                self._abort(upload, "idle")

    def _abort(self, upload: _Upload, reason: str) -> None:
        self._uploads.pop(upload.upload_id, None)  # its data goes with it
        upload.discarded = reason  # a chunk being checked sees this before it commits anything
        self._record("upload_aborted", {"party": upload.party, "table": upload.table.qualified, "reason": reason})

    # -- operations --------------------------------------------------------------------------

    def upload(self, party: str, body: Any) -> dict[str, Any]:
        """Take one chunk of an upload; the final chunk commits the table and yields a receipt.

        Three steps: under the session lock, check the chunk's place and claim its upload (one
        chunk of an upload at a time); without it, check the CSV (the slow part, which touches
        no shared state: other parties' requests go on meanwhile); under it again, record the
        progress or commit the table, after checking that the upload was not discarded
        (superseded, or another chunk sent out of turn) and the table not frozen meanwhile.
        """
        if not isinstance(body, dict):
            raise EnclaveRefused("bad_request", "upload body must be a map")
        upload_id, table_name, index = body.get("upload"), body.get("table"), body.get("index")
        final, data = body.get("final"), body.get("data")
        if (
            not isinstance(upload_id, bytes)
            or len(upload_id) != 16
            or not isinstance(table_name, str)
            or isinstance(index, bool)
            or not isinstance(index, int)
            or not isinstance(final, bool)
            or not isinstance(data, bytes)
        ):
            raise EnclaveRefused("bad_request", "upload chunk needs upload (16 bytes), table, index, final and data")
        if len(data) > self.settings.max_chunk_bytes:
            raise EnclaveRefused("too_large", f"chunk of {len(data)} bytes exceeds {self.settings.max_chunk_bytes}")
        with self._lock:
            upload = self._claim(party, table_name, upload_id, index)
        try:
            upload.ingest.feed(data)
            summary = upload.ingest.finish() if final else None
        except BaseException as exc:
            with self._lock:
                upload.checking = False
                if upload.discarded is None:
                    self._abort(upload, "invalid data" if isinstance(exc, InputDataError) else "not processed")
            raise
        with self._lock:
            upload.checking = False
            if upload.discarded is not None:
                raise EnclaveRefused(
                    "upload_sequence",
                    f"the upload was discarded ({upload.discarded}) while chunk {index} was being checked; "
                    "nothing of it is kept",
                )
            upload.next_index += 1
            upload.last_ms = self.now_ms()
            if summary is None:
                return {"received": index}
            if table_name in self.frozen:
                self._abort(upload, "frozen")
                raise EnclaveRefused("frozen", f"{table_name} is frozen: a computation has already used it")
            claimed_sha256, claimed_bytes = body.get("sha256"), body.get("bytes")
            if claimed_sha256 != summary.sha256 or claimed_bytes != summary.size:
                self._abort(upload, "content does not match the client's digest")
                raise EnclaveRefused(
                    "upload_sequence", "the data received does not match the digest the client sent; upload discarded"
                )
            self._uploads.pop(upload_id, None)
            table = upload.table
            self.engine.commit(table, upload.ingest)
            now = self.now_ms()
            salt = os.urandom(SALT_BYTES)
            commitment = commit(
                session=self.manifest.session,
                manifest_sha256=self.manifest.hash,
                table=table_name,
                salt=salt,
                sha256=summary.sha256,
            )
            record = InputRecord(
                party, table_name, summary.rows, summary.size, summary.sha256, upload_id, now, salt, commitment
            )
            replaced = table_name in self.inputs
            self.inputs[table_name] = record
            self._record(
                "upload", {"party": party, "table": table_name, "commitment": commitment, "replaced": replaced}
            )
            receipt = self._statement(
                "receipt",
                party=party,
                table=table_name,
                rows=summary.rows,
                bytes=summary.size,
                sha256=summary.sha256,
                salt=salt.hex(),
                commitment=commitment,
                upload=upload_id.hex(),
                replaced=replaced,
            )
            return {"receipt": receipt}

    def _claim(self, party: str, table_name: str, upload_id: bytes, index: int) -> _Upload:
        """Check a chunk's place in its upload and mark the upload as being checked (lock held)."""
        now = self.now_ms()
        self._purge_idle_uploads(now)
        table = self.manifest.inputs.get(table_name)
        if table is None:
            raise EnclaveRefused("unknown_table", f"{table_name!r} is not an input of this session")
        if table.party != party or not self.manifest.parties[party].has(Role.CONTRIBUTOR):
            raise EnclaveRefused("forbidden", f"party {party!r} may not upload {table_name} (it is {table.party}'s)")
        if table_name in self.frozen:
            raise EnclaveRefused("frozen", f"{table_name} is frozen: a computation has already used it")
        upload = self._uploads.get(upload_id)
        if index == 0:
            if upload is not None or upload_id in self._used_upload_ids:
                if upload is not None:
                    self._abort(upload, "first chunk repeated")
                raise EnclaveRefused("upload_sequence", "chunk 0 repeated: upload id already used; upload discarded")
            for other in [u for u in self._uploads.values() if u.table.qualified == table_name]:
                self._abort(other, "superseded by a new upload")
            self._used_upload_ids.add(upload_id)
            upload = _Upload(party, table, upload_id, self.engine.ingest(table), 0, now)
            self._uploads[upload_id] = upload
        elif upload is None:
            raise EnclaveRefused("upload_sequence", f"chunk {index} of an upload that is not in progress")
        if upload.party != party or upload.table.qualified != table_name:
            raise EnclaveRefused("upload_sequence", "chunk does not belong to this upload")
        if upload.checking:
            self._abort(upload, f"chunk {index} arrived while chunk {upload.next_index} was being checked")
            raise EnclaveRefused(
                "upload_sequence",
                f"chunk {index} arrived while chunk {upload.next_index} was still being checked: send each chunk "
                "after the answer to the one before; the upload is discarded",
            )
        if index != upload.next_index:
            self._abort(upload, f"chunk {index} arrived, expected {upload.next_index}")
            raise EnclaveRefused(
                "upload_sequence",
                f"chunk {index} arrived, expected {upload.next_index}: a chunk was dropped, repeated or "
                "reordered; the upload is discarded",
            )
        upload.checking = True
        upload.last_ms = now
        return upload

    def _missing(self, name: str) -> list[str]:
        return [t for t in self.manifest.computations[name].inputs if t not in self.inputs]

    def status(self, party: str) -> dict[str, Any]:
        """Who has submitted what; what can be computed; what this party may read.

        Another party's input shows as submitted or not, frozen or not, and its commitment; its
        row count and plaintext hash only to its owner.
        """
        with self._lock:
            inputs = {}
            for name, table in self.manifest.inputs.items():
                record = self.inputs.get(name)
                own = record is not None and table.party == party
                inputs[name] = {
                    "party": table.party,
                    "submitted": record is not None,
                    "commitment": record.commitment if record else None,
                    "rows": record.rows if own and record else None,
                    "sha256": record.sha256 if own and record else None,
                    "frozen": name in self.frozen,
                }
            computations = {}
            for name, computation in self.manifest.computations.items():
                missing = self._missing(name)
                outcome = self.results.get(name)
                job = self._synthesis.running(name)
                if job is not None:
                    state = "running" if party in computation.readers else "attempted"
                elif outcome is None:
                    state = "ready" if not missing else "waiting"
                elif party not in computation.readers:
                    state = "attempted"  # released or withheld is for its readers to know
                else:
                    state = "done" if isinstance(outcome, ResultRecord) else "refused"
                computations[name] = {
                    "state": state,
                    "missing": missing,
                    "readers": list(computation.readers),
                    "you_may_read": party in computation.readers,
                    **(job.report() if job is not None and state == "running" else {}),
                }
            budget = self.manifest.privacy_budget
            return {
                "session": self.manifest.session,
                "instance": self.instance.hex(),
                "unauthenticated_refusals": self.unauthenticated_refusals,
                "inputs": inputs,
                "computations": computations,
                "privacy": {"budget": budget["epsilon"] if budget else None, "spent": self.epsilon_spent},
                "synthesizers": self.synthesizers,
            }

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
            raise EnclaveRefused(outcome.code, outcome.message)
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
        signed = self._statement(
            "result",
            computation=name,
            columns=[list(c) for c in output.columns],
            rows=output.rows,
            suppressed_groups=output.suppressed_groups,
            rules={**computation.rules, "dp": output.dp},
            inputs=inputs,
        )
        return ResultRecord(signed, len(output.rows), output.suppressed_groups)

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

    def _synthetic_running(self, name: str) -> dict[str, Any] | None:
        """A synthetic release's progress while it is generated (starting it on first ask); None once it ended.

        Starting it does what every first attempt does, under the lock: inputs complete, budget
        drawn once, inputs frozen, the attempt recorded; then the pooled rows are read, and
        generation goes on in the background.
        """
        if name in self.results:
            return None
        job = self._synthesis.running(name)
        if job is not None:
            return job.report()
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
        return self._synthesis.start(computation, data).report()

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

    def compute(self, party: str, body: Any) -> dict[str, Any]:
        """Run a computation now (a reader of it may ask); idempotent once it ran.

        A synthetic release starts in the background: the answer says how far it has come.
        """
        name = body.get("computation") if isinstance(body, dict) else None
        with self._lock:
            self._check_reader(party, str(name))
            if self.manifest.computations[str(name)].synthetic is not None:
                running = self._synthetic_running(str(name))
                if running is not None:
                    return {"computation": name, "state": "running", **running}
            record = self._run(str(name))
            return {
                "computation": name,
                "state": "done",
                "rows": record.rows,
                "suppressed_groups": record.suppressed_groups,
            }

    def result(self, party: str, body: Any) -> dict[str, Any]:
        """A computation's signed result, for its readers only (runs it on first fetch)."""
        name = body.get("computation") if isinstance(body, dict) else None
        with self._lock:
            self._check_reader(party, str(name))
            if self.manifest.computations[str(name)].synthetic is not None:
                running = self._synthetic_running(str(name))
                if running is not None:  # asked again until it ends: no fetch event each time
                    return {"running": running}
            if str(name) not in self.results:
                self.results[str(name)] = self._attempt(str(name))
            self._record("fetch", {"computation": name, "party": party})  # released or refused alike
            record = self._run(str(name))
            return {"result": record.signed}

    def transcript(self, party: str) -> dict[str, Any]:
        """Every event so far, and the signed head."""
        with self._lock:
            head = self.events[-1].hash
            signed = self._statement("transcript", seq=len(self.events), head=head)
            return {"events": [e.encoded for e in self.events], "head": signed}
