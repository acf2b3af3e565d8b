"""``mpc attestation ...`` and ``mpc pcrs import``."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from oblv_mpc.attestation import document_time, load_pcr_file, parse, write_pcr_file
from oblv_mpc.attestation.pcrs import from_nitro_cli
from oblv_mpc.attestation.report import explain
from oblv_mpc.cli._console import err, out, plain, print_json, styled, warn
from oblv_mpc.errors import PcrFileError, UsageError

attestation_app = typer.Typer(help="Inspect and verify Nitro attestation documents.", no_args_is_help=True)
pcrs_app = typer.Typer(help="PCR files: the measurements a party accepts.", no_args_is_help=True)

ALLOW_DEBUG_HELP = "Accept a debug-mode enclave (PCR0-2 all zero), whose memory the host can read. Development only."


def _read_document(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None


def _read_text(path: Path) -> str:
    try:
        return _read_document(path).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None


def warn_debug_allowed() -> None:
    """The loud line every command prints when debug enclaves are allowed."""
    warn(
        "debug enclaves are ALLOWED (--allow-debug-enclave or allow_debug in the PCR file): "
        "their memory is readable by the host"
    )


@attestation_app.command("show")
def show(
    document: Path = typer.Argument(..., help="An attestation document (raw CBOR bytes)."),
    as_json: bool = typer.Option(False, "--json", help="Print the fields as JSON."),
) -> None:
    """Decode and print every field of a document. UNVERIFIED: this checks only its structure."""
    parsed = parse(_read_document(document))
    fields: dict[str, Any] = {
        "module_id": parsed.module_id,
        "digest": parsed.digest,
        "timestamp": dt.datetime.fromtimestamp(parsed.timestamp_ms / 1000, dt.UTC).isoformat(),
        "pcrs": {str(i): v.hex() for i, v in sorted(parsed.pcrs.items())},
        "certificate_sha256": hashlib.sha256(parsed.certificate).hexdigest(),
        "cabundle": len(parsed.cabundle),
        "public_key": parsed.public_key.hex() if parsed.public_key else None,
        "user_data": parsed.user_data.hex() if parsed.user_data is not None else None,
        "nonce": parsed.nonce.hex() if parsed.nonce is not None else None,
        "tagged": parsed.tagged,
    }
    err.print(styled("[bold yellow]UNVERIFIED[/]: decoded only; run `mpc attestation verify` to check it"))
    if as_json:
        print_json(fields)
        return
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a PCR is 96 hex digits: wrapped whole, never cut
    for key, value in fields.items():  # module_id and the rest: unverified bytes from outside
        if key == "pcrs":
            for index, pcr in value.items():
                table.add_row(f"PCR{index}", plain(pcr))
        else:
            table.add_row(key, plain("null" if value is None else value))
    out.print(table)


@attestation_app.command("verify")
def verify_command(
    document: Path = typer.Argument(..., help="An attestation document (raw CBOR bytes)."),
    pcr_file: Path = typer.Option(
        ..., "--pcr-file", metavar="FILE", help="The PCR file: accepted measurements and trusted root."
    ),
    at: str | None = typer.Option(None, "--at", metavar="TIME", help="Validate at this ISO 8601 time instead of now."),
    at_document_time: bool = typer.Option(
        False, "--at-document-time", help="Validate at the document's own timestamp."
    ),
    nonce: str | None = typer.Option(None, "--nonce", metavar="HEX", help="The nonce (hex) the document must carry."),
    allow_debug_enclave: bool = typer.Option(False, "--allow-debug-enclave", help=ALLOW_DEBUG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Verify a document: structure, chain to the pinned root, signature, PCRs, nonce. Exit 0 only if all pass."""
    raw = _read_document(document)
    policy = load_pcr_file(pcr_file, allow_debug_override=allow_debug_enclave)
    if policy.allow_debug:
        warn_debug_allowed()
    if at and at_document_time:
        raise UsageError("give --at or --at-document-time, not both")
    when = _parse_time(at) if at else (document_time(raw) if at_document_time else None)
    expected_nonce = _parse_hex(nonce, "--nonce") if nonce else None
    report = explain(raw, policy=policy, now=when, nonce=expected_nonce)
    if as_json:
        rows = [{"check": row.check, "ok": row.ok, "detail": row.detail} for row in report.rows]
        print_json({"verified": report.failure is None, "checks": rows})
    else:
        table = Table(show_header=False, box=None)
        for row in report.rows:
            mark = styled({True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]-[/]"}[row.ok])
            table.add_row(mark, plain(row.check), plain(row.detail))
        out.print(table)
    verified = report.result()  # raises the failure, after the report shows where it happened
    if verified.debug:
        warn("this is a DEBUG enclave: its memory is readable by the host")
    if verified.development:
        warn("development enclave: the document chains to a simulator's root, not to AWS's")


@attestation_app.command("fetch")
def fetch_command(
    url: str = typer.Option(..., "--url", envvar="MPC_URL", metavar="URL", help="The enclave's URL."),
    output: Path = typer.Option(..., "--out", "-o", metavar="FILE", help="Where to save the document (CBOR)."),
    nonce: str | None = typer.Option(
        None, "--nonce", metavar="HEX", help="The nonce the document must bind (default: a fresh random one)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing file."),
) -> None:
    """Save a fresh attestation document from an enclave, unverified, for `mpc attestation verify`."""
    import httpx

    from oblv_mpc.attestation_download import download

    if output.exists() and not force:
        raise UsageError(f"{output} already exists", hint="pass --force to replace it, or --out another file")
    wanted = _parse_hex(nonce, "--nonce") if nonce else None
    with httpx.Client(base_url=url, timeout=30) as http:
        fetched = download(http, wanted)
    output.write_bytes(fetched.document)
    out.print(f"nonce {fetched.nonce.hex()}")
    err.print(f"wrote {output} ({len(fetched.document):,} bytes, UNVERIFIED)", markup=False)
    err.print(
        f"check it with: mpc attestation verify {output} --pcr-file PCR_FILE --nonce {fetched.nonce.hex()}",
        markup=False,
    )


def _parse_time(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {text!r}: expected an ISO 8601 time, e.g. 2023-01-18T13:07:19Z") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _parse_hex(text: str, flag: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{flag}: expected hex digits") from None


@pcrs_app.command("import")
def pcrs_import(
    source: Path = typer.Argument(..., help="JSON printed by `nitro-cli build-enclave` or `nitro-cli describe-eif`."),
    output: Path = typer.Option(Path("pcrs.yaml"), "--out", "-o", metavar="FILE", help="The PCR file to write."),
    name: str = typer.Option("", "--name", help="A name for this set of measurements."),
    force: bool = typer.Option(False, "--force", help="Replace an existing PCR file."),
) -> None:
    """Turn nitro-cli's measurements (PCR0-2, SHA-384) into a PCR file."""
    policy = from_nitro_cli(_read_text(source), source=str(source), name=name)
    if output.exists() and not force:
        raise UsageError(f"{output} already exists", hint="pass --force to replace it, or --out another file")
    write_pcr_file(policy, output, description=f"imported from {source.name}")
    for index, value in sorted(policy.accepted[0].values.items()):
        out.print(f"PCR{index} {value.hex()}")
    err.print(f"wrote {output}")


@pcrs_app.command("compare")
def pcrs_compare(
    source: Path = typer.Argument(..., help="JSON from `nitro-cli build-enclave` of the image you rebuilt yourself."),
    pcr_file: Path = typer.Option(..., "--pcr-file", metavar="FILE", help="The PCR file the operator published."),
) -> None:
    """Check that the image you rebuilt measures to one of the PCR sets the operator published."""
    rebuilt = from_nitro_cli(_read_text(source), source=str(source)).accepted[0]
    published = load_pcr_file(pcr_file)
    for accepted in published.accepted:
        if all(rebuilt.values.get(i) == v for i, v in accepted.values.items()):
            out.print(
                styled(
                    "[green]✓[/] your rebuild matches {label} in {file}: PCR0-2 are equal",
                    label=accepted.label,
                    file=pcr_file,
                )
            )
            return
    for index in (0, 1, 2):
        wanted = ", ".join(s.values[index].hex()[:16] + "..." for s in published.accepted)
        mark = (
            "[green]✓[/]" if any(s.values[index] == rebuilt.values[index] for s in published.accepted) else "[red]✗[/]"
        )
        out.print(
            styled(
                mark + " PCR{index} rebuilt {rebuilt}..., published {wanted}",
                index=index,
                rebuilt=rebuilt.values[index].hex()[:16],
                wanted=wanted,
            )
        )
    raise PcrFileError(
        f"your rebuild of the image does not measure to any set in {pcr_file}",
        hint="check that you built the same commit with the same Dockerfile.enclave and enclave.lock; "
        "if you did, the operator's PCRs are not of this code",
    )


def register(app: typer.Typer) -> None:
    """Add ``mpc attestation ...`` and ``mpc pcrs ...`` to ``app``."""
    app.add_typer(attestation_app, name="attestation")
    app.add_typer(pcrs_app, name="pcrs")
