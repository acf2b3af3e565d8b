"""The enclave's answers, one frozen dataclass each: built by the enclave, parsed by the client.

Each answer is the ``body`` of a response the enclave sealed to the client and signed
(:func:`oblv_mpc.protocol.envelope.open_response` checked both); ``from_cbor`` then checks its
shape once, and an answer of the wrong shape is a :class:`~oblv_mpc.errors.ProtocolError`.
Signed statements inside (receipts, results, the transcript head) are checked further by
``verify_statement`` and ``verify_chain``. Requests are in :mod:`.messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oblv_mpc.protocol._fields import Fields, malformed


@dataclass(frozen=True)
class SignedStatement:
    """A statement (receipt, result, transcript head) and the enclave's signature over it."""

    statement: bytes
    signature: bytes

    def to_cbor(self) -> dict[str, bytes]:
        """This object as plain data for CBOR."""
        return {"statement": self.statement, "signature": self.signature}

    @classmethod
    def from_cbor(cls, value: Any, what: str = "a signed statement") -> SignedStatement:
        """Parse ``{statement, signature}`` (the signature is checked by ``verify_statement``)."""
        fields = Fields(value, what, malformed)
        return cls(fields.raw("statement"), fields.raw("signature"))


@dataclass(frozen=True)
class Received:
    """The answer to a chunk that is not the last: it was taken."""

    index: int

    def to_cbor(self) -> dict[str, int]:
        """This object as plain data for CBOR."""
        return {"received": self.index}

    @classmethod
    def from_cbor(cls, value: Any) -> Received:
        """Parse ``{received}``."""
        return cls(Fields(value, "a chunk's answer", malformed).count("received"))


@dataclass(frozen=True)
class ReceiptAnswer:
    """The answer to an upload's final chunk: the signed receipt."""

    receipt: SignedStatement

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {"receipt": self.receipt.to_cbor()}

    @classmethod
    def from_cbor(cls, value: Any) -> ReceiptAnswer:
        """Parse ``{receipt}``."""
        fields = Fields(value, "the upload answer", malformed)
        return cls(SignedStatement.from_cbor(fields.value("receipt"), "the receipt"))


@dataclass(frozen=True)
class InputState:
    """One input table in a status answer; ``rows`` and ``sha256`` are for its owner only."""

    party: str
    submitted: bool
    commitment: str | None
    rows: int | None
    sha256: str | None
    frozen: bool

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return dict(vars(self))

    @classmethod
    def from_cbor(cls, value: Any) -> InputState:
        """Parse decoded CBOR, refusing what does not fit (with the field named)."""
        f = Fields(value, "an input's status", malformed)
        return cls(
            f.text("party"),
            f.flag("submitted"),
            f.optional_text("commitment"),
            f.optional_count("rows"),
            f.optional_text("sha256"),
            f.flag("frozen"),
        )


@dataclass(frozen=True)
class Progress:
    """How far a computation running in the background (a synthetic release) has come."""

    fraction: float  # 0 to 1
    stage: str  # what it is doing, in words (at most 200 characters)

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {"progress": self.fraction, "stage": self.stage}

    @classmethod
    def from_cbor(cls, value: Any) -> Progress:
        """Parse ``{progress, stage}``, clamping the fraction and the stage's length."""
        f = Fields(value, "a progress report", malformed)
        return cls(min(max(f.number("progress"), 0.0), 1.0), f.text("stage")[:200])


@dataclass(frozen=True)
class ComputationState:
    """One computation in a status answer: waiting, ready, running, attempted, done or refused."""

    state: str
    missing: tuple[str, ...]
    readers: tuple[str, ...]
    you_may_read: bool
    running: Progress | None = None  # told to its readers while it runs

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {
            "state": self.state,
            "missing": list(self.missing),
            "readers": list(self.readers),
            "you_may_read": self.you_may_read,
            **(self.running.to_cbor() if self.running else {}),
        }

    @classmethod
    def from_cbor(cls, value: Any) -> ComputationState:
        """Parse decoded CBOR, refusing what does not fit (with the field named)."""
        f = Fields(value, "a computation's status", malformed)
        running = Progress.from_cbor(value) if isinstance(value, dict) and "progress" in value else None
        return cls(f.text("state"), f.texts("missing"), f.texts("readers"), f.flag("you_may_read"), running)


@dataclass(frozen=True)
class StatusAnswer:
    """Who has submitted what, what can be computed, the privacy budget and what is spent."""

    session: str
    instance: str
    unauthenticated_refusals: int
    inputs: Mapping[str, InputState]
    computations: Mapping[str, ComputationState]
    budget: float | None
    spent: float
    synthesizers: tuple[tuple[str, str], ...] = ()  # (name, version) of each synthesizer in the image

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {
            "session": self.session,
            "instance": self.instance,
            "unauthenticated_refusals": self.unauthenticated_refusals,
            "inputs": {name: state.to_cbor() for name, state in self.inputs.items()},
            "computations": {name: state.to_cbor() for name, state in self.computations.items()},
            "privacy": {"budget": self.budget, "spent": self.spent},
            "synthesizers": [{"name": n, "version": v} for n, v in self.synthesizers],
        }

    @classmethod
    def from_cbor(cls, value: Any) -> StatusAnswer:
        """Parse a status answer."""
        f = Fields(value, "the status", malformed)
        privacy = Fields(f.value("privacy"), "the status's privacy", malformed)
        synthesizers = []
        for entry in f.listed("synthesizers", []):
            named = Fields(entry, "a synthesizer", malformed)
            synthesizers.append((named.text("name"), named.text("version")))
        return cls(
            f.text("session"),
            f.text("instance"),
            f.count("unauthenticated_refusals"),
            f.named("inputs", InputState.from_cbor),
            f.named("computations", ComputationState.from_cbor),
            privacy.optional_number("budget"),
            privacy.number("spent"),
            tuple(synthesizers),
        )


@dataclass(frozen=True)
class ComputeAnswer:
    """A computation ran (or had run): how many rows it released and groups it suppressed."""

    computation: str
    rows: int
    suppressed_groups: int | None  # None: the owners' rules do not let the result say
    running: Progress | None = None  # set while it runs in the background (rows then 0)

    @property
    def state(self) -> str:
        """``running`` or ``done``."""
        return "running" if self.running else "done"

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {
            "computation": self.computation,
            "state": self.state,
            "rows": self.rows,
            "suppressed_groups": self.suppressed_groups,
            **(self.running.to_cbor() if self.running else {}),
        }

    @classmethod
    def from_cbor(cls, value: Any) -> ComputeAnswer:
        """Parse a compute answer (with ``progress`` and ``stage`` while it runs)."""
        f = Fields(value, "the compute answer", malformed)
        running = Progress.from_cbor(value) if isinstance(value, dict) and "progress" in value else None
        return cls(f.text("computation"), f.count("rows"), f.optional_count("suppressed_groups"), running)


@dataclass(frozen=True)
class ResultAnswer:
    """A computation's signed result statement."""

    result: SignedStatement | None
    running: Progress | None = None  # instead of a result, while it is generated in the background

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        if self.result is None:
            assert self.running is not None
            return {"running": self.running.to_cbor()}
        return {"result": self.result.to_cbor()}

    @classmethod
    def from_cbor(cls, value: Any) -> ResultAnswer:
        """Parse ``{result}``, or ``{running}`` while the result is being generated."""
        fields = Fields(value, "the result answer", malformed)
        if isinstance(value, dict) and "running" in value:
            return cls(None, Progress.from_cbor(fields.value("running")))
        return cls(SignedStatement.from_cbor(fields.value("result"), "the result"))


@dataclass(frozen=True)
class ResultChunkAnswer:
    """One chunk of a streamed result: whole Arrow IPC messages (the SHA-256 of every chunk, in
    order, is the signed result statement's ``stream.sha256``)."""

    computation: str
    index: int
    final: bool
    data: bytes

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {"computation": self.computation, "index": self.index, "final": self.final, "data": self.data}

    @classmethod
    def from_cbor(cls, value: Any) -> ResultChunkAnswer:
        """Parse ``{computation, index, final, data}``."""
        fields = Fields(value, "a result chunk", malformed)
        return cls(fields.text("computation"), fields.count("index"), fields.flag("final"), fields.raw("data"))


@dataclass(frozen=True)
class TranscriptAnswer:
    """Every event so far, each as its encoded bytes, and the signed head."""

    events: tuple[bytes, ...]
    head: SignedStatement

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {"events": list(self.events), "head": self.head.to_cbor()}

    @classmethod
    def from_cbor(cls, value: Any) -> TranscriptAnswer:
        """Parse ``{events, head}`` (every link is checked by ``verify_chain``)."""
        fields = Fields(value, "the transcript", malformed)
        events = fields.listed("events")
        if not all(isinstance(event, bytes) for event in events):
            raise malformed("the transcript's events must be byte strings")
        return cls(tuple(events), SignedStatement.from_cbor(fields.value("head"), "the transcript head"))


@dataclass(frozen=True)
class HttpAnswer:
    """What the user's routes answered to a FastEnclaves request."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def to_cbor(self) -> dict[str, Any]:
        """This object as plain data for CBOR."""
        return {"status": self.status, "headers": [[k, v] for k, v in self.headers], "body": self.body}

    @classmethod
    def from_cbor(cls, value: Any) -> HttpAnswer:
        """Parse ``{status, headers, body}``."""
        fields = Fields(value, "the http answer", malformed)
        status = fields.count("status")
        pairs = fields.listed("headers")
        if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
            raise malformed("the http answer's headers must be [name, value] text pairs")
        return cls(status, tuple((p[0], p[1]) for p in pairs), fields.raw("body"))
