"""Verify a Nitro attestation document: pure, bytes and a policy in, a verified object out.

The steps follow AWS's ``attestation_process.md`` (aws/aws-nitro-enclaves-nsm-api), in its
order: decode and check the structure (3.1, 3.2.2), verify the certificate chain to a pinned
root at the validation time (3.2.3, 3.2.4), verify the COSE_Sign1 signature (3.2.1). Then this
party's policy (DESIGN.md, Attestation 4-5): PCRs, debug mode, nonce, ``user_data`` and
``public_key`` binding. Every failure raises a subclass of
:class:`~oblv_mpc.errors.AttestationError` that names the check, what was expected and what was
found. No clock is read unless ``now`` is left out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import warnings
from dataclasses import dataclass

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from oblv_mpc.attestation.document import ParsedDocument, parse
from oblv_mpc.attestation.policy import DEBUG_PCR, AttestationPolicy, PcrSet, TrustedRoot
from oblv_mpc.errors import CertificateChainError, MalformedDocument, PolicyError, SignatureError

_MAX_CHAIN_DEPTH = 8
CHECKS = ("structure", "root", "chain", "signature", "pcrs", "nonce", "user_data", "public_key")
# Which of CHECKS a failure's own check name belongs to, for reports.
CHECK_OF_FAILURE = {
    "algorithm": "structure",
    "digest": "structure",
    "validity": "chain",
    "leaf": "chain",
    "debug": "pcrs",
}


@dataclass(frozen=True)
class Check:
    """One passed check, for reports: its name and what was found."""

    name: str
    detail: str


@dataclass(frozen=True)
class VerifiedAttestation:
    """An attestation document that passed every check. Only :func:`verify` makes these."""

    module_id: str
    timestamp: dt.datetime
    pcrs: dict[int, bytes]
    matched: PcrSet
    root: TrustedRoot
    debug: bool
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    leaf_not_after: dt.datetime
    document_sha256: str
    _token: object

    def __post_init__(self) -> None:
        if self._token is not _TOKEN:
            raise TypeError("VerifiedAttestation is made only by oblv_mpc.attestation.verify()")

    @property
    def development(self) -> bool:
        """Whether the document chains to a development (simulator) root."""
        return self.root.development


_TOKEN = object()


def _hex(data: bytes | None) -> str:
    return "nothing" if data is None else (data.hex() or "empty")


def _short(data: bytes | None) -> str:
    text = _hex(data)
    return text if len(text) <= 24 else f"{text[:12]}...{text[-8:]}"


def _certificate(der: bytes, what: str) -> x509.Certificate:
    # cryptography only warns about some RFC 5280 violations (e.g. a serial that is not
    # positive) that it will refuse later; we refuse them now.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        try:
            return x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion, CryptographyDeprecationWarning):
            raise CertificateChainError("chain", f"{what} is not a valid DER X.509 certificate") from None


def _check_chain(
    doc: ParsedDocument, policy: AttestationPolicy, now: dt.datetime
) -> tuple[x509.Certificate, TrustedRoot]:
    # 3.2.3: the bundle is [ROOT, INTERM_1, ..., INTERM_N]; the chain is leaf <- INTERM_N ... <- ROOT.
    # The root must be one this party pinned, by the SHA-256 of its exact DER.
    root_fp = hashlib.sha256(doc.cabundle[0]).hexdigest()
    root = next((r for r in policy.roots if hmac.compare_digest(r.sha256, root_fp)), None)
    if root is None:
        pinned = ", ".join(f"{r.name} {r.sha256[:16]}..." for r in policy.roots)
        raise CertificateChainError(
            "root",
            f"cabundle[0] is not a pinned root: found SHA-256 {root_fp[:16]}..., expected one of {pinned}",
            hint="the document does not come from the Nitro PKI (or simulator) your PCR file trusts",
        )
    anchor = _certificate(doc.cabundle[0], "cabundle[0] (the root)")
    intermediates = [_certificate(der, f"cabundle[{i}]") for i, der in enumerate(doc.cabundle[1:], start=1)]
    leaf = _certificate(doc.certificate, "the leaf certificate")
    # 3.2.3.1 validity of every certificate at `now`, 3.2.3.2-3 CA basic constraints and key
    # usage, 3.2.4 path building: webpki's CA profile; the leaf is checked by hand below.
    verifier = (
        PolicyBuilder()
        .store(Store([anchor]))
        .time(now)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates[::-1])
    except VerificationError as exc:
        start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        window = f"leaf valid {start:%Y-%m-%dT%H:%M:%SZ} to {end:%Y-%m-%dT%H:%M:%SZ}"
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            state = "expired" if now > leaf.not_valid_after_utc else "not yet valid"
            raise CertificateChainError(
                "validity",
                f"the leaf certificate is {state} at {now:%Y-%m-%dT%H:%M:%SZ} ({window})",
                hint="Nitro leaf certificates live 3 hours: fetch a fresh attestation document",
            ) from None
        raise CertificateChainError("chain", f"the certificate chain does not validate: {exc}") from None
    # 3.2.3.3 the target certificate: digitalSignature, not a CA; Nitro signs with P-384.
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateChainError("leaf", "the leaf certificate has no key usage extension") from None
    if not usage.digital_signature:
        raise CertificateChainError("leaf", "the leaf certificate's key usage lacks digitalSignature")
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca or constraints.path_length is not None:
            raise CertificateChainError("leaf", "the leaf certificate is a CA; it must be an end entity")
    except x509.ExtensionNotFound:
        pass
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise CertificateChainError("leaf", "the leaf certificate's key is not an EC P-384 key")
    return leaf, root


def _check_signature(doc: ParsedDocument, leaf: x509.Certificate) -> None:
    # 3.2.1 / RFC 9052 4.4: Sig_structure = ["Signature1", protected, external_aad, payload],
    # built from the bytes exactly as received.
    to_be_signed = cbor2.dumps(["Signature1", doc.protected, b"", doc.payload])
    r = int.from_bytes(doc.signature[:48], "big")
    s = int.from_bytes(doc.signature[48:], "big")
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        key.verify(encode_dss_signature(r, s), to_be_signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureError(
            "signature",
            "the COSE_Sign1 signature does not verify with the leaf certificate's key",
            hint="the document was altered, or signed by a key other than the leaf's",
        ) from None


def _check_pcrs(doc: ParsedDocument, policy: AttestationPolicy) -> tuple[PcrSet, bool]:
    debug = all(doc.pcrs.get(i) == DEBUG_PCR for i in (0, 1, 2))
    if debug and not policy.allow_debug:
        raise PolicyError(
            "debug",
            "the enclave runs in debug mode (PCR0-2 are all zero): the host can read its memory",
            hint="use a production enclave; for development only, pass --allow-debug-enclave",
        )
    if debug:
        return PcrSet({i: DEBUG_PCR for i in (0, 1, 2)}, name="debug enclave (PCR0-2 all zero)"), True
    for accepted in policy.accepted:
        if all(hmac.compare_digest(doc.pcrs.get(i, b""), v) for i, v in accepted.values.items()):
            return accepted, False
    # Name the first PCR that differs from every accepted set.
    for index in sorted({i for s in policy.accepted for i in s.values}):
        wanted = [s.values[index] for s in policy.accepted if index in s.values]
        if doc.pcrs.get(index) not in wanted:
            expected = ", ".join(_short(w) for w in wanted)
            raise PolicyError(
                "pcrs",
                f"PCR{index} mismatch: got {_short(doc.pcrs.get(index))}, expected one of {expected}",
                hint="the enclave runs other code than your PCR file accepts; do not send it anything",
            )
    raise PolicyError("pcrs", "the PCRs match no single accepted set (each PCR matches some set, but not one set)")


def _check_bytes(check: str, found: bytes | None, expected: bytes | None) -> None:
    if expected is None:
        return
    if found is None or not hmac.compare_digest(found, expected):
        raise PolicyError(check, f"{check} mismatch: got {_short(found)}, expected {_short(expected)}")


def verify(
    document: bytes,
    *,
    policy: AttestationPolicy,
    now: dt.datetime | None = None,
    nonce: bytes | None = None,
    user_data: bytes | None = None,
    public_key: bytes | None = None,
    report: list[Check] | None = None,
) -> VerifiedAttestation:
    """Verify ``document`` against ``policy`` at ``now`` (default: the current time).

    ``nonce``, ``user_data`` and ``public_key``, when given, must equal the document's fields.
    Raises an :class:`~oblv_mpc.errors.AttestationError` subclass for the first failed check.
    Each check that passes is appended to ``report``, if given.
    """
    passed = report.append if report is not None else (lambda _check: None)
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    doc = parse(document)  # 3.1 and 3.2.2
    passed(
        Check("structure", f"COSE_Sign1{' (tag 18)' if doc.tagged else ''}, ES384, digest SHA384, {len(doc.pcrs)} PCRs")
    )
    leaf, root = _check_chain(doc, policy, now)  # 3.2.3 and 3.2.4
    passed(Check("root", f"{root.name} (SHA-256 {root.sha256[:16]}...)"))
    passed(Check("chain", f"{len(doc.cabundle) + 1} certificates, valid at {now:%Y-%m-%dT%H:%M:%SZ}"))
    _check_signature(doc, leaf)  # 3.2.1
    passed(Check("signature", "ES384 over the COSE Sig_structure, by the leaf's key"))
    matched, debug = _check_pcrs(doc, policy)
    passed(Check("pcrs", f"PCR0 {_short(doc.pcrs[0])} matches {matched.label}"))
    for name, found, expected in (
        ("nonce", doc.nonce, nonce),
        ("user_data", doc.user_data, user_data),
        ("public_key", doc.public_key, public_key),
    ):
        _check_bytes(name, found, expected)
        passed(Check(name, f"equals the expected {_short(expected)}" if expected is not None else "not required"))
    try:
        timestamp = dt.datetime.fromtimestamp(doc.timestamp_ms / 1000, dt.UTC)
    except (OverflowError, ValueError, OSError):
        raise MalformedDocument("structure", f"timestamp {doc.timestamp_ms} is not a representable time") from None
    return VerifiedAttestation(
        module_id=doc.module_id,
        timestamp=timestamp,
        pcrs=dict(doc.pcrs),
        matched=matched,
        root=root,
        debug=debug,
        public_key=doc.public_key,
        user_data=doc.user_data,
        nonce=doc.nonce,
        leaf_not_after=leaf.not_valid_after_utc,
        document_sha256=hashlib.sha256(document).hexdigest(),
        _token=_TOKEN,
    )


def document_time(document: bytes) -> dt.datetime:
    """The (unverified) ``timestamp`` of a document, to verify old test documents at their time."""
    return dt.datetime.fromtimestamp(parse(document).timestamp_ms / 1000, dt.UTC)
