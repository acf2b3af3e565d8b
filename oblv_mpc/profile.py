"""Connection profiles: what ``mpc connect`` verified, so later commands need no flags.

A profile is ``.mpc/profile.yaml`` in the working directory (or ``--profile DIR``). It holds
paths and public facts only, never a secret: the enclave URL, the manifest's path and hash, the
party, the path of its private key, the PCR policy (a PCR file's path, or PCR0-2 given as
flags), and what was verified about the enclave (its instance, key id, measurements). Every
later command re-attests with a fresh nonce and refuses if the instance, the keys or the
manifest changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import AttestationPolicy
from oblv_mpc.attestation.pcrs import choose_policy
from oblv_mpc.client import Connection, EnclaveClient
from oblv_mpc.errors import EnclaveRefused, UsageError

PROFILE_VERSION = 1
DEFAULT_DIR = Path(".mpc")
FILE_NAME = "profile.yaml"


@dataclass(frozen=True)
class Profile:
    """A saved connection."""

    url: str
    manifest: str
    manifest_sha256: str
    party: str
    private_key: str
    instance: str
    key_id: str
    development: bool
    allow_debug: bool
    connected_at: str
    pcr_file: str | None = None
    pcrs: dict[str, str] | None = None

    def save(self, directory: Path) -> Path:
        """Write the profile into ``directory``; returns the file written."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILE_NAME
        data = {"version": PROFILE_VERSION, **{k: v for k, v in asdict(self).items() if v is not None}}
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> Profile:
        """The profile saved in ``directory``; a usage error says to connect first when there is none."""
        path = directory / FILE_NAME
        try:
            data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"no connection profile at {path}",
                hint="run `mpc connect --url URL --pcr-file F --manifest M --key KEY` first (or pass --profile DIR)",
            ) from None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the profile ({exc.strerror or exc})") from None
        except yaml.YAMLError:
            raise UsageError(f"{path}: not a profile (not valid YAML)", hint="run `mpc connect` again") from None
        if not isinstance(data, dict) or data.pop("version", None) != PROFILE_VERSION:
            raise UsageError(f"{path}: not a profile of this version", hint="run `mpc connect` again")
        try:
            return cls(**data)
        except TypeError:
            raise UsageError(f"{path}: malformed profile", hint="run `mpc connect` again") from None


@dataclass(frozen=True)
class Found:
    """A profile folder found by :func:`find`: its profile, or why it cannot be read."""

    folder: Path
    profile: Profile | None
    problem: str | None = None


def mpc_home() -> Path:
    """``$MPC_HOME``, default ``~/.mpc``: where ``mpc`` keeps what is not a folder's own."""
    home = os.environ.get("MPC_HOME")
    return Path(home) if home else Path.home() / ".mpc"


def find(folder: Path, *, home: Path | None = None) -> list[Found]:
    """The saved profiles of ``folder``: its own (``folder/.mpc``), those of the folders in it
    (``folder/alice/.mpc``: one per party when several work side by side), and one saved in
    ``$MPC_HOME``. Read only: nothing is contacted."""
    candidates = [folder / DEFAULT_DIR]
    with contextlib.suppress(OSError):  # an unreadable folder has no profiles to show
        candidates += sorted(child / DEFAULT_DIR for child in folder.iterdir() if child.is_dir())
    candidates.append(home or mpc_home())
    found: list[Found] = []
    seen: set[Path] = set()
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved in seen or not (candidate / FILE_NAME).is_file():
            continue
        seen.add(resolved)
        try:
            found.append(Found(candidate, Profile.load(candidate)))
        except UsageError as exc:
            found.append(Found(candidate, None, exc.message))
    return found


def now_iso() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def policy_of(profile: Profile) -> AttestationPolicy:
    """The PCR policy a profile names: its PCR file, or the PCR0-2 given to ``mpc connect``."""
    pcrs = profile.pcrs or {}
    flags = (pcrs.get("pcr0"), pcrs.get("pcr1"), pcrs.get("pcr2"))
    return choose_policy(Path(profile.pcr_file) if profile.pcr_file else None, flags, allow_debug=profile.allow_debug)


def reconnect(profile: Profile, http: httpx.Client, identity: keys.PrivateKey) -> tuple[EnclaveClient, Connection]:
    """Re-attest with a fresh nonce; refuse if the manifest, the enclave or its keys changed."""
    loaded = manifest.load(Path(profile.manifest))
    if loaded.hash != profile.manifest_sha256:
        raise UsageError(
            f"{profile.manifest} changed since you connected (hash {profile.manifest_sha256[:16]}... -> "
            f"{loaded.hash[:16]}...)",
            hint="restore the manifest every party agreed to, or run `mpc connect` again",
        )
    client = EnclaveClient(http, loaded, identity, policy_of(profile), party=profile.party)
    connection = client.connect()
    if connection.instance.hex() != profile.instance or connection.key_id != profile.key_id:
        raise EnclaveRefused(
            "enclave_restarted",
            f"the enclave is not the one you connected to (instance {profile.instance[:12]}... is now "
            f"{connection.instance.hex()[:12]}...): it restarted, and everything submitted to it is gone",
            hint="run `mpc connect` again and submit your data again",
        )
    return client, connection
