"""How many table uploads each party may have in progress (``Limits.max_uploads_per_party``).

The session keeps at most one upload in progress per table (a new first chunk supersedes the
old one), each holding a staging table until its final chunk. This counts, per party, the tables
with an upload that may still be in progress, and refuses a first chunk for one more table past
the limit. It errs towards counting too many, never too few: an entry leaves only when its
upload certainly ended (committed, aborted by the session, or idle as long as the session waits
before discarding it), so a party cannot get past the limit by making its uploads fail.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from oblv_mpc.errors import EnclaveRefused

# Refusals after which the session has discarded the upload the chunk names.
_ABORTING = frozenset({"upload_sequence", "input_invalid"})


@dataclass
class _Started:
    upload_id: bytes
    last_ms: int


class UploadQuota:
    """Uploads in progress per party; thread-safe."""

    def __init__(self, max_per_party: int, idle_ms: int) -> None:
        self._max = max_per_party
        self._idle_ms = idle_ms
        self._lock = threading.Lock()
        self._started: dict[str, dict[str, _Started]] = {}

    def in_progress(self, party: str) -> int:
        """Tables of ``party`` with an upload that may be in progress."""
        with self._lock:
            return len(self._started.get(party, {}))

    def begin(self, party: str, table: str, upload_id: bytes, now_ms: int) -> _Started | None:
        """Before a first chunk: refuse it past the limit, else count it. Returns what it replaced."""
        with self._lock:
            started = self._started.setdefault(party, {})
            for name in [n for n, s in started.items() if now_ms - s.last_ms > self._idle_ms]:
                del started[name]  # the session discards it too, before it takes another chunk
            previous = started.get(table)
            if previous is None and len(started) >= self._max:
                raise EnclaveRefused(
                    "too_many_uploads",
                    f"party {party!r} already has {self._max} uploads in progress; finish one first",
                )
            started[table] = _Started(upload_id, now_ms)
            return previous

    def end(
        self,
        party: str,
        table: str,
        upload_id: bytes,
        *,
        first: bool,
        final: bool,
        refusal: str | None,
        replaced: _Started | None,
        now_ms: int,
    ) -> None:
        """After the session handled a chunk (``refusal`` is its code, or None if it was taken)."""
        with self._lock:
            started = self._started.get(party, {})
            entry = started.get(table)
            if refusal is not None and first:
                if replaced is None:
                    started.pop(table, None)  # the refused first chunk started nothing
                else:
                    started[table] = replaced  # it may still be in progress
            elif entry is None or entry.upload_id != upload_id:
                return
            elif (refusal is None and final) or refusal in _ABORTING:
                del started[table]
            elif refusal is None:
                entry.last_ms = now_ms
