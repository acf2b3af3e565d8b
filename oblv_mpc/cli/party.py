"""What a party types: ``mpc connect``, ``submit``, ``status``, ``compute``, ``fetch``, ``transcript``."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from oblv_mpc import keys, manifest, profile, result_files
from oblv_mpc.attestation.pcrs import choose_policy
from oblv_mpc.cli._console import err, out, plain, print_json, styled, warn
from oblv_mpc.cli._secrets import load_private_key
from oblv_mpc.cli.attestation import ALLOW_DEBUG_HELP, warn_debug_allowed
from oblv_mpc.client import Connection, EnclaveClient, Result
from oblv_mpc.errors import KeyFileError, UsageError
from oblv_mpc.manifest import Role
from oblv_mpc.privacy_ledger import PrivacyLedger, check_new_instance

_PROFILE = typer.Option(profile.DEFAULT_DIR, "--profile", help="The connection profile's folder.")
_JSON = typer.Option(False, "--json", help="Print the result as JSON.")
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def _announce(connection: Connection) -> None:
    """The lines every command prints about the enclave it talks to."""
    verified = connection.attestation
    if verified.debug:
        warn("DEBUG enclave: its memory is readable by the host")
    if verified.development:
        warn("development enclave (simulated NSM, no hardware isolation)")


@contextlib.contextmanager
def _session(profile_dir: Path) -> Iterator[tuple[EnclaveClient, profile.Profile]]:
    saved = profile.Profile.load(profile_dir)
    if saved.allow_debug:
        warn_debug_allowed()
    identity = load_private_key(Path(saved.private_key))
    with httpx.Client(base_url=saved.url, timeout=_TIMEOUT) as http:
        client, connection = profile.reconnect(saved, http, identity)
        _announce(connection)
        if client.manifest.privacy_budget is not None:
            # Remember what this instance has spent, so a restart's fresh budget is noticed (privacy_ledger).
            spent = client.status().get("privacy", {}).get("spent")
            if isinstance(spent, int | float):
                PrivacyLedger(profile_dir).record(client.manifest.hash, connection.instance.hex(), float(spent))
        yield client, saved


def connect(
    url: str = typer.Option(..., "--url", help="The enclave's URL, e.g. http://127.0.0.1:8000."),
    manifest_path: Path = typer.Option(..., "--manifest", help="The session manifest you agreed to."),
    key: Path | None = typer.Option(None, "--key", "--private-key", help="Your private key file (NAME_private.der)."),
    public_key: Path | None = typer.Option(None, "--public-key", help="Your public key file, checked against --key."),
    pcr_file: Path | None = typer.Option(None, "--pcr-file", help="The PCR file: the measurements you accept."),
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
    profile_dir: Path = _PROFILE,
    as_json: bool = _JSON,
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
    with _listening(lport, unix_socket) as listening, httpx.Client(base_url=url, timeout=_TIMEOUT) as http:
        client = EnclaveClient(http, loaded, identity, policy, party=party)
        connection = client.connect()
        _announce(connection)
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
        if listening is not None:
            _run_proxy(client, listening, origins)
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


@dataclass(frozen=True)
class _Listening:
    sock: socket.socket
    where: str
    unix_path: Path | None


@contextlib.contextmanager
def _listening(lport: int | None, unix_socket: Path | None) -> Iterator[_Listening | None]:
    """The proxy's listening socket, if it is to run: 127.0.0.1:lport, or an owner-only Unix socket."""
    if unix_socket is not None:
        from oblv_mpc.proxy import listen_unix

        listener = listen_unix(unix_socket)
        try:
            yield _Listening(listener.sock, f"unix:{listener.path}", listener.path)
        finally:
            listener.close()
    elif lport is not None:
        from oblv_mpc.enclave.server import listen, url_of

        try:
            sock = listen("127.0.0.1", lport)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on 127.0.0.1:{lport}: {exc.strerror or exc}", hint="choose another --lport (0: any)"
            ) from None
        with sock:
            yield _Listening(sock, url_of(sock), None)
    else:
        yield None


def _run_proxy(client: EnclaveClient, listening: _Listening, origins: list[str]) -> None:
    """Serve the attested proxy on its socket until Ctrl-C."""
    from oblv_mpc.enclave.server import serve_forever
    from oblv_mpc.proxy import Proxy

    me = client.party.name
    proxy = Proxy(client, lambda line: err.print(plain(line)), allow_origins=origins)  # lines quote what clients sent
    for origin in origins:
        warn(
            f"--allow-origin {origin}: scripts on pages from {origin} can use this proxy, "
            f"and so act as {me} (sign, submit, read what {me} may read)"
        )
    out.print(plain(f"ready: proxy listening on {listening.where} (party {me})"))
    out.file.flush()
    if listening.unix_path is not None:
        err.print(f"reach it with: curl --unix-socket {listening.unix_path} http://localhost/PATH", markup=False)
    serve_forever(proxy.app, listening.sock)
    err.print("proxy stopped")


def _receipt_file(profile_dir: Path, table: str) -> Path:
    folder = profile_dir / "receipts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{table}.json"


def submit(
    file: Path = typer.Argument(..., help="The CSV file to submit."),
    table: str = typer.Option(..., "--table", help="Which of your tables it is (e.g. employees)."),
    allow_fresh_privacy_budget: bool = typer.Option(
        False,
        "--allow-fresh-privacy-budget",
        help="Submit to a restarted enclave although an earlier one already spent privacy budget (loud).",
    ),
    profile_dir: Path = _PROFILE,
    as_json: bool = _JSON,
) -> None:
    """Check the file against the manifest's schema here, then upload it sealed, and save the signed receipt."""
    from oblv_mpc.tables import validate_file  # Arrow and DuckDB load only for this command

    saved = profile.Profile.load(profile_dir)
    loaded = manifest.load(Path(saved.manifest))
    qualified = table if "." in table else f"{saved.party}.{table}"
    declared = loaded.inputs.get(qualified)
    if declared is None or declared.party != saved.party:
        mine = ", ".join(t.table for t in loaded.inputs_of(saved.party)) or "none"
        raise UsageError(f"{table!r} is not one of your tables in {loaded.session} (yours: {mine})")
    err.print(f"checking {file} against {qualified}'s schema (nothing is sent yet)")
    summary = validate_file(file, declared)
    err.print(
        styled(
            "[green]✓[/] {summary}",
            summary=f"{summary.rows:,} rows, {summary.size:,} bytes, SHA-256 {summary.sha256[:16]}...",
        )
    )
    with _session(profile_dir) as (client, _):
        assert client.connection is not None
        check_new_instance(
            PrivacyLedger(profile_dir),
            loaded.hash,
            client.connection.instance.hex(),
            allow_fresh_budget=allow_fresh_privacy_budget,
            warn=warn,
        )
        with _progress() as progress:
            task = progress.add_task(f"uploading {file.name}", total=summary.size)
            receipt = client.upload(qualified, file, progress=lambda n: progress.advance(task, n))
    assert client.connection is not None
    record = {
        "receipt": {k: v for k, v in receipt.statement.items()},
        "signed": {k: base64.b64encode(v).decode() for k, v in receipt.signed.items()},
        "attestation_document": base64.b64encode(client.connection.document).decode(),
        "enclave_signing_key": base64.b64encode(client.connection.signing_der).decode(),
    }
    path = _receipt_file(profile_dir, qualified)
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    if as_json:
        print_json(record["receipt"])
        return
    out.print(
        styled(
            "[green]✓[/] {table}: {rows} rows accepted{replaced}, SHA-256 {sha256}",
            table=qualified,
            rows=f"{receipt.rows:,}",
            replaced=" (it replaced your earlier upload)" if receipt.replaced else "",
            sha256=receipt.sha256,
        )
    )
    err.print(f"others see only its commitment {receipt.commitment[:16]}...; the receipt keeps the salt to prove it")
    err.print(f"signed receipt saved in {path}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def status(profile_dir: Path = _PROFILE, as_json: bool = _JSON) -> None:
    """Who has submitted what, and which computations are waiting, ready or done."""
    with _session(profile_dir) as (client, _):
        answer = client.status()
    if as_json:
        print_json(answer)
        return
    inputs = Table(
        title=plain(f"inputs of {answer['session']}"),
        title_justify="left",
        caption="others' inputs show as salted commitments; rows and SHA-256 of your own only",
        caption_justify="left",
    )
    for heading in ("table", "party", "state", "rows", "SHA-256 (yours)", "commitment"):
        inputs.add_column(heading)
    for name, entry in sorted(answer["inputs"].items()):
        state = styled(
            ("[green]submitted[/]" if entry["submitted"] else "[yellow]missing[/]") + "{frozen}",
            frozen=" (frozen)" if entry["frozen"] else "",
        )
        rows = f"{entry['rows']:,}" if entry.get("rows") is not None else "-"
        sha = (entry.get("sha256") or "-")[:16]
        commitment = (entry.get("commitment") or "-")[:16]
        inputs.add_row(plain(name), plain(entry["party"]), state, plain(rows), plain(sha), plain(commitment))
    out.print(inputs)
    computations = Table(title="computations", title_justify="left")
    for heading in ("computation", "state", "waiting for", "readers", "you may read"):
        computations.add_column(heading)
    for name, entry in sorted(answer["computations"].items()):
        shown = str(entry["state"])
        if shown == "running" and isinstance(entry.get("progress"), int | float):
            shown = f"running {float(entry['progress']):.0%} ({entry.get('stage', '')})"
        computations.add_row(
            plain(name),
            plain(shown),
            plain(", ".join(entry["missing"]) or "-"),
            plain(", ".join(entry["readers"])),
            "yes" if entry["you_may_read"] else "no",
        )
    out.print(computations)


def compute(
    name: str = typer.Argument(..., help="The computation to run."),
    profile_dir: Path = _PROFILE,
    as_json: bool = _JSON,
) -> None:
    """Ask the enclave to run a computation now (its readers may); it runs only on complete input."""
    with _session(profile_dir) as (client, _):
        answer = client.compute(name)
    if as_json:
        print_json(answer)
        return
    if answer.get("state") == "running":  # a synthetic release, generated in the background
        out.print(_running(name, answer))
        return
    out.print(
        styled(
            "[green]✓[/] {name} ran: {rows} rows{suppressed}",
            name=name,
            rows=answer["rows"],
            suppressed=_suppressed(answer.get("suppressed_groups")),
        )
    )


def _running(name: str, answer: dict[str, Any]) -> Text:
    return styled(
        "[yellow]…[/] {name} is being generated: {progress} ({stage}); `mpc fetch {name}` waits for it",
        name=name,
        progress=f"{float(answer.get('progress', 0)):.0%}",
        stage=str(answer.get("stage", "")),
    )


def _suppressed(count: int | None) -> str:
    if count is None:
        return " (the owners' rules may have suppressed groups; the result does not say how many)"
    return f", {count} group(s) suppressed by the owners' rules" if count else ""


def _write_result(result: Result, path: Path, fmt: str) -> None:
    result_files.write(result.columns, result.rows, path, fmt)


def fetch(
    name: str = typer.Argument(..., help="The computation whose result to fetch."),
    output: Path | None = typer.Option(None, "--out", "-o", help="Write the result to this file."),
    fmt: str = typer.Option("csv", "--format", help="csv, json or parquet, for --out."),
    profile_dir: Path = _PROFILE,
    as_json: bool = _JSON,
) -> None:
    """Fetch a result you may read: decrypted here, its enclave signature checked, shown and saved."""
    if fmt not in result_files.FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(result_files.FORMATS)}")
    with _session(profile_dir) as (client, _), _progress_bar(name) as on_progress:
        result = client.wait_for_result(name, on_progress=on_progress)  # a synthetic release may take minutes
    if output is not None:
        _write_result(result, output, fmt)
        err.print(f"wrote {output}")
    if as_json:
        names = [c[0] for c in result.columns]
        print_json(
            {
                "computation": name,
                "columns": [list(c) for c in result.columns],
                "rows": [dict(zip(names, row, strict=True)) for row in result.rows],
                "suppressed_groups": result.suppressed_groups,
                "rules": result.rules,
                "inputs": result.inputs,
            }
        )
        return
    preview(result)


@contextlib.contextmanager
def _progress_bar(name: str) -> Iterator[Callable[[float, str], None]]:
    """A progress display on stderr, shown only once the enclave says the result is still being generated."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), console=err)
    task: list[Any] = []

    def update(fraction: float, stage: str) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(str(plain(f"{name}: {stage}")), total=1.0))
        bar.update(task[0], completed=fraction, description=str(plain(f"{name}: {stage}")))

    try:
        yield update
    finally:
        if task:
            bar.stop()


def preview(result: Result, limit: int = 20) -> None:
    """A result as a table: the first rows, and what the release rules suppressed."""
    table = Table(
        title=plain(result.computation), title_justify="left", caption="signed by the enclave", caption_justify="left"
    )
    for column, kind in result.columns:  # values and names come from the parties' rows and the enclave
        table.add_column(
            styled("{column}\n[dim]{kind}[/]", column=column, kind=kind.lower()),
            justify="right" if kind in ("DOUBLE", "BIGINT", "HUGEINT") else "left",
        )
    for row in result.rows[:limit]:
        table.add_row(*[plain(_cell(v)) for v in row])
    out.print(table)
    if len(result.rows) > limit:
        out.print(styled("[dim]... {more} more rows (use --out FILE)[/]", more=f"{len(result.rows) - limit:,}"))
    if result.rules.get("min_distinct"):
        out.print(plain(f"released under the owners' rules{_suppressed(result.suppressed_groups)}"))


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in sorted(value.items())) + "}"
    text = str(value)
    return text if len(text) <= 20 else text[:12] + "..."


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)


def transcript(profile_dir: Path = _PROFILE, as_json: bool = _JSON) -> None:
    """The session's event log: every link of the hash chain and the enclave's signature verified."""
    with _session(profile_dir) as (client, _):
        events = client.transcript()
    if as_json:
        print_json(
            [{"seq": e.seq, "time": e.time_ms, "kind": e.kind, "data": e.data, "hash": e.hash.hex()} for e in events]
        )
        return
    table = Table(title=f"transcript ({len(events)} events, chain verified)", title_justify="left")
    for heading in ("#", "event", "details", "hash"):
        table.add_column(heading)
    for e in events:
        details = ", ".join(f"{k}={_short(v)}" for k, v in sorted(e.data.items()) if v is not None)
        table.add_row(str(e.seq), plain(e.kind), plain(details), e.hash.hex()[:12])
    out.print(table)


def register(app: typer.Typer) -> None:
    for command in (connect, submit, status, compute, fetch, transcript):
        app.command(command.__name__)(command)
