"""FastEnclaves requests being reassembled: sealed chunks in, one complete request out.

A party's local proxy (:mod:`oblv_mpc.proxy`) sends each HTTP request for the session's own
routes as a chunked stream of ``http`` requests (:class:`~oblv_mpc.protocol.messages.HttpChunk`);
the first chunk carries the request's head. The chunks are placed in order by
:class:`~oblv_mpc.enclave.streams.Streams`, and their bytes held in memory within the party's
and everyone's limits (``Limits.max_http_body_bytes``, ``max_inflight_bytes_per_party``,
``max_inflight_bytes``, ``max_streams_per_party``) until the final chunk completes the request,
which the app then dispatches to the user's routes (:func:`oblv_mpc.fastenclave.dispatch`).

It has its own lock, apart from the session's: a large request being reassembled never waits
for a computation, nor a computation for it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from oblv_mpc.enclave.bodies import ByteBudget
from oblv_mpc.enclave.streams import Holding, Streams
from oblv_mpc.limits import Limits
from oblv_mpc.protocol.messages import HttpChunk, HttpHead


@dataclass
class _Pending:
    head: HttpHead
    body: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class HttpRequest:
    """A complete request for the user's routes: its head and its body."""

    head: HttpHead
    body: bytes


class HttpRequests:
    """FastEnclaves requests in progress, for every party; thread-safe."""

    def __init__(self, limits: Limits, inflight: ByteBudget) -> None:
        self._lock = threading.Lock()
        self._streams: Streams[_Pending] = Streams(
            "request",
            idle_ms=limits.idle_timeout_s * 1000,
            max_per_party=limits.max_streams_per_party,
            too_many="too_many_streams",
            holding=Holding(limits.max_http_body_bytes, limits.max_inflight_bytes_per_party, inflight),
        )

    def in_progress(self, party: str | None = None) -> int:
        """How many requests are being reassembled (``party``'s, if given)."""
        with self._lock:
            return self._streams.in_progress(party)

    def take(self, party: str, chunk: HttpChunk, now_ms: int) -> HttpRequest | None:
        """Place one chunk; the complete request after the final one, else None. Refusals discard
        the request (``upload_sequence``, ``too_many_streams``, ``too_large``, ``busy``)."""
        head = chunk.head
        data = chunk.frame.data
        with self._lock:
            stream = self._streams.accept(party, None, chunk.frame, now_ms, lambda: _Pending(_first(head)))
            self._streams.hold(stream, data)
            stream.take(data)
            stream.content.body += data
            if not chunk.frame.final:
                self._streams.advance(stream, now_ms)
                return None
            self._streams.finish(stream)
        return HttpRequest(stream.content.head, bytes(stream.content.body))


def _first(head: HttpHead | None) -> HttpHead:
    assert head is not None, "the parser requires a head on every first chunk"
    return head
