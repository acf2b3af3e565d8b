"""Give an enclave launched with ``--await-manifest`` its session manifest: ``POST /v1/provision``.

Provisioning is unauthenticated by nature: the enclave has no session yet, so nothing it says
can be sealed to us or signed with a key we verified. Its answer is whatever answered at the
address, and is quoted as such (:class:`~oblv_mpc.errors.UnauthenticatedAnswer`). What protects
the parties is not this answer but the manifest hash that every attestation binds, which each
party checks against the manifest it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from oblv_mpc import manifest
from oblv_mpc.client import claims
from oblv_mpc.errors import UnauthenticatedAnswer
from oblv_mpc.network import unreachable


@dataclass(frozen=True)
class Provisioned:
    """A manifest the enclave accepted: its session and the hash the enclave now reports."""

    session: str
    manifest_sha256: str


def provision(http: httpx.Client, path: Path) -> Provisioned:
    """Send the manifest at ``path`` to the enclave behind ``http`` (its ``base_url``).

    The manifest is validated here first, so what the enclave would refuse is refused before
    anything is sent (:class:`~oblv_mpc.errors.ManifestError`). Raises
    :class:`~oblv_mpc.errors.EnclaveUnreachable` when nothing answers, and
    :class:`~oblv_mpc.errors.UnauthenticatedAnswer` for a refusal, or for an answer that does
    not report the hash of this very manifest.
    """
    loaded = manifest.load(path)  # refuse locally what the enclave would refuse
    origin = str(http.base_url).rstrip("/")
    try:
        response = http.post("/v1/provision", content=path.read_bytes())
    except httpx.TransportError as exc:
        raise unreachable(exc, origin) from None
    if response.status_code != 200:
        code, claimed = claims(response)
        raise UnauthenticatedAnswer(
            response.status_code,
            code,
            claimed,
            origin=origin,
            hint="if the enclave refused the manifest, fix what it names and launch it again",
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    reported = answer.get("manifest_sha256") if isinstance(answer, dict) else None
    if reported != loaded.hash:
        raise UnauthenticatedAnswer(
            response.status_code,
            "wrong_manifest",
            f"the enclave reports manifest {reported!r:.80}, not {loaded.hash}",
            origin=origin,
            hint="parties will refuse this enclave: its attestation binds another manifest than yours",
        )
    return Provisioned(loaded.session, loaded.hash)
