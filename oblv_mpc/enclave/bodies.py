"""Taking request bodies in within limits: a size cap, a read deadline, a shared byte budget.

Anyone who reaches the port can send a body, so what a body may cost is bounded before its
sender is known: its size (``413 too_large``, refused from ``Content-Length`` before reading
when it says so), the time it may take to arrive (``408 read_timeout``: a body trickled byte
by byte is cut off), and the bytes all bodies being read or handled may hold together
(:class:`ByteBudget`, ``503 busy``). An answer given before the body was read in full closes the
connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from oblv_mpc.protocol.refusals import status_of


class ByteBudget:
    """Bytes held at once by everyone's requests; thread-safe (the event loop and workers share it)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes held now."""
        return self._used

    def take(self, size: int) -> bool:
        """Hold ``size`` more bytes if they fit; say whether they did."""
        with self._lock:
            if self._used + size > self.capacity:
                return False
            self._used += size
            return True

    def give(self, size: int) -> None:
        """Release bytes taken before."""
        with self._lock:
            self._used -= size


_CLOSE = {"Connection": "close"}


def _refuse(code: str, message: str) -> HTTPException:
    """A plain refusal with the code table's status; the connection closes (the body may be unread)."""
    return HTTPException(status_of(code), detail={"code": code, "message": message}, headers=_CLOSE)


@asynccontextmanager
async def read_body(request: Request, limit: int, *, deadline_s: float, budget: ByteBudget) -> AsyncIterator[bytes]:
    """The request's body, at most ``limit`` bytes, arrived within ``deadline_s``, held in ``budget``.

    The bytes stay counted in ``budget`` until the ``async with`` block ends.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _refuse("too_large", f"a request body is at most {limit} bytes")
    chunks: list[bytes] = []
    held = 0
    try:
        async with asyncio.timeout(deadline_s):
            async for chunk in request.stream():
                if held + len(chunk) > limit:
                    raise _refuse("too_large", f"a request body is at most {limit} bytes")
                if not budget.take(len(chunk)):
                    raise _refuse("busy", "the enclave holds as many request bytes as it may; retry shortly")
                held += len(chunk)
                chunks.append(chunk)
    except TimeoutError:
        budget.give(held)
        raise _refuse("read_timeout", f"the request body did not arrive within {deadline_s:g} s") from None
    except ClientDisconnect:
        budget.give(held)
        raise _refuse("disconnected", "the client left before its body arrived") from None
    except BaseException:
        budget.give(held)
        raise
    body = b"".join(chunks)
    chunks.clear()
    try:
        yield body
    finally:
        budget.give(held)
