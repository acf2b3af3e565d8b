"""Every refusal code the enclave uses, in one table that both ends read.

A refusal is a ``code`` (machine-readable) and a ``reason`` (words for people); on the wire its
words are the ``message`` field, whether the refusal is sealed (``error: {code, message}`` in a
signed response) or plain JSON (``{code, message}``, or FastAPI's ``{detail: {code, message}}``).

Two kinds, by who can have sent them (docs/protocol.md, section 7):

- **sealed**: the enclave knew the party, and sealed and signed its refusal. The client raises
  the table's exception for it (:class:`EnclaveRefused` unless the table says otherwise), with
  the table's hint.
- **plain**: sent before the enclave knows who is asking (or by anything on the path). The
  enclave answers with the table's HTTP status; the client reports it as an
  :class:`~oblv_mpc.errors.UnauthenticatedAnswer` with the table's hint.

The enclave turns the exceptions its operations raise into codes with :func:`refusal_of`; the
client turns a sealed refusal back into an exception with :func:`sealed_error`.
"""

from __future__ import annotations

from dataclasses import dataclass

from oblv_mpc.errors import EnclaveRefused, InputDataError, MpcError, NotReady

_CHECK_KEY = "check that your key is the one the manifest lists for you"


@dataclass(frozen=True)
class Code:
    """One refusal code: what it means, how it travels, what the client raises and says to do."""

    name: str
    meaning: str
    status: int | None = None  # the HTTP status when it is sent plain; None: only ever sealed
    error: type[MpcError] = EnclaveRefused  # what the client raises when it comes sealed
    hint: str | None = None


_CODES = (
    # plain: before the party is known, or not about a party's request at all (busy and
    # too_large come sealed too: a party's FastEnclaves bodies or chunks past their limits)
    Code("cannot_open", "the envelope does not open, or is malformed", 400,
         hint="the enclave could not open the request, or something claims so; the client re-attests before its "
         "next request (mpc connect does it now)"),
    Code("unknown_party", "the request names no party of the session", 403, hint=_CHECK_KEY),
    Code("bad_signature", "the request is not signed by the party it names", 403, hint=_CHECK_KEY),
    Code("wrong_binding", "the request is bound to another session, manifest, enclave key or version", 403,
         hint="check that you hold the manifest the enclave runs (mpc connect re-checks it)"),
    Code("unknown_operation", "no such operation", 404),
    Code("enclave_restarted", "the request is sealed to another enclave key", 409),
    Code("too_large", "a body or chunk over its limit", 413),
    Code("read_timeout", "a body that did not arrive within the read deadline", 408),
    Code("disconnected", "the client left before its body arrived", 400),
    Code("busy", "the enclave holds as many request bytes as it may", 503),
    Code("not_provisioned", "the enclave has no manifest yet", 503,
         hint="if the enclave really waits for its manifest, the operator provisions it (mpc enclave provision)"),
    Code("already_provisioned", "the manifest is set once per launch", 409),
    Code("invalid_manifest", "the manifest given to provision does not validate", 422),
    Code("bad_nonce", "the attestation nonce is not hex, or not 16 to 64 bytes", 400),
    # sealed: the enclave knew the party
    Code("bad_request", "a malformed request body (the reason names the field)"),
    Code("stale", "the request's time is outside the window, or at or before the party's replay floor"),
    Code("replayed", "the request id was seen before"),
    Code("unknown_table", "no such input table"),
    Code("unknown_computation", "no such computation"),
    Code("forbidden", "the party lacks the role, or is not the table's owner or a reader of the computation"),
    Code("frozen", "a computation has used the table: it cannot be replaced"),
    Code("upload_sequence", "a chunk out of order, repeated or late, or a digest that does not match"),
    Code("too_many_uploads", "the party has as many uploads in progress as it may"),
    Code("too_many_streams", "the party has as many FastEnclaves requests in progress as it may"),
    Code("input_invalid", "the table does not match its schema; nothing was kept", error=InputDataError,
         hint="fix the file and submit it again; nothing was kept"),
    Code("not_ready", "the computation is waiting for inputs", error=NotReady,
         hint="try again once every input is in"),
    Code("budget_exhausted", "the session's privacy budget does not cover the release"),
    Code("withheld", "a release rule withheld the whole result (told to its readers only)"),
    Code("compute_limit", "the computation was stopped at its time or memory limit"),
    Code("compute_failed", "the computation failed while running; no detail is given"),
)  # fmt: skip
CODES: dict[str, Code] = {code.name: code for code in _CODES}


def status_of(code: str) -> int:
    """The HTTP status of a plain refusal."""
    status = CODES[code].status
    assert status is not None, f"{code} is only ever sealed"
    return status


def refusal_of(error: MpcError) -> tuple[str, str] | None:
    """The code and reason the enclave answers an operation's exception with, or None (a bug)."""
    if isinstance(error, EnclaveRefused):
        return error.code, error.reason
    for code in _CODES:
        if code.error is not EnclaveRefused and isinstance(error, code.error):
            return code.name, error.message
    return None


def sealed_error(code: str, reason: str) -> MpcError:
    """The exception for a refusal the attested enclave sealed and signed."""
    known = CODES.get(code)
    if known is None or known.error is EnclaveRefused:
        return EnclaveRefused(code, reason)
    return known.error(reason, hint=known.hint)


def plain_hint(code: str | None) -> str | None:
    """What to do about a plain (unauthenticated) refusal claiming ``code``, if the table says."""
    known = CODES.get(code or "")
    return known.hint if known is not None and known.status is not None else None
