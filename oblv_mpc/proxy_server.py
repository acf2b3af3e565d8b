"""Where the attested proxy listens, and serving it there: ``mpc connect --lport/--unix-socket``.

:func:`listening` binds the proxy's socket before anything else happens, so a port that is taken
or a socket path that is unsafe is refused before the enclave is even contacted: on
``127.0.0.1:PORT``, or on a Unix socket that only its owner can connect to
(:func:`oblv_mpc.proxy.listen_unix`). :func:`serve` then runs a :class:`~oblv_mpc.proxy.Proxy`
on it until Ctrl-C or SIGTERM. What the proxy forwards, and to whom, is :mod:`oblv_mpc.proxy`'s.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave.server import listen, serve_forever, url_of
from oblv_mpc.errors import UsageError
from oblv_mpc.proxy import Proxy, listen_unix

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ProxyListener:
    """The proxy's listening socket: ``where`` to reach it, and the Unix socket's path if it is one."""

    sock: socket.socket
    where: str
    unix_path: Path | None


@contextlib.contextmanager
def listening(*, port: int | None = None, unix_socket: Path | None = None) -> Iterator[ProxyListener]:
    """Listen on ``127.0.0.1:port`` (0: any free port) or on ``unix_socket``; closed on exit.

    Exactly one of the two. A taken port or an unsafe socket path raises
    :class:`~oblv_mpc.errors.UsageError`; a Unix socket file is removed when it closes.
    """
    if (port is None) == (unix_socket is None):
        raise ValueError("give a port or a Unix socket path, exactly one")
    if unix_socket is not None:
        listener = listen_unix(unix_socket)
        try:
            yield ProxyListener(listener.sock, f"unix:{listener.path}", listener.path)
        finally:
            listener.close()
        return
    try:
        sock = listen(LOOPBACK, port or 0)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}", hint="choose another --lport (0: any)"
        ) from None
    with sock:
        yield ProxyListener(sock, url_of(sock), None)


def serve(
    client: EnclaveClient,
    listener: ProxyListener,
    *,
    log: Callable[[str], None],
    allow_origins: Iterable[str] = (),
) -> None:
    """Forward requests on ``listener`` to ``client``'s enclave until Ctrl-C or SIGTERM.

    ``log`` receives a line per event (lines quote what callers sent: render them as plain
    text). ``allow_origins`` are the web origins whose pages may use the proxy, and so act as
    the party: the caller should warn about each.
    """
    proxy = Proxy(client, log, allow_origins=allow_origins)
    serve_forever(proxy.app, listener.sock)
