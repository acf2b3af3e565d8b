"""The session's transcript events, each stamped with the time its request reached the session.

Every party reads the transcript. Stamped with the time of recording, the ``attempt`` event
(before a run) and the reader's ``fetch`` (after it) bracketed the run, and a request that waited
for the session meanwhile marked when the run ended: a non-reader learned how long a run took and
whether the time limit stopped it, an outcome for readers only. So a request takes its arrival
time when it reaches the session (:meth:`EventLog.request`), and every event it records, its
refusal included, carries that time; times never go back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

from oblv_mpc.errors import MpcError
from oblv_mpc.protocol.transcript import GENESIS, Event, make_event

Clock = Callable[[], dt.datetime]


class EventLog:
    """The hash-chained events of one session, on its clock; ``lock`` is the session's."""

    def __init__(self, clock: Clock, lock: threading.Lock) -> None:
        self._clock = clock
        self._lock = lock
        self._arrived: int | None = None  # when the request holding the lock reached the session
        self._refused = threading.local()  # per request thread: its arrival, for its refusal event
        self.events: list[Event] = []

    def now_ms(self) -> int:
        """The session clock, in milliseconds since the epoch."""
        return int(self._clock().timestamp() * 1000)

    @contextlib.contextmanager
    def request(self, arrived: int | None = None) -> Iterator[None]:
        """Hold the session lock for one request; the events it records carry ``arrived`` (now,
        unless given). If the request is refused, :meth:`refusal_arrival`, called on the same
        thread once the session has answered, gives its refusal event this time too."""
        arrived = self.now_ms() if arrived is None else arrived
        self._refused.arrived = arrived
        try:
            with self._lock:
                self._arrived = arrived
                try:
                    yield
                finally:
                    self._arrived = None
        except MpcError:
            raise  # a refusal: refusal_arrival takes the time
        except BaseException:
            self._refused.arrived = None
            raise
        self._refused.arrived = None

    def refusal_arrival(self) -> int | None:
        """When this thread's refused request reached the session (once; None if none was refused)."""
        arrived: int | None = getattr(self._refused, "arrived", None)
        self._refused.arrived = None
        return arrived

    def record(self, kind: str, data: dict[str, Any]) -> None:
        """Append an event, at its request's arrival; times never go back (lock held)."""
        prev = self.events[-1].hash if self.events else GENESIS
        time_ms = self.now_ms() if self._arrived is None else self._arrived
        if self.events:
            time_ms = max(time_ms, self.events[-1].time_ms)
        self.events.append(make_event(len(self.events), prev, time_ms, kind, data))
