"""What an attestation document's ``user_data`` binds: this session and the enclave's keys.

``user_data`` is the deterministic CBOR of::

    {"v": 1, "manifest": SHA-256 of the canonical manifest, "suite": HPKE suite name,
     "hpke": SHA-256 of the HPKE public key, "signing": SHA-256 of the signing key's SPKI DER,
     "instance": 16 random bytes chosen at enclave start}

(about 170 bytes; the NSM takes 512). For the X25519 suite the document's ``public_key`` also
carries the raw HPKE key. A client that verified the document and finds these hashes equal to
the keys it was handed knows the keys live in that enclave, for that manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2

from oblv_mpc.errors import PolicyError, ProtocolError
from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.protocol import cbor
from oblv_mpc.protocol.hpke import SuiteName

BINDING_VERSION = 1


@dataclass(frozen=True)
class EnclaveBinding:
    """The values bound into ``user_data``."""

    manifest_sha256: bytes
    suite: SuiteName
    hpke_sha256: bytes
    signing_sha256: bytes
    instance: bytes

    def encode(self) -> bytes:
        """The deterministic CBOR bound into the attestation's ``user_data``."""
        return cbor2.dumps(
            {
                "v": BINDING_VERSION,
                "manifest": self.manifest_sha256,
                "suite": self.suite.value,
                "hpke": self.hpke_sha256,
                "signing": self.signing_sha256,
                "instance": self.instance,
            },
            canonical=True,
        )

    @classmethod
    def decode(cls, data: bytes | None, *, limits: Limits = DEFAULT_LIMITS) -> EnclaveBinding:
        """Parse a verified document's ``user_data``, refusing anything else."""
        if not data:
            raise PolicyError("user_data", "the attestation carries no session binding in user_data")
        try:
            raw: Any = cbor.decode(data, limits.header_caps(), "user_data")
        except ProtocolError as exc:
            raise PolicyError("user_data", f"user_data is not a session binding ({exc.message})") from None
        if not isinstance(raw, dict) or set(raw) != {"v", "manifest", "suite", "hpke", "signing", "instance"}:
            raise PolicyError("user_data", "user_data is not an oblv_mpc session binding")
        if raw["v"] != BINDING_VERSION:
            raise PolicyError("user_data", f"binding version {raw['v']!r}, expected {BINDING_VERSION}")
        try:
            suite = SuiteName(raw["suite"])
        except ValueError:
            raise PolicyError("user_data", f"unknown HPKE suite {raw['suite']!r}") from None
        fields = [raw[k] for k in ("manifest", "hpke", "signing")]
        if not all(isinstance(f, bytes) and len(f) == 32 for f in fields) or not isinstance(raw["instance"], bytes):
            raise PolicyError("user_data", "malformed session binding")
        binding = cls(raw["manifest"], suite, raw["hpke"], raw["signing"], raw["instance"])
        if binding.encode() != data:
            raise PolicyError("user_data", "session binding is not in canonical form")
        return binding


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    return hashlib.sha256(data).digest()
