"""CSV tables checked against the manifest's schema, streamed in pieces, loaded into DuckDB.

The same :class:`CsvIngest` runs in two places: on the client before anything is sent (fast,
clear errors, nothing uploaded), and in the enclave as the authoritative check while chunks
arrive. Both see identical rules, so a file the client accepts is one the enclave accepts.

How a stream is read: bytes arrive in pieces of any size; :class:`_LineSplitter` lexes them,
carrying its state (inside quotes or not) from piece to piece so that nothing is scanned again
from the start, and hands on all complete lines up to the last line break outside a quoted
field (the rest waits for the next piece); Apache Arrow's CSV reader (C++) converts those lines
to typed columns. The work is
linear in the bytes, whatever their shape and however they are cut, and needs no session
state or database: the enclave runs it outside its session lock. In the enclave the typed
pieces are kept as they are, and DuckDB scans them in place through ``register()``: it never
reads a file, so the engine keeps external access disabled. Working memory per piece is bounded
by the piece size plus the longest line.

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
after the first line of the part being read.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from oblv_mpc.errors import InputDataError
from oblv_mpc.ingest import IngestSummary
from oblv_mpc.manifest import ColumnType, InputTable
from oblv_mpc.manifest.templates import quote

READ_BLOCK = 4 * 1024 * 1024
_PARSE = pacsv.ParseOptions(newlines_in_values=True)  # otherwise Arrow's defaults (quoting above)
_PRIVATE_DUCKDB = {"enable_external_access": False, "lock_configuration": True}

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


# Arrow's CSV lexer as regular expressions over bytes (possessive: no backtracking, so every
# match is linear). A quote opens a quoted value only at the start of a field: at the start of
# what is scanned (always the start of a line), or after a delimiter or a line end.
_INSIDE = rb'[^"]*+(?:""[^"]*+)*+'  # a quoted value's text, up to its closing quote
_QUOTED = rb'"' + _INSIDE + rb'"(?=[^"])'  # seen to be closed: a quote at the end may be doubled
_LITERAL = rb'(?<=[^,\r\n])"'  # a quote inside a field is an ordinary character
_LINE = rb'(?:[^"\r\n]++|' + _LITERAL + rb"|" + _QUOTED + rb")*+(?:\r\n?+|\n)"  # one line, with its end
_REST_OF_QUOTED = re.compile(_INSIDE)
_FIRST_LINE = re.compile(_LINE)
_LINES = re.compile(rb"(?:" + _LINE + rb")*+")  # every complete line
# Unquoted text and closed values, up to a quote left open; unrolled (a run, then a quote and a
# run, and so on), which the regular expression engine runs several times faster.
_FIELDS = re.compile(rb'[^"]*+(?:(?:' + _LITERAL + rb"|" + _QUOTED + rb')[^"]*+)*+')  # _LITERAL first
# Read backwards: a run of an odd number of quotes, whole, that follows (reads as preceded by) a
# byte that does not end a field: the literal comes first, so the engine skips to quotes quickly.
_RESET_BACKWARDS = re.compile(rb'"(?<!"")(?:"")*+(?=[^,\r\n"])')
_QUOTE = ord('"')
_BOM = b"\xef\xbb\xbf"


class _LineSplitter:
    """Cuts a CSV byte stream after its last line break outside quotes, in linear time.

    The lexer's state (inside a quoted value or not) is carried from piece to piece, so each
    byte is scanned a fixed number of times (once, unless a quoted value holds a window's last
    line end), whatever the piece boundaries; only a quote at the very end of what has arrived
    is looked at again with the next piece (it may be the first of a doubled one).
    """

    WINDOW = 1 << 20  # bytes per regular expression call: other threads run between calls

    def __init__(self) -> None:
        self._pending = bytearray()  # bytes after the last cut
        self._scanned = 0  # how many of them are lexed
        self._quoted = False  # the lexer stopped inside a quoted value...
        self._opened = 0  # ...which opened here
        self._break = 0  # just after the last line break outside quotes (0: none)

    def feed(self, data: bytes) -> bytes:
        """Take the next piece; return the complete lines it finished (maybe none)."""
        self._pending += data
        limit = self._scanned
        while limit < len(self._pending):
            limit = min(limit + self.WINDOW, len(self._pending))
            self._scan(limit)
        cut, self._break = self._break, 0
        if not cut:
            return b""
        with memoryview(self._pending) as view:
            lines = bytes(view[:cut])
        del self._pending[:cut]  # O(1): a bytearray drops its head in place
        self._scanned -= cut
        self._opened -= cut
        return lines

    def finish(self) -> tuple[bytes, int | None]:
        """End of stream: the last, unterminated line, and where a quote left open opened."""
        tail = bytes(self._pending)
        unclosed = self._quoted and self._scanned == len(tail)  # else a quote at the end closes it
        self._pending.clear()
        return tail, self._opened if unclosed else None

    def _scan(self, limit: int) -> None:
        buffer, position = self._pending, self._scanned
        if self._quoted:
            close = _reach(_REST_OF_QUOTED, buffer, position, limit)
            if close + 1 >= limit:  # not closed yet, or by a quote that may be doubled
                self._scanned = close
                return
            position, self._quoted = close + 1, False
        end = max(buffer.rfind(b"\n", position, limit), buffer.rfind(b"\r", position, limit)) + 1
        if end > position:  # is the last line end outside quotes? (almost always)
            straddled = position > 0 and buffer[position - 1] == buffer[position] == _QUOTE  # by a run of quotes
            if not straddled and _outside_quotes(buffer, position, end - 1):
                stop = end
            else:  # lex the lines one by one
                stop = _reach(_FIELDS, buffer, position, end)
            if stop == end:
                self._break = end
            else:  # no: a value that opened at `stop` holds it; the break is the last one before
                lines = _reach(_LINES, buffer, position, stop)
                if lines > position:
                    self._break = lines
            position = stop
        stop = _reach(_FIELDS, buffer, position, limit)  # no line end from here: only the state
        if stop < limit:  # a quote opening a value that is not seen to close
            self._quoted, self._opened = True, stop
            stop = _reach(_REST_OF_QUOTED, buffer, stop + 1, limit)
        self._scanned = stop


def _reach(pattern: re.Pattern[bytes], buffer: bytearray, start: int, limit: int) -> int:
    """Where ``pattern`` (which also matches nothing) stops when it scans from ``start``."""
    match = pattern.match(buffer, start, limit)
    assert match is not None
    return match.end()


def _outside_quotes(buffer: bytearray, start: int, at: int) -> bool:
    """Whether byte ``at`` is outside quotes, given that ``start`` is, and is not inside a run of
    quotes.

    Quotes come in runs. A run of odd length that does not start a field leaves the lexer outside
    quotes whatever the state before (inside, it ends the value after doubled quotes; outside,
    its quotes are characters); any other run flips the state if odd, keeps it if even. So
    ``at`` is inside quotes exactly when an odd number of quotes lie between the last such run
    (or ``start``) and ``at``: one search backwards, which stops at the nearest closing quote,
    and one count, both at memory speed.
    """
    if buffer.find(b'"', start, at) < 0:
        return True
    since, reach, low = start, 4096, at
    while low > max(start - 1, 0):  # look back 4 KiB, then twice as far, ...: linear however far
        low = max(at - reach, start - 1, 0)  # down to the byte before `start`, if any
        run = _RESET_BACKWARDS.search(buffer[low:at][::-1])  # never a run cut at `low`: it ends the text
        if run:
            since = at - run.start()
            break
        reach *= 2
    return buffer.count(b'"', since, at) % 2 == 0


def _first_line_end(block: bytes) -> int:
    """The index just after the first line break outside quotes (``len(block)`` if none)."""
    match = _FIRST_LINE.match(block)
    return match.end() if match else len(block)


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
        self._lines = _LineSplitter()
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
        schema = pa.schema([(c.name, _ARROW_TYPES[c.type]) for c in self.table.columns])
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

    def _read(self, block: bytes, *, typed: bool) -> pa.Table:
        names = self._header
        assert names is not None
        types = {c.name: _ARROW_TYPES[c.type] if typed else pa.string() for c in self.table.columns}
        block = _guarded(block)
        return pacsv.read_csv(
            io.BytesIO(block),
            read_options=pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, len(block) + 1)),
            parse_options=_PARSE,
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

    def _take_header(self, block: bytes) -> bytes:
        """Read the header line at the start of ``block`` (after any empty lines); return the rest."""
        if self._at_start:
            self._at_start = False
            block = block.removeprefix(_BOM)  # as Arrow does at the start of a file
        start = len(block) - len(block.lstrip(b"\r\n"))  # empty lines, skipped as Arrow does
        end = start + _first_line_end(block[start:])
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
        keys = ", ".join(quote(k) for k in self.table.key)
        connection = self.connection or duckdb.connect(":memory:", config=dict(_PRIVATE_DUCKDB))
        connection.register("_keys", pa.concat_tables(self._pieces).select(list(self.table.key)))
        try:
            duplicate = connection.execute(
                f"SELECT {keys}, count(*) FROM _keys GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
            ).fetchall()
        finally:
            connection.unregister("_keys")
            if connection is not self.connection:
                connection.close()
        if duplicate:
            shown = ", ".join(repr(v) for v in duplicate[0][:-1])
            raise self._fail(
                f"key ({', '.join(self.table.key)}) is not unique: {shown} appears {duplicate[0][-1]} times"
            )


def validate_file(path: Path, table: InputTable, *, block: int = READ_BLOCK) -> IngestSummary:
    """Check a whole file against ``table``'s schema without keeping it (the client's check)."""
    ingest = CsvIngest(table, keep=False)
    try:
        with path.open("rb") as handle:
            while piece := handle.read(block):
                ingest.feed(piece)
        return ingest.finish()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read ({exc.strerror})") from None
    except InputDataError as exc:  # the check ran here, before anything was sent
        raise InputDataError(exc.message, hint="fix the file and submit it again; nothing was sent") from None
