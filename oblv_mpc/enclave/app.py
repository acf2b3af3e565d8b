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
read deadline and the in-flight byte budget shared with the service.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import MutableMapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from oblv_mpc import __version__
from oblv_mpc import manifest as manifest_module
from oblv_mpc.attestation import Attestor
from oblv_mpc.enclave.bodies import ByteBudget, read_body
from oblv_mpc.enclave.replay import Monotonic
from oblv_mpc.enclave.service import OPERATIONS, Clock, EnclaveService, HttpCall, Reply, utcnow
from oblv_mpc.enclave.settings import EnclaveSettings
from oblv_mpc.errors import ManifestError
from oblv_mpc.fastenclave import MANIFEST_SCOPE_KEY, PARTY_SCOPE_KEY, Caller, user_app
from oblv_mpc.manifest import Manifest
from oblv_mpc.protocol.envelope import ENCLAVE_KEY_HEADER

KEY_HEADER = ENCLAVE_KEY_HEADER
SEALED = "application/octet-stream"


def _service(request: Request) -> EnclaveService:
    service: EnclaveService | None = request.app.state.enclave
    if service is None:
        raise HTTPException(
            503,
            detail={"code": "not_provisioned", "message": "the enclave has no session manifest yet; the operator "
                    "provisions it with `mpc enclave provision`"},
        )  # fmt: skip
    return service


Service = Annotated[EnclaveService, Depends(_service)]

info_router = APIRouter(prefix="/v1", tags=["attestation"])
sealed_router = APIRouter(prefix="/v1", tags=["sealed"])


@info_router.get("/info", summary="What this enclave serves (advisory, unauthenticated)")
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


_PROVISION_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/yaml": {"schema": {"type": "object"}}},
        "description": "The session manifest every party agreed to (docs/manifest.md)",
    },
}


def _already_provisioned() -> HTTPException:
    return HTTPException(409, detail={"code": "already_provisioned", "message": "the manifest is set once per launch"})


def _parse_manifest(body: bytes) -> Manifest:
    return manifest_module.parse(body.decode("utf-8", "replace"), source="provisioned manifest")


@info_router.post(
    "/provision",
    summary="Give the enclave its session manifest, once (YAML body)",
    openapi_extra=_PROVISION_OPENAPI,
)
async def provision(request: Request) -> dict[str, Any]:
    app = request.app
    settings: EnclaveSettings = app.state.settings
    if app.state.enclave is not None:
        raise _already_provisioned()
    limits = settings.limits
    read = read_body(
        request, limits.max_manifest_bytes, deadline_s=limits.body_read_timeout_s, budget=app.state.inflight
    )
    async with read as body, app.state.provision_lock:
        if app.state.enclave is not None:
            raise _already_provisioned()
        try:  # in a worker thread: a large manifest must not stall the event loop, hence every route
            loaded = await run_in_threadpool(_parse_manifest, body)
            # The service refuses, too, a manifest this image cannot honour (a synthesizer it lacks).
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
            raise HTTPException(422, detail={"code": "invalid_manifest", "message": exc.message}) from None
        app.state.enclave = service
    return {"session": loaded.session, "manifest_sha256": loaded.hash}


@info_router.get("/attestation", summary="A fresh attestation document binding the caller's nonce")
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
        raise HTTPException(400, detail={"code": "bad_nonce", "message": "nonce must be hex"}) from None
    limits = service.limits
    if not limits.min_nonce_bytes <= len(raw) <= limits.max_nonce_bytes:
        message = f"nonce must be {limits.min_nonce_bytes} to {limits.max_nonce_bytes} bytes"
        raise HTTPException(400, detail={"code": "bad_nonce", "message": message})
    answer = service.attestation(raw)
    return {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in answer.items()}


def _read_envelope(request: Request, service: EnclaveService) -> Any:
    """The sealed body, read within the service's limits and held in its byte budget."""
    limits = service.limits
    return read_body(request, limits.max_envelope_bytes, deadline_s=limits.body_read_timeout_s, budget=service.inflight)


def _restarted(request: Request, service: EnclaveService) -> Response | None:
    presented = request.headers.get(KEY_HEADER)
    if presented is not None and presented != service.key_id:
        return JSONResponse(
            {
                "code": "enclave_restarted",
                "message": "this request is sealed to another enclave key: the enclave restarted, "
                "and its state (every upload) is gone",
            },
            status_code=409,
        )
    return None


def _response(reply: Reply) -> Response:
    if isinstance(reply.content, dict):
        return JSONResponse(reply.content, status_code=reply.status)
    return Response(reply.content, status_code=reply.status, media_type=SEALED)


def _sealed_route(op: str) -> Any:
    async def handler(request: Request, service: Service) -> Response:
        restarted = _restarted(request, service)
        if restarted is not None:
            return restarted
        async with _read_envelope(request, service) as envelope:
            return _response(await run_in_threadpool(service.handle, op, envelope))

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


async def _dispatch(app: FastAPI, call: HttpCall, caller: Caller, manifest: Manifest) -> dict[str, Any]:
    """Run one verified request through the user's routes, in process, and capture the answer."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": call.method,
        "scheme": "http",
        "path": call.path,
        "raw_path": call.path.encode(),
        "query_string": call.query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in call.headers],
        "client": ("party", 0),
        "server": ("enclave", 0),
        PARTY_SCOPE_KEY: caller,
        MANIFEST_SCOPE_KEY: manifest,
    }
    delivered = False
    answer: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": call.body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    answer["body"] = b"".join(chunks)
    return answer


@sealed_router.post(
    "/http",
    summary="FastEnclaves: a sealed request for the session's own routes",
    response_class=Response,
    openapi_extra=_SEALED_OPENAPI,
)
async def sealed_http(request: Request, service: Service) -> Response:
    restarted = _restarted(request, service)
    if restarted is not None:
        return restarted
    async with _read_envelope(request, service) as envelope:
        opened = await run_in_threadpool(service.open_http, envelope)
    if isinstance(opened, Reply):
        return _response(opened)
    user: FastAPI | None = request.app.state.user_app
    if user is None:
        return _response(
            service.answer(opened.request, {"status": 404, "headers": [], "body": b"no routes are served"})
        )
    party = service.manifest.parties[opened.request.party]
    answer = await _dispatch(user, opened, Caller(party.name, party.roles), service.manifest)
    return _response(await run_in_threadpool(service.answer, opened.request, answer))


for _op in OPERATIONS:
    sealed_router.add_api_route(
        f"/{_op}",
        _sealed_route(_op),
        methods=["POST"],
        summary=_SUMMARIES[_op],
        response_class=Response,
        openapi_extra=_SEALED_OPENAPI,
    )


def create_app(
    manifest: Manifest | None,
    attestor: Attestor,
    settings: EnclaveSettings | None = None,
    *,
    service: EnclaveService | None = None,
    routers: list[APIRouter] | None = None,
    clock: Clock = utcnow,
    monotonic: Monotonic = time.monotonic,
) -> FastAPI:
    """The enclave app for one session. Builds nothing at import time.

    With ``manifest=None`` the app waits to be provisioned (``POST /v1/provision``). ``clock`` is
    the enclave's wall clock (request windows, transcript and statement times) and ``monotonic``
    the clock that measures how long request ids are remembered; a provisioned service gets the
    same ones. Serve it with :mod:`oblv_mpc.enclave.server`, passing ``settings.limits``.
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
    app.include_router(info_router)
    app.include_router(sealed_router)
    return app
