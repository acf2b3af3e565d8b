"""Salted commitments to an input: what other parties see instead of a hash of its plaintext.

A plain SHA-256 of a small table (one bid, a yes/no) is recovered by hashing every guess, so no
party sees another's. The enclave draws a random 32-byte salt per accepted upload and shows the
other parties only::

    commitment = SHA-256( CBOR ["oblv_mpc input commitment v1", session, manifest hash,
                                party.table, salt, SHA-256 of the plaintext (hex)] )

The owner's receipt (sealed to the owner alone) carries the salt and the plaintext's SHA-256,
so the owner can later prove which data a result was computed from by revealing both; without
the salt, the commitment says nothing about the data (the salt has 256 bits of entropy).
"""

from __future__ import annotations

import hashlib

import cbor2

SALT_BYTES = 32
_LABEL = "oblv_mpc input commitment v1"


def commit(*, session: str, manifest_sha256: str, table: str, salt: bytes, sha256: str) -> str:
    """The hex commitment to an input whose plaintext has SHA-256 ``sha256`` (hex)."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"a commitment salt is {SALT_BYTES} bytes")
    encoded = cbor2.dumps([_LABEL, session, manifest_sha256, table, salt, sha256], canonical=True)
    return hashlib.sha256(encoded).hexdigest()
