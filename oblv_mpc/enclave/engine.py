"""The compute engine: one in-memory DuckDB per session, external access off, config locked.

Each party's tables live in a schema named after the party (``alice.customers``), which is how
the manifest's SQL names them: a view over the typed Arrow data of the party's last complete,
valid upload, which DuckDB scans in place, registered under a name no other table can take
(``oblv_mpc.manifest.naming.data_name``). An upload in progress, or a failed one, is never
visible to SQL.

A run is bounded: DuckDB's ``memory_limit`` (with no temp directory, so it never spills rows to
disk), and an interrupt after the settings' time limit. It
runs the computation's ``run_sql`` (the agreed SQL plus the enclave's per-owner unit counts),
then its release policy. Failures say which limit stopped the run, never DuckDB's message, which
may quote values from the data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from oblv_mpc.arrow_ingest import ArrowIngest
from oblv_mpc.enclave import privacy
from oblv_mpc.enclave.result_stream import ResultBuilder, StreamedResult
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.ingest import Ingest
from oblv_mpc.manifest import ColumnType, Computation, InputTable, Manifest
from oblv_mpc.manifest.naming import data_name, is_helper, quote
from oblv_mpc.protocol.messages import ARROW, CSV
from oblv_mpc.result_files import plain_rows
from oblv_mpc.tables import PRIVATE_DUCKDB, CsvIngest

# Set before the configuration is locked; nothing can change them afterwards. Threads: parallel
# plans add floating-point values in an order that varies from run to run, and a result without
# noise must be the same, byte for byte, every time (found by a flaky test); so every computation
# runs on one thread unless its result cannot depend on the plan (:func:`exact_in_parallel`),
# which runs on a second database with ``EnclaveSettings.compute_threads`` (docs/adr/0004).
# The time zone is fixed so that no function's value depends on the host's.
_LOCKED_CONFIG = {
    **PRIVATE_DUCKDB,  # no file access, no temp directory
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


_T = TypeVar("_T")
# Templates whose SQL only compares, counts, adds integers and takes extremes: exact in any order.
_EXACT_TEMPLATES = frozenset({"psi", "psi_cardinality", "aggregate", "join_aggregate"})


def exact_in_parallel(computation: Computation, manifest: Manifest) -> bool:
    """Whether any plan gives the same result, byte for byte: a built-in template without noise,
    over inputs without floating-point columns (whose sums depend on the order of addition).
    Rows are ordered by the SQL on unique keys, or sorted, so their order does not depend on the plan."""
    if computation.template not in _EXACT_TEMPLATES or computation.dp is not None or computation.synthetic:
        return False
    columns = (c for name in computation.inputs for c in manifest.inputs[name].columns)
    return all(c.type is not ColumnType.FLOAT for c in columns)


def _connect(manifest: Manifest, memory_bytes: int, threads: int) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a schema per party, its configuration locked."""
    config: dict[str, Any] = {**_LOCKED_CONFIG, "threads": threads, "memory_limit": f"{memory_bytes}B"}
    connection = duckdb.connect(":memory:", config=config)
    connection.execute("SET TimeZone = 'UTC'")  # an ICU option, settable only once connected
    connection.execute("SET lock_configuration = true")
    for party in manifest.parties:
        connection.execute(f"CREATE SCHEMA {quote(party)}")
    return connection


_BATCH_ROWS = 1 << 20  # rows per record batch read from DuckDB


class RunFailed(Exception):
    """A run stopped by a limit or an error. ``reason`` names which, never the data."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Output:
    """A computation's output after release rules (``suppressed_groups`` None: not disclosed):
    its rows inline, or (a large result) ``stream`` and no rows."""

    columns: list[tuple[str, str]]
    rows: list[list[Any]]
    suppressed_groups: int | None
    dp: dict[str, Any] | None = None  # what the differentially private release applied
    stream: StreamedResult | None = None

    @property
    def row_count(self) -> int:
        """Rows released, inline or streamed."""
        return self.stream.rows if self.stream is not None else len(self.rows)


def _sorted(table: pa.Table) -> pa.Table:
    """Rows in ascending order of every column in turn, nulls last (by position: names may repeat)."""
    keys = [
        (f"c{i}", "ascending", "at_end") for i, field in enumerate(table.schema) if not pa.types.is_null(field.type)
    ]
    if not keys or table.num_rows < 2:
        return table
    renamed = table.rename_columns([f"c{i}" for i in range(table.num_columns)])
    return table.take(pc.sort_indices(renamed, sort_keys=keys))


class Engine:
    """DuckDB for one session."""

    def __init__(self, manifest: Manifest, settings: EnclaveSettings | None = None) -> None:
        self.manifest = manifest
        self.settings = settings or EnclaveSettings()
        memory, threads = self.settings.limits.compute_memory_bytes, self.settings.compute_threads
        self.connection = _connect(manifest, memory, 1)  # every computation whose result could vary
        self.parallel = _connect(manifest, memory, threads) if threads > 1 else self.connection

    def ingest(self, table: InputTable, fmt: str = CSV) -> Ingest:
        """A streaming checker that keeps the typed data of one upload, in its format (CSV or Arrow IPC).

        It never touches this engine's connection (a key check has a DuckDB of its own, or
        none), so it can run outside the session lock; only :meth:`commit` does, under that lock.
        The stream that carries an Arrow upload hashes its bytes; its ingest need not.
        """
        if fmt == ARROW:
            return ArrowIngest(table, keep=True, limits=self.settings.limits, digest=False)
        return CsvIngest(table, keep=True)

    def commit(self, table: InputTable, ingest: Ingest) -> None:
        """Make a completed upload the party's table (replacing an earlier upload)."""
        name, data = data_name(table.party, table.table), ingest.table_data()
        for connection in {id(c): c for c in (self.connection, self.parallel)}.values():
            connection.register(name, data)  # zero-copy: both databases scan the same Arrow data
            connection.execute(
                f"CREATE OR REPLACE VIEW {quote(table.party)}.{quote(table.table)} AS SELECT * FROM {quote(name)}"
            )

    def _read(
        self, connection: duckdb.DuckDBPyConnection, sql: str, ordered: bool
    ) -> tuple[list[tuple[str, str]], Iterator[pa.RecordBatch]]:
        """``sql``'s columns (name, DuckDB type) and its rows as record batches, read as they come
        when the SQL orders them, else sorted (:func:`_sorted`), so that DuckDB's plan never
        changes the order. Call within :meth:`_limited`."""
        relation = connection.sql(sql)
        columns = [(str(name), str(kind)) for name, kind in zip(relation.columns, relation.types, strict=True)]
        if ordered:
            return columns, iter(relation.to_arrow_reader(_BATCH_ROWS))
        return columns, iter(_sorted(relation.to_arrow_table()).to_batches(_BATCH_ROWS))

    def pooled(self, computation: Computation) -> pa.Table:
        """The rows a synthetic release is made from (its ``run_sql``: the union, with each row's unit), as Arrow."""
        if computation.synthetic is None:
            raise RuntimeError(f"{computation.name} is not a synthetic release")
        return self._limited(lambda: self.connection.sql(computation.run_sql).to_arrow_table())

    def _limited(self, run: Callable[[], _T], connection: duckdb.DuckDBPyConnection | None = None) -> _T:
        """``run()`` within the time and memory limits; a stop names the limit, never DuckDB's message."""
        limits = self.settings.limits
        timer = threading.Timer(limits.compute_timeout_s, (connection or self.connection).interrupt)
        timer.start()
        try:
            return run()
        except duckdb.InterruptException:
            raise RunFailed(
                "compute_limit",
                f"the computation was stopped at its time limit ({limits.compute_timeout_s:g} s)",
            ) from None
        except duckdb.OutOfMemoryException:
            raise RunFailed(
                "compute_limit",
                f"the computation was stopped at its memory limit ({limits.compute_memory_bytes:,} bytes)",
            ) from None
        except duckdb.Error:
            # DuckDB's message may quote a value from the data (a failed cast, say): never passed on.
            raise RunFailed("compute_failed", "the computation failed while running; no detail is given") from None
        finally:
            timer.cancel()

    def run(self, computation: Computation, *, noise: privacy.Noise = privacy.laplace) -> Output:
        """Run the computation within its limits, then apply its release rules, batch by batch.

        Rows of SQL without ORDER BY are sorted, so a result without noise is the same, byte
        for byte, however DuckDB scheduled the query. A result of more than
        ``Limits.max_inline_result_cells`` cells comes out as an Arrow IPC stream
        (:mod:`oblv_mpc.enclave.result_stream`). Raises :class:`RunFailed`, or
        ``oblv_mpc.manifest.rules.Withheld`` when a rule withholds the whole result.
        """
        if computation.synthetic is not None:  # its rows never leave as they are: see pooled()
            raise RuntimeError(f"{computation.name} is a synthetic release, made by oblv_mpc.synthetic")
        sql = computation.run_sql or computation.sql
        if computation.dp is not None:

            def statistics() -> tuple[list[tuple[str, str]], list[list[Any]]]:
                columns, batches = self._read(self.connection, sql, computation.ordered)
                return columns, plain_rows(list(batches), columns)

            columns, rows = self._limited(statistics)
            columns, rows, applied = privacy.release(computation, columns, rows, noise)
            return Output(columns, rows, 0, applied)
        limits = self.settings.limits
        policy = computation.policy
        connection = self.parallel if exact_in_parallel(computation, self.manifest) else self.connection

        def release() -> tuple[list[tuple[str, str]], list[list[Any]] | StreamedResult, int]:
            columns, batches = self._read(connection, sql, computation.ordered)
            kept = [column for column in columns if not is_helper(column[0])]
            builder = ResultBuilder(
                kept,
                inline_cells=limits.max_inline_result_cells,
                chunk_bytes=min(limits.result_chunk_bytes, limits.max_chunk_bytes),
            )
            suppressed = 0
            for batch in batches:
                released = policy.apply(columns, batch, builder.rows)
                suppressed += released.suppressed
                builder.add(released.batch)
            return kept, builder.finish(), suppressed

        columns, out, suppressed = self._limited(release, connection)
        if isinstance(out, StreamedResult):
            return Output(columns, [], policy.disclosed(suppressed), stream=out)
        return Output(columns, out, policy.disclosed(suppressed))
