"""What a session keeps about each input and each computation's outcome."""

from __future__ import annotations

from dataclasses import dataclass

from oblv_mpc.enclave.result_stream import StreamedResult
from oblv_mpc.protocol.answers import SignedStatement


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
    format: str = "csv"  # what the bytes were: csv, or an Arrow IPC stream


@dataclass(frozen=True)
class ResultRecord:
    """A computation that ran: its signed result statement, and its chunks when it is streamed."""

    signed: SignedStatement
    rows: int
    suppressed_groups: int | None  # None: not disclosed
    stream: StreamedResult | None = None


# Refusal codes that are a computation's outcome (data-dependent): told to its readers only.
OUTCOME_CODES = frozenset({"withheld", "compute_limit", "compute_failed"})


@dataclass(frozen=True)
class Refusal:
    """A computation that was attempted and released nothing: the same answer every time."""

    code: str
    reason: str
