"""Arrow IPC streams as a hostile party forges them: written by pyarrow, then edited in place.

A stream is kept as its messages (:class:`Forged`), each the bytes Arrow wrote for it, so a test
can drop, repeat, reorder, cut or edit one, and join them into the pieces it sends. Edits of a
message's metadata go through :class:`Flat`, a few lines that find a FlatBuffer field
(flatbuffers.dev, "Internals") the way any reader would, written here for the attacker's side
so that the tests do not lean on the enclave's own reader.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.ipc as ipc

EMPLOYEES = pa.schema([("id", pa.string()), ("level", pa.string()), ("salary", pa.float64())])
END = b"\xff\xff\xff\xff\x00\x00\x00\x00"

# Slots in Arrow's Message.fbs: Message, RecordBatch, and the 16-byte Buffer / FieldNode structs.
MESSAGE_VERSION, MESSAGE_HEADER, MESSAGE_BODY_LENGTH = 0, 2, 3
BATCH_LENGTH, BATCH_NODES, BATCH_BUFFERS, BATCH_COMPRESSION = 0, 1, 2, 3


def employees(rows: int, start: int = 0, salary: float | None = 1.5) -> pa.RecordBatch:
    """``rows`` valid rows of the test sessions' employees table (ids ``e{start}``...)."""
    return pa.record_batch(
        [
            pa.array([f"e{i}" for i in range(start, start + rows)]),
            pa.array(["A"] * rows),
            pa.array([salary] * rows, pa.float64()),
        ],
        schema=EMPLOYEES,
    )


def split(stream: bytes) -> list[bytes]:
    """The messages of a well-formed stream, as written (the end marker last)."""
    out, pos = [], 0
    while pos < len(stream):
        (length,) = struct.unpack_from("<i", stream, pos + 4)
        if length == 0:
            out.append(stream[pos : pos + 8])
            pos += 8
            continue
        meta = Flat(bytearray(stream[pos + 8 : pos + 8 + length]))
        end = pos + 8 + length + meta.get(meta.root, MESSAGE_BODY_LENGTH, "<q")
        out.append(stream[pos:end])
        pos = end
    return out


def write(
    schema: pa.Schema, batches: list[pa.RecordBatch], *, compression: str | None = None, **metadata: dict[str, str]
) -> list[bytes]:
    """The messages pyarrow writes for ``batches`` (no validation of them), end marker included."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, schema, options=ipc.IpcWriteOptions(compression=compression)) as writer:
        for batch in batches:
            writer.write_batch(batch, custom_metadata=metadata.get("custom_metadata"))
    return split(sink.getvalue().to_pybytes())


@dataclass
class Flat:
    """A FlatBuffer, to read and overwrite fields of tables in place (no bounds kept: tests only)."""

    data: bytearray
    root: int = field(init=False)

    def __post_init__(self) -> None:
        self.root = struct.unpack_from("<I", self.data, 0)[0]

    def slot(self, table: int, index: int) -> int:
        """Where field ``index`` of the table at ``table`` is (0 when absent)."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        size = struct.unpack_from("<H", self.data, vtable)[0]
        if 4 + 2 * index + 2 > size:
            return 0
        offset: int = struct.unpack_from("<H", self.data, vtable + 4 + 2 * index)[0]
        return table + offset if offset else 0

    def get(self, table: int, index: int, fmt: str) -> int:
        """Field ``index`` of the table at ``table``; 0 (the defaults used here) when absent."""
        at = self.slot(table, index)
        value: int = struct.unpack_from(fmt, self.data, at)[0] if at else 0
        return value

    def set(self, table: int, index: int, fmt: str, value: int) -> None:
        at = self.slot(table, index)
        assert at, f"field {index} is absent: it cannot be edited in place"
        struct.pack_into(fmt, self.data, at, value)

    def target(self, table: int, index: int) -> int:
        at = self.slot(table, index)
        return at + struct.unpack_from("<I", self.data, at)[0]

    def drop(self, table: int, index: int) -> None:
        """Mark field ``index`` absent (its vtable entry 0)."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        struct.pack_into("<H", self.data, vtable + 4 + 2 * index, 0)


class Message:
    """One message (continuation, metadata length, metadata, body) to edit."""

    def __init__(self, raw: bytes) -> None:
        (length,) = struct.unpack_from("<i", raw, 4)
        self.meta = Flat(bytearray(raw[8 : 8 + length]))
        self.body = bytearray(raw[8 + length :])

    @property
    def batch(self) -> int:
        """Position of the RecordBatch table in the metadata."""
        return self.meta.target(self.meta.root, MESSAGE_HEADER)

    def buffers(self) -> list[tuple[int, int]]:
        """(offset, length) of each buffer in the body."""
        vector = self.meta.target(self.batch, BATCH_BUFFERS)
        count = struct.unpack_from("<I", self.meta.data, vector)[0]
        return [struct.unpack_from("<qq", self.meta.data, vector + 4 + 16 * i) for i in range(count)]

    def set_buffer(self, index: int, offset: int, length: int) -> None:
        vector = self.meta.target(self.batch, BATCH_BUFFERS)
        struct.pack_into("<qq", self.meta.data, vector + 4 + 16 * index, offset, length)

    def set_node(self, index: int, length: int, nulls: int) -> None:
        vector = self.meta.target(self.batch, BATCH_NODES)
        struct.pack_into("<qq", self.meta.data, vector + 4 + 16 * index, length, nulls)

    def bytes(self) -> bytes:
        return b"\xff\xff\xff\xff" + struct.pack("<i", len(self.meta.data)) + bytes(self.meta.data) + bytes(self.body)


def edit(raw: bytes) -> Message:
    """A message to edit; ``.bytes()`` gives it back."""
    return Message(raw)


class _FlatWriter:
    """A FlatBuffer written front to back: tables, vectors and strings, each offset then pointed at
    a later target; every scalar 8-byte aligned, as Arrow's verifier wants them aligned."""

    def __init__(self) -> None:
        self.data = bytearray(8)  # the root offset, and padding

    def _align(self, size: int) -> None:
        self.data += bytes(-len(self.data) % size)

    def table(self, slots: dict[int, tuple[str, int]]) -> tuple[int, dict[int, int]]:
        """A table of (format, value) by slot, after its own vtable: its position, and each slot's."""
        vtable_size = 4 + 2 * (max(slots) + 1)
        self._align(8)
        vtable = len(self.data)
        self.data += bytes(vtable_size)
        self._align(8)
        table = len(self.data)
        self.data += bytes(8)  # the offset back to the vtable, and padding
        where = {}
        for slot, (fmt, value) in slots.items():
            self._align(8)
            where[slot] = len(self.data)
            self.data += struct.pack(fmt, value)
        struct.pack_into("<i", self.data, table, table - vtable)
        struct.pack_into("<HH", self.data, vtable, vtable_size, len(self.data) - table)
        for slot, at in where.items():
            struct.pack_into("<H", self.data, vtable + 4 + 2 * slot, at - table)
        return table, where

    def vector(self, count: int) -> int:
        """A vector of ``count`` offsets, each to point at something later."""
        self._align(4)
        at = len(self.data)
        self.data += struct.pack("<I", count) + bytes(4 * count)
        return at

    def string(self, text: bytes) -> int:
        self._align(4)
        at = len(self.data)
        self.data += struct.pack("<I", len(text)) + text + b"\0"
        return at

    def point(self, at: int, target: int) -> None:
        """Make the offset at ``at`` point at ``target``."""
        struct.pack_into("<I", self.data, at, target - at)

    def message(self) -> bytes:
        self._align(8)
        return b"\xff\xff\xff\xff" + struct.pack("<i", len(self.data)) + bytes(self.data)


def schema_dag(fields: int, name_bytes: int, *, share: str) -> bytes:
    """A schema message whose ``fields`` list ``fields`` int64 columns named by one ``name_bytes`` string.

    ``share="field"``: every entry of ``fields`` points at one ``Field`` table; ``"name"``: each
    entry has a ``Field`` of its own, all pointing at one name; ``"overlap"``: each has its own
    name, each name starting 4 bytes into the one before (its length inside that name's bytes).
    Arrow copies each field's name once per field: ``fields * name_bytes`` from a message of
    about ``4 * fields + name_bytes`` bytes (Message.fbs and Schema.fbs, slot by slot).
    """
    flat = _FlatWriter()
    message, message_slots = flat.table({0: ("<h", 4), 1: ("<B", 1), 2: ("<I", 0), 3: ("<q", 0)})  # V5, schema
    flat.point(0, message)
    schema, schema_slots = flat.table({1: ("<I", 0)})
    flat.point(message_slots[2], schema)
    vector = flat.vector(fields)
    flat.point(schema_slots[1], vector)
    tables = []
    for _ in range(1 if share == "field" else fields):
        field_, slots = flat.table({0: ("<I", 0), 1: ("<B", 1), 2: ("<B", 2), 3: ("<I", 0)})  # name, nullable, Int
        integer, _ = flat.table({0: ("<i", 64), 1: ("<B", 1)})  # Int {bitWidth: 64, is_signed: true}
        flat.point(slots[3], integer)
        tables.append((field_, slots))
    for index in range(fields):
        flat.point(vector + 4 + 4 * index, tables[min(index, len(tables) - 1)][0])
    if share == "overlap":
        name = flat.string(b"x" * name_bytes)
        for index, (_, slots) in enumerate(tables):
            inner = name + 4 * index
            struct.pack_into("<I", flat.data, inner, name_bytes - 4 * index)
            flat.point(slots[0], inner)
    else:
        name = flat.string(b"x" * name_bytes)
        for _, slots in tables:
            flat.point(slots[0], name)
    return flat.message()
