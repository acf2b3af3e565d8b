"""The FlatBuffer metadata of Arrow IPC messages, read by our own bounds-checked reader before Arrow reads it.

Arrow's reader and its full validation are fuzzed against hostile input (OSS-Fuzz), with two
exceptions that matter here, both about what reading costs rather than whether it is safe:

- a compressed record batch says how large each buffer becomes once decompressed (its first 8
  bytes), and Arrow allocates that much before decompressing. A few KiB of ZSTD can so claim, and
  become, gigabytes. :func:`read_metadata` therefore reads the ``Message`` FlatBuffer itself (the
  few fields this needs, every offset bounds-checked, in pure Python where a bad offset is an
  exception, never a stray read) and :class:`MessageInfo` gives the sum of the declared sizes,
  which the caller caps before Arrow decompresses anything;
- Arrow's FlatBuffer verifier bounds the tables it visits, not what reading them costs: a
  ``Schema`` whose ``fields`` point thousands of times at one ``Field`` with a long name (or at
  many fields that share one name) makes Arrow copy that name once per field: a 33 KB message
  took 130 MiB, a 900 KB one aborted the process (std::bad_alloc). The reader of a stream caps a
  schema message at what its expected columns need (:func:`schema_bytes_allowed`), and
  :func:`check_schema` reads it the way Arrow will: every field, type and name reached once, the
  names within the message's own bytes, no child fields, no custom metadata. What Arrow then
  builds is at most about as large as the message.

FlatBuffers layout (flatbuffers.dev, "Internals"): a table starts with a signed 32-bit offset
back to its vtable; the vtable holds its own size, the table's size, and one 16-bit offset per
field (0: absent, the default applies); an offset field holds an unsigned 32-bit offset from
itself to its target; a vector is a 32-bit length and its elements; a string a 32-bit length and
its bytes. Arrow's ``Message.fbs``: ``Message {version: short, header_type: ubyte, header:
offset, bodyLength: long, custom_metadata: [KeyValue]}`` and ``RecordBatch {length: long, nodes:
[FieldNode], buffers: [Buffer], compression: BodyCompression, variadicBufferCounts: [long]}`` with
``Buffer {offset: long, length: long}``. Arrow's ``Schema.fbs``: ``Schema {endianness: short,
fields: [Field], custom_metadata: [KeyValue], features: [long]}``, ``Field {name: string,
nullable: bool, type: Type (a union: its tag, then an offset), dictionary: DictionaryEncoding,
children: [Field], custom_metadata: [KeyValue]}``, ``DictionaryEncoding {id: long, indexType:
Int, ...}`` and ``Timestamp {unit: short, timezone: string}``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pyarrow as pa

from oblv_mpc.limits import KiB

SCHEMA, DICTIONARY_BATCH, RECORD_BATCH = 1, 2, 3  # MessageHeader union tags
_KINDS = {1: "schema", 2: "dictionary batch", 3: "record batch", 4: "tensor", 5: "sparse tensor"}
CODECS = {0: "lz4_frame", 1: "zstd"}  # CompressionType
V5 = 4  # MetadataVersion.V5, the current format: the only one read
_MAX_BUFFERS = 1 << 16  # buffers one record batch may list (a few per column)
_TIMESTAMP = 10  # Type union tag of Timestamp, the one column type whose table holds a string


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
        return None if at is None else self.follow(at)

    def follow(self, at: int) -> int:
        """What the offset at ``at`` points to."""
        return at + self.scalar("<I", at)

    def vector(self, pos: int, item_bytes: int) -> int:
        """How many items the vector at ``pos`` holds, all of them within the buffer."""
        count = self.scalar("<I", pos)
        if pos + 4 + count * item_bytes > len(self.data):
            raise MalformedIpc("the message metadata has a vector longer than itself")
        return count

    def string(self, pos: int) -> int:
        """The length of the string at ``pos``, its bytes within the buffer."""
        length = self.scalar("<I", pos)
        if pos + 4 + length > len(self.data):
            raise MalformedIpc("the message metadata has a string longer than itself")
        return length


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


def schema_bytes_allowed(expected: pa.Schema) -> int:
    """The largest schema message accepted for a stream of ``expected``'s columns: twice what Arrow
    writes for them, and 1 KiB, room for another writer's layout but not for a schema bomb."""
    return 2 * int(expected.serialize().size) + KiB


class _Visits:
    """What a walk of a FlatBuffer reached: each table and string once, the strings' bytes within
    the buffer's size (strings that overlap would otherwise count their bytes again)."""

    def __init__(self, reader: _Reader) -> None:
        self._reader = reader
        self._seen: set[int] = set()
        self._string_bytes = len(reader.data)

    def table(self, pos: int, what: str) -> tuple[int, int, int]:
        if pos in self._seen:
            raise MalformedIpc(f"{what} is one the schema reached before (Arrow would copy it again, each time)")
        self._seen.add(pos)
        return self._reader.table(pos)

    def string(self, pos: int, what: str) -> None:
        if pos in self._seen:
            raise MalformedIpc(f"{what} is a string the schema reached before (Arrow would copy it again, each time)")
        self._seen.add(pos)
        self._string_bytes -= self._reader.string(pos)
        if self._string_bytes < 0:
            raise MalformedIpc("the schema's names take more bytes than its message holds (strings that overlap)")


def check_schema(metadata: memoryview) -> int:
    """Check a schema message's ``Message`` FlatBuffer before Arrow reads it; its number of fields.

    Every field, its type, its dictionary encoding and every name are reached once, the names
    together within the metadata's size; no field has children (nested columns) and neither the
    schema nor a field carries custom metadata. Raises :class:`MalformedIpc`.
    """
    reader = _Reader(metadata)
    visits = _Visits(reader)
    header = reader.target(reader.table(reader.scalar("<I", 0)), 2)
    if header is None:
        raise MalformedIpc("a schema message has no schema")
    schema = reader.table(header)
    if reader.field(schema, 2) is not None:
        raise MalformedIpc("the schema carries custom metadata (none is expected)")
    fields = reader.target(schema, 1)
    count = 0 if fields is None else reader.vector(fields, 4)
    for index in range(count):
        assert fields is not None
        _check_field(reader, visits, reader.follow(fields + 4 + 4 * index), f"field {index + 1} of the schema")
    return count


def _check_field(reader: _Reader, visits: _Visits, pos: int, what: str) -> None:
    field = visits.table(pos, what)
    name = reader.target(field, 0)
    if name is not None:
        visits.string(name, f"the name of {what}")
    if reader.field(field, 6) is not None:
        raise MalformedIpc(f"{what} carries custom metadata (none is expected)")
    children = reader.target(field, 5)
    if children is not None and reader.vector(children, 4):
        raise MalformedIpc(f"{what} has child fields (nested columns are not expected)")
    kind = reader.target(field, 3)
    if kind is not None:
        kind_table = visits.table(kind, f"the type of {what}")
        zone = reader.target(kind_table, 1) if reader.scalar_field(field, 2, "<B", 0) == _TIMESTAMP else None
        if zone is not None:
            visits.string(zone, f"the time zone of {what}")
    dictionary = reader.target(field, 4)
    if dictionary is not None:
        index_type = reader.target(visits.table(dictionary, f"the dictionary encoding of {what}"), 1)
        if index_type is not None:
            visits.table(index_type, f"the dictionary index type of {what}")


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
