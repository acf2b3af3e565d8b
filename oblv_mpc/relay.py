"""A TCP relay on loopback that records every byte it forwards: the operator's view of the wire.

``mpc demo`` routes every party through one, then searches what it recorded for the parties'
rows; the tests do the same. It forwards to a port on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable
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
