"""A report of an attestation document's checks: which passed, which failed, which never ran.

The verifier (:mod:`oblv_mpc.attestation.verify`) raises or returns; this module runs the same
steps through :func:`~oblv_mpc.attestation.verify.checks`, one at a time, and describes each:
``mpc attestation verify`` renders the rows as ticks and crosses, or as JSON. The report never
decides anything itself: ``verified`` is what the verifier returned, ``failure`` what it raised.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from oblv_mpc.attestation.policy import AttestationPolicy
from oblv_mpc.attestation.verify import CHECKS, Passed, VerifiedAttestation, checks, short_hex
from oblv_mpc.errors import AttestationError

# Which of CHECKS a failure's own, finer check name belongs to.
_CHECK_OF_FAILURE = {
    "algorithm": "structure",
    "digest": "structure",
    "validity": "chain",
    "leaf": "chain",
    "debug": "pcrs",
}


@dataclass(frozen=True)
class Row:
    """One check in a report: ``ok`` is True (passed), False (failed) or None (not checked: not
    reached, or nothing was given to compare with, such as a nonce)."""

    check: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class Report:
    """Every check in order; the verified attestation, or the failure that stopped the checks."""

    rows: tuple[Row, ...]
    verified: VerifiedAttestation | None
    failure: AttestationError | None

    def result(self) -> VerifiedAttestation:
        """The verified attestation; raises the failure instead if a check failed."""
        if self.failure is not None:
            raise self.failure
        assert self.verified is not None  # explain() sets exactly one of the two
        return self.verified


def _detail(step: Passed) -> str:
    """What a passed check found, in words."""
    doc = step.document
    if step.check == "structure":
        return f"COSE_Sign1{' (tag 18)' if doc.tagged else ''}, ES384, digest SHA384, {len(doc.pcrs)} PCRs"
    if step.check == "root" and step.root is not None:
        return f"{step.root.name} (SHA-256 {step.root.sha256[:16]}...)"
    if step.check == "chain":
        return f"{len(doc.cabundle) + 1} certificates, valid at {step.now:%Y-%m-%dT%H:%M:%SZ}"
    if step.check == "signature":
        return "ES384 over the COSE Sig_structure, by the leaf's key"
    if step.check == "pcrs" and step.matched is not None:
        return f"PCR0 {short_hex(doc.pcrs[0])} matches {step.matched.label}"
    if step.expected is not None:
        return f"equals the expected {short_hex(step.expected)}"
    return _NOT_CHECKED.get(step.check, "not checked: no value was expected")


# What a check that had nothing to compare with leaves open: shown as not checked, never as passed.
_NOT_CHECKED = {
    "nonce": "not checked: no nonce was given (--nonce HEX), so this may be an old document replayed",
    "user_data": "not checked: no user_data was expected",
    "public_key": "not checked: no public_key was expected",
}


def _row(step: Passed) -> Row:
    """A passed step as a row; a comparison with nothing expected is not checked (no tick)."""
    unchecked = step.check in _NOT_CHECKED and step.expected is None
    return Row(step.check, None if unchecked else True, _detail(step))


def explain(
    document: bytes,
    *,
    policy: AttestationPolicy,
    now: dt.datetime | None = None,
    nonce: bytes | None = None,
    user_data: bytes | None = None,
    public_key: bytes | None = None,
) -> Report:
    """Verify ``document`` as :func:`~oblv_mpc.attestation.verify.verify` does, describing each check.

    An attestation failure does not raise: it is the report's ``failure`` (raise it to refuse).
    """
    rows: list[Row] = []
    steps = checks(document, policy=policy, now=now, nonce=nonce, user_data=user_data, public_key=public_key)
    try:
        while True:
            step = next(steps)
            rows.append(_row(step))
    except StopIteration as done:
        verified: VerifiedAttestation = done.value
        return Report(tuple(rows), verified, None)
    except AttestationError as failure:
        slot = _CHECK_OF_FAILURE.get(failure.check, failure.check)
        rows.append(Row(slot, False, failure.detail))
        reached = {row.check for row in rows}
        rows += [Row(name, None, "not checked") for name in CHECKS if name not in reached]
        return Report(tuple(rows), None, failure)
