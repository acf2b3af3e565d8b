"""Table uploads in progress: who may send a chunk, where it goes, its check, its digest.

Each upload is a :class:`~oblv_mpc.enclave.streams.Stream` whose content is the table and its
:class:`~oblv_mpc.ingest.Ingest`; one upload per table at a time (a new first chunk supersedes
the old upload), an upload id never used twice, at most ``Limits.max_uploads_per_party`` per
party, discarded after ``Limits.idle_timeout_s`` without a chunk. The session calls
:meth:`Uploads.place` and :meth:`Uploads.settle` under its lock, and :meth:`Uploads.check`
(the slow part, the schema check) without it, while the upload is marked busy.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from oblv_mpc.enclave.streams import SEQUENCE, Stream, Streams
from oblv_mpc.errors import EnclaveRefused, InputDataError
from oblv_mpc.ingest import Ingest, IngestSummary
from oblv_mpc.limits import Limits
from oblv_mpc.manifest import InputTable, Manifest, Role
from oblv_mpc.protocol.messages import Digest, UploadChunk


@dataclass(frozen=True)
class Staged:
    """What an upload in progress fills: its table's ingest for the upload's format."""

    table: InputTable
    ingest: Ingest
    format: str


Upload = Stream[Staged]


class Uploads:
    """The session's uploads in progress (not thread-safe: see the module's docstring).

    ``ingest`` makes the ingest for a table and a format (the engine's); ``on_discard`` is told
    of every upload discarded, with the reason (the session records it in the transcript).
    """

    def __init__(
        self,
        manifest: Manifest,
        limits: Limits,
        ingest: Callable[[InputTable, str], Ingest],
        on_discard: Callable[[Upload, str], None],
    ) -> None:
        self.manifest = manifest
        self._ingest = ingest
        self._streams: Streams[Staged] = Streams(
            "upload",
            idle_ms=limits.idle_timeout_s * 1000,
            max_per_party=limits.max_uploads_per_party,
            too_many="too_many_uploads",
            exclusive=True,
            remember_ids=True,
            on_discard=on_discard,
        )

    def in_progress(self, party: str | None = None) -> int:
        """How many uploads are in progress (of ``party``, if given)."""
        return self._streams.in_progress(party)

    def authorize(self, party: str, table_name: str, frozen: Collection[str]) -> InputTable:
        """The table, if ``party`` may upload it now: its owner, a contributor, and not frozen."""
        table = self.manifest.inputs.get(table_name)
        if table is None:
            raise EnclaveRefused("unknown_table", f"{table_name!r} is not an input of this session")
        if table.party != party or not self.manifest.parties[party].has(Role.CONTRIBUTOR):
            raise EnclaveRefused("forbidden", f"party {party!r} may not upload {table_name} (it is {table.party}'s)")
        if table_name in frozen:
            raise EnclaveRefused("frozen", f"{table_name} is frozen: a computation has already used it")
        return table

    def place(self, party: str, chunk: UploadChunk, frozen: Collection[str], now_ms: int) -> Upload:
        """Authorize the chunk and place it in its upload, which is busy until settled (lock held).

        The first chunk names the upload's format; every later one must name the same.
        """
        table = self.authorize(party, chunk.table, frozen)
        kind = chunk.format
        upload = self._streams.accept(
            party, chunk.table, chunk.frame, now_ms, lambda: Staged(table, self._ingest(table, kind), kind)
        )
        if upload.content.format != kind:
            self._streams.release(upload)
            self._streams.discard(upload, "format changed")
            raise EnclaveRefused(
                SEQUENCE, f"chunk {chunk.frame.index} is {kind}, its upload {upload.content.format}; upload discarded"
            )
        return upload

    @staticmethod
    def check(upload: Upload, chunk: UploadChunk) -> IngestSummary | None:
        """Hash and check the chunk's bytes; on the final chunk, the whole table's summary (lock not held)."""
        upload.take(chunk.frame.data)
        upload.content.ingest.feed(chunk.frame.data)
        return upload.content.ingest.finish() if chunk.frame.final else None

    def failed(self, upload: Upload, error: BaseException) -> None:
        """The check failed: nothing of the upload is kept (lock held)."""
        self._streams.release(upload)
        self._streams.discard(upload, "invalid data" if isinstance(error, InputDataError) else "not processed")

    def settle(self, upload: Upload, now_ms: int) -> None:
        """The chunk was checked: expect the next, unless the upload was discarded meanwhile (lock held)."""
        self._streams.advance(upload, now_ms)

    def complete(self, upload: Upload, claimed: Digest | None, frozen: Collection[str]) -> None:
        """The last chunk was checked: the table must still be open, the bytes be what the client
        says it sent (lock held). The upload then leaves; its ingest is the session's to commit."""
        name = upload.content.table.qualified
        if name in frozen:
            self._streams.discard(upload, "frozen")
            raise EnclaveRefused("frozen", f"{name} is frozen: a computation has already used it")
        if claimed is None or (claimed.sha256, claimed.size) != (upload.sha256, upload.size):
            self._streams.discard(upload, "content does not match the client's digest")
            raise EnclaveRefused(
                SEQUENCE, "the data received does not match the digest the client sent; upload discarded"
            )
        self._streams.finish(upload)
