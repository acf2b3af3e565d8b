"""The compute engine: one in-memory DuckDB per session, external access off, config locked.

Each party's tables live in a schema named after the party (``alice.customers``), which is how
the manifest's SQL names them: a view over the typed Arrow data of the party's last complete,
valid upload, which DuckDB scans in place. An upload in progress, or a failed one, is never
visible to SQL.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any

import duckdb

from oblv_mpc.enclave import privacy
from oblv_mpc.manifest import Computation, InputTable, Manifest
from oblv_mpc.manifest.templates import GROUP_SIZE_COLUMN, quote
from oblv_mpc.tables import CsvIngest

# Set before the configuration is locked; nothing can change them afterwards. One thread:
# parallel plans add floating-point values in an order that varies from run to run, and a
# result without noise must be the same, byte for byte, every time (found by a flaky test).
_LOCKED_CONFIG = {
    "threads": 1,
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


@dataclass(frozen=True)
class Output:
    """A computation's output after release rules."""

    columns: list[tuple[str, str]]
    rows: list[list[Any]]
    suppressed_groups: int
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

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.connection = duckdb.connect(":memory:", config=dict(_LOCKED_CONFIG))
        for party in manifest.parties:
            self.connection.execute(f"CREATE SCHEMA {quote(party)}")

    def ingest(self, table: InputTable) -> CsvIngest:
        """A streaming checker that keeps the typed data of one upload.

        It never touches this engine's connection (its key check has a DuckDB of its own), so it
        can run outside the session lock; only :meth:`commit` does, under that lock.
        """
        return CsvIngest(table, keep=True)

    def commit(self, table: InputTable, ingest: CsvIngest) -> None:
        """Make a completed upload the party's table (replacing an earlier upload)."""
        data_name = f"_data_{table.party}_{table.table}"
        self.connection.register(data_name, ingest.table_data())
        self.connection.execute(
            f"CREATE OR REPLACE VIEW {quote(table.party)}.{quote(table.table)} AS SELECT * FROM {quote(data_name)}"
        )

    def run(self, computation: Computation, *, noise: privacy.Noise = privacy.laplace) -> Output:
        """Run the computation's exact SQL, then apply its release rules.

        Rows of SQL without ORDER BY are sorted, so a result without noise is the same, byte
        for byte, however DuckDB scheduled the query.
        """
        relation = self.connection.execute(computation.sql)
        description = relation.description or []
        rows = [[_plain(v) for v in row] for row in relation.fetchall()]
        columns = [(str(d[0]), str(d[1])) for d in description]
        if not computation.ordered:
            rows.sort(key=_sort_key)
        if computation.dp is not None:
            columns, rows, applied = privacy.release(computation, columns, rows, noise)
            return Output(columns, rows, 0, applied)
        suppressed = 0
        if computation.min_group_size is not None:
            names = [c[0] for c in columns]
            if GROUP_SIZE_COLUMN not in names:
                raise RuntimeError(f"{computation.name}: min_group_size needs a {GROUP_SIZE_COLUMN} column")
            index = names.index(GROUP_SIZE_COLUMN)
            kept = [r for r in rows if r[index] is not None and r[index] >= computation.min_group_size]
            suppressed = len(rows) - len(kept)
            rows = kept
        return Output(columns, rows, suppressed)
