"""Fetch an enclave's attestation document to keep or check later: ``mpc attestation fetch``.

The document is saved as the enclave sent it, unverified; ``mpc attestation verify DOC
--pcr-file F --nonce HEX`` checks it, and the nonce asked for here is what proves it fresh.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

import httpx

from oblv_mpc.client import claims
from oblv_mpc.errors import ProtocolError, UnauthenticatedAnswer, UsageError
from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.network import unreachable


@dataclass(frozen=True)
class Downloaded:
    """An attestation document as fetched (unverified), and the nonce it was asked to bind."""

    document: bytes
    nonce: bytes


def download(http: httpx.Client, nonce: bytes | None = None, *, limits: Limits = DEFAULT_LIMITS) -> Downloaded:
    """Ask the enclave behind ``http`` for a document binding ``nonce`` (default: a fresh random one).

    Raises :class:`~oblv_mpc.errors.EnclaveUnreachable` when nothing answers,
    :class:`~oblv_mpc.errors.UnauthenticatedAnswer` for a refusal, and
    :class:`~oblv_mpc.errors.ProtocolError` for an answer without a document.
    """
    if nonce is None:
        nonce = os.urandom(limits.client_nonce_bytes)
    if not limits.min_nonce_bytes <= len(nonce) <= limits.max_nonce_bytes:
        raise UsageError(
            f"the nonce is {len(nonce)} bytes; the enclave takes {limits.min_nonce_bytes} to {limits.max_nonce_bytes}"
        )
    origin = str(http.base_url).rstrip("/")
    try:
        response = http.get("/v1/attestation", params={"nonce": nonce.hex()})
    except httpx.TransportError as exc:
        raise unreachable(exc, origin) from None
    if response.status_code != 200:
        code, claimed = claims(response)
        raise UnauthenticatedAnswer(response.status_code, code, claimed, origin=origin)
    try:
        answer = response.json()
        document = base64.b64decode(answer["document"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ProtocolError(f"the answer from {origin} carries no attestation document") from None
    return Downloaded(document, nonce)
