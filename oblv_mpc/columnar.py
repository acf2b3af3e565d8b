"""A party's file, read once with Arrow, as the Arrow IPC stream it uploads: :class:`ColumnarFile`.

The client reads CSV (Arrow's multi-threaded CSV reader, with the conversions and quoting of
:mod:`oblv_mpc.tables`) or Parquet (any column types that Arrow casts safely to the manifest's)
in blocks, and writes record batches of at most ``chunk_bytes`` each into an Arrow IPC stream
cut at message boundaries: every piece is one chunk of the upload (the schema in front of the
first batch, the end-of-stream marker after the last). Before a piece leaves, the same
:class:`~oblv_mpc.arrow_ingest.ArrowIngest` the enclave runs checks it; the last piece, which
carries the end marker, leaves only once the whole table passed (keys unique), so a table that
fails a check is never committed: the enclave keeps nothing of an upload without its final chunk.

An error in the CSV is reported with its line, as the enclave's CSV check would report it
(:func:`oblv_mpc.tables.validate_file` is run to find it, only once Arrow has refused the file).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from oblv_mpc.arrow_ingest import ArrowIngest, describe
from oblv_mpc.errors import InputDataError
from oblv_mpc.ingest import IngestSummary, arrow_schema
from oblv_mpc.ipc_frames import ChunkWriter
from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.manifest import InputTable
from oblv_mpc.parquet_input import check_schema, convert
from oblv_mpc.tables import validate_file

COMPRESSIONS = ("lz4", "zstd")
# Bytes of CSV per block Arrow parses (in parallel, on every core). Its streaming reader reads
# ahead about ten blocks: 2 MiB parse as fast as 8 and hold a quarter of the memory.
_CSV_BLOCK = 2 * 1024 * 1024
_PARQUET_MAGIC = b"PAR1"
_T = TypeVar("_T")
_NOTHING_KEPT = "fix the file and submit it again; the enclave keeps nothing of an upload without its last chunk"


class ColumnarFile:
    """``path`` (CSV or Parquet) as ``table``'s Arrow IPC stream, in checked pieces.

    Iterate :meth:`pieces` once; meanwhile :attr:`read_bytes` says how much of the file was read
    (for progress), and afterwards :attr:`summary` what was sent (rows and bytes of the stream;
    its SHA-256 is the sender's, ``send_stream``'s).
    ``compression`` (``lz4`` or ``zstd``) compresses each batch's buffers (Arrow IPC compression).
    """

    def __init__(
        self,
        path: Path,
        table: InputTable,
        *,
        chunk_bytes: int,
        compression: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if compression is not None and compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
        self.path = path
        self.table = table
        self.schema = arrow_schema(table)
        self.chunk_bytes = chunk_bytes
        self.compression = compression
        self.check = ArrowIngest(table, keep=False, limits=limits, digest=False)  # send_stream hashes the bytes
        self.summary: IngestSummary | None = None
        self.read_bytes = 0
        self._parquet_file = False

    def pieces(self) -> Generator[bytes, None, None]:
        """The stream's pieces, each checked before it is yielded; the last after the whole table passed."""
        writer = ChunkWriter(self.schema, self.chunk_bytes, self.compression)
        for batch in self._batches():
            for piece in writer.write(batch):
                self._checked(self.check.feed, piece)
                yield piece
        last = writer.close()
        self._checked(self.check.feed, last)
        self.summary = self._checked(lambda _: self.check.finish(), b"")
        yield last

    def _checked(self, check: Callable[[bytes], _T], piece: bytes) -> _T:
        """``check(piece)``; a refusal in the file's terms: a CSV's line (found by the CSV check), a Parquet row."""
        try:
            return check(piece)
        except InputDataError as exc:
            if not self._parquet_file:
                self._recheck()
            message = exc.message.replace(": row ", f": {self.path.name} row ", 1)
            raise InputDataError(message, hint=_NOTHING_KEPT) from None

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            with self.path.open("rb") as handle:
                self._parquet_file = handle.read(4) == _PARQUET_MAGIC
        except OSError as exc:
            raise InputDataError(f"{self.path}: cannot read ({exc.strerror})") from None
        return self._parquet() if self._parquet_file else self._csv()

    # -- Parquet ---------------------------------------------------------------------------------

    def _parquet(self) -> Iterator[pa.RecordBatch]:
        """The Parquet file's batches, with the same type rules as ``--format csv`` (:mod:`oblv_mpc.parquet_input`)."""
        try:
            source = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise self._fail(f"not a readable Parquet file ({exc})") from None
        with source:
            check_schema(self.path, source.schema_arrow, self.table)
            if source.metadata.num_rows > self.table.max_rows:
                rows = source.metadata.num_rows
                raise self._fail(f"{rows:,} rows, more than the manifest's max_rows ({self.table.max_rows:,})")
            size, total, done = self.path.stat().st_size, max(source.metadata.num_rows, 1), 0
            for batch in source.iter_batches(batch_size=64 * 1024, columns=self.schema.names, use_threads=True):
                done += batch.num_rows
                self.read_bytes = size * done // total
                yield convert(batch, self.table, self.path)

    # -- CSV -------------------------------------------------------------------------------------

    def _csv(self) -> Iterator[pa.RecordBatch]:
        header = self._csv_header()
        raw = {name.strip(" \t"): name for name in header}
        self._check_names(list(raw), "the header", duplicates=len(raw) != len(header))
        convert = pacsv.ConvertOptions(
            column_types={raw[f.name]: f.type for f in self.schema},
            include_columns=[raw[f.name] for f in self.schema],
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=True,
            true_values=["true", "True", "TRUE", "1"],
            false_values=["false", "False", "FALSE", "0"],
        )
        last: pa.RecordBatch | None = None
        with self.path.open("rb") as handle:
            counted = _Counted(handle, self)
            try:
                reader = pacsv.open_csv(
                    counted,
                    read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK, use_threads=True),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=convert,
                )
                for batch in reader:
                    last = batch.rename_columns(self.schema.names)
                    yield last
            except pa.ArrowInvalid as exc:
                raise self._located(str(exc)) from None
        if last is not None and _has_line_break(last.slice(last.num_rows - 1)):
            self._recheck()  # a quote left open would take the rest of the file as one value

    def _csv_header(self) -> list[str]:
        try:
            with pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(block_size=1 << 20),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
            ) as reader:
                return list(reader.schema.names)
        except pa.ArrowInvalid as exc:
            raise self._located(str(exc)) from None
        except OSError as exc:
            raise InputDataError(f"{self.path}: cannot read ({exc.strerror})") from None

    def _located(self, arrow_says: str) -> InputDataError:
        """The CSV check's own error for this file, with its line; else Arrow's words."""
        self._recheck()
        return self._fail(arrow_says.removeprefix("CSV parse error: "))

    def _recheck(self) -> None:
        """Run the CSV check over the file (slow, exact): raise its error, with its line, if it finds one."""
        try:
            validate_file(self.path, self.table)
        except InputDataError as exc:
            raise InputDataError(exc.message, hint=_NOTHING_KEPT) from None

    # -- shared ----------------------------------------------------------------------------------

    def _check_names(self, names: list[str], where: str, *, duplicates: bool = False) -> None:
        declared = self.schema.names
        missing = [n for n in declared if n not in names]
        extra = [n for n in names if n not in declared]
        if missing or extra or duplicates or len(set(names)) != len(names):
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected column(s) {', '.join(extra)}")
            if duplicates or len(set(names)) != len(names):
                parts.append("a column named twice")
            raise self._fail(f"{where}: {'; '.join(parts)}; expected exactly {', '.join(declared)}")

    def _fail(self, message: str) -> InputDataError:
        return InputDataError(f"{self.table.qualified} ({self.path.name}): {message}", hint=_NOTHING_KEPT)


class _Counted:
    """A file read by Arrow, counting the bytes read into ``owner.read_bytes``."""

    def __init__(self, handle: BinaryIO, owner: ColumnarFile) -> None:
        self._handle = handle
        self._owner = owner
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._owner.read_bytes += len(data)
        return data

    def close(self) -> None:
        self.closed = True


def _has_line_break(row: pa.RecordBatch) -> bool:
    for column in row.columns:
        value = column[0].as_py()
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            return True
    return False


__all__ = ["COMPRESSIONS", "ColumnarFile", "describe"]
