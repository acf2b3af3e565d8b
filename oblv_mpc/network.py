"""What a failed connection to the enclave means, in plain words instead of httpx's class names.

``no answer from the enclave at http://127.0.0.1:8000: ConnectError`` told a newcomer nothing
(issue 16, row 19). :func:`why` says what happened (nothing listens there, it took too long,
the connection broke off) and :func:`unreachable` makes the error the commands raise.
"""

from __future__ import annotations

import httpx

from oblv_mpc.errors import EnclaveUnreachable

_CHECK = "check that the enclave is running and the URL is right"
# Most specific first: ConnectTimeout is a TimeoutException, and so on.
_WHY: tuple[tuple[type[httpx.TransportError], str, str], ...] = (
    (httpx.ConnectTimeout, "connecting took too long", _CHECK),
    (httpx.ReadTimeout, "it did not answer in time", "the enclave may be busy or stopped; try again"),
    (httpx.WriteTimeout, "sending took too long", "the enclave may be busy or stopped; try again"),
    (httpx.PoolTimeout, "no connection was free in time", "try again"),
    (httpx.ConnectError, "could not connect (nothing listens there, or the host is unknown)", _CHECK),
    (
        httpx.RemoteProtocolError,
        "the connection broke off (the enclave stopped, or something else answers at that address)",
        "if the enclave restarted, run `mpc connect` again",
    ),
    (httpx.ReadError, "the connection broke off while reading the answer", "try again"),
    (httpx.WriteError, "the connection broke off while sending", "try again"),
    (httpx.UnsupportedProtocol, "the URL is not http:// or https://", "give the URL as http://HOST:PORT"),
    (httpx.ProxyError, "the HTTP proxy in between refused", "check your HTTP proxy settings (HTTPS_PROXY)"),
)


def why(exc: httpx.TransportError) -> tuple[str, str]:
    """What went wrong with a connection, in words, and what to check next."""
    for kind, words, hint in _WHY:
        if isinstance(exc, kind):
            return words, hint
    return "the network failed", _CHECK


def unreachable(exc: httpx.TransportError, where: str) -> EnclaveUnreachable:
    """The error for a request to ``where`` that got no answer."""
    words, hint = why(exc)
    return EnclaveUnreachable(f"no answer from the enclave at {where}: {words}", hint=hint)
