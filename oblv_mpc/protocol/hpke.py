"""HPKE (RFC 9180) suites from ``cryptography``, and their public keys as bytes.

Two suites: X25519 with HKDF-SHA256 and AES-128-GCM (the default), and the post-quantum hybrid
ML-KEM-768+X25519 with HKDF-SHA256 and AES-256-GCM. A hybrid public key (1184 + 32 bytes) does
not fit the attestation's ``public_key`` field, so the attestation binds its SHA-256 instead.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from oblv_mpc.errors import ProtocolError

_X25519_BYTES = 32
_MLKEM768_PUBLIC_BYTES = 1184


class SuiteName(enum.StrEnum):
    """The HPKE suites this protocol speaks."""

    X25519 = "x25519-hkdfsha256-aes128gcm"
    MLKEM768_X25519 = "mlkem768x25519-hkdfsha256-aes256gcm"


_SUITES = {
    SuiteName.X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM),
    SuiteName.MLKEM768_X25519: hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
}


@dataclass(frozen=True)
class KeyPair:
    """An HPKE key pair of one suite, with its public key as bytes."""

    suite: SuiteName
    private: Any  # x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey
    public_bytes: bytes

    @property
    def public_sha256(self) -> bytes:
        """SHA-256 of the public key bytes."""
        return hashlib.sha256(self.public_bytes).digest()


def generate(suite: SuiteName) -> KeyPair:
    """A fresh key pair."""
    x = x25519.X25519PrivateKey.generate()
    x_public = x.public_key().public_bytes_raw()
    if suite is SuiteName.X25519:
        return KeyPair(suite, x, x_public)
    ml = mlkem.MLKEM768PrivateKey.generate()
    return KeyPair(suite, hpke.MLKEM768X25519PrivateKey(ml, x), ml.public_key().public_bytes_raw() + x_public)


def public_key(suite: SuiteName, data: bytes) -> Any:
    """Parse a public key of ``suite`` from its bytes."""
    try:
        if suite is SuiteName.X25519:
            if len(data) != _X25519_BYTES:
                raise ValueError("length")
            return x25519.X25519PublicKey.from_public_bytes(data)
        if len(data) != _MLKEM768_PUBLIC_BYTES + _X25519_BYTES:
            raise ValueError("length")
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM768_PUBLIC_BYTES]),
            x25519.X25519PublicKey.from_public_bytes(data[_MLKEM768_PUBLIC_BYTES:]),
        )
    except ValueError:
        raise ProtocolError(f"not a valid {suite.value} public key ({len(data)} bytes)") from None


def seal(suite: SuiteName, recipient: Any, plaintext: bytes, info: bytes) -> bytes:
    """HPKE single-shot encryption to ``recipient``: ``enc || ciphertext``."""
    return _SUITES[suite].encrypt(plaintext, recipient, info=info)


def open_(suite: SuiteName, private: Any, ciphertext: bytes, info: bytes) -> bytes:
    """HPKE single-shot decryption; any failure is one ProtocolError that says nothing more."""
    try:
        return _SUITES[suite].decrypt(ciphertext, private, info=info)
    except (InvalidTag, ValueError):
        raise ProtocolError("the message does not open: tampered, or not sealed for this key and context") from None
