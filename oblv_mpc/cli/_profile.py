"""The connection profile as the commands use it: shared options, reconnecting, the enclave's banner.

``mpc connect`` saves a profile (:mod:`oblv_mpc.profile`); every later command opens it with
:func:`connected`, which re-verifies the enclave and prints :func:`announce`'s warnings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import typer

from oblv_mpc import profile
from oblv_mpc.cli._console import warn
from oblv_mpc.cli._secrets import load_private_key
from oblv_mpc.cli.attestation import warn_debug_allowed
from oblv_mpc.client import Connection, EnclaveClient
from oblv_mpc.privacy_ledger import PrivacyLedger

PROFILE = typer.Option(profile.DEFAULT_DIR, "--profile", metavar="DIR", help="The connection profile's folder.")
JSON = typer.Option(False, "--json", help="Print the result as JSON.")
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def announce(connection: Connection) -> None:
    """The lines every command prints about the enclave it talks to."""
    verified = connection.attestation
    if verified.debug:
        warn("DEBUG enclave: its memory is readable by the host")
    if verified.development:
        warn("development enclave (simulated NSM, no hardware isolation)")


@contextlib.contextmanager
def connected(profile_dir: Path) -> Iterator[tuple[EnclaveClient, profile.Profile]]:
    """The saved profile's enclave, verified again, and the profile; warns as every command does."""
    saved = profile.Profile.load(profile_dir)
    if saved.allow_debug:
        warn_debug_allowed()
    identity = load_private_key(Path(saved.private_key))
    with httpx.Client(base_url=saved.url, timeout=TIMEOUT) as http:
        client, connection = profile.reconnect(saved, http, identity)
        announce(connection)
        if client.manifest.privacy_budget is not None:
            # Remember what this instance has spent, so a restart's fresh budget is noticed (privacy_ledger).
            spent = client.status().get("privacy", {}).get("spent")
            if isinstance(spent, int | float):
                PrivacyLedger(profile_dir).record(client.manifest.hash, connection.instance.hex(), float(spent))
        yield client, saved
