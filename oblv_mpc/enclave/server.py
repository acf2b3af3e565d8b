"""Serving the enclave app with uvicorn: on a socket we bind first (so the port is known before
the server starts, port 0 included), in the foreground or in a background thread.

The server enforces the connection limits of :class:`~oblv_mpc.limits.Limits`: at most
``max_connections`` connections and requests at once (uvicorn answers 503 past it, before
reading any body), ``keep_alive_s`` for idle connections, and ``header_timeout_s`` for a
request's line and headers (:class:`HeaderDeadline`). Body size, read deadline and the in-flight
byte budget are the app's (:mod:`oblv_mpc.enclave.bodies`).
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import threading
import time
from types import TracebackType

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from oblv_mpc.errors import UsageError
from oblv_mpc.limits import DEFAULT_LIMITS, Limits


def listen(host: str, port: int, *, option: str = "--port") -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    A port that is taken (or may not be used) raises :class:`~oblv_mpc.errors.UsageError` naming
    it and ``option``, the flag that chooses another; no socket is left behind.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        in_use = exc.errno == errno.EADDRINUSE
        why = "something else is listening there" if in_use else str(exc.strerror)
        raise UsageError(
            f"cannot listen on {host}:{port}: {why}",
            hint=f"stop the other program, or choose another {option} (0: any free port)"
            if in_use
            else f"choose another {option}, or another address",
        ) from None
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


class HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol (h11), and a deadline for each request's line and headers.

    uvicorn arms its keep-alive timer only once a response is complete, and cancels it at the
    first byte of the next request: a connection that sends nothing, or a few bytes of a request
    and then nothing, held one of the ``max_connections`` slots until its client went, and enough
    of them made every request a 503. Here a deadline of ``header_timeout_s`` runs from when the
    connection opens, and again from when each response ends; a connection still waiting for a
    request's headers when it passes is closed. Once the headers are in, the body's own deadline
    applies (:mod:`oblv_mpc.enclave.bodies`).
    """

    header_timeout_s: float = DEFAULT_LIMITS.header_timeout_s
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        """A new connection: its first request's headers are awaited from now."""
        super().connection_made(transport)
        self._await_headers()

    def handle_events(self) -> None:
        """uvicorn's; and once a request's headers are in, no deadline for them."""
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request's headers are in (or the connection ends)
            self._stop_deadline()

    def on_response_complete(self) -> None:
        """uvicorn's; and the next request's headers are awaited from now.

        A response sent before its request's body ended (a route that reads no body, a refusal)
        leaves the rest of that body to no one: a byte of it cancelled uvicorn's keep-alive timer
        for good and the connection held its slot, so such a connection is closed instead.
        """
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            self._await_headers()  # the next request's, unless a pipelined one is already in
        elif self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, the deadline cancelled."""
        self._stop_deadline()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._stop_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE:
            self.timeout_keep_alive_handler()  # closes the connection, as an idle keep-alive one


def _protocol(limits: Limits) -> type[HeaderDeadline]:
    class Protocol(HeaderDeadline):
        header_timeout_s = limits.header_timeout_s

    return Protocol


def _server(app: ASGIApp, limits: Limits) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http=_protocol(limits),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=5,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive_s,
        # bytes h11 buffers while a request's line and headers are incomplete; a whole header
        # block that arrives in one read of the socket (up to 256 KiB, asyncio's) is parsed whole
        h11_max_incomplete_event_size=16 * 1024,
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
