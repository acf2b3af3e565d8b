"""What a party accepts: measurements, trusted roots, and whether debug enclaves may pass.

A policy is data: :func:`oblv_mpc.attestation.pcrs.load_pcr_file` reads one from a PCR file,
and the CLI builds one from ``--pcr0/--pcr1/--pcr2``. An empty policy cannot be made: a policy
with no accepted measurements would check nothing, so it is an error instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources

from oblv_mpc.errors import PcrFileError

AWS_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
PCR_BYTES = 48  # SHA-384
DEBUG_PCR = bytes(PCR_BYTES)


@dataclass(frozen=True)
class TrustedRoot:
    """A root certificate pinned by the SHA-256 of its DER. ``development`` marks a simulator's."""

    sha256: str
    name: str
    development: bool = False

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise PcrFileError(f"root fingerprint must be 64 lowercase hex digits (SHA-256), found {self.sha256!r}")


AWS_ROOT = TrustedRoot(AWS_ROOT_G1_SHA256, "AWS Nitro Enclaves root G1")


def aws_root_der() -> bytes:
    """The AWS Nitro Enclaves root G1 that ships in this package, checked against its pin."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = resources.files("oblv_mpc.attestation").joinpath("roots/aws_nitro_root_g1.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    if hashlib.sha256(der).hexdigest() != AWS_ROOT_G1_SHA256:
        raise RuntimeError("the packaged AWS root does not match its pinned fingerprint: the install is damaged")
    return der


@dataclass(frozen=True)
class PcrSet:
    """One accepted set of measurements: PCR0-2, and optionally more (3, 4, 8, ...)."""

    values: dict[int, bytes]
    name: str = ""

    def __post_init__(self) -> None:
        for index in (0, 1, 2):
            if index not in self.values:
                raise PcrFileError(f"accepted measurements {self.label}: PCR{index} is missing; PCR0-2 are required")
        for index, value in self.values.items():
            if not 0 <= index < 32:
                raise PcrFileError(f"PCR index {index} is out of range 0..31")
            if len(value) != PCR_BYTES:
                raise PcrFileError(f"PCR{index} must be {PCR_BYTES} bytes (96 hex digits), found {len(value)}")

    @property
    def label(self) -> str:
        """The set's name, for messages (``(unnamed)`` when it has none)."""
        return self.name or "(unnamed)"

    @property
    def is_debug(self) -> bool:
        """Whether PCR0-2 are all zero: a debug-mode enclave's measurements."""
        return all(self.values[i] == DEBUG_PCR for i in (0, 1, 2))


@dataclass(frozen=True)
class AttestationPolicy:
    """The measurements and roots a party accepts.

    ``allow_debug`` lets a debug-mode enclave (PCR0-2 all zero, memory readable by the host)
    pass: only for development, and the CLI warns on every command that uses it.
    """

    accepted: tuple[PcrSet, ...]
    roots: tuple[TrustedRoot, ...] = (AWS_ROOT,)
    allow_debug: bool = False
    source: str = field(default="<policy>", compare=False)

    def __post_init__(self) -> None:
        if not self.accepted:
            raise PcrFileError(
                f"{self.source}: no accepted measurements; an empty PCR policy would check nothing",
                hint="list at least one set of PCR0, PCR1 and PCR2",
            )
        if not self.roots:
            raise PcrFileError(f"{self.source}: no trusted root")
        if any(s.is_debug for s in self.accepted) and not self.allow_debug:
            raise PcrFileError(
                f"{self.source}: accepts all-zero PCR0-2 (a debug enclave) without allow_debug",
                hint="debug enclaves expose their memory to the host; remove that set, or allow debug explicitly",
            )

    @property
    def development(self) -> bool:
        """Whether this policy trusts a development (simulator) root."""
        return any(r.development for r in self.roots)
