"""Arrow IPC stream bytes split into messages, each message's metadata read before Arrow reads it.

An Arrow IPC stream (the Arrow columnar format, "Encapsulated message format") is a sequence of
messages, each ``0xFFFFFFFF``, a 32-bit metadata length, a FlatBuffer ``Message`` (padded to 8
bytes) and a body of ``bodyLength`` bytes, ended by ``0xFFFFFFFF 0x00000000``. Tables and results
travel as such streams cut at message boundaries (:class:`ChunkWriter`): every chunk holds whole
messages (:func:`messages`), so each chunk is read on its own.

Arrow's reader and its full validation are fuzzed against hostile input (OSS-Fuzz), with one
exception that matters here: a compressed record batch says how large each buffer becomes once
decompressed (its first 8 bytes), and Arrow allocates that much before decompressing. A few KiB
of ZSTD can so claim, and become, gigabytes. :func:`read_metadata` therefore reads the
``Message`` FlatBuffer itself (the few fields this needs, every offset bounds-checked, in pure
Python where a bad offset is an exception, never a stray read) and :class:`MessageInfo` gives the
sum of the declared sizes, which the caller caps before Arrow decompresses anything.

FlatBuffers layout (flatbuffers.dev, "Internals"): a table starts with a signed 32-bit offset
back to its vtable; the vtable holds its own size, the table's size, and one 16-bit offset per
field (0: absent, the default applies); an offset field holds an unsigned 32-bit offset from
itself to its target; a vector is a 32-bit length and its elements. Arrow's ``Message.fbs``:
``Message {version: short, header_type: ubyte, header: offset, bodyLength: long, custom_metadata:
[KeyValue]}`` and
``RecordBatch {length: long, nodes: [FieldNode], buffers: [Buffer], compression: BodyCompression,
variadicBufferCounts: [long]}`` with ``Buffer {offset: long, length: long}``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.ipc as ipc

CONTINUATION = b"\xff\xff\xff\xff"
END_OF_STREAM = CONTINUATION + b"\x00\x00\x00\x00"

SCHEMA, DICTIONARY_BATCH, RECORD_BATCH = 1, 2, 3  # MessageHeader union tags
_KINDS = {1: "schema", 2: "dictionary batch", 3: "record batch", 4: "tensor", 5: "sparse tensor"}
CODECS = {0: "lz4_frame", 1: "zstd"}  # CompressionType
V5 = 4  # MetadataVersion.V5, the current format: the only one read
_MAX_BUFFERS = 1 << 16  # buffers one record batch may list (a few per column)


class MalformedIpc(ValueError):
    """Bytes that are not the Arrow IPC stream they should be; the message says what is wrong."""


@dataclass(frozen=True)
class MessageInfo:
    """What a message's metadata says: its kind, body size, and for a record batch its rows,
    its compression codec (None: uncompressed) and its buffers' (offset, length) in the body."""

    kind: int
    body_length: int
    rows: int = 0
    codec: str | None = None
    buffers: tuple[tuple[int, int], ...] = ()

    @property
    def name(self) -> str:
        """The message's kind in words."""
        return _KINDS.get(self.kind, f"unknown message type {self.kind}")

    def decoded_bytes(self, body: memoryview) -> int:
        """How many bytes the body's buffers take once read: their declared sizes when compressed."""
        if self.codec is None:
            return sum(length for _, length in self.buffers)
        total = 0
        for offset, length in self.buffers:
            if length == 0:
                continue
            if length < 8:
                raise MalformedIpc("a compressed buffer is shorter than its 8-byte size prefix")
            (declared,) = struct.unpack_from("<q", body, offset)
            if declared == -1:  # stored uncompressed after the prefix
                total += length - 8
            elif declared < 0:
                raise MalformedIpc("a compressed buffer declares a negative size")
            else:
                total += declared
        return total


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


class _Reader:
    """Bounds-checked reads of a FlatBuffer."""

    def __init__(self, data: memoryview) -> None:
        self.data = data

    def scalar(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise MalformedIpc("the message metadata points outside itself")
        value: int = struct.unpack_from(fmt, self.data, pos)[0]
        return value

    def table(self, pos: int) -> tuple[int, int, int]:
        """A table at ``pos``: (its position, its vtable's position, the vtable's size)."""
        vtable = pos - self.scalar("<i", pos)
        size = self.scalar("<H", vtable)
        if size < 4 or size % 2:
            raise MalformedIpc("the message metadata has a malformed vtable")
        return pos, vtable, size

    def field(self, table: tuple[int, int, int], slot: int) -> int | None:
        """Where field ``slot`` of ``table`` is, or None when absent."""
        pos, vtable, size = table
        entry = 4 + 2 * slot
        if entry + 2 > size:
            return None
        offset = self.scalar("<H", vtable + entry)
        return pos + offset if offset else None

    def scalar_field(self, table: tuple[int, int, int], slot: int, fmt: str, default: int) -> int:
        at = self.field(table, slot)
        return default if at is None else self.scalar(fmt, at)

    def target(self, table: tuple[int, int, int], slot: int) -> int | None:
        """What an offset field points to (a table or a vector), or None when absent."""
        at = self.field(table, slot)
        return None if at is None else at + self.scalar("<I", at)


def read_metadata(metadata: memoryview) -> MessageInfo:
    """The fields of a ``Message`` FlatBuffer this protocol needs; raises :class:`MalformedIpc`."""
    reader = _Reader(metadata)
    message = reader.table(reader.scalar("<I", 0))
    # Arrow reads a V4 record batch as compressed when the message's custom metadata says
    # "ARROW:experimental_compression" (Arrow 0.17's format), whatever its BodyCompression says:
    # that would bypass the cap on declared sizes below. Only V5, without custom metadata.
    version = reader.scalar_field(message, 0, "<h", 0)
    if version != V5:
        raise MalformedIpc(f"a message in Arrow IPC metadata version {version + 1}, not 5 (the current format)")
    if reader.field(message, 4) is not None:
        raise MalformedIpc("a message carries custom metadata (none is expected)")
    kind = reader.scalar_field(message, 1, "<B", 0)
    body_length = reader.scalar_field(message, 3, "<q", 0)
    if body_length < 0:
        raise MalformedIpc("a message declares a negative body length")
    if kind != RECORD_BATCH:
        return MessageInfo(kind, body_length)
    header = reader.target(message, 2)
    if header is None:
        raise MalformedIpc("a record batch message has no record batch")
    batch = reader.table(header)
    rows = reader.scalar_field(batch, 0, "<q", 0)
    if rows < 0:
        raise MalformedIpc("a record batch declares a negative length")
    codec = None
    compression = reader.target(batch, 3)
    if compression is not None:
        settings = reader.table(compression)
        number = reader.scalar_field(settings, 0, "<b", 0)
        if number not in CODECS or reader.scalar_field(settings, 1, "<b", 0) != 0:
            raise MalformedIpc("a record batch uses an unknown compression")
        codec = CODECS[number]
    return MessageInfo(kind, body_length, rows, codec, _buffers(reader, batch, body_length))


def _buffers(reader: _Reader, batch: tuple[int, int, int], body_length: int) -> tuple[tuple[int, int], ...]:
    vector = reader.target(batch, 2)
    if vector is None:
        return ()
    count = reader.scalar("<I", vector)
    if count > _MAX_BUFFERS:
        raise MalformedIpc(f"a record batch lists more than {_MAX_BUFFERS} buffers")
    buffers = []
    for index in range(count):
        offset = reader.scalar("<q", vector + 4 + 16 * index)
        length = reader.scalar("<q", vector + 12 + 16 * index)
        if offset < 0 or length < 0 or offset + length > body_length:
            raise MalformedIpc("a record batch's buffer lies outside its body")
        buffers.append((offset, length))
    return tuple(buffers)


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

    ``accept_schema`` judges the stream's schema and returns the one to decode batches with
    (raising to refuse it). ``admit(info, decoded_bytes)`` may refuse a batch from its metadata
    before Arrow reads it; any batch whose buffers would take more than ``max_batch_bytes`` once
    read (a compressed batch's declared sizes) is refused first. Every batch read passes Arrow's
    full validation. Raises :class:`MalformedIpc` for what breaks the format.
    """

    def __init__(
        self,
        *,
        max_batch_bytes: int,
        accept_schema: Callable[[pa.Schema], pa.Schema],
        admit: Callable[[MessageInfo, int], None] | None = None,
    ) -> None:
        self._max_batch_bytes = max_batch_bytes
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
