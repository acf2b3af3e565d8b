"""Verify a Nitro attestation document: pure, bytes and a policy in, a verified object out.

The steps follow AWS's ``attestation_process.md`` (aws/aws-nitro-enclaves-nsm-api), in its
order: decode and check the structure (3.1, 3.2.2), verify the certificate chain to a pinned
root at the validation time (3.2.3, 3.2.4), verify the COSE_Sign1 signature (3.2.1). Then this
party's policy (DESIGN.md, Attestation 4-5): PCRs, debug mode, nonce, ``user_data`` and
``public_key`` binding. Every failure raises a subclass of
:class:`~oblv_mpc.errors.AttestationError` that names the check, what was expected and what was
found. No clock is read unless ``now`` is left out.

:func:`checks` runs the steps one by one, yielding each as it passes (:class:`Passed`), and
returns the :class:`VerifiedAttestation`; :func:`verify` runs them all and returns it.
Nothing here renders anything: :mod:`oblv_mpc.attestation.report` turns the steps into a report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, NoReturn, SupportsIndex, final

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from oblv_mpc.attestation.chain import check_chain
from oblv_mpc.attestation.document import ParsedDocument, parse
from oblv_mpc.attestation.policy import DEBUG_PCR, AttestationPolicy, PcrSet, TrustedRoot
from oblv_mpc.errors import MalformedDocument, PolicyError, SignatureError

CHECKS = ("structure", "root", "chain", "signature", "pcrs", "nonce", "user_data", "public_key")
"""The checks :func:`checks` runs, in its order (a failure's own ``check`` may be finer: ``validity``)."""


@dataclass(frozen=True)
class Passed:
    """One check that passed, and what it established so far, as :func:`checks` yields it.

    ``check`` is one of :data:`CHECKS`. ``document`` is the decoded document, authenticated only
    once ``signature`` has passed; ``root`` is set from ``root`` on, ``matched`` from ``pcrs`` on;
    ``expected`` is what a ``nonce``, ``user_data`` or ``public_key`` check required (``None``:
    nothing was required).
    """

    check: str
    document: ParsedDocument
    now: dt.datetime
    root: TrustedRoot | None = None
    matched: PcrSet | None = None
    expected: bytes | None = None


class _Facts(NamedTuple):
    """What :func:`verify` established; immutable (a tuple's fields cannot be reassigned)."""

    module_id: str
    timestamp: dt.datetime
    pcrs: Mapping[int, bytes]
    matched: PcrSet
    root: TrustedRoot
    debug: bool
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    leaf_not_after: dt.datetime
    document_sha256: str


_TOKEN = object()
_ONLY_VERIFY = "a VerifiedAttestation is made only by oblv_mpc.attestation.verify()"


@final
class VerifiedAttestation:
    """An attestation document that passed every check. Only :func:`verify` makes these.

    Read-only all the way down: no constructor without the verifier's private token, no
    ``dataclasses.replace``, no subclass (which could override a field), no attribute to set
    (``object.__setattr__`` included: the fields are properties without setters), ``pcrs`` a
    read-only mapping. A copy is the same object; pickling is refused, since loading a pickle
    would make one from bytes that were never verified: send the document and verify it again.
    """

    __slots__ = ("_facts",)
    _facts: _Facts

    def __init__(self, facts: _Facts, token: object) -> None:
        if token is not _TOKEN:
            raise TypeError(_ONLY_VERIFY)
        object.__setattr__(self, "_facts", facts)

    def __init_subclass__(cls, **kwargs: object) -> NoReturn:
        raise TypeError(f"{_ONLY_VERIFY}; a subclass could change what was verified")

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"a VerifiedAttestation is read-only: cannot set {name}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"a VerifiedAttestation is read-only: cannot delete {name}")

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError(f"{_ONLY_VERIFY}: it is never pickled; send the document and verify it there")

    def __copy__(self) -> VerifiedAttestation:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> VerifiedAttestation:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifiedAttestation) and self._facts == other._facts

    def __hash__(self) -> int:
        return hash(self._facts.document_sha256)

    def __repr__(self) -> str:
        return (
            f"VerifiedAttestation(module_id={self.module_id!r}, matched={self.matched.label!r}, "
            f"debug={self.debug}, document_sha256={self.document_sha256!r})"
        )

    @property
    def module_id(self) -> str:
        """The enclave's module id, as the NSM reported it."""
        return self._facts.module_id

    @property
    def timestamp(self) -> dt.datetime:
        """When the NSM made the document (UTC)."""
        return self._facts.timestamp

    @property
    def pcrs(self) -> Mapping[int, bytes]:
        """Every PCR the document carries, index to value (read-only)."""
        return self._facts.pcrs

    @property
    def matched(self) -> PcrSet:
        """The accepted set of measurements the PCRs matched."""
        return self._facts.matched

    @property
    def root(self) -> TrustedRoot:
        """The pinned root the certificate chain leads to."""
        return self._facts.root

    @property
    def debug(self) -> bool:
        """Whether the enclave runs in debug mode (PCR0-2 all zero), which the policy allowed."""
        return self._facts.debug

    @property
    def public_key(self) -> bytes | None:
        """The document's ``public_key`` field."""
        return self._facts.public_key

    @property
    def user_data(self) -> bytes | None:
        """The document's ``user_data`` field."""
        return self._facts.user_data

    @property
    def nonce(self) -> bytes | None:
        """The document's ``nonce`` field."""
        return self._facts.nonce

    @property
    def leaf_not_after(self) -> dt.datetime:
        """When the leaf certificate expires: re-attest before then."""
        return self._facts.leaf_not_after

    @property
    def document_sha256(self) -> str:
        """The SHA-256 (hex) of the document's bytes as received."""
        return self._facts.document_sha256

    @property
    def development(self) -> bool:
        """Whether the document chains to a development (simulator) root."""
        return self.root.development


def _hex(data: bytes | None) -> str:
    return "nothing" if data is None else (data.hex() or "empty")


def short_hex(data: bytes | None) -> str:
    """Bytes as the verifier and its report quote them: hex, abbreviated past 24 digits."""
    text = _hex(data)
    return text if len(text) <= 24 else f"{text[:12]}...{text[-8:]}"


def pcr_mismatch(index: int, found: bytes | None, wanted: list[bytes]) -> str:
    """A PCR that matches none of the accepted values, in full, and where each one differs.

    Abbreviated values hide a difference in the middle (``f5b07aad913a...2239732b`` twice):
    every value is shown whole, with the first hex digit (from 1) where it parts from the
    document's.
    """
    got = _hex(found)
    shown = []
    for value in wanted:
        text = value.hex()
        at = next((i for i, (a, b) in enumerate(zip(got, text, strict=False)) if a != b), min(len(got), len(text)))
        shown.append(f"{text} (differs from hex digit {at + 1} on)")
    expected = shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)
    return f"PCR{index} mismatch: got {got}, expected {expected}"


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
            raise PolicyError(
                "pcrs",
                pcr_mismatch(index, doc.pcrs.get(index), wanted),
                hint="the enclave runs other code than your PCR file accepts; do not send it anything",
            )
    raise PolicyError("pcrs", "the PCRs match no single accepted set (each PCR matches some set, but not one set)")


def _check_bytes(check: str, found: bytes | None, expected: bytes | None) -> None:
    if expected is None:
        return
    if found is None or not hmac.compare_digest(found, expected):
        raise PolicyError(check, f"{check} mismatch: got {short_hex(found)}, expected {short_hex(expected)}")


def checks(
    document: bytes,
    *,
    policy: AttestationPolicy,
    now: dt.datetime | None = None,
    nonce: bytes | None = None,
    user_data: bytes | None = None,
    public_key: bytes | None = None,
) -> Generator[Passed, None, VerifiedAttestation]:
    """Run :func:`verify`'s checks one at a time: yield each as it passes, return the result.

    Raises an :class:`~oblv_mpc.errors.AttestationError` subclass for the first failed check;
    the checks not yielded before it were not run.
    """
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    doc = parse(document)  # 3.1 and 3.2.2
    yield Passed("structure", doc, now)
    leaf, root = check_chain(doc, policy, now)  # 3.2.3 and 3.2.4
    yield Passed("root", doc, now, root)
    yield Passed("chain", doc, now, root)
    _check_signature(doc, leaf)  # 3.2.1
    yield Passed("signature", doc, now, root)
    matched, debug = _check_pcrs(doc, policy)
    yield Passed("pcrs", doc, now, root, matched)
    for name, found, expected in (
        ("nonce", doc.nonce, nonce),
        ("user_data", doc.user_data, user_data),
        ("public_key", doc.public_key, public_key),
    ):
        _check_bytes(name, found, expected)
        yield Passed(name, doc, now, root, matched, expected)
    try:
        timestamp = dt.datetime.fromtimestamp(doc.timestamp_ms / 1000, dt.UTC)
    except (OverflowError, ValueError, OSError):
        raise MalformedDocument("structure", f"timestamp {doc.timestamp_ms} is not a representable time") from None
    facts = _Facts(
        module_id=doc.module_id,
        timestamp=timestamp,
        pcrs=MappingProxyType(dict(doc.pcrs)),
        matched=matched,
        root=root,
        debug=debug,
        public_key=doc.public_key,
        user_data=doc.user_data,
        nonce=doc.nonce,
        leaf_not_after=leaf.not_valid_after_utc,
        document_sha256=hashlib.sha256(document).hexdigest(),
    )
    return VerifiedAttestation(facts, _TOKEN)


def verify(
    document: bytes,
    *,
    policy: AttestationPolicy,
    now: dt.datetime | None = None,
    nonce: bytes | None = None,
    user_data: bytes | None = None,
    public_key: bytes | None = None,
) -> VerifiedAttestation:
    """Verify ``document`` against ``policy`` at ``now`` (default: the current time).

    ``nonce``, ``user_data`` and ``public_key``, when given, must equal the document's fields.
    Raises an :class:`~oblv_mpc.errors.AttestationError` subclass for the first failed check.
    """
    steps = checks(document, policy=policy, now=now, nonce=nonce, user_data=user_data, public_key=public_key)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            verified: VerifiedAttestation = done.value
            return verified


def document_time(document: bytes) -> dt.datetime:
    """The (unverified) ``timestamp`` of a document, to verify old test documents at their time."""
    return dt.datetime.fromtimestamp(parse(document).timestamp_ms / 1000, dt.UTC)
