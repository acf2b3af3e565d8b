"""``mpc connect``: verify the enclave and the session, save the profile, optionally serve the proxy."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import typer
from rich.table import Table

from oblv_mpc import keys, manifest, profile
from oblv_mpc.attestation.pcrs import choose_policy
from oblv_mpc.cli._console import err, out, plain, print_json, styled, warn
from oblv_mpc.cli._profile import JSON, PROFILE, TIMEOUT, announce
from oblv_mpc.cli._secrets import load_private_key
from oblv_mpc.cli.attestation import ALLOW_DEBUG_HELP, warn_debug_allowed
from oblv_mpc.client import EnclaveClient
from oblv_mpc.errors import KeyFileError, UsageError
from oblv_mpc.manifest import Role

if TYPE_CHECKING:
    from oblv_mpc.proxy_server import ProxyListener


def connect(
    url: str = typer.Option(
        ..., "--url", envvar="MPC_URL", metavar="URL", help="The enclave's URL, e.g. http://127.0.0.1:8000."
    ),
    manifest_path: Path = typer.Option(..., "--manifest", help="The session manifest you agreed to."),
    key: Path | None = typer.Option(
        None, "--key", "--private-key", metavar="FILE", help="Your private key file (NAME_private.der)."
    ),
    public_key: Path | None = typer.Option(None, "--public-key", help="Your public key file, checked against --key."),
    pcr_file: Path | None = typer.Option(
        None, "--pcr-file", metavar="FILE", help="The PCR file: the measurements you accept."
    ),
    pcr0: str | None = typer.Option(None, "--pcr0", help="Accepted PCR0 (hex), instead of --pcr-file."),
    pcr1: str | None = typer.Option(None, "--pcr1", help="Accepted PCR1 (hex), instead of --pcr-file."),
    pcr2: str | None = typer.Option(None, "--pcr2", help="Accepted PCR2 (hex), instead of --pcr-file."),
    party: str | None = typer.Option(None, "--party", help="Your party name (checked against your key)."),
    allow_debug_enclave: bool = typer.Option(False, "--allow-debug-enclave", help=ALLOW_DEBUG_HELP),
    lport: int | None = typer.Option(
        None, "--lport", help="Then stay running as a local proxy to the enclave's own routes on 127.0.0.1:LPORT."
    ),
    unix_socket: Path | None = typer.Option(
        None,
        "--unix-socket",
        help="Then stay running as that proxy on a Unix socket at this path that only you can use (mode 0600), "
        "instead of --lport: for machines with other users.",
    ),
    allow_origin: list[str] = typer.Option(
        [],
        "--allow-origin",
        help="Let web pages from this exact origin (scheme://host[:port]) use the proxy, and so act as you "
        "(repeatable; warns on every start). By default every request from a web page is refused.",
    ),
    profile_dir: Path = PROFILE,
    as_json: bool = JSON,
) -> None:
    """Verify the enclave's attestation and this session, and save a profile for the commands below."""
    if key is None:
        raise UsageError("--key is required: your private key file", hint="e.g. --key alice_private.der")
    if lport is not None and unix_socket is not None:
        raise UsageError("--lport and --unix-socket both given: the proxy listens on one of them")
    if allow_origin and lport is None and unix_socket is None:
        raise UsageError(
            "--allow-origin applies to the local proxy only", hint="add --lport PORT or --unix-socket PATH"
        )
    flags = (pcr0, pcr1, pcr2)
    policy = choose_policy(pcr_file, flags, allow_debug=allow_debug_enclave)
    if policy.allow_debug:
        warn_debug_allowed()
    loaded = manifest.load(manifest_path)
    identity = load_private_key(key)
    if public_key is not None and keys.fingerprint(keys.load_public_key(public_key)) != keys.fingerprint(
        identity.public_key()
    ):
        raise KeyFileError(f"{public_key} is not the public half of {key}")
    origins = _allowed_origins(allow_origin)
    # the proxy's port or socket first: if it is taken, nothing has been done yet
    with _proxy_socket(lport, unix_socket) as listener, httpx.Client(base_url=url, timeout=TIMEOUT) as http:
        client = EnclaveClient(http, loaded, identity, policy, party=party)
        connection = client.connect()
        announce(connection)
        saved = profile.Profile(
            url=url,
            manifest=str(manifest_path.resolve()),
            manifest_sha256=loaded.hash,
            party=client.party.name,
            private_key=str(key.resolve()),
            instance=connection.instance.hex(),
            key_id=connection.key_id,
            development=connection.attestation.development,
            allow_debug=policy.allow_debug,
            connected_at=profile.now_iso(),
            pcr_file=str(pcr_file.resolve()) if pcr_file else None,
            pcrs={f"pcr{i}": v for i, v in enumerate(flags)} if pcr_file is None else None,  # type: ignore[misc]
        )
        path = saved.save(profile_dir)
        if listener is not None:
            _serve_proxy(client, listener, origins)
            return
    me = client.party
    summary: dict[str, Any] = {
        "enclave": url,
        "mode": "development (simulated)" if connection.attestation.development else "production (AWS Nitro)",
        "module_id": connection.attestation.module_id,
        "pcrs": {f"pcr{i}": connection.attestation.pcrs[i].hex() for i in (0, 1, 2)},
        "measurements": connection.attestation.matched.label,
        "session": loaded.session,
        "manifest_sha256": loaded.hash,
        "party": me.name,
        "roles": sorted(r.value for r in me.roles),
        "may_submit": [t.qualified for t in loaded.inputs_of(me.name)] if me.has(Role.CONTRIBUTOR) else [],
        "may_read": [c.name for c in loaded.readable_by(me.name)],
        "profile": str(path),
    }
    if as_json:
        print_json(summary)
        return
    out.print(
        styled("[green]✓[/] attestation verified: signature, certificate chain, measurements, nonce, session binding")
    )
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # PCRs are 96 hex digits: wrapped whole, never cut
    for label, value in summary.items():  # module_id, the PCR set's name, names: all from outside
        if label == "pcrs":
            for name, pcr in value.items():
                table.add_row(name.upper(), plain(pcr))
            continue
        table.add_row(label.replace("_", " "), plain(", ".join(value) if isinstance(value, list) else value))
    out.print(table)


def _allowed_origins(values: list[str]) -> list[str]:
    """``--allow-origin`` values in the exact form browsers send (a wrong one stops here)."""
    if not values:
        return []
    from oblv_mpc.proxy import normalize_origin

    return [normalize_origin(value) for value in values]


def _proxy_socket(lport: int | None, unix_socket: Path | None) -> AbstractContextManager[ProxyListener | None]:
    """The proxy's listening socket, if it is to run (the library binds it)."""
    if lport is None and unix_socket is None:
        return contextlib.nullcontext()
    from oblv_mpc.proxy_server import listening  # the server stack loads only for the proxy

    return listening(port=lport, unix_socket=unix_socket)


def _serve_proxy(client: EnclaveClient, listener: ProxyListener, origins: list[str]) -> None:
    """Say how to reach the proxy, serve it until Ctrl-C (the library), say it stopped."""
    from oblv_mpc.proxy_server import serve

    me = client.party.name
    for origin in origins:
        warn(
            f"--allow-origin {origin}: scripts on pages from {origin} can use this proxy, "
            f"and so act as {me} (sign, submit, read what {me} may read)"
        )
    out.print(plain(f"ready: proxy listening on {listener.where} (party {me})"))
    out.file.flush()
    if listener.unix_path is not None:
        err.print(f"reach it with: curl --unix-socket {listener.unix_path} http://localhost/PATH", markup=False)
    serve(client, listener, log=lambda line: err.print(plain(line)), allow_origins=origins)  # lines quote callers
    err.print("proxy stopped")


def register(app: typer.Typer) -> None:
    """Add ``mpc connect`` to ``app``."""
    app.command("connect")(connect)
