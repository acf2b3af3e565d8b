"""FastEnclaves: your own FastAPI routes inside the enclave, for parties only.

Write ordinary routers; take the calling party as a dependency::

    from fastapi import APIRouter
    from oblv_mpc.fastenclave import CallingParty

    router = APIRouter()

    @router.post("/bid")
    def bid(amount: int, party: CallingParty) -> dict[str, str]:
        ...

Serve them with ``mpc enclave serve --manifest M --app mymodule:router``. Each party runs
``mpc connect ... --lport 3030`` and calls ``http://localhost:3030/bid`` with any HTTP client:
the proxy verifies the enclave, seals and signs each request, and the enclave dispatches it to
your routes only after checking the signature of a party of the manifest. ``CallingParty`` is
that verified party: it comes from the signed envelope, never from a header a client could set.

:func:`dispatch` is the bridge the enclave app uses: it runs one complete, verified request
through the user's routes in process (ASGI), with the verified party in the scope, and captures
the answer.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request

from oblv_mpc.errors import UsageError
from oblv_mpc.manifest import Manifest, Role
from oblv_mpc.protocol.answers import HttpAnswer
from oblv_mpc.protocol.messages import HttpHead

PARTY_SCOPE_KEY = "oblv_mpc.party"
MANIFEST_SCOPE_KEY = "oblv_mpc.manifest"
# Not passed to the user's routes: hop-by-hop headers (RFC 9110 §7.6.1), the body's framing
# (the request arrives whole), and the protocol's own headers.
_ERROR_BODY = b"Internal Server Error"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


@dataclass(frozen=True)
class Caller:
    """The party that signed the request, as the manifest names it."""

    name: str
    roles: frozenset[Role]


def _calling_party(request: Request) -> Caller:
    caller = request.scope.get(PARTY_SCOPE_KEY)
    if not isinstance(caller, Caller):  # only the enclave's dispatcher sets it
        raise HTTPException(403, detail="not reached through a verified, sealed request")
    return caller


def _session_manifest(request: Request) -> Manifest:
    found = request.scope.get(MANIFEST_SCOPE_KEY)
    if not isinstance(found, Manifest):
        raise HTTPException(403, detail="not reached through a verified, sealed request")
    return found


CallingParty = Annotated[Caller, Depends(_calling_party)]
SessionManifest = Annotated[Manifest, Depends(_session_manifest)]


def user_app(routers: list[APIRouter]) -> FastAPI:
    """The inner app that holds the user's routes; it is reached only through the dispatcher."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for router in routers:
        app.include_router(router)
    return app


def code_location(spec: str) -> tuple[str, Path]:
    """The module of ``module:router`` and where its code is (its file, or its package's folder)."""
    module_name = spec.partition(":")[0]
    load_router(spec)
    module = importlib.import_module(module_name)
    origin = Path(module.__file__ or "")
    return module_name, origin.parent if origin.name == "__init__.py" else origin


def load_router(spec: str) -> APIRouter:
    """``module:attribute`` -> the APIRouter it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--app {spec!r}: expected module:router, e.g. examples.millionaires:router")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as uvicorn does: modules are found from the working directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"--app {spec!r}: cannot import {module_name} ({exc})", hint=_import_hint(module_name, exc)
        ) from None
    router: Any = getattr(module, attribute, None)
    if not isinstance(router, APIRouter):
        raise UsageError(f"--app {spec!r}: {attribute} is not a FastAPI APIRouter")
    return router


def _import_hint(module_name: str, exc: ImportError) -> str:
    """What to do when ``--app``'s module cannot be imported: where Python looked, or what it lacks."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing is not None and (module_name == missing or module_name.startswith(missing + ".")):
        top = missing.partition(".")[0]
        return (
            f"modules are found from the current folder ({os.getcwd()}) and PYTHONPATH: run mpc from the folder "
            f"that holds {top}/ (or {top}.py), or set PYTHONPATH to that folder"
        )
    return f"{module_name} was found, but importing it failed: install what it needs in this Python, or fix it"


def _passed(name: str) -> bool:
    lowered = name.lower()
    return lowered not in _HOP_BY_HOP and not lowered.startswith("x-mpc")


async def dispatch(
    app: FastAPI,
    head: HttpHead,
    body: bytes,
    caller: Caller,
    manifest: Manifest,
    *,
    on_error: Callable[[Exception], None] | None = None,
) -> HttpAnswer:
    """Run one verified request through the user's routes, in process, and capture the answer.

    A route that raises gets the party a 500 (Starlette's plain "Internal Server Error", never
    the exception's text, which may quote another party's data); ``on_error`` is told of it.
    """
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in head.headers if _passed(k)]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": head.method,
        "scheme": "http",
        "path": head.path,
        "raw_path": head.path.encode(),
        "query_string": head.query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("party", 0),
        "server": ("enclave", 0),
        PARTY_SCOPE_KEY: caller,
        MANIFEST_SCOPE_KEY: manifest,
    }
    delivered = False
    started = False
    status = 500
    answer_headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, answer_headers, started
        if message["type"] == "http.response.start":
            started = True
            status = message["status"]
            answer_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception as exc:  # a bug in a user's route: its answer is a 500, and the enclave goes on
        # Starlette's ServerErrorMiddleware sent a 500 before re-raising; if the route failed before
        # anything was sent, say 500 here.
        if not started:
            status, answer_headers, chunks[:] = 500, [("content-type", "text/plain; charset=utf-8")], [_ERROR_BODY]
        if on_error is not None:
            on_error(exc)
    return HttpAnswer(status, tuple(answer_headers), b"".join(chunks))
