"""Replay protection: the request ids each party sent, remembered by a monotonic clock, bounded.

A request is fresh when its signed time is within the window of the enclave's wall clock
(checked by the service) and its id was not seen before. The wall clock can jump (the host
sets it); so how long an id is remembered is measured on a monotonic clock, which does not.
A jump forward then back cannot make the enclave forget.

Memory is bounded per party (``Limits.max_replay_entries_per_party``). An id leaves when it is
older than ``keep_s`` on the monotonic clock or, past the bound, when it is the oldest. Either
way the party's *floor* rises to that request's signed time, and a request signed at or before
the floor is refused as stale: a forgotten request cannot come back, whatever the clocks do.
A party that floods only raises its own floor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from oblv_mpc.errors import EnclaveRefused

Monotonic = Callable[[], float]


@dataclass
class _Memory:
    seen: dict[bytes, tuple[float, int]] = field(default_factory=dict)  # id -> (monotonic s, signed ms)
    floor_ms: int | None = None


class ReplayGuard:
    """Admits each party's request id once; thread-safe."""

    def __init__(self, keep_s: float, max_per_party: int, monotonic: Monotonic = time.monotonic) -> None:
        self._keep_s = keep_s
        self._max = max_per_party
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._parties: dict[str, _Memory] = {}

    def __len__(self) -> int:
        """How many request ids are remembered, all parties together."""
        with self._lock:
            return sum(len(memory.seen) for memory in self._parties.values())

    def admit(self, party: str, request_id: bytes, time_ms: int) -> None:
        """Remember ``request_id``, or refuse it as ``replayed`` or ``stale``."""
        with self._lock:
            now = self._monotonic()
            memory = self._parties.setdefault(party, _Memory())
            while memory.seen:  # insertion order is monotonic order: the oldest come first
                oldest = next(iter(memory.seen))
                if now - memory.seen[oldest][0] <= self._keep_s:
                    break
                self._forget(memory, oldest)
            if request_id in memory.seen:
                raise EnclaveRefused("replayed", "this request was already received; a replay is refused")
            if memory.floor_ms is not None and time_ms <= memory.floor_ms:
                raise EnclaveRefused(
                    "stale", "this request is no newer than requests the enclave no longer remembers; send a new one"
                )
            if len(memory.seen) >= self._max:
                self._forget(memory, next(iter(memory.seen)))
            memory.seen[request_id] = (now, time_ms)

    @staticmethod
    def _forget(memory: _Memory, request_id: bytes) -> None:
        _, signed_ms = memory.seen.pop(request_id)
        memory.floor_ms = signed_ms if memory.floor_ms is None else max(memory.floor_ms, signed_ms)
