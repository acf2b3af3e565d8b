"""CSV tables checked against the manifest's schema, streamed in pieces, loaded into DuckDB.

The same :class:`CsvIngest` runs in two places: on the client before anything is sent (fast,
clear errors, nothing uploaded), and in the enclave as the authoritative check while chunks
arrive. Both see identical rules, so a file the client accepts is one the enclave accepts.

How a stream is read: bytes arrive in pieces of any size; :class:`~oblv_mpc.csv_lines.LineSplitter`
lexes them, carrying its state (inside quotes or not) from piece to piece so that nothing is
scanned again from the start, and hands on all complete lines up to the last line break outside
a quoted field (the rest waits for the next piece); Apache Arrow's CSV reader (C++) converts
those lines to typed columns. The work is linear in the bytes, whatever their shape and however
they are cut, and needs no session state or database: the enclave runs it outside its session
lock. In the enclave the typed pieces are kept as they are, and DuckDB scans them in place
through ``register()``: it never reads a file, so the engine keeps external access disabled.
Working memory per piece is bounded by the piece size plus the longest line.

Quoting is Arrow's (``ParseOptions`` defaults: ``quote_char='"'``, ``double_quote=True``, no
escape character; with ``newlines_in_values=True``): a quote opens a quoted value only at the
start of a field; anywhere else it is an ordinary character (``12" pizza`` is read as is);
inside a quoted value ``""`` is one quote and a lone quote ends the quoting. Line ends are
``\\n``, ``\\r\\n`` and ``\\r``; empty lines are skipped. The header line is read by Arrow too, and
a byte order mark opening the file is dropped. On top of Arrow, one rule: a quoted value must
be closed before the end of the file (Arrow would take the rest of the file as its value).

Rules (Arrow's CSV conversions): UTF-8; a header naming exactly the declared columns (any
order, spaces around a name ignored); an empty field is NULL; ``integer`` a 64-bit integer
(``-12``; Arrow also takes hex such as ``0x1f``); ``float`` a finite number (``1.5``, ``-2e3``;
not ``nan`` or ``inf``); ``boolean`` ``true``/``false``/``1``/``0`` (also ``True``, ``TRUE``...);
``date`` ``YYYY-MM-DD``; ``timestamp`` ``YYYY-MM-DD[ T]HH:MM[:SS[.fraction]]`` without a zone
(UTC by convention). Key columns are non-null and unique. At least one row; at most the
table's ``max_rows`` rows and ``max_bytes`` bytes. Line numbers in errors count ``\\n``s, the
header's line as line 1, and assume no empty lines and no line breaks inside quoted fields
after the first line of the part being read. An error names the first problem in file order:
the first row with too few or too many fields, else the first bad value whatever its column
(:mod:`oblv_mpc.csv_problems`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from oblv_mpc.csv_lines import LineSplitter, first_line_end
from oblv_mpc.csv_problems import Problem, find_row, value_problem
from oblv_mpc.errors import InputDataError
from oblv_mpc.ingest import ARROW_TYPES, IngestSummary, arrow_schema
from oblv_mpc.manifest import Column, InputTable
from oblv_mpc.manifest.templates import quote

READ_BLOCK = 4 * 1024 * 1024
_PARSE = pacsv.ParseOptions(newlines_in_values=True)  # otherwise Arrow's defaults (quoting above)
# DuckDB over the parties' data (the enclave's engine and the key check here): it reads and writes
# no files, and has no temp directory, so past its memory_limit a query stops instead of spilling
# the rows to files under the process's working directory (DuckDB's default, ".tmp").
PRIVATE_DUCKDB: dict[str, str | bool] = {"enable_external_access": False, "temp_directory": ""}

# The reader's conversion error: "In CSV column #1: CSV conversion error to double: invalid value 'abc'"
_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): CSV conversion error to [^:]+: [^']*'(.*)'$", re.DOTALL)


_BOM = b"\xef\xbb\xbf"


def _guarded(block: bytes) -> bytes:
    """``block`` as Arrow should read it mid-file: its reader drops a byte order mark at the
    start of every read, but only the file's first bytes are the file's start."""
    return b"\n" + block if block.startswith(_BOM) else block  # the empty line is skipped


class CsvIngest:
    """Check (and, given a connection, load) one table's CSV bytes fed in pieces of any size.

    An :class:`oblv_mpc.ingest.Ingest`.
    """

    def __init__(self, table: InputTable, connection: duckdb.DuckDBPyConnection | None = None, *, keep: bool) -> None:
        self.table = table
        # Where the key uniqueness check runs; by default a private in-memory DuckDB, so that
        # checking never touches a connection that other threads use (the enclave's).
        self.connection = connection
        self.keep = keep  # keep every column (the enclave), or only the key columns (a check)
        self._pieces: list[pa.Table] = []
        self._lines = LineSplitter()
        self._header: list[str] | None = None
        self._at_start = True  # nothing read yet: a byte order mark here is not data
        self._line = 0  # lines consumed so far
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
        lines = self._lines.feed(data)
        if lines:
            self._process(lines)

    def finish(self) -> IngestSummary:
        """End of file: check what is left and the whole-table rules."""
        self._finished = True
        tail, opened = self._lines.finish()
        if opened is not None:
            line = self._line + 1 + tail.count(b"\n", 0, opened)
            raise self._fail(f"line {line}: a quoted field is never closed (a quote that starts a field opens one)")
        if tail:
            self._process(tail)  # Arrow reads a last line without its line break
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
        schema = arrow_schema(self.table)
        return pa.concat_tables(self._pieces) if self._pieces else schema.empty_table()

    def _process(self, block: bytes) -> None:
        try:
            block.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = self._line + 1 + block.count(b"\n", 0, exc.start)
            raise self._fail(f"line {line}: not valid UTF-8 (byte offset {exc.start} of this part)") from None
        if self._header is None:
            block = self._take_header(block)
            if not block:
                return
        lines = block.count(b"\n")
        try:
            parsed = self._read(block, typed=True)
        except pa.ArrowInvalid as exc:
            raise self._locate(block, exc) from None
        count = parsed.num_rows
        if not count:  # only empty lines (and _check_values needs a row)
            self._line += lines
            return
        if self._rows + count > self.table.max_rows:
            raise self._fail(f"more than the manifest's max_rows ({self.table.max_rows:,} rows)")
        self._check_values(parsed)
        kept = [c.name for c in self.table.columns] if self.keep else list(self.table.key)
        if kept:
            self._pieces.append(parsed.select(kept))
        self._rows += count
        self._line += lines

    def _read(
        self,
        block: bytes,
        *,
        typed: bool,
        only: str | None = None,
        on_invalid_row: Callable[[pacsv.InvalidRow], str] | None = None,
    ) -> pa.Table:
        """``block`` as a table: typed as declared, or every column as text; all columns or ``only``
        one; ``on_invalid_row`` is told of rows with too few or too many fields."""
        names = self._header
        assert names is not None
        types = {c.name: ARROW_TYPES[c.type] if typed else pa.string() for c in self.table.columns}
        block = _guarded(block)
        parse = _PARSE
        if on_invalid_row is not None:
            parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row)
        return pacsv.read_csv(
            io.BytesIO(block),
            read_options=pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, len(block) + 1)),
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=[only] if only else [],
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
                true_values=["true", "True", "TRUE", "1"],
                false_values=["false", "False", "FALSE", "0"],
            ),
        )

    def _locate(self, block: bytes, error: pa.ArrowInvalid) -> InputDataError:
        """Turn the CSV reader's error into the first problem of ``block`` in file order, by line."""
        message = str(error)
        if _CONVERSION_ERROR.search(message) is None:
            return self._shape_problem(block, message.removeprefix("CSV parse error: "))
        strings = self._read(block, typed=False)  # it parsed: only a conversion failed
        found = [self._column_problem(block, strings, column) for column in self.table.columns]
        return self._first_of(found)

    def _shape_problem(self, block: bytes, message: str) -> InputDataError:
        """The first row with too few or too many fields (Arrow names no line), unless a value on
        an earlier line is wrong."""
        rows: list[pacsv.InvalidRow] = []

        def first(row: pacsv.InvalidRow) -> str:
            rows.append(row)
            return "error"  # stop at the first

        with contextlib.suppress(pa.ArrowInvalid):  # it fails at the first; `rows` says where
            self._read(block, typed=False, on_invalid_row=first)
        at = find_row(block, rows[0].text.encode("utf-8")) if rows else None
        if at is None:
            return self._fail(f"after line {self._line}: {message}")
        earlier = self._earlier_problem(block[:at])
        if earlier is not None:
            return earlier
        line = self._line + 1 + block.count(b"\n", 0, at)
        row = rows[0]
        return self._fail(
            f"line {line}: {row.actual_columns} field(s), expected {row.expected_columns} "
            "(one per column of the header)"
        )

    def _earlier_problem(self, lines: bytes) -> InputDataError | None:
        """A bad value in the complete ``lines`` before a row that does not split, if there is one."""
        if not lines:
            return None
        try:
            parsed = self._read(lines, typed=True)
        except pa.ArrowInvalid as exc:  # a shorter block: this ends
            return self._locate(lines, exc)
        found = [value_problem(c, parsed.column(c.name), key=c.name in self.table.key) for c in self.table.columns]
        return self._first_of(found) if any(p is not None for p in found) else None

    def _column_problem(self, block: bytes, strings: pa.Table, column: Column) -> Problem | None:
        """The first value of ``column`` in ``block`` that does not convert or is not allowed."""
        try:
            typed = self._read(block, typed=True, only=column.name)
        except pa.ArrowInvalid as exc:
            match = _CONVERSION_ERROR.search(str(exc))
            if match is None:
                return Problem(None, f"column {column.name}: {str(exc).removeprefix('CSV parse error: ')}")
            value = match.group(2)
            try:
                index: int | None = pc.index(strings.column(column.name), value).as_py()
            except pa.ArrowInvalid:
                index = None
            shown = value if len(value) <= 40 else value[:37] + "..."
            found = f"column {column.name}: expected {column.type.value}, found {shown!r}"
            return Problem(index if index is not None and index >= 0 else None, found)
        return value_problem(column, typed.column(column.name), key=column.name in self.table.key)

    def _first_of(self, problems: list[Problem | None]) -> InputDataError:
        """The problem on the earliest line (one without a known row comes last)."""
        known = [p for p in problems if p is not None]
        assert known, "a block that failed has a problem"
        first = min(known, key=lambda p: (p.index is None, p.index or 0))
        where = f"line {self._line + 1 + first.index}" if first.index is not None else f"after line {self._line}"
        return self._fail(f"{where}, {first.text}")

    def _check_values(self, batch: pa.Table) -> None:
        found = [value_problem(c, batch.column(c.name), key=c.name in self.table.key) for c in self.table.columns]
        if any(p is not None for p in found):
            raise self._first_of(found)

    def _take_header(self, block: bytes) -> bytes:
        """Read the header line at the start of ``block`` (after any empty lines); return the rest."""
        if self._at_start:
            self._at_start = False
            block = block.removeprefix(_BOM)  # as Arrow does at the start of a file
        start = len(block) - len(block.lstrip(b"\r\n"))  # empty lines, skipped as Arrow does
        end = start + first_line_end(block[start:])
        self._line += block.count(b"\n", 0, end)
        if start == len(block):
            return b""  # only empty lines so far
        line = block[start:end]
        try:
            header = pacsv.read_csv(
                io.BytesIO(_guarded(line if line.endswith(b"\n") else line + b"\n")),
                read_options=pacsv.ReadOptions(block_size=max(1 << 20, len(line) + 2)),
                parse_options=_PARSE,
            )
        except pa.ArrowInvalid as exc:
            raise self._fail(f"line {self._line} (header): {str(exc).removeprefix('CSV parse error: ')}") from None
        self._check_header([name.strip(" \t") for name in header.column_names])
        return block[end:]

    def _check_header(self, names: list[str]) -> None:
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
            where = f"line {self._line} (header)"
            raise self._fail(f"{where}: {'; '.join(parts)}; expected exactly {', '.join(declared)}")
        self._header = names

    def _check_unique_key(self) -> None:
        repeated = repeated_key(pa.concat_tables(self._pieces).select(list(self.table.key)), self.connection)
        if repeated is not None:
            raise self._fail(f"key ({', '.join(self.table.key)}) is not unique: {repeated}")


def repeated_key(keys: pa.Table, connection: duckdb.DuckDBPyConnection | None = None) -> str | None:
    """A key that ``keys`` (a table's key columns) hold more than once, as DuckDB compares them:
    ``'a' appears 2 times``; None when every key is unique.

    DuckDB joins the tables, so DuckDB judges whether keys are unique, for CSV and Arrow uploads
    alike: Arrow's ``group_by`` keeps ``0.0`` and ``-0.0`` apart (their bits differ) where DuckDB's
    joins and ``GROUP BY`` hold them equal (as IEEE 754 does), so a key Arrow found unique could
    join one row of another table twice. Runs in ``connection``, by default a private in-memory
    DuckDB, so that checking never touches a connection that other threads use.
    """
    columns = ", ".join(quote(name) for name in keys.column_names)
    database = connection or duckdb.connect(":memory:", config={**PRIVATE_DUCKDB, "lock_configuration": True})
    database.register("_keys", keys)
    try:
        duplicate = database.execute(
            f"SELECT {columns}, count(*) FROM _keys GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
        ).fetchall()
    finally:
        database.unregister("_keys")
        if database is not connection:
            database.close()
    if not duplicate:
        return None
    shown = ", ".join(_clipped(repr(value)) for value in duplicate[0][:-1])
    return f"{shown} appears {duplicate[0][-1]} times"


def _clipped(text: str, chars: int = 40) -> str:
    """A value from the data in an error message, clipped: it may be a hostile party's megabyte."""
    return text if len(text) <= chars else text[: chars - 3] + "..."


def validate_file(
    path: Path, table: InputTable, *, block: int = READ_BLOCK, progress: Callable[[int], None] | None = None
) -> IngestSummary:
    """Check a whole file against ``table``'s schema without keeping it (the client's check).

    ``progress`` is told the size of each piece once it was checked.
    """
    ingest = CsvIngest(table, keep=False)
    try:
        with path.open("rb") as handle:
            while piece := handle.read(block):
                ingest.feed(piece)
                if progress is not None:
                    progress(len(piece))
        return ingest.finish()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read ({exc.strerror})") from None
    except InputDataError as exc:  # the check ran here, before anything was sent
        raise InputDataError(exc.message, hint="fix the file and submit it again; nothing was sent") from None
