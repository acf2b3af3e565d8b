"""CSV tables checked against the manifest's schema, streamed in pieces, loaded into DuckDB.

The same :class:`CsvIngest` runs in two places: on the client before anything is sent (fast,
clear errors, nothing uploaded), and in the enclave as the authoritative check while chunks
arrive. Both see identical rules, so a file the client accepts is one the enclave accepts.

How a stream is read: bytes arrive in pieces of any size; each is cut at the last line break
outside a quoted field (the rest waits for the next piece), parsed by pyarrow's CSV reader with
every column as text, then checked by DuckDB with strict per-type patterns and casts, and (in
the enclave) appended to a staging table. Memory stays bounded by the piece size. DuckDB never
reads a file: data reaches it through ``register()``, so the engine keeps external access
disabled.

Rules: UTF-8; a header naming exactly the declared columns (any order); an empty field is NULL;
``integer`` is ``[+-]digits`` within 64 bits; ``float`` a finite decimal or exponent number;
``boolean`` one of true/false/1/0 (any case); ``date`` ``YYYY-MM-DD``; ``timestamp``
``YYYY-MM-DD[ T]HH:MM[:SS[.fraction]][Z]`` (UTC). Key columns are non-null and unique. At
least one row; at most the table's ``max_rows`` rows and ``max_bytes`` bytes. Line numbers in
errors count the header as line 1 and assume no line breaks inside quoted fields.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from oblv_mpc.errors import InputDataError
from oblv_mpc.manifest import ColumnType, InputTable
from oblv_mpc.manifest.templates import quote

MAX_REPORTED_ERRORS = 5
READ_BLOCK = 4 * 1024 * 1024

# A value must match its pattern AND cast, so DuckDB's lenient casts ('1.5' -> 2) never apply.
_PATTERNS = {
    ColumnType.INTEGER: r"[+-]?[0-9]+",
    ColumnType.FLOAT: r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?",
    ColumnType.BOOLEAN: r"(?i)(true|false|1|0)",
    ColumnType.DATE: r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    ColumnType.TIMESTAMP: r"[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?Z?",
}
_ROW = "_row"


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

    def __init__(
        self,
        table: InputTable,
        connection: duckdb.DuckDBPyConnection | None = None,
        *,
        target: str | None = None,
    ) -> None:
        self.table = table
        self._own_connection = connection is None
        self.connection = connection or duckdb.connect(
            ":memory:", config={"enable_external_access": False, "lock_configuration": True}
        )
        self.target = target  # a quoted table name to append to, or None to validate only
        self._carry = b""
        self._header: list[str] | None = None
        self._line = 1  # lines consumed so far (the header is line 1)
        self._rows = 0
        self._bytes = 0
        self._hash = hashlib.sha256()
        self._finished = False
        if target is not None:
            columns = ", ".join(f"{quote(c.name)} {c.type.sql}" for c in table.columns)
            self.connection.execute(f"CREATE TABLE {target} ({columns})")

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
        if self.target is not None and self.table.key:
            self._check_unique_key()
        return IngestSummary(self._rows, self._bytes, self._hash.hexdigest())

    def close(self) -> None:
        if self._own_connection:
            self.connection.close()

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
        names = self._header
        assert names is not None
        try:
            parsed = pacsv.read_csv(
                io.BytesIO(block),
                read_options=pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, len(block) + 1)),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    strings_can_be_null=True,
                    null_values=[""],
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            detail = str(exc).removeprefix("CSV parse error: ")
            raise self._fail(f"after line {self._line}: {detail}") from None
        first_line = self._line + 1
        count = parsed.num_rows
        if self._rows + count > self.table.max_rows:
            raise self._fail(f"more than the manifest's max_rows ({self.table.max_rows:,} rows)")
        parsed = parsed.append_column(_ROW, pa.array(range(first_line, first_line + count), pa.int64()))
        self._check_types(parsed)
        self._rows += count
        self._line += lines

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

    def _check_types(self, batch: pa.Table) -> None:
        con = self.connection
        con.register("_piece", batch)
        try:
            checks = []
            for column in self.table.columns:
                name = quote(column.name)
                conditions = []
                if column.type in _PATTERNS:
                    pattern = _PATTERNS[column.type].replace("'", "''")
                    value = f"trim({name})"
                    conditions.append(
                        f"NOT regexp_full_match({value}, '{pattern}') OR TRY_CAST({value} AS {column.type.sql}) IS NULL"
                    )
                    if column.type is ColumnType.FLOAT:
                        conditions.append(f"NOT isfinite(TRY_CAST(trim({name}) AS DOUBLE))")
                if conditions:
                    checks.append(
                        f"SELECT {_ROW}, '{column.name}' AS col, {name} AS val FROM _piece "
                        f"WHERE {name} IS NOT NULL AND ({' OR '.join(conditions)})"
                    )
                if column.name in self.table.key:
                    checks.append(
                        f"SELECT {_ROW}, '{column.name}' AS col, NULL AS val FROM _piece WHERE {name} IS NULL"
                    )
            if checks:
                query = " UNION ALL ".join(checks) + f" ORDER BY 1 LIMIT {MAX_REPORTED_ERRORS}"
                bad = con.execute(query).fetchall()
                if bad:
                    raise self._fail("; ".join(self._describe(row, col, val) for row, col, val in bad))
            if self.target is not None:
                casts = ", ".join(
                    f"CAST(trim({quote(c.name)}) AS {c.type.sql})" if c.type is not ColumnType.TEXT else quote(c.name)
                    for c in self.table.columns
                )
                con.execute(f"INSERT INTO {self.target} SELECT {casts} FROM _piece")
        finally:
            con.unregister("_piece")

    def _describe(self, line: int, column: str, value: str | None) -> str:
        declared = self.table.column(column)
        assert declared is not None
        if value is None:
            return f"line {line}, column {column}: a key column may not be empty"
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"line {line}, column {column}: expected {declared.type.value}, found {shown!r}"

    def _check_unique_key(self) -> None:
        keys = ", ".join(quote(k) for k in self.table.key)
        duplicate = self.connection.execute(
            f"SELECT {keys}, count(*) FROM {self.target} GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
        ).fetchall()
        if duplicate:
            shown = ", ".join(repr(v) for v in duplicate[0][:-1])
            raise self._fail(
                f"key ({', '.join(self.table.key)}) is not unique: {shown} appears {duplicate[0][-1]} times"
            )


def validate_file(path: Path, table: InputTable, *, block: int = READ_BLOCK) -> IngestSummary:
    """Check a whole file against ``table``'s schema without keeping it (the client's check)."""
    connection = duckdb.connect(":memory:", config={"enable_external_access": False, "lock_configuration": True})
    ingest = CsvIngest(table, connection, target='"_check"')
    try:
        with path.open("rb") as handle:
            while piece := handle.read(block):
                ingest.feed(piece)
        return ingest.finish()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        connection.close()
