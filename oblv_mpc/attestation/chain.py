"""The certificate chain of a Nitro attestation document, to a root the party pinned.

AWS's ``attestation_process.md`` 3.2.3-3.2.4: the ``cabundle`` is root first, the leaf is the
document's ``certificate``; the root must be pinned by the SHA-256 of its exact DER, every
certificate valid at the validation time, the CAs per webpki's CA profile, and the leaf an end
entity with digitalSignature and a P-384 key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import warnings

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from oblv_mpc.attestation.document import ParsedDocument
from oblv_mpc.attestation.policy import AttestationPolicy, TrustedRoot
from oblv_mpc.errors import CertificateChainError

_MAX_CHAIN_DEPTH = 8


def _certificate(der: bytes, what: str) -> x509.Certificate:
    # cryptography only warns about some RFC 5280 violations (e.g. a serial that is not
    # positive) that it will refuse later; we refuse them now.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        try:
            return x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion, CryptographyDeprecationWarning):
            raise CertificateChainError("chain", f"{what} is not a valid DER X.509 certificate") from None


def check_chain(
    doc: ParsedDocument, policy: AttestationPolicy, now: dt.datetime
) -> tuple[x509.Certificate, TrustedRoot]:
    """Steps 3.2.3 and 3.2.4: the leaf's chain to a pinned root, valid at ``now``; the leaf's key.

    Returns the leaf certificate (whose key verifies the signature) and the pinned root reached.
    """
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
