"""What turns an input table's bytes into typed data: the :class:`Ingest` protocol.

An ingest takes a table's bytes in pieces of any size, checks them against the manifest's
schema as they come, and at the end says what the whole table amounted to and hands over its
typed columns. The same ingest runs on the client before anything is sent and in the enclave
while chunks arrive (:mod:`oblv_mpc.enclave.uploads`), outside the session lock: it touches no
shared state. :class:`oblv_mpc.tables.CsvIngest` reads CSV; another format (Arrow IPC, say)
is another class with these three methods, chosen by the engine for the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa


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
