"""The compute engine: one in-memory DuckDB per session, external access off, config locked.

Each party's tables live in a schema named after the party (``alice.customers``), which is how
the manifest's SQL names them: a view over the typed Arrow data of the party's last complete,
valid upload, which DuckDB scans in place, registered under a name no other table can take
(``oblv_mpc.manifest.naming.data_name``). An upload in progress, or a failed one, is never
visible to SQL.

A run is bounded: DuckDB's ``memory_limit``, and an interrupt after the settings' time limit. It
runs the computation's ``run_sql`` (the agreed SQL plus the enclave's per-owner unit counts),
then its release policy. Failures say which limit stopped the run, never DuckDB's message, which
may quote values from the data.
"""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from oblv_mpc.arrow_ingest import ArrowIngest
from oblv_mpc.enclave import privacy
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.ingest import Ingest
from oblv_mpc.manifest import Computation, InputTable, Manifest
from oblv_mpc.manifest.naming import data_name, quote
from oblv_mpc.protocol.messages import ARROW
from oblv_mpc.tables import CsvIngest

# Set before the configuration is locked; nothing can change them afterwards. One thread:
# parallel plans add floating-point values in an order that varies from run to run, and a
# result without noise must be the same, byte for byte, every time (found by a flaky test).
# The time zone is fixed so that no function's value depends on the host's.
_LOCKED_CONFIG = {
    "threads": 1,
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


_T = TypeVar("_T")


class RunFailed(Exception):
    """A run stopped by a limit or an error. ``reason`` names which, never the data."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Output:
    """A computation's output after release rules (``suppressed_groups`` None: not disclosed)."""

    columns: list[tuple[str, str]]
    rows: list[list[Any]]
    suppressed_groups: int | None
    dp: dict[str, Any] | None = None  # what the differentially private release applied


def _sort_key(row: list[Any]) -> tuple[Any, ...]:
    return tuple((value is None, str(type(value)), value if value is not None else 0) for value in row)


def _plain(value: Any) -> Any:
    """Result values as CBOR-friendly plain data (dates and decimals as text)."""
    if isinstance(value, dt.datetime | dt.date | dt.time | decimal.Decimal):
        return value.isoformat() if not isinstance(value, decimal.Decimal) else str(value)
    return value


class Engine:
    """DuckDB for one session."""

    def __init__(self, manifest: Manifest, settings: EnclaveSettings | None = None) -> None:
        self.manifest = manifest
        self.settings = settings or EnclaveSettings()
        config: dict[str, Any] = {**_LOCKED_CONFIG, "memory_limit": f"{self.settings.limits.compute_memory_bytes}B"}
        self.connection = duckdb.connect(":memory:", config=config)
        self.connection.execute("SET TimeZone = 'UTC'")  # an ICU option, settable only once connected
        self.connection.execute("SET lock_configuration = true")
        for party in manifest.parties:
            self.connection.execute(f"CREATE SCHEMA {quote(party)}")

    def ingest(self, table: InputTable, fmt: str) -> Ingest:
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
        name = data_name(table.party, table.table)
        self.connection.register(name, ingest.table_data())
        self.connection.execute(
            f"CREATE OR REPLACE VIEW {quote(table.party)}.{quote(table.table)} AS SELECT * FROM {quote(name)}"
        )

    def _query(self, sql: str) -> tuple[list[tuple[str, str]], list[list[Any]]]:
        """Run ``sql`` within the time and memory limits; its columns and plain rows."""

        def run() -> tuple[list[tuple[str, str]], list[list[Any]]]:
            relation = self.connection.execute(sql)
            description = relation.description or []
            rows = [[_plain(v) for v in row] for row in relation.fetchall()]
            return [(str(d[0]), str(d[1])) for d in description], rows

        return self._limited(run)

    def pooled(self, computation: Computation) -> pa.Table:
        """The rows a synthetic release is made from (its ``run_sql``: the union, with each row's unit), as Arrow."""
        if computation.synthetic is None:
            raise RuntimeError(f"{computation.name} is not a synthetic release")
        return self._limited(lambda: self.connection.sql(computation.run_sql).to_arrow_table())

    def _limited(self, run: Callable[[], _T]) -> _T:
        """``run()`` within the time and memory limits; a stop names the limit, never DuckDB's message."""
        limits = self.settings.limits
        timer = threading.Timer(limits.compute_timeout_s, self.connection.interrupt)
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
        """Run the computation within its limits, then apply its release rules.

        Rows of SQL without ORDER BY are sorted, so a result without noise is the same, byte
        for byte, however DuckDB scheduled the query. Raises :class:`RunFailed`, or
        ``oblv_mpc.manifest.rules.Withheld`` when a rule withholds the whole result.
        """
        if computation.synthetic is not None:  # its rows never leave as they are: see pooled()
            raise RuntimeError(f"{computation.name} is a synthetic release, made by oblv_mpc.synthetic")
        columns, rows = self._query(computation.run_sql or computation.sql)
        if not computation.ordered:
            rows.sort(key=_sort_key)
        if computation.dp is not None:
            columns, rows, applied = privacy.release(computation, columns, rows, noise)
            return Output(columns, rows, 0, applied)
        released = computation.policy.apply(columns, rows)
        return Output(released.columns, released.rows, released.suppressed)
