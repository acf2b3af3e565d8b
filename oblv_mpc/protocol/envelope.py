"""Sealed, signed envelopes between a party and the enclave.

A request is ``HPKE.seal(enclave_key, CBOR([header, body, signature]), info)``, three byte
strings: ``body`` is the deterministic CBOR of the operation's body; ``header`` the deterministic
CBOR of ``{v: 2, op, session, manifest, enclave, party, id, time, reply, body: SHA-256(body)}``;
``signature`` the party's identity-key signature over ``"oblv_mpc/1 request" || 0x00 || header``.
``info`` is the deterministic CBOR of ``["oblv_mpc/1", "request", session id, manifest hash,
SHA-256 of the enclave's HPKE key, operation]``. So the protocol version, the session, the
manifest, the enclave key and the operation are bound twice: by HPKE's key schedule and by the
signature, which covers the body's exact bytes through their hash. ``reply`` is a fresh HPKE
public key the client made for this request.

The enclave reads the frame and the small header, checks the bindings and the party's signature,
then the body's hash, and decodes the body last: bytes from someone who is not a party are never
decoded beyond a few KiB (``Limits.max_header_bytes``). Every decode goes through
:func:`oblv_mpc.protocol.cbor.decode` with caps from :class:`~oblv_mpc.limits.Limits`.

The response is sealed to ``reply`` with ``info`` extended by the request id, and carries the
enclave's signature (its signing key is bound by the attestation) over ``{v, op, id, ok, body |
error}``. See docs/protocol.md for the threat model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from oblv_mpc import keys
from oblv_mpc.errors import EnclaveRefused, ProtocolError
from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.protocol import cbor, hpke
from oblv_mpc.protocol.hpke import KeyPair, SuiteName

PROTOCOL = "oblv_mpc/1"
REQUEST_VERSION = 2  # version 1 signed one payload with the body inside; it is refused
# Advisory, unauthenticated: the SHA-256 of the enclave key a request is sealed to, so that a
# restarted enclave can say so instead of "does not open" (docs/protocol.md, Restarts).
ENCLAVE_KEY_HEADER = "X-Mpc-Enclave-Key"
REQUEST_ID_BYTES = 16
_REQUEST_DOMAIN = b"oblv_mpc/1 request\x00"
_RESPONSE_DOMAIN = b"oblv_mpc/1 response\x00"
_STATEMENT_DOMAIN = b"oblv_mpc/1 statement\x00"
_HEADER_FIELDS = {"v", "op", "session", "manifest", "enclave", "party", "id", "time", "reply", "body"}


@dataclass(frozen=True)
class Context:
    """What both ends agree on once the client verified the enclave: session, manifest, keys."""

    session: str
    manifest_sha256: bytes
    suite: SuiteName
    enclave_hpke: bytes  # the enclave's HPKE public key bytes

    @property
    def enclave_sha256(self) -> bytes:
        """SHA-256 of the enclave's HPKE public key."""
        return hashlib.sha256(self.enclave_hpke).digest()

    def info(self, kind: str, op: str, request_id: bytes = b"") -> bytes:
        """HPKE ``info`` binding protocol, kind, session, manifest, enclave key, operation and request."""
        fields = [PROTOCOL, kind, self.session, self.manifest_sha256, self.enclave_sha256, op, request_id]
        return cbor2.dumps(fields, canonical=True)


@dataclass(frozen=True)
class Request:
    """An opened request whose signature verified. ``body`` is decoded CBOR, not yet parsed: the
    enclave parses it once into its class (:func:`oblv_mpc.protocol.messages.parse_request`)."""

    op: str
    party: str
    request_id: bytes
    time_ms: int
    reply_key: bytes
    body: Any


def seal_request(
    context: Context,
    op: str,
    party: str,
    identity: keys.PrivateKey,
    body: Any,
    *,
    time_ms: int,
    request_id: bytes | None = None,
) -> tuple[bytes, KeyPair, bytes]:
    """Seal and sign a request. Returns the envelope, the reply key pair and the request id."""
    reply = hpke.generate(context.suite)
    request_id = request_id or os.urandom(REQUEST_ID_BYTES)
    encoded_body = cbor2.dumps(body, canonical=True)
    header = cbor2.dumps(
        {
            "v": REQUEST_VERSION,
            "op": op,
            "session": context.session,
            "manifest": context.manifest_sha256,
            "enclave": context.enclave_sha256,
            "party": party,
            "id": request_id,
            "time": time_ms,
            "reply": reply.public_bytes,
            "body": hashlib.sha256(encoded_body).digest(),
        },
        canonical=True,
    )
    signature = keys.sign(identity, _REQUEST_DOMAIN + header)
    plaintext = cbor2.dumps([header, encoded_body, signature])
    recipient = hpke.public_key(context.suite, context.enclave_hpke)
    return hpke.seal(context.suite, recipient, plaintext, context.info("request", op)), reply, request_id


def open_request(
    context: Context,
    private: Any,
    op: str,
    envelope: bytes,
    party_key: Callable[[str], keys.PublicKey | None],
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Request:
    """Open a request for ``op``: frame, header, bindings, the party's signature, then the body.

    Raises ProtocolError when it does not open or is malformed, EnclaveRefused when the sender
    is not a party or the signature is not that party's. The body is decoded only after the
    signature and the body's hash verified.
    """
    if len(envelope) > limits.max_envelope_bytes:
        raise ProtocolError(f"envelope of {len(envelope)} bytes exceeds {limits.max_envelope_bytes}")
    plaintext = hpke.open_(context.suite, private, envelope, context.info("request", op))
    small = limits.max_header_bytes
    header_bytes, body_bytes, signature = cbor.frame(plaintext, (small, len(plaintext), small), "the request")
    header = bytes(header_bytes)
    fields = cbor.decode(header, limits.header_caps(), "the request header")
    if not isinstance(fields, dict) or set(fields) != _HEADER_FIELDS:
        raise ProtocolError("the request header has the wrong fields")
    expected = {
        "v": REQUEST_VERSION,
        "op": op,
        "session": context.session,
        "manifest": context.manifest_sha256,
        "enclave": context.enclave_sha256,
    }
    for name, value in expected.items():
        if type(fields[name]) is not type(value) or fields[name] != value:
            raise EnclaveRefused("wrong_binding", f"request is bound to another {name} than this enclave's")
    party = fields["party"]
    if not isinstance(party, str):
        raise ProtocolError("the request names no party")
    public = party_key(party)
    if public is None:
        raise EnclaveRefused("unknown_party", f"{party!r} is not a party of this session")
    if not keys.verify(public, bytes(signature), _REQUEST_DOMAIN + header):
        raise EnclaveRefused("bad_signature", f"the request is not signed by the key of party {party!r}")
    if fields["body"] != hashlib.sha256(body_bytes).digest():
        raise EnclaveRefused("bad_signature", f"the request body is not the one party {party!r} signed")
    request_id, time_ms, reply = fields["id"], fields["time"], fields["reply"]
    if not isinstance(request_id, bytes) or len(request_id) != REQUEST_ID_BYTES:
        raise ProtocolError("malformed request id")
    if isinstance(time_ms, bool) or not isinstance(time_ms, int) or not isinstance(reply, bytes):
        raise ProtocolError("malformed request time or reply key")
    hpke.public_key(context.suite, reply)  # must be a usable key before we answer to it
    body = cbor.decode(body_bytes, limits.request_caps(), "the request body")
    return Request(op, party, request_id, time_ms, reply, body)


def seal_response(
    context: Context,
    request: Request,
    signing: keys.PrivateKey,
    *,
    body: Any = None,
    error: tuple[str, str] | None = None,
) -> bytes:
    """Seal the enclave's signed answer to the request's reply key."""
    content: dict[str, Any] = {"v": 1, "op": request.op, "id": request.request_id, "ok": error is None}
    if error is None:
        content["body"] = body
    else:
        content["error"] = {"code": error[0], "message": error[1]}
    payload = cbor2.dumps(content, canonical=True)
    signature = keys.sign(signing, _RESPONSE_DOMAIN + payload)
    recipient = hpke.public_key(context.suite, request.reply_key)
    info = context.info("response", request.op, request.request_id)
    return hpke.seal(context.suite, recipient, cbor2.dumps([payload, signature]), info)


def open_response(
    context: Context,
    reply: KeyPair,
    op: str,
    request_id: bytes,
    envelope: bytes,
    enclave_signing: keys.PublicKey,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    """Open and verify the enclave's answer; raise EnclaveRefused if it is a refusal."""
    if len(envelope) > limits.max_response_bytes:
        raise ProtocolError(f"a response of {len(envelope)} bytes exceeds {limits.max_response_bytes}")
    plaintext = hpke.open_(context.suite, reply.private, envelope, context.info("response", op, request_id))
    payload, signature = cbor.frame(plaintext, (len(plaintext), limits.max_header_bytes), "the response")
    if not keys.verify(enclave_signing, bytes(signature), _RESPONSE_DOMAIN + payload):
        raise ProtocolError("the response is not signed by the attested enclave's signing key")
    content = cbor.decode(payload, limits.response_caps(), "the response payload")
    if not isinstance(content, dict) or content.get("id") != request_id or content.get("op") != op:
        raise ProtocolError("the response answers another request")
    if content.get("ok") is True:
        return content.get("body")
    error = content.get("error")
    # A refusal: its code and message are the enclave's, signed and sealed to us.
    if not isinstance(error, dict):
        raise ProtocolError("the response is neither a result nor an error")
    raise EnclaveRefused(str(error.get("code")), str(error.get("message")))


def sign_statement(signing: keys.PrivateKey, statement: Mapping[str, Any]) -> dict[str, bytes]:
    """A statement (receipt, result, transcript head) signed by the enclave's signing key."""
    data = cbor2.dumps(dict(statement), canonical=True)
    return {"statement": data, "signature": keys.sign(signing, _STATEMENT_DOMAIN + data)}


def verify_statement(
    enclave_signing: keys.PublicKey, signed: Any, kind: str, *, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """Check a signed statement of ``kind`` and return its content (decoded within ``limits``)."""
    if not isinstance(signed, dict) or not isinstance(signed.get("statement"), bytes):
        raise ProtocolError(f"malformed signed {kind}")
    signature = signed.get("signature")
    if not isinstance(signature, bytes) or not keys.verify(
        enclave_signing, signature, _STATEMENT_DOMAIN + signed["statement"]
    ):
        raise ProtocolError(f"the {kind} is not signed by the attested enclave")
    content = cbor.decode(signed["statement"], limits.response_caps(), f"the {kind}")
    if not isinstance(content, dict) or content.get("kind") != kind:
        raise ProtocolError(f"expected a signed {kind}")
    return content
