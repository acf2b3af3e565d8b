"""A local Nitro Security Module: documents in exactly the Nitro format, from a development CA.

:class:`DevelopmentCA` is a P-384 PKI shaped like AWS's (root -> zonal -> instance -> leaf,
with AWS's basic constraints and key usages). Its root and intermediates are created once and
kept on disk (keys mode 0600), so PCR files that pin the root stay valid across runs; each
:class:`SimulatedNsm` (one per enclave start) gets its own short-lived leaf, as a real enclave
does. Documents are untagged COSE_Sign1 with ES384, verified by the very same code as AWS's.

A client trusts the development root only when its PCR file pins it by fingerprint and marks
it as development; the CLI then says "development enclave" on every command.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from oblv_mpc.attestation.measure import Measurements
from oblv_mpc.attestation.policy import AttestationPolicy, PcrSet, TrustedRoot
from oblv_mpc.errors import NsmError

Clock = Callable[[], dt.datetime]
LEAF_LIFETIME = dt.timedelta(hours=3)  # as AWS's leaf certificates
_RENEW_BEFORE = dt.timedelta(minutes=10)
_CA_LIFETIME = dt.timedelta(days=3650)
_BACKDATE = dt.timedelta(minutes=5)
_LEVELS = ("root", "zonal", "instance")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_ca_dir() -> Path:
    """Where the development CA lives: ``$MPC_HOME/dev-ca``, default ``~/.mpc/dev-ca``."""
    home = os.environ.get("MPC_HOME")
    return (Path(home) if home else Path.home() / ".mpc") / "dev-ca"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "oblv_mpc development"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "simulated Nitro Enclaves"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    path_length: int | None,
    ca: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA384())


@dataclass(frozen=True)
class DevelopmentCA:
    """The simulator's root and intermediates, with their keys."""

    directory: Path
    certificates: tuple[x509.Certificate, ...]  # root first, as in a Nitro cabundle
    keys: tuple[ec.EllipticCurvePrivateKey, ...]

    @property
    def root_der(self) -> bytes:
        """The development root certificate, DER."""
        return self.certificates[0].public_bytes(serialization.Encoding.DER)

    @property
    def root_sha256(self) -> str:
        """The SHA-256 (hex) of the root's DER: what a PCR file pins."""
        return hashlib.sha256(self.root_der).hexdigest()

    @property
    def trusted_root(self) -> TrustedRoot:
        """The root as a policy trusts it, marked as a development root."""
        return TrustedRoot(self.root_sha256, f"oblv_mpc development root ({self.directory})", development=True)

    def cabundle(self) -> list[bytes]:
        """The CA certificates (DER), root first, as a document's ``cabundle``."""
        return [c.public_bytes(serialization.Encoding.DER) for c in self.certificates]

    @property
    def not_before(self) -> dt.datetime:
        """From when every certificate of the CA is valid."""
        return max(c.not_valid_before_utc for c in self.certificates)

    @property
    def not_after(self) -> dt.datetime:
        """Until when every certificate of the CA is valid."""
        return min(c.not_valid_after_utc for c in self.certificates)

    def check_valid_at(self, now: dt.datetime) -> None:
        """Refuse, saying what to do, when the CA cannot issue a certificate valid at ``now``.

        A CA made under one clock (say the real one) is not valid under another far from it (a
        test's injected clock, a machine whose clock was wrong); leaves issued then would fail
        every verification with a puzzling "not yet valid".
        """
        if not self.not_before <= now <= self.not_after - LEAF_LIFETIME:
            raise NsmError(
                f"the development CA in {self.directory} is valid from {self.not_before:%Y-%m-%dT%H:%M:%SZ} "
                f"to {self.not_after:%Y-%m-%dT%H:%M:%SZ}; it cannot issue a leaf valid at {now:%Y-%m-%dT%H:%M:%SZ} "
                "(the simulated enclave's clock)",
                hint="check the clock; or delete that folder to make a new development CA (parties then need "
                "the new PCR file, which pins the new root)",
            )

    @classmethod
    def load_or_create(cls, directory: Path | None = None, *, clock: Clock = _utcnow) -> DevelopmentCA:
        """Load the CA kept in ``directory``, creating it on first use."""
        directory = directory or default_ca_dir()
        if not (directory / "root.der").exists():
            cls._create(directory, clock())
        certificates, keys = [], []
        for level in _LEVELS:
            certificates.append(x509.load_der_x509_certificate((directory / f"{level}.der").read_bytes()))
            key = serialization.load_der_private_key((directory / f"{level}_key.der").read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            keys.append(key)
        return cls(directory, tuple(certificates), tuple(keys))

    @staticmethod
    def _create(directory: Path, now: dt.datetime) -> None:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".dev-ca-", dir=directory.parent))
        try:
            os.chmod(staging, 0o700)
            issuer: x509.Certificate | None = None
            issuer_key: ec.EllipticCurvePrivateKey | None = None
            for level, path_length in zip(_LEVELS, (2, 1, 0), strict=True):
                key = ec.generate_private_key(ec.SECP384R1())
                cert = _issue(
                    f"{level}.simulated.nitro-enclaves",
                    key,
                    issuer,
                    issuer_key or key,
                    now - _BACKDATE,
                    now + _CA_LIFETIME,
                    path_length=path_length,
                    ca=True,
                )
                (staging / f"{level}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
                key_file = staging / f"{level}_key.der"
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(
                        key.private_bytes(
                            serialization.Encoding.DER,
                            serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption(),
                        )
                    )
                issuer, issuer_key = cert, key
            try:
                staging.rename(directory)  # atomic: a concurrent creator's CA wins, ours is dropped
            except OSError:
                if not (directory / "root.der").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def policy(self, measurements: Measurements, *, name: str = "local simulated enclave") -> AttestationPolicy:
        """The development policy a party needs to talk to a local enclave with ``measurements``."""
        return AttestationPolicy(
            accepted=(PcrSet(measurements.as_dict(), name=name),),
            roots=(self.trusted_root,),
            source="development PCR policy",
        )


class SimulatedNsm:
    """An :class:`~oblv_mpc.attestation.attestor.Attestor` for the local enclave."""

    development = True

    def __init__(
        self, ca: DevelopmentCA, measurements: Measurements, *, clock: Clock = _utcnow, debug: bool = False
    ) -> None:
        self.ca = ca
        self.measurements = measurements
        self.debug = debug  # a debug-mode enclave reports PCR0-2 as zero, as Nitro does
        self._clock = clock
        self.module_id = f"i-{secrets.token_hex(8)}-enc{secrets.token_hex(8)}"
        self._leaf: x509.Certificate | None = None
        self._leaf_key: ec.EllipticCurvePrivateKey | None = None

    def pcrs(self) -> dict[int, bytes]:
        """PCR0-15 as a real NSM reports them: 0-2 measured (zero in debug mode), the others zero."""
        values = {i: bytes(48) for i in range(16)}
        if not self.debug:
            values.update(self.measurements.as_dict())
        return values

    def _current_leaf(self, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        leaf, key = self._leaf, self._leaf_key
        fresh = (
            leaf is not None
            and key is not None
            and leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc - _RENEW_BEFORE
        )
        if not fresh:
            self.ca.check_valid_at(now)
            key = ec.generate_private_key(ec.SECP384R1())
            leaf = _issue(
                f"{self.module_id}.simulated",
                key,
                self.ca.certificates[-1],
                self.ca.keys[-1],
                now - _BACKDATE,
                now + LEAF_LIFETIME,
                path_length=None,
                ca=False,
            )
            self._leaf, self._leaf_key = leaf, key
        assert leaf is not None and key is not None
        return leaf, key

    def attest(self, *, nonce: bytes | None, user_data: bytes | None, public_key: bytes | None) -> bytes:
        """A COSE_Sign1 attestation document, as the Nitro NSM would return it."""
        now = self._clock()
        leaf, key = self._current_leaf(now)
        payload = cbor2.dumps(
            {
                "module_id": self.module_id,
                "digest": "SHA384",
                "timestamp": int(now.timestamp() * 1000),
                "pcrs": self.pcrs(),
                "certificate": leaf.public_bytes(serialization.Encoding.DER),
                "cabundle": self.ca.cabundle(),
                "public_key": public_key,
                "user_data": user_data,
                "nonce": nonce,
            }
        )
        protected = cbor2.dumps({1: -35})
        to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
        r, s = decode_dss_signature(key.sign(to_be_signed, ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")
        return cbor2.dumps([protected, {}, payload, signature])
