"""Decode an attestation document's bytes into typed fields, checking structure, types and sizes.

Nothing here is trusted: a :class:`ParsedDocument` is only what the bytes say. The verifier
(:mod:`oblv_mpc.attestation.verify`) checks the chain and the signature over the raw
``protected`` and ``payload`` bytes kept here, never over a re-encoding.

The checks follow AWS's ``attestation_process.md`` (aws/aws-nitro-enclaves-nsm-api), sections
3.1 (COSE_Sign1) and 3.2.2 (syntactical validation), with the leniencies that real documents
need: optional fields present as CBOR ``null``, a zero-length ``public_key``, and a payload map
of indefinite length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from oblv_mpc.errors import MalformedDocument

# Limits on untrusted input, all in one place (checked before or while decoding).
MAX_DOCUMENT_BYTES = 32 * 1024  # COSE_Sign1 around a payload of at most 16 KiB (3.1)
MAX_PAYLOAD_BYTES = 16 * 1024  # "bstr .size (1..16384)" (3.1)
MAX_CERT_BYTES = 1024  # "cert = bytes .size (1..1024)" (2.2)
MAX_CABUNDLE = 16  # AWS bundles hold 4; anything far larger is not a Nitro document
MAX_PUBLIC_KEY_BYTES = 1024  # 3.2.2.2 public_key
MAX_USER_DATA_BYTES = 512  # 3.2.2.2 user_data
MAX_NONCE_BYTES = 512  # 3.2.2.2 nonce
PCR_LENGTHS = (32, 48, 64)  # 3.2.2.2 pcrs
ES384 = -35  # COSE algorithm identifier (RFC 9053)
ES384_SIGNATURE_BYTES = 96  # r || s, 48 bytes each
COSE_SIGN1_TAG = 18

_MANDATORY = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
_OPTIONAL = ("public_key", "user_data", "nonce")


@dataclass(frozen=True)
class ParsedDocument:
    """An attestation document's fields as decoded, not yet verified."""

    protected: bytes  # raw bytes of the protected header, as signed
    payload: bytes  # raw bytes of the payload, as signed
    signature: bytes
    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: dict[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    tagged: bool


def _fail(message: str) -> MalformedDocument:
    return MalformedDocument("structure", message, hint="this is not a well-formed Nitro attestation document")


def _decode(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError, MemoryError) as exc:
        raise _fail(f"{what} is not valid CBOR ({type(exc).__name__})") from None


def _bytes(payload: Mapping[Any, Any], field: str, low: int, high: int, *, nullable: bool) -> bytes | None:
    value = payload.get(field)
    if value is None:
        if nullable:
            return None  # real documents carry absent optional fields as null
        raise _fail(f"{field}: required, found nothing")
    if not isinstance(value, bytes):
        raise _fail(f"{field}: expected a byte string, found {type(value).__name__}")
    if not low <= len(value) <= high:
        raise _fail(f"{field}: expected {low}..{high} bytes, found {len(value)}")
    return value


def _cose_sign1(document: bytes) -> tuple[bytes, bytes, bytes, bool]:
    """3.1: COSE_Sign1, tagged (18) or untagged: [protected, unprotected, payload, signature]."""
    outer = _decode(document, "the document")
    tagged = False
    if isinstance(outer, cbor2.CBORTag):
        if outer.tag != COSE_SIGN1_TAG:
            raise _fail(f"expected COSE_Sign1 (CBOR tag 18) or an untagged array, found tag {outer.tag}")
        outer, tagged = outer.value, True
    # cbor2 may hand a tagged value over as an immutable tuple, its maps as frozendicts.
    if not isinstance(outer, list | tuple) or len(outer) != 4:
        raise _fail("expected a COSE_Sign1 array of 4 elements")
    protected, unprotected, payload, signature = outer
    _check_protected_header(protected)
    if not isinstance(unprotected, Mapping) or unprotected:
        raise _fail("COSE unprotected header: expected an empty map")
    if not isinstance(payload, bytes) or not 1 <= len(payload) <= MAX_PAYLOAD_BYTES:
        raise _fail(f"COSE payload: expected 1..{MAX_PAYLOAD_BYTES} bytes")
    if not isinstance(signature, bytes) or len(signature) != ES384_SIGNATURE_BYTES:
        size = len(signature) if isinstance(signature, bytes) else type(signature).__name__
        raise _fail(f"COSE signature: expected {ES384_SIGNATURE_BYTES} bytes (ES384), found {size}")
    return protected, payload, signature, tagged


def _check_protected_header(protected: object) -> None:
    """The protected header is exactly ``{1: -35}``: ES384 and nothing else."""
    if not isinstance(protected, bytes):
        raise _fail("COSE protected header: expected a byte string")
    header = _decode(protected, "the protected header")
    if not isinstance(header, Mapping) or header.get(1) != ES384 or set(header) != {1}:
        found = header.get(1) if isinstance(header, Mapping) else header
        raise MalformedDocument(
            "algorithm",
            f"protected header must be {{1: -35}} (ES384), found alg {found!r}",
            hint="Nitro documents are signed with ES384; any other algorithm is refused",
        )


def _payload_fields(payload: bytes) -> Mapping[Any, Any]:
    """3.2.2.1: the payload is a map with exactly the allowed fields, mandatory ones non-null."""
    fields = _decode(payload, "the payload")
    if not isinstance(fields, Mapping):
        raise _fail("payload: expected a CBOR map")
    unknown = [k for k in fields if k not in _MANDATORY + _OPTIONAL]
    if unknown:
        raise _fail(f"payload: unexpected field(s) {', '.join(map(repr, unknown))}")
    for field in _MANDATORY:
        if fields.get(field) is None:
            raise _fail(f"{field}: required, found nothing")
    return fields


def _pcrs(raw_pcrs: object) -> dict[int, bytes]:
    """3.2.2.2 ``pcrs``: 1..32 entries, indices 0..31, values of 32, 48 or 64 bytes."""
    if not isinstance(raw_pcrs, Mapping) or not 1 <= len(raw_pcrs) <= 32:
        raise _fail("pcrs: expected a map of 1..32 entries")
    pcrs: dict[int, bytes] = {}
    for index, value in raw_pcrs.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 32:
            raise _fail(f"pcrs: index {index!r} is not an integer in 0..31")
        if not isinstance(value, bytes) or len(value) not in PCR_LENGTHS:
            raise _fail(f"pcrs[{index}]: expected 32, 48 or 64 bytes")
        pcrs[index] = value
    return pcrs


def _cabundle(bundle: object) -> tuple[bytes, ...]:
    """3.2.2.2 ``cabundle``: 1..MAX_CABUNDLE certificates of 1..MAX_CERT_BYTES bytes each."""
    if not isinstance(bundle, list | tuple) or not 1 <= len(bundle) <= MAX_CABUNDLE:
        raise _fail(f"cabundle: expected an array of 1..{MAX_CABUNDLE} certificates")
    for i, cert in enumerate(bundle):
        if not isinstance(cert, bytes) or not 1 <= len(cert) <= MAX_CERT_BYTES:
            raise _fail(f"cabundle[{i}]: expected 1..{MAX_CERT_BYTES} bytes")
    return tuple(bundle)


def parse(document: bytes) -> ParsedDocument:
    """Decode ``document``, refusing anything that is not a structurally valid Nitro document."""
    if not isinstance(document, bytes | bytearray | memoryview):
        raise _fail(f"expected bytes, found {type(document).__name__}")
    document = bytes(document)
    if not document:
        raise _fail("empty document")
    if len(document) > MAX_DOCUMENT_BYTES:
        raise _fail(f"{len(document)} bytes, more than the {MAX_DOCUMENT_BYTES} a Nitro document can have")
    protected, payload, signature, tagged = _cose_sign1(document)
    fields = _payload_fields(payload)

    # 3.2.2.2: content of each field
    module_id = fields["module_id"]
    if not isinstance(module_id, str) or not module_id:
        raise _fail("module_id: expected non-empty text")
    digest = fields["digest"]
    if digest != "SHA384":
        raise MalformedDocument("digest", f"digest must be 'SHA384', found {digest!r}")
    timestamp = fields["timestamp"]
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 < timestamp < 2**64:
        raise _fail(f"timestamp: expected a positive 64-bit integer, found {timestamp!r}")
    pcrs = _pcrs(fields["pcrs"])
    certificate = _bytes(fields, "certificate", 1, MAX_CERT_BYTES, nullable=False)
    cabundle = _cabundle(fields["cabundle"])
    # A zero-length public_key occurs in real documents (hf-nitrite_1): it means "no key".
    public_key = _bytes(fields, "public_key", 0, MAX_PUBLIC_KEY_BYTES, nullable=True) or None
    user_data = _bytes(fields, "user_data", 0, MAX_USER_DATA_BYTES, nullable=True)
    nonce = _bytes(fields, "nonce", 0, MAX_NONCE_BYTES, nullable=True)
    assert certificate is not None
    return ParsedDocument(
        protected=protected,
        payload=payload,
        signature=signature,
        module_id=module_id,
        digest=digest,
        timestamp_ms=timestamp,
        pcrs=pcrs,
        certificate=certificate,
        cabundle=cabundle,
        public_key=public_key,
        user_data=user_data,
        nonce=nonce,
        tagged=tagged,
    )
