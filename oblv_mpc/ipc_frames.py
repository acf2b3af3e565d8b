"""Arrow IPC stream bytes split into messages, each message's metadata read before Arrow reads it.

An Arrow IPC stream (the Arrow columnar format, "Encapsulated message format") is a sequence of
messages, each ``0xFFFFFFFF``, a 32-bit metadata length, a FlatBuffer ``Message`` (padded to 8
bytes) and a body of ``bodyLength`` bytes, ended by ``0xFFFFFFFF 0x00000000``. Tables and results
travel as such streams cut at message boundaries (:class:`ChunkWriter`): every chunk holds whole
messages (:func:`messages`), so each chunk is read on its own. Each message's metadata is read by
:mod:`oblv_mpc.ipc_metadata` first, which says why: compressed batches that declare their size,
and schemas that would cost Arrow far more than their size to read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.ipc as ipc

from oblv_mpc.ipc_metadata import RECORD_BATCH, SCHEMA, MalformedIpc, MessageInfo, check_schema, read_metadata

CONTINUATION = b"\xff\xff\xff\xff"
END_OF_STREAM = CONTINUATION + b"\x00\x00\x00\x00"


@dataclass(frozen=True)
class Message:
    """One message of a piece: its metadata read, and where its bytes are."""

    info: MessageInfo
    start: int  # the continuation marker
    body_start: int
    end: int  # just after the body

    @property
    def size(self) -> int:
        """The message's bytes, metadata and body."""
        return self.end - self.start


def messages(piece: bytes | memoryview) -> Iterator[Message | None]:
    """The messages of ``piece``, which must hold whole messages; ``None`` for the end-of-stream marker.

    Only the framing and the metadata are read; the bodies are left to Arrow.
    """
    view = memoryview(piece).cast("B")
    pos = 0
    while pos < len(view):
        if len(view) - pos < 8 or view[pos : pos + 4] != CONTINUATION:
            raise MalformedIpc(f"no Arrow IPC message starts at byte {pos} of the chunk")
        (length,) = struct.unpack_from("<i", view, pos + 4)
        if length == 0:
            if pos + 8 < len(view):
                raise MalformedIpc(f"{len(view) - pos - 8:,} bytes after the end-of-stream marker")
            yield None
            return
        if length < 0 or length % 8 or pos + 8 + length > len(view):
            raise MalformedIpc(f"the message at byte {pos} has a metadata length the chunk does not hold")
        info = read_metadata(view[pos + 8 : pos + 8 + length])
        body_start = pos + 8 + length
        end = body_start + info.body_length
        if end > len(view):
            raise MalformedIpc(f"the message at byte {pos} has a body the chunk does not hold (whole messages only)")
        yield Message(info, pos, body_start, end)
        pos = end


class _Sink:
    """A file-like sink for Arrow's stream writer: what it wrote since the last :meth:`take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the bytes wait for :meth:`take`."""

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class ChunkWriter:
    """Record batches in, an Arrow IPC stream out, cut into chunks of whole messages.

    Each chunk holds as many messages as fit in ``chunk_bytes`` (the schema goes in front of
    the first batch); batches are sliced so that each, as written, fits with room to spare. The
    chunk being filled is held until the next message does not fit, so that :meth:`close` can
    put the end-of-stream marker behind the last batch: ``write`` yields the chunks that are
    full, ``close`` returns the last one. ``compression`` (``lz4`` or ``zstd``) is Arrow IPC's
    buffer compression.
    """

    def __init__(self, schema: pa.Schema, chunk_bytes: int, compression: str | None = None) -> None:
        self._sink = _Sink()
        self._writer = ipc.new_stream(self._sink, schema, options=ipc.IpcWriteOptions(compression=compression))
        self._limit = chunk_bytes
        self._room = max(chunk_bytes - 64 * 1024, 1024)  # per batch: its size is estimated before it is written
        self._filling = [self._sink.take()]  # the schema, until the first batch joins it
        self._size = len(self._filling[0])
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> Iterator[bytes]:
        """Write one batch (any size); yield the chunks it filled."""
        if not batch.num_rows:
            return
        rows = max(int(self._room / max(batch.nbytes / batch.num_rows, 1.0)), 1)
        for start in range(0, batch.num_rows, rows):
            piece = batch.slice(start, rows)
            self._writer.write_batch(piece)
            self.rows += piece.num_rows
            message = self._sink.take()
            if self.rows > piece.num_rows and self._size + len(message) > self._limit:
                yield b"".join(self._filling)
                self._filling, self._size = [], 0
            self._filling.append(message)
            self._size += len(message)

    def close(self) -> bytes:
        """The last chunk: the last batches (or the schema alone) and the end-of-stream marker."""
        self._writer.close()
        self._filling.append(self._sink.take())
        return b"".join(self._filling)


class ChunkReader:
    """An Arrow IPC stream read chunk by chunk, each chunk whole messages: a schema first, then
    record batches, then the end marker; nothing else, and nothing after the marker.

    The schema message may take at most ``max_schema_bytes``
    (:func:`~oblv_mpc.ipc_metadata.schema_bytes_allowed`) and must pass
    :func:`~oblv_mpc.ipc_metadata.check_schema` before Arrow reads it; ``accept_schema`` then
    judges the stream's schema and returns the one to decode batches with (raising to refuse it).
    ``admit(info, decoded_bytes)`` may refuse a batch from its metadata before Arrow reads it; any
    batch whose buffers would take more than ``max_batch_bytes`` once read (a compressed batch's
    declared sizes) is refused first. Every batch read passes Arrow's
    full validation. Raises :class:`MalformedIpc` for what breaks the format.
    """

    def __init__(
        self,
        *,
        max_batch_bytes: int,
        max_schema_bytes: int,
        accept_schema: Callable[[pa.Schema], pa.Schema],
        admit: Callable[[MessageInfo, int], None] | None = None,
    ) -> None:
        self._max_batch_bytes = max_batch_bytes
        self._max_schema_bytes = max_schema_bytes
        self._accept_schema = accept_schema
        self._admit = admit
        self.schema: pa.Schema | None = None
        self.ended = False

    def read(self, chunk: bytes) -> list[pa.RecordBatch]:
        """The record batches of the next chunk, validated."""
        buffer = pa.py_buffer(chunk)
        batches = []
        for message in messages(chunk):
            if self.ended:
                raise MalformedIpc("data after the end of the stream")
            if message is None:
                self.ended = True
            elif self.schema is None:
                self._read_schema(buffer, message)
            elif message.info.kind != RECORD_BATCH:
                raise MalformedIpc(f"the stream holds a {message.info.name}: only record batches may follow its schema")
            else:
                batches.append(self._read_batch(buffer, message))
        return batches

    def _read_schema(self, buffer: pa.Buffer, message: Message) -> None:
        if message.info.kind != SCHEMA:
            raise MalformedIpc(f"the stream starts with a {message.info.name}, not its schema")
        if message.size > self._max_schema_bytes:
            raise MalformedIpc(
                f"a schema message of {message.size:,} bytes, more than the {self._max_schema_bytes:,} "
                "its expected columns need"
            )
        check_schema(memoryview(buffer)[message.start + 8 : message.body_start])
        try:
            schema = ipc.read_schema(ipc.read_message(buffer.slice(message.start, message.size)))
        except (pa.ArrowException, ValueError) as exc:
            raise MalformedIpc(f"its schema does not read ({exc})") from None
        self.schema = self._accept_schema(schema)

    def _read_batch(self, buffer: pa.Buffer, message: Message) -> pa.RecordBatch:
        assert self.schema is not None
        info = message.info
        size = info.decoded_bytes(memoryview(buffer)[message.body_start : message.end])
        if size > self._max_batch_bytes:
            raise MalformedIpc(f"a record batch of {size:,} bytes once read, more than {self._max_batch_bytes:,}")
        if self._admit is not None:
            self._admit(info, size)
        try:
            batch = ipc.read_record_batch(ipc.read_message(buffer.slice(message.start, message.size)), self.schema)
            batch.validate(full=True)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise MalformedIpc(f"an invalid record batch ({exc})") from None
        if batch.num_rows != info.rows:
            raise MalformedIpc("a record batch whose length is not its metadata's")
        return batch
