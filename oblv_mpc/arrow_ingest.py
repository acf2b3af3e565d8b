"""Tables that arrive as an Arrow IPC stream, checked as untrusted bytes: :class:`ArrowIngest`.

The client reads its file (CSV or Parquet) with Arrow once and sends record batches
(:mod:`oblv_mpc.columnar`); the enclave never parses text. Each piece fed holds whole IPC
messages (:mod:`oblv_mpc.ipc_frames`): the first begins with the schema, the last ends with the
end-of-stream marker. Every piece is checked on its own, before anything of it is kept:

1. the framing and each message's metadata, read with bounds before Arrow reads them; only a
   schema (first) and record batches, no dictionaries; the schema message no larger than the
   manifest's columns need, each of its fields and names read once, no nested fields, no custom
   metadata (:func:`oblv_mpc.ipc_metadata.check_schema`); a batch's rows and its size once read
   (a compressed batch's declared size) within the limits before Arrow allocates anything;
2. the schema: exactly the manifest's columns, in its order, with their Arrow types
   (:data:`oblv_mpc.ingest.ARROW_TYPES`); each batch is decoded with the manifest's schema;
3. Arrow's full validation of every batch (offsets, lengths, UTF-8), as Arrow advises for
   data from untrusted sources;
4. the manifest's rules, as for CSV: floats finite, key columns non-null, at most ``max_rows``
   rows, at most ``max_bytes`` bytes sent and held; at the end, at least one row, the end
   marker, and keys unique across all batches, as DuckDB compares them (as for CSV).

The same class checks the client's own stream before it is sent, so a file the client accepts
is one the enclave accepts. It touches no shared state: the enclave runs it outside its session
lock. Kept batches are zero-copy views of the received chunks.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from oblv_mpc.errors import InputDataError
from oblv_mpc.ingest import IngestSummary, arrow_schema
from oblv_mpc.ipc_frames import ChunkReader
from oblv_mpc.ipc_metadata import MalformedIpc, MessageInfo, schema_bytes_allowed
from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.manifest import ColumnType, InputTable
from oblv_mpc.tables import repeated_key

_SHOWN_CHARS = 40


_SHOWN_COLUMNS = 12


def describe(schema: pa.Schema) -> str:
    """A schema in one line: ``(id: string, salary: double)``, clipped: it may be a hostile party's."""
    shown = [f"{_clip(field.name)}: {_clip(str(field.type), 80)}" for field in list(schema)[:_SHOWN_COLUMNS]]
    if len(schema) > _SHOWN_COLUMNS:
        shown.append(f"... {len(schema) - _SHOWN_COLUMNS} more")
    return "(" + ", ".join(shown) + ")"


class ArrowIngest:
    """Check (and, with ``keep``, keep) one table's Arrow IPC stream, fed whole messages at a time.

    An :class:`oblv_mpc.ingest.Ingest`. ``keep=False`` keeps only the key columns (for the
    uniqueness check): the client's check of what it is about to send. ``digest=False`` skips
    hashing the bytes (the summary's ``sha256`` is then empty) where the stream that carries them
    hashes them already (:class:`oblv_mpc.enclave.streams.Stream`, the client's ``send_stream``).
    """

    def __init__(self, table: InputTable, *, keep: bool, limits: Limits = DEFAULT_LIMITS, digest: bool = True) -> None:
        self.table = table
        self.keep = keep
        self.limits = limits
        self.schema = arrow_schema(table)
        self._kept = [c.name for c in table.columns] if keep else list(table.key)
        self._batches: list[pa.RecordBatch] = []
        self._reader = ChunkReader(
            max_batch_bytes=limits.max_batch_bytes,
            max_schema_bytes=schema_bytes_allowed(self.schema),
            accept_schema=self._accept_schema,
            admit=self._admit,
        )
        self._finished = False
        self._rows = 0
        self._admitted = 0  # rows of the batches admitted so far, the current piece's included
        self._bytes = 0
        self._held = 0
        self._pieces = 0
        self._hash = hashlib.sha256() if digest else None

    @property
    def rows(self) -> int:
        """Rows taken so far."""
        return self._rows

    def _fail(self, message: str) -> InputDataError:
        return InputDataError(
            f"{self.table.qualified}: {message}",
            hint="fix the file and submit it again; nothing of this upload was kept",
        )

    def feed(self, data: bytes) -> None:
        """Take the next piece of the stream: whole IPC messages."""
        if self._finished or self._reader.ended:
            raise self._fail("data after the end of the Arrow stream")
        self._bytes += len(data)
        if self._bytes > self.table.max_bytes:
            raise self._fail(f"more than the manifest's max_bytes ({self.table.max_bytes:,} bytes)")
        if self._hash is not None:
            self._hash.update(data)
        self._pieces += 1
        try:
            batches = self._reader.read(data)
        except MalformedIpc as exc:
            raise self._fail(f"chunk {self._pieces}: not a valid Arrow IPC stream: {exc}") from None
        for batch in batches:
            self._check_values(batch)
            if self._kept:
                self._batches.append(batch.select(self._kept))
            self._rows += batch.num_rows

    def _accept_schema(self, schema: pa.Schema) -> pa.Schema:
        """The stream's columns must be the manifest's; batches are decoded with the manifest's schema."""
        problems = schema_problems(schema, self.schema)
        if problems:
            raise self._fail(
                f"the Arrow stream's columns do not match the manifest: {'; '.join(problems)} "
                f"(sent {describe(schema)}, expected exactly {describe(self.schema)})"
            )
        return self.schema

    def _admit(self, info: MessageInfo, size: int) -> None:
        """A batch's rows and size, from its metadata, within the manifest's limits before it is read."""
        # Counted as each batch is admitted: a piece may hold many batches, each under max_rows.
        self._admitted += info.rows
        if self._admitted > self.table.max_rows:
            raise self._fail(f"more than the manifest's max_rows ({self.table.max_rows:,} rows)")
        self._held += size
        if self._held > self.table.max_bytes:
            raise self._fail(f"more than the manifest's max_bytes ({self.table.max_bytes:,} bytes) once read")

    def _check_values(self, batch: pa.RecordBatch) -> None:
        for column in self.table.columns:
            values = batch.column(column.name)
            if column.type is ColumnType.FLOAT:
                finite = pc.is_finite(values)  # null where the value is (pc.fill_null would import pandas)
                if not pc.all(finite, min_count=0).as_py():
                    index = pc.index(finite, False).as_py()
                    raise self._fail(
                        f"row {self._rows + 1 + index}, column {column.name}: expected a finite float, "
                        f"found {values[index].as_py()}"
                    )
            if column.name not in self.table.key:
                continue
            if values.null_count:
                index = pc.index(pc.is_null(values), True).as_py()
                raise self._fail(f"row {self._rows + 1 + index}, column {column.name}: a key column may not be empty")
            if column.type is ColumnType.TEXT:  # CSV cannot carry "" (an empty field is null): nor may Arrow
                empty = pc.equal(pc.binary_length(values), 0)
                if pc.any(empty).as_py():
                    index = pc.index(empty, True).as_py()
                    raise self._fail(
                        f"row {self._rows + 1 + index}, column {column.name}: a key column may not be empty "
                        "(an empty string)"
                    )

    def finish(self) -> IngestSummary:
        """End of the stream: its end marker, at least one row, unique keys."""
        self._finished = True
        if self._reader.schema is None:
            raise self._fail("the Arrow stream is empty: expected its schema and at least one record batch")
        if not self._reader.ended:
            raise self._fail("the Arrow stream stops before its end-of-stream marker")
        if self._rows == 0:
            raise self._fail("no rows: the Arrow stream has a schema but no data")
        if self.table.key:
            self._check_unique_key()
        return IngestSummary(self._rows, self._bytes, self._hash.hexdigest() if self._hash is not None else "")

    def _check_unique_key(self) -> None:
        """Unique as DuckDB compares keys, as for CSV (:func:`oblv_mpc.tables.repeated_key`: not
        Arrow's ``group_by``, which holds ``0.0`` and ``-0.0`` apart where DuckDB's joins do not)."""
        key = list(self.table.key)
        repeated = repeated_key(pa.Table.from_batches(self._batches).select(key))
        if repeated is not None:
            raise self._fail(f"key ({', '.join(key)}) is not unique: {repeated}")

    def table_data(self) -> pa.Table:
        """The whole table, typed, in the manifest's column order (``keep=True``, after :meth:`finish`)."""
        assert self.keep and self._finished
        return pa.Table.from_batches(self._batches, schema=self.schema)


def schema_problems(sent: pa.Schema, expected: pa.Schema) -> list[str]:
    """What differs between two schemas, column by column, in words (empty: they are equal)."""
    names, wanted = sent.names, expected.names
    problems = [f"missing column {name}" for name in wanted if name not in names]
    extra = [name for name in dict.fromkeys(names) if name not in wanted]
    problems += [f"unexpected column {_clip(name)}" for name in extra[:_SHOWN_COLUMNS]]
    if len(extra) > _SHOWN_COLUMNS:
        problems.append(f"{len(extra) - _SHOWN_COLUMNS} more unexpected columns")
    problems += [f"column {name} sent twice" for name in wanted if names.count(name) > 1]
    for field in expected:
        if names.count(field.name) == 1 and (sent_type := sent.field(field.name).type) != field.type:
            problems.append(f"column {field.name} is {_clip(str(sent_type), 80)}, expected {field.type}")
    if not problems and names != wanted:
        problems.append(f"columns in another order, expected {', '.join(wanted)}")
    return problems


def _clip(text: str, chars: int = _SHOWN_CHARS) -> str:
    """A name or type from the stream, clipped; shown as a repr when it holds anything but plain characters."""
    shown = text if text.isprintable() and text.strip() == text and text else repr(text)
    return shown if len(shown) <= chars else shown[: chars - 3] + "..."
