"""CSV tables checked against the manifest's schema, streamed in pieces, loaded into DuckDB.

The same :class:`CsvIngest` runs in two places: on the client before anything is sent (fast,
clear errors, nothing uploaded), and in the enclave as the authoritative check while chunks
arrive. Both see identical rules, so a file the client accepts is one the enclave accepts.

How a stream is read: bytes arrive in pieces of any size; each is cut at the last line break
outside a quoted field (the rest waits for the next piece) and converted to typed columns by
Apache Arrow's CSV reader (C++). In the enclave the typed pieces are kept as they are, and
DuckDB scans them in place through ``register()``: it never reads a file, so the engine keeps
external access disabled. Working memory per piece is bounded by the piece size.

Rules (Arrow's CSV conversions): UTF-8; a header naming exactly the declared columns (any
order); an empty field is NULL; ``integer`` a 64-bit integer (``-12``; Arrow also takes hex such
as ``0x1f``); ``float`` a finite number (``1.5``, ``-2e3``; not ``nan`` or ``inf``); ``boolean``
``true``/``false``/``1``/``0`` (also ``True``, ``TRUE``...); ``date`` ``YYYY-MM-DD``;
``timestamp`` ``YYYY-MM-DD[ T]HH:MM[:SS[.fraction]]`` without a zone (UTC by convention). Key
columns are non-null and unique. At least one row; at most the table's ``max_rows`` rows and
``max_bytes`` bytes. Line numbers in errors count the header as line 1 and assume no line
breaks inside quoted fields.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from oblv_mpc.errors import InputDataError
from oblv_mpc.manifest import ColumnType, InputTable
from oblv_mpc.manifest.templates import quote

READ_BLOCK = 4 * 1024 * 1024

# Column types as the CSV reader converts them (Apache Arrow's parsers, in C++).
_ARROW_TYPES = {
    ColumnType.TEXT: pa.string(),
    ColumnType.INTEGER: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.DATE: pa.date32(),
    ColumnType.TIMESTAMP: pa.timestamp("us"),
}
# The reader's conversion error: "In CSV column #1: CSV conversion error to double: invalid value 'abc'"
_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): CSV conversion error to [^:]+: [^']*'(.*)'$", re.DOTALL)


@dataclass(frozen=True)
class IngestSummary:
    """What a complete, valid table amounted to."""

    rows: int
    size: int
    sha256: str


def _split_point(buffer: bytes) -> int:
    """The index just after the last line break outside quotes (0 if none), given even parity at 0."""
    quotes_total = buffer.count(b'"')
    end = len(buffer)
    while True:
        cut = buffer.rfind(b"\n", 0, end)
        if cut < 0:
            return 0
        if (quotes_total - buffer.count(b'"', cut)) % 2 == 0:
            return cut + 1
        end = cut


class CsvIngest:
    """Check (and, given a connection, load) one table's CSV bytes fed in pieces of any size."""

    def __init__(self, table: InputTable, connection: duckdb.DuckDBPyConnection, *, keep: bool) -> None:
        self.table = table
        self.connection = connection  # used only to check key uniqueness
        self.keep = keep  # keep every column (the enclave), or only the key columns (a check)
        self._pieces: list[pa.Table] = []
        self._carry = b""
        self._header: list[str] | None = None
        self._line = 1  # lines consumed so far (the header is line 1)
        self._rows = 0
        self._bytes = 0
        self._hash = hashlib.sha256()
        self._finished = False

    def _fail(self, message: str) -> InputDataError:
        return InputDataError(
            f"{self.table.qualified}: {message}",
            hint="fix the file and submit it again; nothing of this upload was kept",
        )

    def feed(self, data: bytes) -> None:
        """Take the next piece of the file."""
        if self._finished:
            raise self._fail("data after the end of the table")
        self._bytes += len(data)
        if self._bytes > self.table.max_bytes:
            raise self._fail(f"more than the manifest's max_bytes ({self.table.max_bytes:,} bytes)")
        self._hash.update(data)
        buffer = self._carry + data
        cut = _split_point(buffer)
        self._carry = buffer[cut:]
        if cut:
            self._process(buffer[:cut])

    def finish(self) -> IngestSummary:
        """End of file: check what is left and the whole-table rules."""
        if self._carry:
            tail, self._carry = self._carry, b""
            if tail.count(b'"') % 2:
                raise self._fail(f"line {self._line + 1}: a quoted field is never closed")
            self._process(tail + b"\n")
        self._finished = True
        if self._header is None:
            raise self._fail("the file is empty: expected a header line and at least one row")
        if self._rows == 0:
            raise self._fail("no rows: the file has a header but no data")
        if self.table.key:
            self._check_unique_key()
        return IngestSummary(self._rows, self._bytes, self._hash.hexdigest())

    def table_data(self) -> pa.Table:
        """The whole table, typed, in the manifest's column order (``keep=True`` only)."""
        assert self.keep and self._finished
        schema = pa.schema([(c.name, _ARROW_TYPES[c.type]) for c in self.table.columns])
        return pa.concat_tables(self._pieces) if self._pieces else schema.empty_table()

    def _process(self, block: bytes) -> None:
        try:
            block.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = self._line + block.count(b"\n", 0, exc.start) + (0 if self._header is None else 1)
            raise self._fail(f"line {line}: not valid UTF-8 (byte offset {exc.start} of this part)") from None
        if self._header is None:
            end = block.find(b"\n") + 1
            self._take_header(block[:end])
            block = block[end:]
        lines = block.count(b"\n")
        if not lines:
            return
        try:
            parsed = self._read(block, typed=True)
        except pa.ArrowInvalid as exc:
            raise self._locate(block, exc) from None
        count = parsed.num_rows
        if self._rows + count > self.table.max_rows:
            raise self._fail(f"more than the manifest's max_rows ({self.table.max_rows:,} rows)")
        self._check_values(parsed)
        kept = [c.name for c in self.table.columns] if self.keep else list(self.table.key)
        if kept:
            self._pieces.append(parsed.select(kept))
        self._rows += count
        self._line += lines

    def _read(self, block: bytes, *, typed: bool) -> pa.Table:
        names = self._header
        assert names is not None
        types = {c.name: _ARROW_TYPES[c.type] if typed else pa.string() for c in self.table.columns}
        return pacsv.read_csv(
            io.BytesIO(block),
            read_options=pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, len(block) + 1)),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
                true_values=["true", "True", "TRUE", "1"],
                false_values=["false", "False", "FALSE", "0"],
            ),
        )

    def _locate(self, block: bytes, error: pa.ArrowInvalid) -> InputDataError:
        """Turn the CSV reader's error into one that names the line and column."""
        message = str(error)
        match = _CONVERSION_ERROR.search(message)
        if match is None:
            return self._fail(f"after line {self._line}: {message.removeprefix('CSV parse error: ')}")
        names = self._header
        assert names is not None
        column, value = names[int(match.group(1))], match.group(2)
        try:
            index = pc.index(self._read(block, typed=False).column(column), value).as_py()
        except pa.ArrowInvalid:
            index = -1
        where = f"line {self._line + 1 + index}" if index >= 0 else f"after line {self._line}"
        declared = self.table.column(column)
        assert declared is not None
        shown = value if len(value) <= 40 else value[:37] + "..."
        return self._fail(f"{where}, column {column}: expected {declared.type.value}, found {shown!r}")

    def _check_values(self, batch: pa.Table) -> None:
        first_line = self._line + 1
        for column in self.table.columns:
            values = batch.column(column.name)
            if column.type is ColumnType.FLOAT:
                finite = pc.fill_null(pc.is_finite(values), True)
                if not pc.all(finite).as_py():
                    index = pc.index(finite, False).as_py()
                    found = values[index].as_py()
                    raise self._fail(
                        f"line {first_line + index}, column {column.name}: expected a finite float, found {found}"
                    )
            if column.name in self.table.key and values.null_count:
                index = pc.index(pc.is_null(values), True).as_py()
                raise self._fail(f"line {first_line + index}, column {column.name}: a key column may not be empty")

    def _take_header(self, line: bytes) -> None:
        text = line.decode("utf-8").rstrip("\r\n")
        names = [n.strip().strip('"') for n in text.split(",")]
        declared = [c.name for c in self.table.columns]
        missing = [n for n in declared if n not in names]
        extra = [n for n in names if n not in declared]
        if missing or extra or len(set(names)) != len(names):
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected column(s) {', '.join(extra)}")
            if len(set(names)) != len(names):
                parts.append("a column named twice")
            raise self._fail(f"line 1 (header): {'; '.join(parts)}; expected exactly {', '.join(declared)}")
        self._header = names

    def _check_unique_key(self) -> None:
        keys = ", ".join(quote(k) for k in self.table.key)
        self.connection.register("_keys", pa.concat_tables(self._pieces).select(list(self.table.key)))
        try:
            duplicate = self.connection.execute(
                f"SELECT {keys}, count(*) FROM _keys GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
            ).fetchall()
        finally:
            self.connection.unregister("_keys")
        if duplicate:
            shown = ", ".join(repr(v) for v in duplicate[0][:-1])
            raise self._fail(
                f"key ({', '.join(self.table.key)}) is not unique: {shown} appears {duplicate[0][-1]} times"
            )


def validate_file(path: Path, table: InputTable, *, block: int = READ_BLOCK) -> IngestSummary:
    """Check a whole file against ``table``'s schema without keeping it (the client's check)."""
    connection = duckdb.connect(":memory:", config={"enable_external_access": False, "lock_configuration": True})
    ingest = CsvIngest(table, connection, keep=False)
    try:
        with path.open("rb") as handle:
            while piece := handle.read(block):
                ingest.feed(piece)
        return ingest.finish()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        connection.close()
