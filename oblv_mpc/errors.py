"""The one error tree of ``oblv_mpc``.

Every deliberate failure is an :class:`MpcError`. The CLI catches that base class in one
place, prints :meth:`MpcError.diagnostics` to stderr and exits with :attr:`MpcError.exit_code`.
Anything else that escapes is a bug, and shows a traceback (without locals).

::

    MpcError                         exit 1
    ├── UsageError                   exit 2   a flag or argument that cannot work
    ├── KeyFileError                 exit 3   a key that cannot be read, or may not be written
    ├── ManifestError                exit 3   a session manifest that does not validate
    ├── PcrFileError                 exit 3   a PCR file that does not validate
    ├── InputDataError               exit 3   a table that does not match its schema
    ├── AttestationError             exit 4   an attestation document failed a check
    │   ├── MalformedDocument                 structure, types, sizes, encoding
    │   ├── CertificateChainError             chain to the pinned root, validity time
    │   ├── SignatureError                    the COSE_Sign1 signature
    │   └── PolicyError                       PCRs, debug mode, nonce, user_data, public_key
    ├── ProtocolError                exit 5   an envelope that does not open or verify
    ├── EnclaveUnreachable           exit 6   no answer from the enclave
    │   └── UnauthenticatedAnswer             an answer the attested enclave did not seal and sign
    ├── EnclaveRefused               exit 7   the enclave answered with a refusal, sealed and signed
    ├── NotReady                     exit 8   a result whose inputs are not all in yet
    │   └── StillRunning                      a result the enclave is still generating
    └── NsmError                     exit 9   the Nitro Secure Module (/dev/nsm) refused or failed

Error messages never contain key material: keys are referred to by file name or fingerprint.
Messages quote text from outside (an enclave's or the network's words, a CSV row, manifest
keys, file names), so :class:`MpcError` escapes every character a terminal would act on, line
breaks included, in ``message`` and ``hint`` (:mod:`oblv_mpc.terminal_text`): a quoted value can
neither erase a line nor start a forged one. The raw text stays in attributes for programs
(``reason``, ``claimed``, ``problems``). Only :class:`ManifestError` has several lines, one per
problem, each escaped.
"""

from __future__ import annotations

from oblv_mpc.terminal_text import visible


class MpcError(Exception):
    """Base of every deliberate failure. ``hint`` says what to do next. Both are shown escaped."""

    exit_code = 1
    title = "error"
    _keep = ""  # characters a subclass's message may keep: only ManifestError's line breaks

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = visible(message, keep=self._keep)
        self.hint = visible(hint) if hint is not None else None
        super().__init__(self.message)

    def diagnostics(self) -> str:
        """What failed and, where we know it, what to check next."""
        text = f"{self.title}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(MpcError):
    """Arguments that cannot work together."""

    exit_code = 2
    title = "usage error"


class KeyFileError(MpcError):
    """A key that cannot be loaded, is unsafely stored, or would overwrite another."""

    exit_code = 3
    title = "key error"


class ManifestError(MpcError):
    """A session manifest that does not validate. ``problems`` lists every problem found."""

    exit_code = 3
    title = "invalid manifest"
    _keep = "\n"

    def __init__(self, problems: list[str], *, source: str = "<manifest>") -> None:
        self.problems = list(problems)
        self.source = source
        source = visible(source)
        lines = "\n".join(f"  - {visible(p)}" for p in self.problems)  # a problem quotes the YAML's keys
        count = len(self.problems)
        super().__init__(
            f"{source}: {count} problem{'s' if count != 1 else ''}\n{lines}",
            hint="fix the fields named above; `mpc session check FILE` re-checks it",
        )


class PcrFileError(MpcError):
    """A PCR file that is missing, empty or malformed: never taken as 'no check'."""

    exit_code = 3
    title = "invalid PCR file"


class InputDataError(MpcError):
    """A data table that does not match the manifest's schema for it."""

    exit_code = 3
    title = "invalid input data"


class AttestationError(MpcError):
    """An attestation document failed verification. Nothing is sent to such an enclave."""

    exit_code = 4
    title = "attestation failed"

    def __init__(self, check: str, message: str, *, hint: str | None = None) -> None:
        self.check = check
        self.detail = message
        super().__init__(f"[{check}] {message}", hint=hint)


class MalformedDocument(AttestationError):
    """The document's structure, field types, sizes or encoding are wrong."""


class CertificateChainError(AttestationError):
    """The certificate chain does not lead to the pinned root at the validation time."""


class SignatureError(AttestationError):
    """The COSE_Sign1 signature does not verify with the leaf certificate's key."""


class PolicyError(AttestationError):
    """The document is authentic, but not what this party agreed to talk to."""


class ProtocolError(MpcError):
    """An envelope that does not open, verify or match what was expected."""

    exit_code = 5
    title = "protocol error"


class EnclaveUnreachable(MpcError):
    """The enclave did not answer."""

    exit_code = 6
    title = "enclave unreachable"


class UnauthenticatedAnswer(EnclaveUnreachable):
    """An answer that is not sealed to us and signed by the attested enclave's key.

    Plain JSON or HTML from whatever answered at the enclave's address: the enclave's own HTTP
    layer before it can authenticate anything, a load balancer, the operator, or an attacker on
    the path. What it ``claimed`` (a ``code`` and a message) is evidence of nothing; it is
    quoted, escaped, and never reported as the enclave's refusal.
    """

    title = "unauthenticated answer"

    def __init__(self, status: int, code: str | None, claimed: str, *, origin: str, hint: str | None = None) -> None:
        self.status = status
        self.code = code
        self.claimed = claimed
        said = f"{code}: {claimed}" if code else claimed
        super().__init__(
            f"HTTP {status} from {origin}, not from the attested enclave (unauthenticated: anything on the "
            f"path could have sent it); it says: {said}",
            hint=hint,
        )


class EnclaveRefused(MpcError):
    """The attested enclave refused the request, in an answer sealed to us and signed by its key.

    ``code`` is its machine-readable reason, ``reason`` its words (raw; ``message`` escapes them).
    """

    exit_code = 7
    title = "refused by the enclave"

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        self.code = code
        self.reason = message
        super().__init__(f"{message} ({code})", hint=hint)


class NotReady(MpcError):
    """A computation whose inputs are not all present yet."""

    exit_code = 8
    title = "not ready"


class StillRunning(NotReady):
    """A result the enclave is still generating (a synthetic release): how far it has come."""

    title = "still running"

    def __init__(self, computation: str, progress: float, stage: str) -> None:
        self.computation = computation
        self.progress = progress
        self.stage = stage
        super().__init__(
            f"{computation} is being generated: {progress:.0%} ({stage})",
            hint=f"`mpc fetch {computation}` waits for it and shows its progress",
        )


class NsmError(MpcError):
    """The Nitro Secure Module refused a request, or cannot be reached."""

    exit_code = 9
    title = "NSM error"
