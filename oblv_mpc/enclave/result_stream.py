"""A computation's released rows on their way out: inline in its signed statement, or streamed.

The engine hands the released record batches to a :class:`ResultBuilder` one after another. A
small result (at most ``Limits.max_inline_result_cells`` rows x columns) becomes plain rows
that the signed result statement carries, as always. A larger one becomes an Arrow IPC stream
cut into chunks of whole messages (:class:`~oblv_mpc.ipc_frames.ChunkWriter`, at most
``Limits.result_chunk_bytes`` each), written as the batches come, never as Python rows: the
statement then carries the stream's SHA-256, size, chunk count and rows instead of the rows, so
a reader who fetches the chunks (``result`` requests with ``chunk: i``) verifies every byte
against the signature. The chunks are kept as they are, so every fetch gets the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from oblv_mpc.ipc_frames import ChunkWriter
from oblv_mpc.result_files import plain_rows

STREAM_FORMAT = "arrow"


@dataclass(frozen=True)
class StreamedResult:
    """A released result as Arrow IPC chunks, and what the signed statement says of them."""

    chunks: tuple[bytes, ...]
    sha256: str
    size: int
    rows: int

    def describe(self) -> dict[str, Any]:
        """The statement's ``stream`` field."""
        return {
            "format": STREAM_FORMAT,
            "sha256": self.sha256,
            "bytes": self.size,
            "chunks": len(self.chunks),
            "rows": self.rows,
        }


class ResultBuilder:
    """Released batches in; out, the rows inline or a :class:`StreamedResult` (see the module docstring)."""

    def __init__(self, columns: list[tuple[str, str]], *, inline_cells: int, chunk_bytes: int) -> None:
        self.columns = columns
        self._inline_cells = inline_cells
        self._chunk_bytes = chunk_bytes
        self._pending: list[pa.RecordBatch] = []
        self._writer: ChunkWriter | None = None
        self._chunks: list[bytes] = []
        self._digest = hashlib.sha256()
        self._size = 0
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """The next released batch."""
        self.rows += batch.num_rows
        if self._writer is None:
            self._pending.append(batch)
            if self.rows * max(len(self.columns), 1) <= self._inline_cells:
                return
            self._writer = ChunkWriter(batch.schema, self._chunk_bytes)
            pending, self._pending = self._pending, []
            for earlier in pending:
                self._write(earlier)
            return
        self._write(batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None
        for chunk in self._writer.write(batch):
            self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._digest.update(chunk)
        self._size += len(chunk)

    def finish(self) -> list[list[Any]] | StreamedResult:
        """The rows (a small result) or the stream (a large one)."""
        if self._writer is None:
            return plain_rows(self._pending, self.columns)
        self._keep(self._writer.close())
        return StreamedResult(tuple(self._chunks), self._digest.hexdigest(), self._size, self.rows)
