"""What a party types once connected: ``mpc submit``, ``status``, ``compute``, ``fetch``, ``transcript``."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from oblv_mpc import manifest, profile
from oblv_mpc.cli._console import err, out, plain, print_json, styled, warn
from oblv_mpc.cli._profile import JSON, PROFILE, connected
from oblv_mpc.client import EnclaveClient, Receipt, Result
from oblv_mpc.columnar import COMPRESSIONS
from oblv_mpc.errors import EnclaveRefused, EnclaveUnreachable, InputDataError, UsageError
from oblv_mpc.ingest import IngestSummary
from oblv_mpc.manifest import InputTable
from oblv_mpc.privacy_ledger import PrivacyLedger, check_new_instance
from oblv_mpc.protocol.messages import ARROW, UPLOAD_FORMATS


def _receipt_file(profile_dir: Path, table: str) -> Path:
    folder = profile_dir / "receipts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{table}.json"


def submit(
    file: Path = typer.Argument(..., metavar="FILE", help="The table to submit: a CSV or Parquet file."),
    table: str = typer.Option(..., "--table", metavar="TABLE", help="Which of your tables it is (e.g. employees)."),
    fmt: str = typer.Option(
        ARROW,
        "--format",
        metavar="FORMAT",
        help="arrow: read the file here with Arrow and send typed record batches (fast; CSV or Parquet); "
        "csv: check the whole file here, then send the CSV text for the enclave to parse.",
    ),
    compress: str | None = typer.Option(
        None, "--compress", metavar="CODEC", help="With --format arrow: compress the batches (lz4 or zstd)."
    ),
    allow_fresh_privacy_budget: bool = typer.Option(
        False,
        "--allow-fresh-privacy-budget",
        help="Submit to a restarted enclave although an earlier one already spent privacy budget (loud).",
    ),
    profile_dir: Path = PROFILE,
    as_json: bool = JSON,
) -> None:
    """Check the file against the manifest's schema here, then upload it sealed, and save the signed receipt."""
    if fmt not in UPLOAD_FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(UPLOAD_FORMATS)}")
    if compress is not None and (fmt != ARROW or compress not in COMPRESSIONS):
        raise UsageError(f"--compress takes {' or '.join(COMPRESSIONS)}, with --format arrow")
    saved = profile.Profile.load(profile_dir)
    loaded = manifest.load(Path(saved.manifest))
    qualified = table if "." in table else f"{saved.party}.{table}"
    declared = loaded.inputs.get(qualified)
    if declared is None or declared.party != saved.party:
        mine = ", ".join(t.table for t in loaded.inputs_of(saved.party)) or "none"
        raise UsageError(f"{table!r} is not one of your tables in {loaded.session} (yours: {mine})")
    with _upload_file(file, declared, fmt) as upload_file, connected(profile_dir) as (client, _):
        assert client.connection is not None
        check_new_instance(
            PrivacyLedger(profile_dir),
            loaded.hash,
            client.connection.instance.hex(),
            allow_fresh_budget=allow_fresh_privacy_budget,
            warn=warn,
        )
        if client.status()["inputs"][qualified]["frozen"]:  # no progress bar for an upload bound to be refused
            raise EnclaveRefused(
                "frozen",
                f"{qualified} is frozen: a computation over it was already attempted; nothing was sent",
                hint="a frozen table cannot be replaced in this session",
            )
        receipt = _upload(client, qualified, file.name, upload_file, fmt=fmt, compress=compress)
    _save_receipt(client, receipt, profile_dir, qualified, as_json=as_json)


def _upload_file(file: Path, declared: InputTable, fmt: str) -> AbstractContextManager[Path]:
    """The file to upload: read as it is with Arrow (each batch checked as it goes), or checked whole as CSV first."""
    if fmt == ARROW:
        _check_start(file, declared)
        return contextlib.nullcontext(file)
    return _checked_csv(file, declared)


def _check_start(file: Path, declared: InputTable) -> None:
    """Before connecting: read and check the file's first chunk (a small file whole), as the upload will.

    A bad header, a schema that does not fit or a bad value near the start is refused with
    nothing sent; the rest of a large file is checked batch by batch as it is sent, and a refusal
    there leaves nothing in the enclave either (its final chunk never goes).
    """
    from oblv_mpc.client import DEFAULT_CHUNK_BYTES
    from oblv_mpc.columnar import ColumnarFile

    what = f"{file.name} is a Parquet file:" if _is_parquet(file) else f"{file.name} is"
    err.print(f"{what} read here with Arrow and sent as typed record batches")
    err.print(f"checking {file.name} against the schema of {declared.qualified} (nothing is sent yet)")
    start = ColumnarFile(file, declared, chunk_bytes=DEFAULT_CHUNK_BYTES)
    pieces = start.pieces()
    try:
        next(pieces)
    except InputDataError as exc:
        raise InputDataError(exc.message, hint="fix the file and submit it again; nothing was sent") from None
    finally:
        pieces.close()
    if start.summary is not None:
        shown = f"{start.summary.rows:,} rows passed the check"
    else:
        shown = f"the first {start.check.rows:,} rows passed the check; the rest is checked as it is sent"
    err.print(styled("[green]✓[/] {summary}", summary=shown))


def _is_parquet(file: Path) -> bool:
    from oblv_mpc.parquet_input import is_parquet

    return is_parquet(file)


@contextlib.contextmanager
def _checked_csv(file: Path, declared: InputTable) -> Iterator[Path]:
    with _as_csv(file, declared) as csv_file:
        _check_here(file, csv_file, declared)
        yield csv_file


def _upload(
    client: EnclaveClient, qualified: str, shown: str, path: Path, *, fmt: str, compress: str | None
) -> Receipt:
    """The sealed upload, with a progress bar once the first chunk went; a cut-off upload says what to do."""
    with _progress() as progress:
        tasks: list[TaskID] = []  # no bar for a file refused here before anything was sent

        def advance(size: int) -> None:
            if not tasks:
                tasks.append(progress.add_task(f"uploading {shown}", total=path.stat().st_size))
            progress.advance(tasks[0], size)

        try:
            return client.upload(qualified, path, progress=advance, format=fmt, compression=compress)
        except EnclaveUnreachable as exc:
            raise EnclaveUnreachable(
                f"the upload was cut off: {exc.message}; the enclave keeps nothing of an unfinished upload",
                hint="when the enclave answers again, run `mpc connect` (it may have restarted) and submit again",
            ) from None


def _as_csv(file: Path, declared: InputTable) -> AbstractContextManager[Path]:
    """The file to check and upload as CSV: ``file`` itself, or a Parquet file's CSV conversion."""
    from oblv_mpc.parquet_input import as_csv, is_parquet  # Arrow loads only for this command

    if not is_parquet(file):
        return contextlib.nullcontext(file)
    err.print(f"{file.name} is a Parquet file: converting it to CSV for the upload (--format csv)")
    return as_csv(file, declared)


def _check_here(file: Path, csv_file: Path, declared: InputTable) -> IngestSummary:
    """The local check of the file against the schema, with a progress bar; nothing is sent."""
    from oblv_mpc.parquet_input import rows_not_lines
    from oblv_mpc.tables import validate_file

    err.print(f"checking {file.name} against the schema of {declared.qualified} (nothing is sent yet)")
    try:
        size = csv_file.stat().st_size
    except OSError:
        size = None  # validate_file says why it cannot be read
    try:
        with _progress() as progress:
            task = progress.add_task(f"checking {file.name}", total=size)
            summary = validate_file(csv_file, declared, progress=lambda n: progress.advance(task, n))
    except InputDataError as exc:
        raise (rows_not_lines(exc, file) if csv_file != file else exc) from None
    err.print(
        styled(
            "[green]✓[/] {summary}",
            summary=f"{summary.rows:,} rows, {summary.size:,} bytes, SHA-256 {summary.sha256[:16]}...",
        )
    )
    return summary


def _save_receipt(client: EnclaveClient, receipt: Receipt, profile_dir: Path, qualified: str, *, as_json: bool) -> None:
    """Save the signed receipt with the attestation that binds the enclave's key, and show it."""
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


def status(profile_dir: Path = PROFILE, as_json: bool = JSON) -> None:
    """Who has submitted what, and which computations are waiting, ready or done."""
    with connected(profile_dir) as (client, _):
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
    profile_dir: Path = PROFILE,
    as_json: bool = JSON,
) -> None:
    """Ask the enclave to run a computation now (its readers may); it runs only on complete input."""
    with connected(profile_dir) as (client, _):
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


class ResultFormat(enum.StrEnum):
    """``mpc fetch --format``: what ``--out`` is written as."""

    CSV = "csv"
    JSON = "json"
    PARQUET = "parquet"


def fetch(
    name: str = typer.Argument(..., help="The computation whose result to fetch."),
    output: Path | None = typer.Option(None, "--out", "-o", metavar="FILE", help="Write the result to this file."),
    fmt: ResultFormat = typer.Option(ResultFormat.CSV, "--format", help="The format of --out."),
    profile_dir: Path = PROFILE,
    as_json: bool = JSON,
) -> None:
    """Fetch a result you may read: decrypted here, its enclave signature checked, shown and saved."""
    _check_readable(profile_dir, name)  # before any connection: a typo needs no enclave
    streaming = output is not None and not as_json  # a large result goes to the file, never held here
    with connected(profile_dir) as (client, _):
        with _progress_bar(name) as on_progress:  # a synthetic release may take minutes
            result = client.wait_for_result(name, on_progress=on_progress, rows=not streaming)
        if output is not None:
            shown = client.save_result(result, output, fmt.value)
            err.print(f"wrote {output}")
            if streaming:
                result = dataclasses.replace(result, rows=shown)
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
    preview(result, saved_to=output, total=result.row_count)


@contextlib.contextmanager
def _progress_bar(name: str) -> Iterator[Callable[[float, str], None]]:
    """A progress display on stderr, shown only once the enclave says the result is still being generated."""
    # The stage is the enclave's words (a synthesizer plug-in's): text, never Rich markup.
    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        console=err,
    )
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


def _check_readable(profile_dir: Path, name: str) -> None:
    """Refuse, locally, a computation the manifest does not have or this party may not read."""
    saved = profile.Profile.load(profile_dir)
    agreed = manifest.load(Path(saved.manifest))
    mine = sorted(c.name for c in agreed.readable_by(saved.party))
    if name not in agreed.computations:
        raise UsageError(
            f"{name!r} is not a computation of session {agreed.session}",
            hint=f"you may fetch: {', '.join(mine) or 'nothing (you read no computation)'}",
        )
    if name not in mine:
        raise UsageError(
            f"{saved.party} is not a reader of {name} in the manifest every party agreed to",
            hint=f"you may fetch: {', '.join(mine) or 'nothing'}",
        )


def preview(result: Result, limit: int = 20, *, saved_to: Path | None = None, total: int | None = None) -> None:
    """A result as a table: its first rows (of ``total``, when it has more), and what release rules suppressed."""
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
    count = max(total or 0, len(result.rows))
    if count > limit:
        where = f"all of them are in {saved_to}" if saved_to is not None else "use --out FILE for all of them"
        out.print(styled("[dim]... {more} more rows ({where})[/]", more=f"{count - limit:,}", where=where))
    if result.rules.get("min_distinct"):
        out.print(plain(f"released under the owners' rules{_suppressed(result.suppressed_groups)}"))


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in sorted(value.items())) + "}"
    text = str(value)
    return text if len(text) <= 20 else text[:12] + "..."


def _iso(time_ms: int) -> str:
    """An event's time (the enclave's clock, ms since the epoch) as ISO 8601 in UTC."""
    return dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)


def transcript(profile_dir: Path = PROFILE, as_json: bool = JSON) -> None:
    """The session's event log: every link of the hash chain and the enclave's signature verified."""
    with connected(profile_dir) as (client, _):
        events = client.transcript()
    if as_json:
        print_json(
            [
                {"seq": e.seq, "time": _iso(e.time_ms), "kind": e.kind, "data": e.data, "hash": e.hash.hex()}
                for e in events
            ]
        )
        return
    table = Table(title=f"transcript ({len(events)} events, chain verified)", title_justify="left")
    for heading in ("#", "time (UTC)", "event", "details", "hash"):
        table.add_column(heading)
    for e in events:
        details = ", ".join(f"{k}={_short(v)}" for k, v in sorted(e.data.items()) if v is not None)
        table.add_row(str(e.seq), _iso(e.time_ms), plain(e.kind), plain(details), e.hash.hex()[:12])
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add the commands of a connected party to ``app``."""
    for command in (submit, status, compute, fetch, transcript):
        app.command(command.__name__)(command)
