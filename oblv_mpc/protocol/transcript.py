"""The session transcript: an append-only, hash-chained list of events.

Each event is the deterministic CBOR of ``{seq, prev, time, kind, data}`` where ``prev`` is the
SHA-256 of the previous event (32 zero bytes for the first). The enclave signs the head (the
last event's hash and sequence number) whenever it hands the transcript out; a client checks
every link and the signature, so events can be neither dropped, reordered nor altered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2

from oblv_mpc import keys
from oblv_mpc.errors import ProtocolError
from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.protocol import cbor
from oblv_mpc.protocol.envelope import verify_statement

GENESIS = bytes(32)
_EVENT_FIELDS = {"seq", "prev", "time", "kind", "data"}


@dataclass(frozen=True)
class Event:
    """One transcript event."""

    seq: int
    prev: bytes
    time_ms: int
    kind: str
    data: dict[str, Any]
    encoded: bytes

    @property
    def hash(self) -> bytes:
        """SHA-256 of the encoded event: what the next event's ``prev`` holds."""
        return hashlib.sha256(self.encoded).digest()


def make_event(seq: int, prev: bytes, time_ms: int, kind: str, data: dict[str, Any]) -> Event:
    """An event with its canonical CBOR encoding."""
    encoded = cbor2.dumps({"seq": seq, "prev": prev, "time": time_ms, "kind": kind, "data": data}, canonical=True)
    return Event(seq, prev, time_ms, kind, data, encoded)


def verify_chain(
    encoded_events: Any, head: Any, enclave_signing: keys.PublicKey, *, limits: Limits = DEFAULT_LIMITS
) -> list[Event]:
    """Check the chain link by link and against the enclave's signed head (events decoded within ``limits``)."""
    if not isinstance(encoded_events, list) or not all(isinstance(e, bytes) for e in encoded_events):
        raise ProtocolError("malformed transcript")
    signed_head = verify_statement(enclave_signing, head, "transcript", limits=limits)
    events: list[Event] = []
    prev = GENESIS
    for index, encoded in enumerate(encoded_events):
        raw = cbor.decode(encoded, limits.response_caps(), f"transcript event {index}")
        if not isinstance(raw, dict) or set(raw) != _EVENT_FIELDS or raw["seq"] != index or raw["prev"] != prev:
            raise ProtocolError(f"transcript event {index} does not link to the one before it")
        if not isinstance(raw["time"], int) or not isinstance(raw["kind"], str) or not isinstance(raw["data"], dict):
            raise ProtocolError(f"transcript event {index} is malformed")
        event = Event(raw["seq"], raw["prev"], raw["time"], raw["kind"], raw["data"], encoded)
        if cbor2.dumps(raw, canonical=True) != encoded:
            raise ProtocolError(f"transcript event {index} is not in canonical form")
        events.append(event)
        prev = event.hash
    if signed_head.get("seq") != len(events) or signed_head.get("head") != prev:
        raise ProtocolError("the transcript does not end at the head the enclave signed")
    return events
