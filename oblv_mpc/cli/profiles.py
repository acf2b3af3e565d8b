"""``mpc profiles``: which sessions this folder (and ``$MPC_HOME``) is connected to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from oblv_mpc import manifest, profile
from oblv_mpc.cli._console import err, out, plain, print_json
from oblv_mpc.errors import ManifestError


def _session_of(saved: profile.Profile) -> tuple[str, str]:
    """The session the profile's manifest names, and whether it is still the one connected to."""
    try:
        loaded = manifest.load(Path(saved.manifest))
    except ManifestError:
        return "?", "its manifest is missing or no longer valid"
    if loaded.hash != saved.manifest_sha256:
        return loaded.session, "its manifest changed since (run `mpc connect` again)"
    return loaded.session, "ok"


def _entry(found: profile.Found) -> dict[str, Any]:
    saved = found.profile
    if saved is None:
        return {"folder": str(found.folder), "problem": found.problem}
    session, state = _session_of(saved)
    return {
        "folder": str(found.folder),
        "session": session,
        "party": saved.party,
        "enclave": saved.url,
        "development": saved.development,
        "connected_at": saved.connected_at,
        "manifest": saved.manifest,
        "state": state,
    }


def profiles(
    folder: Path = typer.Argument(Path("."), metavar="DIR", help="Where to look (default: here)."),
    as_json: bool = typer.Option(False, "--json", help="Print the profiles as JSON."),
) -> None:
    """Which sessions this folder, the folders in it, and $MPC_HOME are connected to (saved profiles only)."""
    entries = [_entry(found) for found in profile.find(folder)]
    if as_json:
        print_json(entries)
        return
    if not entries:
        err.print(f"no connection profile in {folder}/.mpc, {folder}/*/.mpc or {profile.mpc_home()}", markup=False)
        err.print("`mpc connect` saves one in the folder where you run it", markup=False)
        return
    table = Table(title="connection profiles", title_justify="left")
    for heading in ("profile", "session", "party", "enclave", "connected (UTC)", "state"):
        table.add_column(heading)
    for entry in entries:  # names and URLs come from files: shown as text
        if "problem" in entry:
            table.add_row(plain(entry["folder"]), "-", "-", "-", "-", plain(entry["problem"]))
            continue
        enclave = entry["enclave"] + (" (development)" if entry["development"] else "")
        cells = (entry["folder"], entry["session"], entry["party"], enclave, entry["connected_at"], entry["state"])
        table.add_row(*(plain(cell) for cell in cells))
    out.print(table)
    err.print("use one with --profile DIR, or run commands in its folder", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``mpc profiles`` to ``app``."""
    app.command("profiles")(profiles)
