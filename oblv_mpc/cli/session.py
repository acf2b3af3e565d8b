"""``mpc session ...``: assemble, check and inspect session manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from oblv_mpc import keys, manifest
from oblv_mpc.cli._console import err, out, plain, print_json, styled, warn
from oblv_mpc.errors import ManifestError, UsageError
from oblv_mpc.manifest import Computation, Manifest, Role
from oblv_mpc.manifest.model import Release

app = typer.Typer(help="Assemble, check and inspect session manifests.", no_args_is_help=True)

_FILE = typer.Argument(..., help="The session manifest (YAML).")


def _edit(path: Path, section: str, name: str, body: dict[str, Any], *, replace: bool) -> None:
    document = manifest.load_document(path)
    entries = document.get(section)
    if entries is None:
        entries = document[section] = {}
    if not isinstance(entries, dict):
        raise UsageError(f"{path}: {section} is not a mapping; fix the file by hand first")
    if name in entries and not replace:
        raise UsageError(f"{path}: {section}.{name} already exists", hint="pass --replace to overwrite it")
    entries[name] = body
    manifest.dump_document(document, path)
    err.print(f"{path}: set {section}.{name}")


@app.command("new")
def new(
    session_id: str = typer.Argument(..., help="Session id: lowercase letters, digits, - and _."),
    directory: Path = typer.Option(Path("sessions"), "--dir", help="Folder for the manifest."),
    description: str = typer.Option("", "--description", help="What the parties agree to compute, in words."),
    force: bool = typer.Option(False, "--force", help="Replace an existing manifest of that id."),
    privacy_budget: float | None = typer.Option(
        None, "--privacy-budget", metavar="EPSILON", help="What all differentially private releases may spend."
    ),
) -> None:
    """Start a new manifest, DIR/ID.yaml, with no parties yet."""
    path = directory / f"{session_id}.yaml"
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="choose another id, or pass --force to start it over")
    directory.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "version": manifest.SCHEMA_VERSION,
        "session": session_id,
        "description": description,
        "parties": {},
        "inputs": {},
        "computations": {},
    }
    if privacy_budget is not None:
        document["privacy_budget"] = {"epsilon": privacy_budget}
    manifest.dump_document(document, path)
    out.print(str(path))


@app.command("add-party")
def add_party(
    file: Path = _FILE,
    name: str = typer.Argument(..., help="The party's name."),
    key: str = typer.Option(..., "--key", help="The party's public key: a file, or the base64 line from `mpc keygen`."),
    roles: list[Role] = typer.Option(
        [Role.CONTRIBUTOR, Role.READER], "--role", help="A role; repeat for several. Default: contributor and reader."
    ),
    replace: bool = typer.Option(False, "--replace", help="Replace a party of that name."),
) -> None:
    """Add a party with its public key and roles."""
    public = keys.load_public_key(key)
    body = {"public_key": keys.to_base64(public), "roles": sorted({r.value for r in roles})}
    _edit(file, "parties", name, body, replace=replace)


@app.command("add-input")
def add_input(
    file: Path = _FILE,
    table: str = typer.Argument(..., help="The table, as party.table."),
    columns: list[str] = typer.Option(
        ...,
        "--column",
        help="NAME:TYPE; repeat per column. TYPE: text, integer, float, boolean, date or timestamp.",
    ),
    key: list[str] = typer.Option([], "--key", help="A key column; repeat for a composite key."),
    max_rows: int = typer.Option(manifest.DEFAULT_MAX_ROWS, "--max-rows", help="Most rows the table may have."),
    max_bytes: int = typer.Option(manifest.DEFAULT_MAX_BYTES, "--max-bytes", help="Largest upload, in bytes."),
    unit: str | None = typer.Option(None, "--unit", help="Protection: the privacy unit column (e.g. customer_id)."),
    min_distinct: int | None = typer.Option(
        None, "--min-distinct", help="Protection: every released group holds at least K distinct units."
    ),
    dimensions: list[str] = typer.Option([], "--dimension", help="Protection: a column results may group by; repeat."),
    join_columns: list[str] = typer.Option([], "--join-column", help="Protection: a column others may match on."),
    list_columns: list[str] = typer.Option(
        [], "--list-column", help="Protection: a column whose shared values may be listed (psi)."
    ),
    allow: list[str] = typer.Option(
        [], "--allow", help="Protection: COLUMN:FUNCTION[,FUNCTION], e.g. salary:avg,sum (count is always allowed)."
    ),
    allow_dp: bool = typer.Option(False, "--allow-dp", help="Protection: differentially private releases may read it."),
    disclose_suppressed: bool = typer.Option(
        False, "--disclose-suppressed", help="Protection: results may say how many groups were suppressed."
    ),
    allow_others_aggregates_in_joins: bool = typer.Option(
        False,
        "--allow-others-aggregates-in-joins",
        help="Protection: over rows joined with this table, other parties' columns may be summed, averaged, "
        "or their min/max taken (this tells which of its units matched).",
    ),
    unrestricted: bool = typer.Option(
        False, "--unrestricted", help="No protection: any agreed computation may release anything from it (loud)."
    ),
    replace: bool = typer.Option(False, "--replace", help="Replace an input of that name."),
) -> None:
    """Declare an input table of a party: typed columns, limits, and its owner's protection rules."""
    parsed: dict[str, str] = {}
    for spec in columns:
        name, sep, column_type = spec.partition(":")
        if not sep:
            raise UsageError(f"--column {spec!r}: expected NAME:TYPE, e.g. salary:float")
        parsed[name] = column_type
    body: dict[str, Any] = {"columns": parsed}
    if key:
        body["key"] = key
    body["max_rows"] = max_rows
    body["max_bytes"] = max_bytes
    flags = {"allow_dp": allow_dp, "disclose_suppressed": disclose_suppressed}
    flags["allow_others_aggregates_in_joins"] = allow_others_aggregates_in_joins
    rules = _protection(unit, min_distinct, dimensions, join_columns, list_columns, allow, flags, unrestricted)
    if rules is not None:
        body["protection"] = rules
    _edit(file, "inputs", table, body, replace=replace)
    if rules is None:
        warn(
            f"{table} declares no protection: no computation may release anything derived from it until its owner "
            "adds --unit and --min-distinct (and what may be grouped by or aggregated), or --unrestricted"
        )
    elif unrestricted:
        warn(f"{table} is UNRESTRICTED: any agreed computation may release anything derived from its rows")


def _protection(
    unit: str | None,
    min_distinct: int | None,
    dimensions: list[str],
    join_columns: list[str],
    list_columns: list[str],
    allow: list[str],
    flags: dict[str, bool],
    unrestricted: bool,
) -> dict[str, Any] | None:
    """The ``protection:`` block the options describe (None: none declared); ``flags``: the true/false rules."""
    rules_given = unit or min_distinct or dimensions or join_columns or list_columns or allow or flags["allow_dp"]
    if unrestricted:
        if rules_given or any(flags.values()):
            raise UsageError("--unrestricted cannot be combined with protection rules: it allows everything")
        return {"release": "unrestricted"}
    if not rules_given:
        return None
    if unit is None or min_distinct is None:
        raise UsageError(
            "protection needs both --unit COLUMN and --min-distinct K", hint="e.g. --unit id --min-distinct 5"
        )
    rules: dict[str, Any] = {"unit": unit, "min_distinct": min_distinct}
    for key, values in (("dimensions", dimensions), ("join_columns", join_columns), ("list_columns", list_columns)):
        if values:
            rules[key] = values
    if allow:
        rules["aggregates"] = {}
        for spec in allow:
            column, functions = _column_list("--allow", spec, "COLUMN:FUNCTION[,FUNCTION], e.g. salary:avg,sum")
            rules["aggregates"][column] = functions
    rules.update((name, True) for name, given in flags.items() if given)
    return rules


@app.command("add-computation")
def add_computation(
    file: Path = _FILE,
    name: str = typer.Argument(..., help="The computation's name (what parties fetch)."),
    readers: list[str] = typer.Option(..., "--reader", help="A party who receives the result; repeat for several."),
    template: str | None = typer.Option(None, "--template", help="psi, psi_cardinality, aggregate or join_aggregate."),
    sql: str | None = typer.Option(None, "--sql", help="A SELECT over party.table names, instead of a template."),
    inputs: list[str] = typer.Option([], "--input", help="Template input table (party.table); repeat."),
    on: str | None = typer.Option(
        None, "--on", help="Template: the column to match (psi) or join on (join_aggregate)."
    ),
    group_by: list[str] = typer.Option([], "--group-by", help="Template: a grouping column; repeat."),
    aggregates: list[str] = typer.Option(
        [], "--aggregate", help="Template: OUT=FUNCTION:COLUMN, e.g. avg_salary=avg:salary."
    ),
    max_output_rows: int | None = typer.Option(
        None, "--max-output-rows", help="Withhold a result with more rows than this, entirely."
    ),
    dp_epsilon: float | None = typer.Option(
        None, "--dp-epsilon", metavar="EPSILON", help="Release it with differential privacy (Laplace), at this cost."
    ),
    dp_bounds: list[str] = typer.Option(
        [], "--dp-bound", metavar="COLUMN:LOW:HIGH", help="DP: clamp a summed or averaged column; repeat."
    ),
    dp_groups: list[str] = typer.Option(
        [], "--dp-group", metavar="COLUMN:VALUE,...", help="DP: the public groups of a grouping column; repeat."
    ),
    description: str = typer.Option("", "--description", help="What it computes, in words."),
    replace: bool = typer.Option(False, "--replace", help="Replace a computation of that name."),
) -> None:
    """Add a computation: a built-in template with its parameters, or SQL; its readers and rules."""
    body: dict[str, Any] = {}
    if description:
        body["description"] = description
    if (template is None) == (sql is None):
        raise UsageError("give exactly one of --template or --sql")
    if template is not None:
        body["template"] = template
        body["params"] = _template_params(template, inputs, on, group_by, aggregates)
    else:
        if inputs or on or group_by or aggregates:
            raise UsageError("--input, --on, --group-by and --aggregate apply to templates, not to --sql")
        body["sql"] = sql
    body["readers"] = readers
    if max_output_rows is not None:
        body["max_output_rows"] = max_output_rows
    if dp_epsilon is not None:
        body["dp"] = _dp(dp_epsilon, dp_bounds, dp_groups)
    elif dp_bounds or dp_groups:
        raise UsageError("--dp-bound and --dp-group describe a DP release: give its cost with --dp-epsilon")
    _edit(file, "computations", name, body, replace=replace)
    if dp_epsilon is not None and "privacy_budget" not in manifest.load_document(file):
        warn(
            f"{file} has no privacy_budget: a DP release needs one (privacy_budget: {{epsilon: ...}} at the top, "
            "or mpc session new --privacy-budget)"
        )


def _template_params(
    template: str, inputs: list[str], on: str | None, group_by: list[str], aggregates: list[str]
) -> dict[str, Any]:
    """A template's ``params:`` from the options that describe them."""
    params: dict[str, Any] = {"inputs": inputs}
    if on is not None:
        params["join_on" if template == "join_aggregate" else "column"] = on
    if group_by:
        params["group_by"] = group_by
    if aggregates:
        params["aggregates"] = {}
        for spec in aggregates:
            output, _, rest = spec.partition("=")
            function, sep, column = rest.partition(":")
            if not output or not sep:
                raise UsageError(f"--aggregate {spec!r}: expected OUT=FUNCTION:COLUMN, e.g. n=count:*")
            params["aggregates"][output] = {function: column}
    return params


def _dp(epsilon: float, bounds: list[str], groups: list[str]) -> dict[str, Any]:
    """The ``dp:`` block of a computation (docs/manifest.md): Laplace, so delta is 0."""
    spec: dict[str, Any] = {"epsilon": epsilon, "delta": 0}
    if bounds:
        spec["bounds"] = {}
        for text in bounds:
            parts = text.split(":")
            try:
                if len(parts) != 3:
                    raise ValueError(text)
                spec["bounds"][parts[0]] = [_number(parts[1]), _number(parts[2])]
            except ValueError:
                raise UsageError(f"--dp-bound {text!r}: expected COLUMN:LOW:HIGH, e.g. salary:0:400000") from None
    if groups:
        spec["groups"] = {}
        for text in groups:
            column, values = _column_list("--dp-group", text, "COLUMN:VALUE,..., e.g. level:junior,senior")
            spec["groups"][column] = [_scalar(value) for value in values]
    return spec


def _column_list(option: str, text: str, expected: str) -> tuple[str, list[str]]:
    """``COLUMN:A,B,...`` as the column and its items, or a usage error naming ``option``."""
    column, sep, items = text.partition(":")
    if not sep or not items:
        raise UsageError(f"{option} {text!r}: expected {expected}")
    return column, items.split(",")


def _number(text: str) -> int | float:
    """A bound as written: an integer stays one."""
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _scalar(text: str) -> int | str:
    """A public group's value: an integer column's groups are integers, the rest text."""
    return int(text) if text.lstrip("-").isdigit() else text


@app.command("check")
def check(file: Path = _FILE) -> None:
    """Validate a manifest completely; exit non-zero with every problem if it does not validate."""
    loaded = manifest.load(file)
    out.print(f"{file}: valid; session {loaded.session}, hash {loaded.hash}")


@app.command("hash")
def hash_(file: Path = _FILE) -> None:
    """Print the manifest's hash (SHA-256 of its deterministic CBOR form)."""
    out.print(manifest.load(file).hash, soft_wrap=True)


@app.command("show")
def show(
    file: Path = _FILE,
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Show parties with fingerprints, inputs, and computations with the exact SQL each runs.

    A draft (valid so far, not yet complete) is shown too, under a banner saying what is missing.
    """
    missing: list[str] = []
    try:
        loaded = manifest.load(file)
    except ManifestError as complete_error:
        loaded = manifest.load(file, complete=False)  # still raises if the draft itself is invalid
        missing = complete_error.problems
    if as_json:
        print_json({**_as_json(loaded), "draft": bool(missing), "missing": missing})
        return
    if missing:
        warn("DRAFT: this manifest is not complete yet; no enclave will run it until: " + "; ".join(missing))
    _render(loaded)


def _as_json(m: Manifest) -> dict[str, Any]:
    return {
        "session": m.session,
        "description": m.description,
        "hash": m.hash,
        "privacy_budget": m.privacy_budget,
        "parties": {
            p.name: {
                "fingerprint": p.fingerprint,
                "type": keys.describe(p.public_key),
                "roles": sorted(r.value for r in p.roles),
            }
            for p in m.parties.values()
        },
        "inputs": {
            t.qualified: {
                "columns": {c.name: c.type.value for c in t.columns},
                "key": list(t.key),
                "protection": t.protection.canonical(),
                "max_rows": t.max_rows,
                "max_bytes": t.max_bytes,
            }
            for t in m.inputs.values()
        },
        "computations": {
            c.name: {
                "template": c.template,
                "sql": c.sql,
                "run_sql": c.run_sql,  # the agreed SQL plus the enclave's per-owner unit counts
                "inputs": list(c.inputs),
                "readers": list(c.readers),
                "rules": c.rules,
                "columns": [list(col) for col in c.columns],
            }
            for c in m.computations.values()
        },
    }


def _describe_rules(c: Computation) -> list[str]:
    """What the enclave enforces on this computation's result, in plain words."""
    lines = list(c.policy.describe())
    if c.dp:
        bounds = ", ".join(f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in c.dp.bounds.items())
        lines.append(f"differential privacy: Laplace, epsilon {c.dp.epsilon:g}" + (f", {bounds}" if bounds else ""))
    if c.synthetic:
        lines += c.synthetic.describe()
    return lines


def _render_owner_rules(m: Manifest, c: Computation) -> None:
    """Each owner's protection of each table the computation reads, next to the computation."""
    for name in c.inputs:
        table = m.inputs[name]
        style = "bold red" if table.protection.release is Release.UNRESTRICTED else "cyan"
        out.print(Text(f"  {name}, protected by {table.party}:", style="bold"))
        for sentence in table.protection.describe():
            out.print(Text(f"    - {sentence}", style=style))


def _render(m: Manifest) -> None:
    """Every string of the manifest is from outside: shown with plain() or styled(), never as markup."""
    out.print(styled("[bold]session[/] {session}", session=m.session))
    if m.description:
        out.print(plain(m.description, multiline=True), style="dim")
    out.print(styled("[bold]hash[/]    {hash}", hash=m.hash))
    parties = Table(title="parties", title_justify="left")
    for heading in ("party", "key", "fingerprint (SHA-256 of SPKI)", "roles"):
        parties.add_column(heading)
    for p in m.parties.values():
        parties.add_row(
            plain(p.name),
            plain(keys.describe(p.public_key)),
            plain(p.fingerprint),
            plain(", ".join(sorted(r.value for r in p.roles))),
        )
    out.print(parties)
    inputs = Table(title="inputs", title_justify="left")
    for heading in ("table", "columns", "key", "max rows", "max bytes"):
        inputs.add_column(heading)
    for t in m.inputs.values():
        columns = ", ".join(f"{c.name} {c.type.value}" for c in t.columns)
        inputs.add_row(
            plain(t.qualified), plain(columns), plain(", ".join(t.key) or "-"), f"{t.max_rows:,}", f"{t.max_bytes:,}"
        )
    out.print(inputs)
    if m.privacy_budget:
        out.print(
            styled(
                "[bold]privacy budget[/] epsilon {epsilon} for all differentially private releases",
                epsilon=f"{m.privacy_budget['epsilon']:g}",
            )
        )
    for c in m.computations.values():
        out.print(
            styled(
                "[bold]{name}[/] ({kind})  readers: {readers}  inputs: {inputs}",
                name=c.name,
                kind=c.template or ("synthetic" if c.synthetic else "sql"),
                readers=", ".join(c.readers),
                inputs=", ".join(c.inputs),
            )
        )
        if c.description:
            out.print(plain(c.description, multiline=True), style="dim")
        _render_owner_rules(m, c)
        out.print(Text("  enforced on the result:", style="bold"))
        for rule in _describe_rules(c) or ["nothing beyond the readers"]:
            out.print(plain(f"    - {rule}"))
        sql = plain(c.sql, multiline=True).plain  # what the hash covers, every hiding character escaped
        out.print(Panel(Syntax(sql, "sql", theme="ansi_dark", word_wrap=True), title="exact SQL", title_align="left"))


def register(root: typer.Typer) -> None:
    """Add ``mpc session ...`` to ``root``."""
    root.add_typer(app, name="session")
