"""A streamed result on the client: its chunks read in order, decoded as they come, every byte checked.

A large result's signed statement carries no rows but ``stream``: the SHA-256 and size of all
its chunks' bytes, how many chunks, how many rows (:class:`~oblv_mpc.statements.StreamInfo`).
:func:`read_stream` asks for chunk 0, 1, ... (each answer sealed to this client and signed by
the attested enclave, like every answer), checks that each is the chunk asked for and the last
one says so, decodes its whole Arrow IPC messages (:class:`~oblv_mpc.ipc_frames.ChunkReader`:
bounded, fully validated) and yields the record batches at once, so that a caller writes them
out without holding the result. Once the last chunk is in, the bytes must hash to the signed
digest, and their size, the chunk count and the rows must be what the statement says; otherwise
:class:`ProtocolError` is raised and the caller discards what it wrote
(:meth:`oblv_mpc.result_files.BatchWriter.abort`). A stream cut short raises the transport's
error, with the same effect: nothing of the result is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pyarrow as pa

from oblv_mpc.errors import ProtocolError
from oblv_mpc.ipc_frames import ChunkReader
from oblv_mpc.ipc_metadata import MalformedIpc, schema_bytes_allowed
from oblv_mpc.limits import Limits
from oblv_mpc.protocol.answers import ResultChunkAnswer
from oblv_mpc.result_files import arrow_type
from oblv_mpc.statements import Result


def read_stream(result: Result, chunks: Iterator[ResultChunkAnswer], limits: Limits) -> Iterator[pa.RecordBatch]:
    """The record batches of ``result``'s stream, from its ``chunks`` answered in order (see the module docstring)."""
    info = result.stream
    assert info is not None, "the result is not streamed"
    names = [name for name, _ in result.columns]
    what = f"the result of {result.computation}"

    def accept(schema: pa.Schema) -> pa.Schema:
        if schema.names != names:
            raise ProtocolError(f"{what} streams columns {schema.names}, its statement says {names}")
        return schema

    # The schema the statement's columns give, to size the stream's schema message by (a type no
    # result has counts as null: the bound keeps room for another writer's layout anyway).
    expected = pa.schema([(name, arrow_type(kind) or pa.null()) for name, kind in result.columns])
    reader = ChunkReader(
        max_batch_bytes=limits.max_batch_bytes, max_schema_bytes=schema_bytes_allowed(expected), accept_schema=accept
    )
    digest, size, rows = hashlib.sha256(), 0, 0
    for index in range(info.chunks):
        chunk = next(chunks, None)
        if chunk is None:
            raise ProtocolError(f"{what} stopped after {index} of its {info.chunks} chunks")
        _check_place(chunk, result.computation, index, info.chunks, what)
        if len(chunk.data) > limits.max_chunk_bytes or size + len(chunk.data) > info.size:
            raise ProtocolError(f"{what}: chunk {index} holds more bytes than the signed statement allows")
        digest.update(chunk.data)
        size += len(chunk.data)
        try:
            batches = reader.read(chunk.data)
        except MalformedIpc as exc:
            raise ProtocolError(f"{what}: chunk {index} is not a valid Arrow IPC stream: {exc}") from None
        for batch in batches:
            rows += batch.num_rows
            if rows > info.rows:
                raise ProtocolError(f"{what} streams more rows than its signed statement says ({info.rows:,})")
            yield batch
    if not reader.ended or (digest.hexdigest(), size, rows) != (info.sha256, info.size, info.rows):
        raise ProtocolError(
            f"{what}: the chunks received do not match the signed statement's digest, size and rows; nothing of "
            "it is kept",
            hint="fetch it again; if it happens again, the enclave's answers are not what it signed",
        )


def _check_place(chunk: ResultChunkAnswer, computation: str, index: int, count: int, what: str) -> None:
    if chunk.computation != computation or chunk.index != index:
        raise ProtocolError(
            f"{what}: asked for chunk {index}, the answer is chunk {chunk.index} of {chunk.computation}"
        )
    if chunk.final != (index == count - 1):
        raise ProtocolError(f"{what}: chunk {index} of {count} says it is{' not' if not chunk.final else ''} the last")


def fetcher(fetch: Callable[[int], ResultChunkAnswer], count: int) -> Iterator[ResultChunkAnswer]:
    """Chunk 0, 1, ... ``count - 1``, each fetched when asked for."""
    return (fetch(index) for index in range(count))
