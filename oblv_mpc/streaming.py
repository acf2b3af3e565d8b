"""The sending side of a chunked stream: bytes in pieces of any size -> framed chunks, in order.

:func:`frames` cuts a stream's bytes into chunks of ``chunk_bytes`` (the last one shorter, or
empty for an empty stream), numbers them from 0, marks the last one final (it reads one piece
ahead to know), and gives the last one the :class:`~oblv_mpc.protocol.messages.Digest` of all
the bytes. :func:`ahead` runs such an iterator (reading, hashing, sealing, signing) one item
ahead in a worker thread, so that this work overlaps with sending the previous chunk. At most
two chunks and one sealed envelope are in memory, however long the stream.
:meth:`oblv_mpc.client.EnclaveClient.send_stream` puts them together; uploads and the proxy's
FastEnclaves requests both go through it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from oblv_mpc.protocol.messages import Digest, Frame

T = TypeVar("T")


@dataclass(frozen=True)
class Sent:
    """A stream that went through: the (verified, decoded) answer to its final chunk, and its digest."""

    answer: Any
    digest: Digest


def frames(stream_id: bytes, pieces: Iterable[bytes], chunk_bytes: int) -> Iterator[tuple[Frame, Digest | None]]:
    """The chunks of a stream, each with the stream's digest if it is the last one."""
    source = iter(pieces)
    buffer = bytearray()
    exhausted = False
    digest = hashlib.sha256()
    size = 0
    index = 0
    while True:
        while not exhausted and len(buffer) <= chunk_bytes:  # one byte past the chunk: is there more?
            piece = next(source, None)
            if piece is None:
                exhausted = True
            else:
                buffer += piece
        data = bytes(buffer[:chunk_bytes])
        del buffer[:chunk_bytes]
        final = exhausted and not buffer
        digest.update(data)
        size += len(data)
        yield Frame(stream_id, index, final, data), Digest(digest.hexdigest(), size) if final else None
        if final:
            return
        index += 1


def whole_frames(stream_id: bytes, pieces: Iterable[bytes], limit: int) -> Iterator[tuple[Frame, Digest | None]]:
    """The chunks of a stream whose pieces are its chunks, as they are (each at most ``limit`` bytes)."""
    source = iter(pieces)
    digest = hashlib.sha256()
    size = 0
    current = next(source, None)
    if current is None:
        raise ValueError("a stream of whole pieces needs at least one piece")
    index = 0
    while current is not None:
        if len(current) > limit:
            raise ValueError(f"a piece of {len(current)} bytes is more than a chunk may hold ({limit})")
        following = next(source, None)
        final = following is None
        digest.update(current)
        size += len(current)
        yield Frame(stream_id, index, final, current), Digest(digest.hexdigest(), size) if final else None
        current, index = following, index + 1


def ahead(items: Iterator[T]) -> Iterator[T]:
    """Produce the next item in a worker thread while the caller uses the current one.

    A caller that stops early does not wait for the item being produced: it finishes in the
    worker, which then ends. (Waiting deadlocked a whole process at exit: a result stream that a
    failed test left unread was finalized by the garbage collector on the one thread its pending
    fetch needed to finish, a test client's event loop.)
    """
    worker = ThreadPoolExecutor(max_workers=1)
    try:
        pending = worker.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = worker.submit(next, items, None)
            yield item
    finally:
        worker.shutdown(wait=False, cancel_futures=True)
