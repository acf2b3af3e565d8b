"""The FastAPI enclave app: ``create_app(manifest, attestor, settings)``.

Routes (OpenAPI at ``/docs``):

- ``GET /v1/info``: session id, manifest hash, instance, suite. Plain, unauthenticated, advisory.
- ``POST /v1/provision``: the manifest (YAML), once, when the app was started without one (a
  Nitro Enclave receives its manifest at launch, so the image and its PCRs do not depend on
  it). Every attestation then binds its hash; a party holding another manifest refuses. It is
  checked in a worker thread, one at a time, so every other route keeps answering.
- ``GET /v1/attestation?nonce=HEX``: a fresh attestation document and the keys it binds.
- ``POST /v1/http``: FastEnclaves: a sealed, signed HTTP request (in chunks) for the user's own
  routes, dispatched in process with the verified party in the ASGI scope (``fastenclave``).
- ``POST /v1/{upload,status,compute,result,transcript}``: a sealed, signed request in, a sealed,
  signed response out (``application/octet-stream``). A request that cannot be opened gets a
  plain JSON error (400), a request from no party 403, and every other answer, refusals
  included, is sealed to the requester.

Every body is read within ``settings.limits`` (:mod:`oblv_mpc.enclave.bodies`): a size cap, a
read deadline and the in-flight byte budget shared with the service. Nothing is built at import
time: :func:`create_app` makes the routers (:func:`info_router`, :func:`sealed_router`). Plain
(unsealed) refusals carry the status of the code table (:mod:`oblv_mpc.protocol.refusals`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from oblv_mpc import __version__
from oblv_mpc import manifest as manifest_module
from oblv_mpc.attestation import Attestor
from oblv_mpc.enclave import request_log
from oblv_mpc.enclave.bodies import ByteBudget, read_body
from oblv_mpc.enclave.replay import Monotonic
from oblv_mpc.enclave.service import OPERATIONS, Clock, EnclaveService, Reply, utcnow
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.errors import ManifestError
from oblv_mpc.fastenclave import Caller, dispatch, user_app
from oblv_mpc.manifest import Manifest
from oblv_mpc.protocol.answers import HttpAnswer
from oblv_mpc.protocol.envelope import ENCLAVE_KEY_HEADER
from oblv_mpc.protocol.refusals import status_of

SEALED = "application/octet-stream"


def _refused(code: str, message: str) -> HTTPException:
    """A plain refusal, with the status of the code table."""
    return HTTPException(status_of(code), detail={"code": code, "message": message})


def _service(request: Request) -> EnclaveService:
    service: EnclaveService | None = request.app.state.enclave
    if service is None:
        raise _refused(
            "not_provisioned",
            "the enclave has no session manifest yet; the operator provisions it with `mpc enclave provision`",
        )
    return service


Service = Annotated[EnclaveService, Depends(_service)]

_PROVISION_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/yaml": {"schema": {"type": "object"}}},
        "description": "The session manifest every party agreed to (docs/manifest.md)",
    },
}


def _parse_manifest(body: bytes) -> Manifest:
    return manifest_module.parse(body.decode("utf-8", "replace"), source="provisioned manifest")


def info_router() -> APIRouter:
    """The plain routes: what the enclave serves, its provisioning, fresh attestations."""
    router = APIRouter(prefix="/v1", tags=["attestation"])

    @router.get("/info", summary="What this enclave serves (advisory, unauthenticated)")
    def info(service: Service) -> dict[str, Any]:
        return {
            "session": service.manifest.session,
            "manifest_sha256": service.manifest.hash,
            "instance": service.instance.hex(),
            "suite": service.settings.suite.value,
            "key_id": service.key_id,
            "development": service.attestor.development,
            "version": __version__,
        }

    @router.post(
        "/provision",
        summary="Give the enclave its session manifest, once (YAML body)",
        openapi_extra=_PROVISION_OPENAPI,
    )
    async def provision(request: Request) -> dict[str, Any]:
        app = request.app
        settings: EnclaveSettings = app.state.settings
        if app.state.enclave is not None:
            raise _refused("already_provisioned", "the manifest is set once per launch")
        limits = settings.limits
        read = read_body(
            request, limits.max_manifest_bytes, deadline_s=limits.body_read_timeout_s, budget=app.state.inflight
        )
        async with read as body, app.state.provision_lock:
            if app.state.enclave is not None:
                raise _refused("already_provisioned", "the manifest is set once per launch")
            try:  # in a worker thread: a large manifest must not stall the event loop, hence every route
                loaded = await run_in_threadpool(_parse_manifest, body)
                # The service gets the app's injected clocks, as one made by create_app does; it
                # refuses, too, a manifest this image cannot honour (a synthesizer it lacks).
                service = await run_in_threadpool(
                    EnclaveService,
                    loaded,
                    app.state.attestor,
                    settings,
                    clock=app.state.clock,
                    monotonic=app.state.monotonic,
                    inflight=app.state.inflight,
                )
            except ManifestError as exc:
                raise _refused("invalid_manifest", exc.message) from None
            app.state.enclave = service
        return {"session": loaded.session, "manifest_sha256": loaded.hash}

    @router.get("/attestation", summary="A fresh attestation document binding the caller's nonce")
    def attestation(
        service: Service,
        nonce: Annotated[
            str,
            Query(
                description="The caller's fresh random nonce, hex (16 to 64 bytes).",
                json_schema_extra={"pattern": "^([0-9a-fA-F]{2}){16,64}$"},  # documented; checked below (400)
            ),
        ],
    ) -> dict[str, Any]:
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            raise _refused("bad_nonce", "nonce must be hex") from None
        limits = service.limits
        if not limits.min_nonce_bytes <= len(raw) <= limits.max_nonce_bytes:
            raise _refused("bad_nonce", f"nonce must be {limits.min_nonce_bytes} to {limits.max_nonce_bytes} bytes")
        answer = service.attestation(raw)
        return {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in answer.items()}

    return router


def _read_envelope(request: Request, service: EnclaveService) -> AbstractAsyncContextManager[bytes]:
    """The sealed body, read within the service's limits and held in its byte budget."""
    limits = service.limits
    return read_body(request, limits.max_envelope_bytes, deadline_s=limits.body_read_timeout_s, budget=service.inflight)


def _restarted(request: Request, service: EnclaveService) -> Response | None:
    presented = request.headers.get(ENCLAVE_KEY_HEADER)
    if presented is not None and presented != service.key_id:
        reason = (
            "this request is sealed to another enclave key: the enclave restarted, and its state (every upload) is gone"
        )
        return _response(Reply.plain("enclave_restarted", reason))
    return None


def _response(reply: Reply) -> Response:
    if isinstance(reply.content, dict):
        return JSONResponse(reply.content, status_code=reply.status)
    return Response(reply.content, status_code=reply.status, media_type=SEALED)


def _logged(request: Request, reply: Reply) -> Response:
    """The reply as a response; its party and refusal code noted for the request log."""
    request_log.note(request.state, party=reply.party, text=f"refused {reply.refusal}" if reply.refusal else None)
    return _response(reply)


def _sealed_route(op: str) -> Callable[[Request, EnclaveService], Coroutine[Any, Any, Response]]:
    async def handler(request: Request, service: Service) -> Response:
        restarted = _restarted(request, service)
        if restarted is not None:
            return restarted
        async with _read_envelope(request, service) as envelope:
            return _logged(request, await run_in_threadpool(service.handle, op, envelope))

    handler.__name__ = f"sealed_{op}"
    return handler


_SEALED_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {SEALED: {"schema": {"type": "string", "format": "binary"}}},
        "description": "HPKE-sealed, party-signed request envelope (docs/protocol.md)",
    },
    "responses": {"200": {"content": {SEALED: {"schema": {"type": "string", "format": "binary"}}}}},
}
_SUMMARIES = {
    "upload": "One chunk of a table upload; the final chunk returns a signed receipt",
    "status": "Which inputs are in, which computations are ready or done",
    "compute": "Run a computation whose inputs are all present (its readers may ask)",
    "result": "A computation's signed result, for its readers only",
    "transcript": "The hash-chained event log with the enclave's signed head",
}
_NO_ROUTES = HttpAnswer(404, (), b"no routes are served")


async def _sealed_http(request: Request, service: Service) -> Response:
    restarted = _restarted(request, service)
    if restarted is not None:
        return restarted
    async with _read_envelope(request, service) as envelope:
        opened = await run_in_threadpool(service.open_http, envelope)
    if isinstance(opened, Reply):
        return _logged(request, opened)
    user: FastAPI | None = request.app.state.user_app
    if user is None:
        return _logged(request, service.answer(opened.request, _NO_ROUTES))
    party = service.manifest.parties[opened.request.party]
    caller = Caller(party.name, party.roles)
    raised: list[str] = []
    answer = await dispatch(
        user,
        opened.http.head,
        opened.http.body,
        caller,
        service.manifest,
        on_error=lambda e: raised.append(type(e).__name__),
    )
    outcome = f"app raised {raised[0]}, answered {answer.status}" if raised else f"app {answer.status}"
    request_log.note(request.state, text=outcome)
    return _logged(request, await run_in_threadpool(service.answer, opened.request, answer))


def sealed_router() -> APIRouter:
    """The sealed routes: the session's operations, and FastEnclaves requests for the user's routes."""
    router = APIRouter(prefix="/v1", tags=["sealed"])
    router.add_api_route(
        "/http",
        _sealed_http,
        methods=["POST"],
        summary="FastEnclaves: a sealed request for the session's own routes",
        response_class=Response,
        openapi_extra=_SEALED_OPENAPI,
    )
    for op in OPERATIONS:
        router.add_api_route(
            f"/{op}",
            _sealed_route(op),
            methods=["POST"],
            summary=_SUMMARIES[op],
            response_class=Response,
            openapi_extra=_SEALED_OPENAPI,
        )
    return router


def create_app(
    manifest: Manifest | None,
    attestor: Attestor,
    settings: EnclaveSettings | None = None,
    *,
    service: EnclaveService | None = None,
    routers: list[APIRouter] | None = None,
    clock: Clock = utcnow,
    monotonic: Monotonic = time.monotonic,
    log: Callable[[str], None] | None = None,
) -> FastAPI:
    """The enclave app for one session. Builds nothing at import time.

    With ``manifest=None`` the app waits to be provisioned (``POST /v1/provision``). ``clock`` is
    the enclave's wall clock (request windows, transcript and statement times) and ``monotonic``
    the clock that measures how long request ids are remembered; a provisioned service gets the
    same ones. ``log`` is given one line per request, without bodies
    (:mod:`oblv_mpc.enclave.request_log`). Serve it with :mod:`oblv_mpc.enclave.server`, passing
    ``settings.limits``.
    """
    app = FastAPI(
        title="oblv_mpc enclave",
        version=__version__,
        description="Multiparty computation brokered by an attested enclave. Every request other than "
        "the attestation is sealed to the enclave and signed by a party.",
    )
    settings = settings or (service.settings if service is not None else EnclaveSettings())
    app.state.user_app = user_app(routers) if routers else None
    app.state.attestor = attestor
    app.state.settings = settings
    app.state.provision_lock = asyncio.Lock()
    app.state.clock = clock
    app.state.monotonic = monotonic
    if service is not None:
        app.state.inflight = service.inflight
        app.state.enclave = service
    else:
        app.state.inflight = ByteBudget(settings.limits.max_inflight_bytes)
        app.state.enclave = (
            EnclaveService(manifest, attestor, settings, clock=clock, monotonic=monotonic, inflight=app.state.inflight)
            if manifest is not None
            else None
        )
    app.include_router(info_router())
    app.include_router(sealed_router())
    if log is not None:
        app.add_middleware(request_log.RequestLog, log=log)
    return app
