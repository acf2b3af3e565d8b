"""What turns an input table's bytes into typed data: the :class:`Ingest` protocol.

An ingest takes a table's bytes in pieces of any size, checks them against the manifest's
schema as they come, and at the end says what the whole table amounted to and hands over its
typed columns. The same ingest runs on the client before anything is sent and in the enclave
while chunks arrive (:mod:`oblv_mpc.enclave.uploads`), outside the session lock: it touches no
shared state. :class:`oblv_mpc.tables.CsvIngest` reads CSV (pieces of any size);
:class:`oblv_mpc.arrow_ingest.ArrowIngest` reads an Arrow IPC stream (pieces of whole IPC
messages). Each upload chunk names the format
(:data:`oblv_mpc.protocol.messages.UPLOAD_FORMATS`); the engine picks the ingest. Both make
columns of the types in :data:`ARROW_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from oblv_mpc.manifest import ColumnType, InputTable

# The Arrow type each column type is held as, whichever format it arrived in.
ARROW_TYPES = {
    ColumnType.TEXT: pa.string(),
    ColumnType.INTEGER: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.DATE: pa.date32(),
    ColumnType.TIMESTAMP: pa.timestamp("us"),
}


def arrow_schema(table: InputTable) -> pa.Schema:
    """The table's columns, in the manifest's order, as an Arrow schema."""
    return pa.schema([(c.name, ARROW_TYPES[c.type]) for c in table.columns])


@dataclass(frozen=True)
class IngestSummary:
    """What a complete, valid table amounted to: its rows, and the size and SHA-256 of its bytes."""

    rows: int
    size: int
    sha256: str


class Ingest(Protocol):
    """Checks (and may keep) one table's bytes, fed in order; raises ``InputDataError`` on bad data."""

    def feed(self, data: bytes) -> None:
        """Take the next piece of the table's bytes."""
        ...

    def finish(self) -> IngestSummary:
        """End of the table: check what is left and the whole-table rules."""
        ...

    def table_data(self) -> pa.Table:
        """The whole table, typed, in the manifest's column order (after :meth:`finish`)."""
        ...
