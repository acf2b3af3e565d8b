"""The attested local proxy: `mpc connect ... --lport 3030`, as Oblivious's `oblv connect` offers.

A plain HTTP server on 127.0.0.1 (or on a Unix socket) that the party's own programs call. Each
request (method, path, query, the headers that matter, and the body, read and sent in sealed
chunks so memory stays flat) is sealed to the verified enclave and signed with the party's key;
the answer is opened and checked against the enclave's attested signing key before it is
returned. The proxy re-attests before the attestation's leaf certificate expires, and whenever
the enclave's keys change (a restart): until it has verified the enclave again it forwards
nothing, and says so.

Who may use it (docs/fastenclaves.md, "Who may use the proxy"): whatever it forwards is signed
as the party, so before anything is sealed :func:`check_caller` refuses a request whose ``Host``
is not the proxy's own loopback address (DNS rebinding) and any request a web page made
(``Origin``, ``Sec-Fetch-*``), unless the page's origin was explicitly allowed. On a multi-user
machine :func:`listen_unix` serves it on a socket that only its owner can connect to.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import socket
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from oblv_mpc.client import EnclaveClient
from oblv_mpc.errors import (
    AttestationError,
    EnclaveRefused,
    EnclaveUnreachable,
    MpcError,
    ProtocolError,
    UsageError,
)
from oblv_mpc.protocol.answers import HttpAnswer
from oblv_mpc.protocol.messages import HttpChunk, HttpHead

CHUNK_BYTES = 1024 * 1024
REATTEST_BEFORE = dt.timedelta(minutes=10)
_DROP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHOWN_CHARS = 120


def _shown(text: str) -> str:
    """Text from a request, safe for a log line: control characters escaped, length capped."""
    return repr(text[:_SHOWN_CHARS])[1:-1]


@dataclass(frozen=True)
class Refusal:
    """Why the proxy will not act for a request: the HTTP status and a reason to show."""

    status: int
    code: str
    reason: str
    hint: str

    def response(self) -> JSONResponse:
        """The answer: a JSON error; nothing was sealed, signed or sent to the enclave."""
        body = {"error": self.reason, "code": self.code, "hint": self.hint, "forwarded": False}
        return JSONResponse(body, status_code=self.status)


def normalize_origin(text: str) -> str:
    """An ``--allow-origin`` value as browsers serialize an ``Origin``: ``scheme://host[:port]``.

    Exact matching needs one spelling: the scheme and host lowercased, the default port left out
    (RFC 6454 §6.2). ``null``, wildcards, paths, user names and non-ASCII hosts are refused.
    """
    hint = "give one origin as the browser sends it, e.g. --allow-origin https://app.example:8443"
    if text.strip() in ("null", "*", ""):
        raise UsageError(f"--allow-origin {text!r} would allow any page (or sandboxed ones): refused", hint=hint)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"--allow-origin {text!r} is not an origin: {exc}", hint=hint) from None
    host = parts.hostname
    if parts.scheme.lower() not in _DEFAULT_PORTS or not host or not host.isascii() or "*" in host:
        raise UsageError(f"--allow-origin {text!r} is not an http(s) origin with an ASCII host", hint=hint)
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"--allow-origin {text!r} has more than scheme, host and port", hint=hint)
    scheme = parts.scheme.lower()
    shown_host = f"[{host}]" if ":" in host else host
    suffix = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{shown_host}{suffix}"


def _host_matches(server: tuple[str, int | None] | None, host: str) -> bool:
    """Whether ``Host`` names the address this connection arrived on (from the listening socket)."""
    if server is None:
        return False
    address, port = server
    if port is None:  # a Unix socket: only the name curl and httpx send for it
        name, _, digits = host.partition(":")
        return name == "localhost" and (digits == "" or (digits.isascii() and digits.isdigit()))
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if not ip.is_loopback:
        return False
    names = {f"[{ip}]" if ip.version == 6 else str(ip), "localhost"}
    accepted = {f"{name}:{port}" for name in names} | (names if port == 80 else set())
    return host in accepted


def check_caller(
    server: tuple[str, int | None] | None, method: str, headers: Headers, allowed_origins: frozenset[str]
) -> Refusal | None:
    """Why a request may not be forwarded as the party, or None if it may.

    ``server`` is the listening socket's own address as the ASGI server reports it (host and
    port, or a Unix socket's path and None). The checks, in order:

    1. ``Host`` is exactly that loopback address and port, or ``localhost`` with the port: a page
       reaching the proxy through DNS rebinding sends its own name (``evil.example:3030``).
    2. No ``Origin``, unless it is one of ``allowed_origins``, compared exactly: browsers send it
       on every cross-origin request and on every POST, including ``text/plain`` ones that need
       no CORS preflight; ``null`` (sandboxed frames, ``file://``) is never allowed.
    3. No ``Sec-Fetch-*`` headers, except those of the user's own navigation (``Sec-Fetch-Site:
       none``, mode ``navigate``, destination ``document``, a GET or HEAD): a page's requests
       carry ``same-origin``, ``same-site`` (any other port on 127.0.0.1) or ``cross-site``.
    """
    for name in ("host", "origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest"):
        if len(headers.getlist(name)) > 1:
            return Refusal(400, "ambiguous_request", f"more than one {name} header", "send each header once")
    host = headers.get("host", "").lower()
    if not _host_matches(server, host):
        mine = "an unknown address" if server is None else f"{server[0]}:{server[1]}" if server[1] else "a Unix socket"
        return Refusal(
            421,
            "wrong_host",
            f"Host '{_shown(host)}' does not name this proxy ({mine}): a web page using DNS rebinding?",
            "address the proxy as http://127.0.0.1:PORT or http://localhost:PORT (http://localhost/ on a Unix socket)",
        )
    origin = headers.get("origin")
    if origin is not None:
        if origin in allowed_origins:
            return None
        return Refusal(
            403,
            "browser_request",
            f"requests from web pages are refused: Origin '{_shown(origin)}' is not allowed",
            "if you trust that page, restart the proxy with --allow-origin ORIGIN (exact scheme, host and port)",
        )
    site, mode, dest = (headers.get(f"sec-fetch-{name}") for name in ("site", "mode", "dest"))
    if site is None and mode is None and dest is None:
        return None  # not a browser: curl, httpx, scripts
    if site == "none" and mode in (None, "navigate") and dest in (None, "document") and method in ("GET", "HEAD"):
        return None  # the user typed the address or opened a bookmark
    return Refusal(
        403,
        "browser_request",
        "requests from web pages are refused: "
        + ", ".join(f"Sec-Fetch-{k} '{_shown(v)}'" for k, v in (("Site", site), ("Mode", mode), ("Dest", dest)) if v),
        "call the proxy from a program (curl, httpx), not from a web page",
    )


@dataclass
class UnixListener:
    """A listening Unix socket that only its owner can connect to, and the file that is it."""

    path: Path
    sock: socket.socket
    _inode: tuple[int, int]

    def close(self) -> None:
        """Stop listening and remove the socket file, if it is still the one we made."""
        self.sock.close()
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (now.st_dev, now.st_ino) == self._inode:
            os.unlink(self.path)


def _remove_stale_socket(path: Path, me: int) -> None:
    """Clear the way for a new socket at ``path``: only a dead socket of ours is removed."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    keep = "choose another path, or remove it yourself if you know what it is"
    if not stat.S_ISSOCK(found.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(found.st_mode) else "not a socket"
        raise UsageError(f"{path} exists and is {kind}: refusing to replace it", hint=keep)
    if found.st_uid != me:
        raise UsageError(f"{path} is a socket of another user (uid {found.st_uid}): refusing to use it", hint=keep)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: a stale socket of ours, e.g. from a killed proxy
        return
    except OSError as exc:
        raise UsageError(
            f"{path} is a socket that cannot be probed ({exc}): refusing to replace it", hint=keep
        ) from None
    finally:
        probe.close()
    raise UsageError(f"{path}: another process is listening on it", hint="stop the other proxy, or choose another path")


def listen_unix(path: Path) -> UnixListener:
    """A listening Unix socket at ``path``, mode 0600: only this user can connect to it.

    Refused: a folder that another user could replace the socket in (owned by someone else, or
    writable by others without the sticky bit), a path that exists and is not a socket (a file, a
    symbolic link), another user's socket, a socket someone listens on. A stale socket of ours
    is removed. The socket is created under umask 0177 (process-wide for that instant: call this
    before starting threads), so it is never connectable by others, not even briefly.
    """
    me = os.geteuid()
    path = path.absolute()
    folder = path.parent
    try:
        where = os.stat(folder)
    except OSError as exc:
        raise UsageError(
            f"cannot use {folder} for the socket: {exc.strerror}", hint="create it with mode 0700"
        ) from None
    if where.st_uid not in (me, 0):
        raise UsageError(f"{folder} belongs to another user (uid {where.st_uid}), who could replace the socket")
    if where.st_mode & 0o022 and not where.st_mode & stat.S_ISVTX:
        raise UsageError(
            f"{folder} is writable by other users, who could replace the socket",
            hint="use a folder of your own with mode 0700, e.g. $XDG_RUNTIME_DIR",
        )
    _remove_stale_socket(path, me)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(previous)
    made = os.lstat(path)
    listener = UnixListener(path, sock, (made.st_dev, made.st_ino))
    if made.st_uid != me or stat.S_IMODE(made.st_mode) != 0o600:
        listener.close()
        raise MpcError(f"the socket {path} was made with mode {stat.S_IMODE(made.st_mode):o}, not 600: refusing")
    sock.listen(128)
    return listener


class Proxy:
    """Forwards local HTTP requests to the enclave's own routes, sealed and signed.

    ``allow_origins``: web origins (``https://app.example``) whose pages may use the proxy, and
    so act as the party; by default none. The caller should warn about each (the CLI does).
    """

    def __init__(
        self,
        client: EnclaveClient,
        log: Callable[[str], None],
        *,
        clock: Callable[[], dt.datetime] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        allow_origins: Iterable[str] = (),
    ) -> None:
        self.client = client
        self.log = log
        self.clock = clock or client.clock  # one clock for the attestation it checks and its expiry
        self.chunk_bytes = chunk_bytes
        self.allowed_origins = frozenset(normalize_origin(origin) for origin in allow_origins)
        self._lock = threading.Lock()
        self.verified = client.connection is not None
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=_METHODS)])

    def _ensure_verified(self) -> None:
        """Re-attest when there is no verified enclave or its leaf certificate is about to expire."""
        with self._lock:
            connection = self.client.connection
            expiring = connection is not None and connection.attestation.leaf_not_after - self.clock() < REATTEST_BEFORE
            if connection is not None and self.verified and not expiring:
                return
            self.verified = False
            connection = self.client.connect()  # raises if verification fails: nothing is forwarded
            self.verified = True
            pcr0 = connection.attestation.pcrs[0].hex()[:16]
            self.log(f"enclave verified: instance {connection.instance.hex()[:12]}..., PCR0 {pcr0}...")

    async def _handle(self, request: Request) -> Response:
        """Check who is asking (before anything is sealed or sent), then forward."""
        refusal = check_caller(request.scope.get("server"), request.method, request.headers, self.allowed_origins)
        if refusal is not None:
            self.log(f"refused {request.method} {_shown(request.url.path)}: {refusal.reason}")
            return refusal.response()
        origin = request.headers.get("origin")
        if origin is None:
            return await self._forward(request)
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            response = self._preflight(request)  # the browser asking, not the page: nothing to sign
        else:
            response = await self._forward(request, origin)
        response.headers["access-control-allow-origin"] = origin
        response.headers["vary"] = "Origin"
        return response

    @staticmethod
    def _preflight(request: Request) -> Response:
        """The CORS preflight answer for an allowed origin (Fetch standard, CORS protocol)."""
        headers = {"access-control-allow-methods": ", ".join(_METHODS), "access-control-max-age": "600"}
        asked = request.headers.get("access-control-request-headers")
        if asked:
            headers["access-control-allow-headers"] = asked
        if request.headers.get("access-control-request-private-network") == "true":
            headers["access-control-allow-private-network"] = "true"  # Chrome: public page -> loopback
        return Response(status_code=204, headers=headers)

    async def _forward(self, request: Request, origin: str | None = None) -> Response:
        try:
            await run_in_threadpool(self._ensure_verified)
        except (AttestationError, ProtocolError, EnclaveRefused, EnclaveUnreachable) as exc:
            self.log(
                f"refusing to forward {request.method} {_shown(request.url.path)}: enclave not verified: {exc.message}"
            )
            return JSONResponse(
                {"error": "the enclave could not be verified; nothing was forwarded", "detail": exc.message},
                status_code=502,
            )
        path = "/" + request.path_params["path"]
        headers = tuple((k, v) for k, v in request.headers.items() if k.lower() not in _DROP)
        head = HttpHead(request.method, path, request.url.query, headers)
        try:
            sent = await run_in_threadpool(
                self.client.send_stream,
                lambda frame, _digest: HttpChunk(frame, head if frame.index == 0 else None),
                _blocking(request.stream(), asyncio.get_running_loop()),
                chunk_bytes=self.chunk_bytes,
            )
            answer = HttpAnswer.from_cbor(sent.answer)
        except EnclaveRefused as exc:
            if exc.code in ("enclave_restarted", "cannot_open"):
                self.verified = False
                self.log("the enclave restarted (its keys changed): re-verifying before forwarding anything")
                try:
                    await run_in_threadpool(self._ensure_verified)
                except MpcError as again:
                    return JSONResponse(
                        {"error": "the enclave restarted and could not be verified again", "detail": again.message},
                        status_code=502,
                    )
                return JSONResponse(
                    {"error": "the enclave restarted; the proxy verified it again; retry the request"}, status_code=503
                )
            self.log(f"{request.method} {_shown(path)}: refused by the enclave ({exc.code}): {_shown(exc.reason)}")
            return JSONResponse({"error": exc.reason, "code": exc.code}, status_code=403)
        except MpcError as exc:
            self.log(f"{request.method} {_shown(path)}: not forwarded: {_shown(exc.message)}")
            return JSONResponse({"error": exc.message}, status_code=502)
        kept = {k: v for k, v in answer.headers if not _dropped_answer_header(k)}
        source = f" for page {origin}" if origin else ""
        self.log(
            f"{self.client.party.name} {request.method} {_shown(path)} -> {answer.status} "
            f"({sent.digest.size} B in, {len(answer.body)} B out){source}"
        )
        return Response(answer.body, status_code=answer.status, headers=kept)


def _blocking(pieces: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The request body's pieces, read on the event loop by a worker thread that waits for each:
    the body is sealed and sent as it arrives, never held whole."""

    async def following() -> bytes:
        return await anext(pieces)

    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(following(), loop).result()
        except StopAsyncIteration:
            return


def _dropped_answer_header(name: str) -> bool:
    """Hop-by-hop headers, and CORS ones: the proxy, not a route, decides which pages may read."""
    lowered = name.lower()
    return lowered in _DROP or lowered.startswith("access-control-")
