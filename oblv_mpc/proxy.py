"""The attested local proxy: `mpc connect ... --lport 3030`, as Oblivious's `oblv connect` offers.

A plain HTTP server on 127.0.0.1 that any client can call. Each request (method, path, query,
the headers that matter, and the body, read and sent in sealed chunks so memory stays flat) is
sealed to the verified enclave and signed with the party's key; the answer is opened and checked
against the enclave's attested signing key before it is returned. The proxy re-attests before
the attestation's leaf certificate expires, and whenever the enclave's keys change (a restart):
until it has verified the enclave again it forwards nothing, and says so.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from oblv_mpc.client import EnclaveClient
from oblv_mpc.errors import AttestationError, EnclaveRefused, EnclaveUnreachable, MpcError, ProtocolError

CHUNK_BYTES = 1024 * 1024
REATTEST_BEFORE = dt.timedelta(minutes=10)
_DROP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class Proxy:
    """Forwards local HTTP requests to the enclave's own routes, sealed and signed."""

    def __init__(
        self,
        client: EnclaveClient,
        log: Callable[[str], None],
        *,
        clock: Callable[[], dt.datetime] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.client = client
        self.log = log
        self.clock = clock or client.clock  # one clock for the attestation it checks and its expiry
        self.chunk_bytes = chunk_bytes
        self._lock = threading.Lock()
        self.verified = client.connection is not None
        self.app = Starlette(routes=[Route("/{path:path}", self._forward, methods=_METHODS)])

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

    async def _forward(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self._ensure_verified)
        except (AttestationError, ProtocolError, EnclaveRefused, EnclaveUnreachable) as exc:
            self.log(f"refusing to forward {request.method} {request.url.path}: enclave not verified: {exc.message}")
            return JSONResponse(
                {"error": "the enclave could not be verified; nothing was forwarded", "detail": exc.message},
                status_code=502,
            )
        stream_id = os.urandom(16)
        meta = {
            "method": request.method,
            "path": "/" + request.path_params["path"],
            "query": request.url.query,
            "headers": [[k, v] for k, v in request.headers.items() if k.lower() not in _DROP],
        }
        index = 0
        pending = b""
        size = 0
        try:
            async for piece in request.stream():
                pending += piece
                size += len(piece)
                while len(pending) >= self.chunk_bytes:
                    data, pending = pending[: self.chunk_bytes], pending[self.chunk_bytes :]
                    body = {
                        "stream": stream_id,
                        "index": index,
                        "final": False,
                        "data": data,
                        **(meta if index == 0 else {}),
                    }
                    await run_in_threadpool(self.client._call, "http", body)
                    index += 1
            body = {"stream": stream_id, "index": index, "final": True, "data": pending, **(meta if index == 0 else {})}
            answer = await run_in_threadpool(self.client._call, "http", body)
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
            return JSONResponse({"error": exc.reason, "code": exc.code}, status_code=403)
        except MpcError as exc:
            return JSONResponse({"error": exc.message}, status_code=502)
        status = int(answer.get("status", 502))
        content = answer.get("body", b"")
        headers = {k: v for k, v in answer.get("headers", []) if k.lower() not in _DROP}
        self.log(
            f"{self.client.party.name} {request.method} {meta['path']} -> {status} ({size} B in, {len(content)} B out)"
        )
        return Response(content, status_code=status, headers=headers)
