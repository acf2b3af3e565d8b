"""The compute engine: one in-memory DuckDB per session, external access off, config locked.

Each party's tables live in a schema named after the party (``alice.customers``), which is how
the manifest's SQL names them. Uploads load into a staging table in the party's schema and are
renamed into place only once complete and valid; a failed upload's table is dropped.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any

import duckdb

from oblv_mpc.manifest import Computation, InputTable, Manifest
from oblv_mpc.manifest.templates import GROUP_SIZE_COLUMN, quote
from oblv_mpc.tables import CsvIngest

# Set before the configuration is locked; nothing can change them afterwards.
_LOCKED_CONFIG = {
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

    @staticmethod
    def staging_name(table: InputTable, upload_id: bytes) -> str:
        return f"{quote(table.party)}.{quote('_upload_' + upload_id.hex())}"

    def ingest(self, table: InputTable, upload_id: bytes) -> CsvIngest:
        """A streaming loader into a fresh staging table for this upload."""
        return CsvIngest(table, self.connection, target=self.staging_name(table, upload_id))

    def commit(self, table: InputTable, upload_id: bytes) -> None:
        """Put a completed upload in place of the table (replacing an earlier upload)."""
        self.connection.execute(f"DROP TABLE IF EXISTS {quote(table.party)}.{quote(table.table)}")
        staging = self.staging_name(table, upload_id)
        self.connection.execute(f"ALTER TABLE {staging} RENAME TO {quote(table.table)}")

    def discard(self, table: InputTable, upload_id: bytes) -> None:
        self.connection.execute(f"DROP TABLE IF EXISTS {self.staging_name(table, upload_id)}")

    def run(self, computation: Computation) -> Output:
        """Run the computation's exact SQL, then apply its release rules."""
        cursor = self.connection.cursor()
        try:
            relation = cursor.execute(computation.sql)
            description = relation.description or []
            rows = [[_plain(v) for v in row] for row in relation.fetchall()]
        finally:
            cursor.close()
        columns = [(str(d[0]), str(d[1])) for d in description]
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
