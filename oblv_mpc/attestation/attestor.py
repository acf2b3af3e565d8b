"""The ``Attestor`` interface: what the enclave app asks for an attestation document."""

from __future__ import annotations

from typing import Protocol


class Attestor(Protocol):
    """Produces signed Nitro attestation documents binding a nonce, user data and a public key."""

    @property
    def development(self) -> bool:
        """Whether documents chain to a development root (the simulator) rather than AWS's."""
        ...

    def attest(self, *, nonce: bytes | None, user_data: bytes | None, public_key: bytes | None) -> bytes:
        """A fresh attestation document (COSE_Sign1 bytes)."""
        ...
