"""What a party types once connected: ``mpc submit``, ``status``, ``compute``, ``fetch``, ``transcript``."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
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

from oblv_mpc import manifest, profile, result_files
from oblv_mpc.cli._console import err, out, plain, print_json, styled, warn
from oblv_mpc.cli._profile import JSON, PROFILE, connected
from oblv_mpc.client import Result
from oblv_mpc.columnar import COMPRESSIONS
from oblv_mpc.errors import EnclaveRefused, EnclaveUnreachable, UsageError
from oblv_mpc.manifest import InputTable
from oblv_mpc.privacy_ledger import PrivacyLedger, check_new_instance
from oblv_mpc.protocol.messages import ARROW, CSV, UPLOAD_FORMATS


def _receipt_file(profile_dir: Path, table: str) -> Path:
    folder = profile_dir / "receipts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{table}.json"


def submit(
    file: Path = typer.Argument(..., help="The file to submit: CSV, or Parquet (read with --format arrow)."),
    table: str = typer.Option(..., "--table", help="Which of your tables it is (e.g. employees)."),
    fmt: str = typer.Option(
        "arrow",
        "--format",
        help="arrow: read the file here with Arrow and send typed record batches (fast; CSV or Parquet); "
        "csv: send the CSV text as it is, for the enclave to parse.",
    ),
    compress: str | None = typer.Option(
        None, "--compress", help="With --format arrow: compress the batches (lz4 or zstd), for slow networks."
    ),
    allow_fresh_privacy_budget: bool = typer.Option(
        False,
        "--allow-fresh-privacy-budget",
        help="Submit to a restarted enclave although an earlier one already spent privacy budget (loud).",
    ),
    profile_dir: Path = PROFILE,
    as_json: bool = JSON,
) -> None:
    """Check the file against the manifest's schema here, upload it sealed, and save the signed receipt."""
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
    if fmt == CSV:
        _check_csv(file, declared)
    else:
        err.print(f"reading {file} with Arrow; each batch is checked against {qualified}'s schema before it is sent")
    with connected(profile_dir) as (client, _):
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
        with _progress() as progress:
            tasks: list[TaskID] = []  # added once the first chunk went: no bar for a file refused here

            def advance(size: int) -> None:
                if not tasks:
                    tasks.append(progress.add_task(f"uploading {file.name}", total=file.stat().st_size))
                progress.advance(tasks[0], size)

            try:
                receipt = client.upload(qualified, file, progress=advance, format=fmt, compression=compress)
            except EnclaveUnreachable as exc:
                raise EnclaveUnreachable(
                    f"the upload was cut off: {exc.message}; the enclave keeps nothing of an unfinished upload",
                    hint="when the enclave answers again, run `mpc connect` (it may have restarted) and submit again",
                ) from None
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


def _check_csv(file: Path, declared: InputTable) -> None:
    """The whole CSV checked here before anything is sent (``--format csv``: the enclave parses the text)."""
    from oblv_mpc.tables import validate_file  # Arrow and DuckDB load only for this command

    err.print(f"checking {file} against {declared.qualified}'s schema (nothing is sent yet)")
    summary = validate_file(file, declared)
    err.print(
        styled(
            "[green]✓[/] {summary}",
            summary=f"{summary.rows:,} rows, {summary.size:,} bytes, SHA-256 {summary.sha256[:16]}...",
        )
    )


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


def fetch(
    name: str = typer.Argument(..., help="The computation whose result to fetch."),
    output: Path | None = typer.Option(None, "--out", "-o", help="Write the result to this file."),
    fmt: str = typer.Option("csv", "--format", help="csv, json or parquet, for --out."),
    profile_dir: Path = PROFILE,
    as_json: bool = JSON,
) -> None:
    """Fetch a result you may read: decrypted here, its enclave signature checked, shown and saved."""
    if fmt not in result_files.FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(result_files.FORMATS)}")
    _check_readable(profile_dir, name)  # before any connection: a typo needs no enclave
    streaming = output is not None and not as_json  # a large result goes to the file, never held here
    with connected(profile_dir) as (client, _):
        with _progress_bar(name) as on_progress:  # a synthetic release may take minutes
            result = client.wait_for_result(name, on_progress=on_progress, rows=not streaming)
        if output is not None:
            shown = client.save_result(result, output, fmt)
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
