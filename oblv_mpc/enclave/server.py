"""Serving the enclave app with uvicorn: on a socket we bind first (so the port is known before
the server starts, port 0 included), in the foreground or in a background thread.

The server enforces the connection limits of :class:`~oblv_mpc.limits.Limits`: at most
``max_connections`` connections and requests at once (uvicorn answers 503 past it, before
reading any body) and ``keep_alive_s`` for idle connections. Body size, read deadline and the
in-flight byte budget are the app's (:mod:`oblv_mpc.enclave.bodies`).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from oblv_mpc.limits import DEFAULT_LIMITS, Limits


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()  # a port that is taken leaves no socket behind
        raise
    return sock


def listen_vsock(port: int) -> socket.socket:
    """A listening AF_VSOCK socket on ``port`` for any CID: how a Nitro Enclave is reached.

    The parent instance forwards TCP to it (docs/deploy-nitro.md); inside the enclave there is
    no other network.
    """
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:
        raise OSError("this Python has no AF_VSOCK support (Linux only)")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((socket.VMADDR_CID_ANY, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    """How to reach a listening socket: ``http://host:port`` or ``vsock://cid:port``."""
    if sock.family == getattr(socket, "AF_VSOCK", None):
        cid, port = sock.getsockname()[:2]
        return f"vsock://{cid}:{port}"
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app: ASGIApp, limits: Limits) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=5,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers: bytes
    )
    return uvicorn.Server(config)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_forever(app: ASGIApp, sock: socket.socket, limits: Limits = DEFAULT_LIMITS) -> None:
    """Serve until Ctrl-C or SIGTERM, then return normally.

    uvicorn shuts down gracefully on either signal, then re-raises it with the handlers it found
    installed; ours turn that into KeyboardInterrupt, which ends the serving here.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _server(app, limits).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


class ServerThread:
    """The app on a loopback port in a background thread, for the demo and tests."""

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self._sock = listen(host, port)
        self.url = url_of(self._sock)
        self.port: int = self._sock.getsockname()[1]
        self._server = _server(app, limits)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the enclave server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
