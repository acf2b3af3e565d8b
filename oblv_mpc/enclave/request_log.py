"""One log line per request the enclave answers: what `mpc enclave serve` prints as it serves.

``POST /v1/upload 200 alice 4,194,653 B in, 341 B out, 38 ms``: the method, the route (the
path, never the query string: a nonce is no one's business), the HTTP status, the party whose
signature verified (``-`` before one did), the body bytes each way and the time taken; then what
only the enclave knows: the code it refused with (``refused stale``), or how a FastEnclaves
route answered (``app 409``, ``app raised KeyError``: the class only, never the exception's
text, which may quote a party's data).

Never in a line: a body, a value, a header, a query string, the inner path of a FastEnclaves
request. Who sees the lines: whoever reads the enclave's output. A production Nitro Enclave has
no console outside debug mode, so there nobody does; `mpc enclave serve` on a machine prints
them to the operator, who learns which party called which operation when, and how large the
bodies were, which it could mostly tell from the network anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Keys of the request's state (``request.state``, the ASGI scope's "state") the handlers set.
PARTY = "oblv_mpc_party"
NOTE = "oblv_mpc_note"
_SHOWN_CHARS = 120


def note(state: Any, *, party: str | None = None, text: str | None = None) -> None:
    """Record, for the request's log line, who the request came from and what became of it."""
    if party is not None:
        setattr(state, PARTY, party)
    if text is not None:
        setattr(state, NOTE, text)


def _shown(path: str) -> str:
    """A path from the request line, safe and short for a log line."""
    return repr(path[:_SHOWN_CHARS])[1:-1]


class RequestLog:
    """ASGI middleware: after each HTTP request, one line to ``log`` (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, log: Callable[[str], None], clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.app = app
        self.log = log
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request through the app, counting bytes; then log it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        started = self.clock()
        counts = {"in": 0, "out": 0, "status": 0}

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, counted_send)
        finally:
            ms = (self.clock() - started) * 1000
            status = counts["status"] or 500  # nothing sent: the server answers 500
            extra = f", {state[NOTE]}" if NOTE in state else ""
            self.log(
                f"{scope['method']} {_shown(scope['path'])} {status} {state.get(PARTY, '-')} "
                f"{counts['in']:,} B in, {counts['out']:,} B out, {ms:.0f} ms{extra}"
            )
