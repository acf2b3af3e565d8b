"""A TCP relay on loopback that records every byte it forwards: the operator's view of the wire.

``mpc demo`` routes every party through one, then searches what it recorded for the parties'
rows; the tests do the same. It forwards to a port on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType


class RecordingRelay:
    """Listens on 127.0.0.1, forwards each connection to ``upstream``, records both directions."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.captured = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The relay's address, to use in place of the upstream's."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RecordingRelay:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for source, target in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(source, target), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        source.settimeout(0.5)
        try:
            while not self._stop.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                with self._lock:
                    self.captured += data
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def csv_values(files: Iterable[Path], *, shortest: int = 6) -> set[bytes]:
    """What to search a recording for: every data line of each CSV, and every field that long."""
    found: set[bytes] = set()
    for path in files:
        for line in path.read_bytes().splitlines()[1:]:
            found.add(line)
            found.update(field for field in line.split(b",") if len(field) >= shortest)
    return found


_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{6,}")  # where plaintext ASCII could be, at least 6 bytes long


def found_in(wire: bytes, values: Iterable[bytes], *, progress: Callable[[int, int], None] | None = None) -> set[bytes]:
    """The ``values`` that occur in ``wire``, in time linear in the wire (not values x wire).

    ASCII values can only occur inside runs of printable bytes, which are rare in ciphertext: those
    runs are found by one regular-expression scan, and only their windows are looked up by prefix.
    Values with other bytes (few: non-ASCII text) are searched for one by one. ``progress`` gets
    (bytes scanned, total).
    """
    ascii_values: dict[bytes, list[bytes]] = {}
    others = []
    for value in set(values):
        if len(value) >= 6 and value.isascii() and all(0x20 <= b <= 0x7E for b in value):
            ascii_values.setdefault(value[:6], []).append(value)
        else:
            others.append(value)
    found = {value for value in others if value in wire}
    for run in _PRINTABLE_RUN.finditer(wire):
        text = run.group()
        for i in range(len(text) - 5):
            for value in ascii_values.get(text[i : i + 6], ()):
                if text.startswith(value, i):
                    found.add(value)
        if progress:
            progress(run.end(), len(wire))
    if progress:
        progress(len(wire), len(wire))
    return found
