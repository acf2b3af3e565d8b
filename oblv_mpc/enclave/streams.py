"""Chunked streams coming in: one abstraction for table uploads and FastEnclaves requests.

A stream is a sequence of sealed requests whose bodies carry a :class:`~oblv_mpc.protocol.messages.Frame`
(stream id, index, final flag, data). :class:`Streams` keeps those in progress and enforces, the
same way for every kind:

- **exact order**: chunk 0 starts a stream (its id never seen in progress, and never again
  once used, where ids are remembered); every later chunk has the next index, or the whole
  stream is discarded; a chunk that arrives while the previous one is still being handled
  (outside the owner's lock) discards it too;
- **a digest of the bytes**: each stream hashes what it took (:meth:`Stream.take`), so the
  owner can compare it with the sender's claim;
- **idle expiry**: a stream with no chunk for ``idle_ms`` is discarded before the next chunk of
  any stream is placed (one being handled is not idle);
- **per-party quotas**: how many streams a party may have in progress, and, for streams whose
  bytes are held in memory, how many bytes one stream, one party and everyone may hold
  (:class:`Holding`, with the byte budget shared with the HTTP layer).

A :class:`Streams` is not thread-safe: its owner calls it under its own lock, and may handle a
chunk outside that lock while the stream is marked ``busy``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from oblv_mpc.enclave.bodies import ByteBudget
from oblv_mpc.errors import EnclaveRefused
from oblv_mpc.protocol.messages import Frame

T = TypeVar("T")
SEQUENCE = "upload_sequence"  # the refusal code of a chunk out of place (kept from the first kind)


@dataclass
class Stream(Generic[T]):
    """One stream in progress: whose, what for (``key``), its ``content``, where it is."""

    party: str
    stream_id: bytes
    key: str | None
    content: T
    last_ms: int
    next_index: int = 0
    size: int = 0  # bytes taken so far
    held: int = 0  # of which held in memory (and counted in the quotas)
    busy: bool = False  # a chunk of it is being handled outside the owner's lock
    discarded: str | None = None  # why it was discarded, for the chunk being handled
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    def take(self, data: bytes) -> None:
        """Count and hash the next chunk's bytes (only the owner of the busy stream calls it)."""
        self.size += len(data)
        self._digest.update(data)

    @property
    def sha256(self) -> str:
        """The SHA-256 of every byte taken so far, hex."""
        return self._digest.hexdigest()


@dataclass(frozen=True)
class Holding:
    """Limits on the bytes that streams hold in memory until they finish."""

    max_stream_bytes: int  # one stream
    max_party_bytes: int  # all of one party's streams
    budget: ByteBudget  # everyone's, shared with the HTTP layer


class Streams(Generic[T]):
    """The streams of one kind in progress (``noun``: what they are, in refusals).

    ``max_per_party`` streams at once per party, past which a first chunk is refused as
    ``too_many``. ``exclusive``: at most one stream per key; a new one discards the old.
    ``remember_ids``: a stream id may never start a stream again. ``on_discard`` is told of
    every stream discarded, with the reason.
    """

    def __init__(
        self,
        noun: str,
        *,
        idle_ms: int,
        max_per_party: int,
        too_many: str,
        exclusive: bool = False,
        remember_ids: bool = False,
        holding: Holding | None = None,
        on_discard: Callable[[Stream[T], str], None] | None = None,
    ) -> None:
        self.noun = noun
        self._idle_ms = idle_ms
        self._max_per_party = max_per_party
        self._too_many = too_many
        self._exclusive = exclusive
        self._used: set[bytes] | None = set() if remember_ids else None
        self._holding = holding
        self._on_discard = on_discard
        self._streams: dict[bytes, Stream[T]] = {}

    def in_progress(self, party: str | None = None) -> int:
        """How many streams are in progress (of ``party``, if given)."""
        return sum(1 for s in self._streams.values() if party is None or s.party == party)

    def held_bytes(self, party: str | None = None) -> int:
        """Bytes the streams in progress hold in memory (``party``'s, if given)."""
        return sum(s.held for s in self._streams.values() if party is None or s.party == party)

    def accept(self, party: str, key: str | None, frame: Frame, now_ms: int, content: Callable[[], T]) -> Stream[T]:
        """Place a chunk: start a stream at index 0, else find the stream it continues, in order.

        Expires idle streams first. The stream returned is ``busy`` until :meth:`advance`,
        :meth:`finish` or :meth:`discard`. Refuses (and discards what the chunk disturbed) with
        ``upload_sequence`` or ``too_many``.
        """
        self._expire(now_ms)
        stream = self._streams.get(frame.stream)
        if frame.index == 0:
            stream = self._start(party, key, frame.stream, now_ms, content)
        elif stream is None or stream.party != party:
            raise EnclaveRefused(SEQUENCE, f"chunk {frame.index} of {self._a} that is not in progress")
        elif stream.key != key:
            raise EnclaveRefused(SEQUENCE, f"chunk does not belong to this {self.noun}")
        elif stream.busy:
            self.discard(stream, f"chunk {frame.index} arrived while chunk {stream.next_index} was being checked")
            raise EnclaveRefused(
                SEQUENCE,
                f"chunk {frame.index} arrived while chunk {stream.next_index} was still being checked: send each "
                f"chunk after the answer to the one before; the {self.noun} is discarded",
            )
        if frame.index != stream.next_index:
            self.discard(stream, f"chunk {frame.index} arrived, expected {stream.next_index}")
            raise EnclaveRefused(
                SEQUENCE,
                f"chunk {frame.index} arrived, expected {stream.next_index}: a chunk was dropped, repeated or "
                f"reordered; the {self.noun} is discarded",
            )
        stream.busy = True
        stream.last_ms = now_ms
        return stream

    @property
    def _a(self) -> str:
        return f"an {self.noun}" if self.noun[0] in "aeiou" else f"a {self.noun}"

    def _start(self, party: str, key: str | None, stream_id: bytes, now_ms: int, content: Callable[[], T]) -> Stream[T]:
        existing = self._streams.get(stream_id)
        if existing is not None or (self._used is not None and stream_id in self._used):
            if existing is not None:
                self.discard(existing, "first chunk repeated")
            raise EnclaveRefused(SEQUENCE, f"chunk 0 repeated: {self.noun} id already used; {self.noun} discarded")
        if self._exclusive:
            for other in [s for s in self._streams.values() if s.key == key]:
                self.discard(other, f"superseded by a new {self.noun}")
        if self.in_progress(party) >= self._max_per_party:
            raise EnclaveRefused(
                self._too_many,
                f"party {party!r} already has {self._max_per_party} {self.noun}s in progress; finish one first",
            )
        if self._used is not None:
            self._used.add(stream_id)
        stream = Stream(party, stream_id, key, content(), now_ms)
        self._streams[stream_id] = stream
        return stream

    def _expire(self, now_ms: int) -> None:
        for stream in [s for s in self._streams.values() if now_ms - s.last_ms > self._idle_ms and not s.busy]:
            self.discard(stream, "idle")

    def hold(self, stream: Stream[T], data: bytes) -> None:
        """Keep ``data`` in memory for ``stream`` within the :class:`Holding` limits, or discard it and refuse."""
        holding = self._holding
        assert holding is not None, f"{self.noun}s hold no bytes"
        if stream.held + len(data) > holding.max_stream_bytes:
            self.discard(stream, "too large")
            raise EnclaveRefused("too_large", f"a request body is at most {holding.max_stream_bytes} bytes")
        if self.held_bytes(stream.party) + len(data) > holding.max_party_bytes:
            self.discard(stream, "party's bytes")
            raise EnclaveRefused("busy", f"your unfinished requests hold {holding.max_party_bytes} bytes; finish them")
        if not holding.budget.take(len(data)):
            self.discard(stream, "enclave's bytes")
            raise EnclaveRefused("busy", "the enclave holds as many request bytes as it may; retry shortly")
        stream.held += len(data)

    def advance(self, stream: Stream[T], now_ms: int) -> None:
        """The chunk placed last was handled: expect the next one. Refuses if the stream was
        discarded meanwhile (superseded, or another chunk came out of turn)."""
        stream.busy = False
        if stream.discarded is not None:
            raise EnclaveRefused(
                SEQUENCE,
                f"the {self.noun} was discarded ({stream.discarded}) while chunk {stream.next_index} was being "
                "checked; nothing of it is kept",
            )
        stream.next_index += 1
        stream.last_ms = now_ms

    def release(self, stream: Stream[T]) -> None:
        """The chunk being handled failed: the stream is no longer busy (its owner discards it, or not)."""
        stream.busy = False

    def finish(self, stream: Stream[T]) -> None:
        """A complete stream leaves; its held bytes are given back."""
        self._remove(stream)

    def discard(self, stream: Stream[T], reason: str) -> None:
        """Forget a stream and everything it held; a chunk being handled sees ``reason`` before it commits."""
        if stream.discarded is not None:
            return
        self._remove(stream)
        stream.discarded = reason
        if self._on_discard is not None:
            self._on_discard(stream, reason)

    def _remove(self, stream: Stream[T]) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        if stream.held and self._holding is not None:
            self._holding.budget.give(stream.held)
            stream.held = 0
