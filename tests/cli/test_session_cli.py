"""``mpc session ...``: assembling a manifest from the command line, checking and showing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oblv_mpc import manifest
from tests.cli.conftest import Runner


def _assemble(cli: Any, tmp_path: Path) -> Path:
    for p in ("alice", "bob"):
        assert cli("keygen", p, "--out", str(tmp_path / "keys")).exit_code == 0
    assert cli("session", "new", "overlap", "--dir", str(tmp_path / "sessions")).exit_code == 0
    path = tmp_path / "sessions/overlap.yaml"
    for p in ("alice", "bob"):
        done = cli("session", "add-party", str(path), p, "--key", str(tmp_path / f"keys/{p}_public.der"))
        assert done.exit_code == 0, done.output
        done = cli(
            "session",
            "add-input",
            str(path),
            f"{p}.customers",
            "--column",
            "email:text",
            "--key",
            "email",
            "--max-rows",
            "100",
            *("--unit", "email", "--min-distinct", "5", "--join-column", "email"),
        )
        assert done.exit_code == 0, done.output
    done = cli(
        "session",
        "add-computation",
        str(path),
        "overlap_size",
        "--template",
        "psi_cardinality",
        "--input",
        "alice.customers",
        "--input",
        "bob.customers",
        "--on",
        "email",
        "--reader",
        "alice",
        "--reader",
        "bob",
    )
    assert done.exit_code == 0, done.output
    return path


def test_assemble_check_show_hash(cli: Any, tmp_path: Path) -> None:
    path = _assemble(cli, tmp_path)
    loaded = manifest.load(path)
    checked = cli("session", "check", str(path))
    assert checked.exit_code == 0
    assert loaded.hash in checked.stdout
    assert cli("session", "hash", str(path)).stdout.strip() == loaded.hash
    shown = cli("session", "show", str(path), "--json")
    data = json.loads(shown.stdout)
    assert data["hash"] == loaded.hash
    assert data["computations"]["overlap_size"]["sql"] == loaded.computations["overlap_size"].sql
    assert data["parties"]["alice"]["fingerprint"] == loaded.parties["alice"].fingerprint
    pretty = cli("session", "show", str(path))
    assert "INTERSECT" in pretty.stdout and loaded.parties["bob"].fingerprint[:16] in pretty.stdout


def test_edits_that_break_the_manifest_are_refused_and_leave_it_intact(cli: Any, tmp_path: Path) -> None:
    path = _assemble(cli, tmp_path)
    before = path.read_text()
    done = cli(
        "session",
        "add-computation",
        str(path),
        "bad",
        "--template",
        "psi",
        "--input",
        "alice.customers",
        "--input",
        "bob.nope",
        "--on",
        "email",
        "--reader",
        "alice",
    )
    assert done.exit_code == 3
    assert "computations.bad.params.inputs[1]" in done.stderr
    assert path.read_text() == before
    again = cli("session", "add-party", str(path), "alice", "--key", str(tmp_path / "keys/bob_public.der"))
    assert again.exit_code == 2 and "--replace" in again.stderr
    assert path.read_text() == before


def test_check_reports_incomplete_manifest(cli: Any, tmp_path: Path) -> None:
    cli("session", "new", "empty", "--dir", str(tmp_path))
    done = cli("session", "check", str(tmp_path / "empty.yaml"))
    assert done.exit_code == 3
    assert "at least two parties" in done.stderr and "at least one computation" in done.stderr


def test_session_commands_as_real_processes(mpc: Runner, tmp_path: Path) -> None:
    assert mpc("keygen", "a").returncode == 0
    assert mpc("keygen", "b").returncode == 0
    assert mpc("session", "new", "s1").returncode == 0
    for p in ("a", "b"):
        assert mpc("session", "add-party", "sessions/s1.yaml", p, "--key", f"{p}_public.der").returncode == 0
        declared = mpc("session", "add-input", "sessions/s1.yaml", f"{p}.t", "--column", "x:integer", "--unrestricted")
        assert declared.returncode == 0
        assert "UNRESTRICTED" in declared.stderr
    done = mpc(
        "session",
        "add-computation",
        "sessions/s1.yaml",
        "total",
        "--template",
        "aggregate",
        "--input",
        "a.t",
        "--input",
        "b.t",
        "--aggregate",
        "total=sum:x",
        "--reader",
        "a",
    )
    assert done.returncode == 0, done.stderr
    hashed = mpc("session", "hash", "sessions/s1.yaml")
    assert hashed.returncode == 0
    assert hashed.stdout.strip() == manifest.load(tmp_path / "sessions/s1.yaml").hash
    bad = mpc("session", "check", "sessions/missing.yaml")
    assert bad.returncode == 3 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_show_states_each_owners_rules_next_to_each_computation(cli: Any) -> None:
    path = Path(__file__).parents[2] / "sessions" / "shared-customers-by-country.yaml"
    shown = cli("session", "show", str(path), env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    after = text.split("shared_by_country (sql)", 1)[1]
    assert "acme.customers, protected by acme:" in after
    assert "every released group holds at least 10 distinct email of this table" in after
    assert "globex.customers, protected by globex:" in after and "may be grouped by: country" in after
    assert "may be matched on (never shown): email" in after
    assert "a result with more than 300 rows is withheld entirely" in after
    assert "the result does not say how many groups were suppressed" in after


def test_an_unrestricted_table_is_flagged_loudly(cli: Any, tmp_path: Path) -> None:
    path = _assemble(cli, tmp_path)
    done = cli(
        "session", "add-input", str(path), "alice.customers", "--column", "email:text", "--key", "email",
        "--unrestricted", "--replace",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "UNRESTRICTED" in done.stderr and "WARNING" in done.stderr
    shown = cli("session", "show", str(path), env={"COLUMNS": "200"})
    assert "UNRESTRICTED: its owner lets any agreed computation release anything derived from its rows" in shown.stdout


def test_protection_flags_make_the_protection_block(cli: Any, tmp_path: Path) -> None:
    path = _assemble(cli, tmp_path)
    done = cli(
        "session", "add-input", str(path), "bob.customers", "--column", "email:text", "--column", "spend:float",
        "--key", "email", "--unit", "email", "--min-distinct", "7", "--join-column", "email",
        "--allow", "spend:avg,sum", "--disclose-suppressed", "--allow-others-aggregates-in-joins", "--replace",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    rules = manifest.load(path).inputs["bob.customers"].protection
    assert (rules.unit, rules.min_distinct, rules.join_columns) == ("email", 7, frozenset({"email"}))
    assert rules.aggregates == {"spend": frozenset({"avg", "sum"})} and rules.disclose_suppressed
    assert rules.allow_others_aggregates_in_joins and not rules.allow_dp
    incomplete = cli("session", "add-input", str(path), "bob.customers", "--column", "email:text", "--unit", "email",
                     "--replace")  # fmt: skip
    assert incomplete.exit_code == 2 and "--min-distinct" in incomplete.stderr
    undeclared = cli("session", "add-input", str(path), "bob.customers", "--column", "email:text", "--replace")
    assert undeclared.exit_code == 3  # the computation over it no longer validates: nothing was written
    assert "declares no protection" in undeclared.stderr
    assert manifest.load(path).inputs["bob.customers"].protection.min_distinct == 7


def test_a_wrong_column_type_is_a_message_not_a_traceback(cli: Any, tmp_path: Path) -> None:
    """Row 3: `--column amount:int` on a manifest with computations was a DuckDB ParserException."""
    path = _assemble(cli, tmp_path)
    done = cli("session", "add-input", str(path), "alice.orders", "--column", "amount:int")
    assert done.exit_code == 3
    assert "inputs.alice.orders.columns.amount: expected a type among text, integer, float" in done.stderr
    assert "Traceback" not in done.output and "ParserException" not in done.output
    helped = cli("session", "add-input", "--help")
    assert "text, integer, float, boolean, date or timestamp" in " ".join(helped.stdout.split())


def test_a_missing_key_file_is_called_missing(cli: Any, tmp_path: Path) -> None:
    """Row 20: `add-party --key missing.der` said 'not valid base64'."""
    cli("session", "new", "s", "--dir", str(tmp_path))
    done = cli("session", "add-party", str(tmp_path / "s.yaml"), "alice", "--key", "missing.der")
    assert done.exit_code == 3
    assert "missing.der: no such file" in done.stderr and "base64" not in done.stderr.split("hint")[0]


def test_show_previews_a_draft_and_says_what_is_missing(cli: Any, tmp_path: Path) -> None:
    """Row 24: `session show` on a draft was refused (it needs two parties)."""
    cli("keygen", "alice", "--out", str(tmp_path / "keys"))
    cli("session", "new", "s", "--dir", str(tmp_path))
    cli("session", "add-party", str(tmp_path / "s.yaml"), "alice", "--key", str(tmp_path / "keys/alice_public.der"))
    shown = cli("session", "show", str(tmp_path / "s.yaml"), env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "DRAFT" in shown.stderr and "at least two parties" in shown.stderr
    assert "alice" in shown.stdout
    as_json = json.loads(cli("session", "show", str(tmp_path / "s.yaml"), "--json").stdout)
    assert as_json["draft"] is True and any("at least two parties" in m for m in as_json["missing"])


def test_a_dp_release_is_declared_with_flags_alone(cli: Any, tmp_path: Path) -> None:
    """Issue 16, row 18: every rule has its flag, differential privacy and the budget included."""
    for p in ("alice", "bob"):
        assert cli("keygen", p, "--out", str(tmp_path / "keys")).exit_code == 0
    made = cli("session", "new", "pay", "--dir", str(tmp_path), "--privacy-budget", "1.5")
    assert made.exit_code == 0, made.output
    path = tmp_path / "pay.yaml"
    for p in ("alice", "bob"):
        assert cli("session", "add-party", str(path), p, "--key", str(tmp_path / f"keys/{p}_public.der")).exit_code == 0
        done = cli(
            "session", "add-input", str(path), f"{p}.staff", "--column", "id:text", "--column", "level:text",
            "--column", "salary:float", "--key", "id", "--unit", "id", "--min-distinct", "3",
            "--dimension", "level", "--allow", "salary:avg,sum", "--allow-dp",
        )  # fmt: skip
        assert done.exit_code == 0, done.output
    done = cli(
        "session", "add-computation", str(path), "mean_pay", "--template", "aggregate",
        "--input", "alice.staff", "--input", "bob.staff", "--group-by", "level",
        "--aggregate", "mean=avg:salary", "--reader", "alice", "--reader", "bob",
        "--dp-epsilon", "0.5", "--dp-bound", "salary:0:400000", "--dp-group", "level:junior,senior",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    loaded = manifest.load(path)
    assert loaded.privacy_budget is not None and loaded.privacy_budget["epsilon"] == pytest.approx(1.5)
    dp = loaded.computations["mean_pay"].dp
    assert dp is not None and dp.epsilon == pytest.approx(0.5)
    assert dp.bounds == {"salary": (0, 400000)} and dp.groups == {"level": ("junior", "senior")}
    bad = cli("session", "add-computation", str(path), "x", "--sql", "SELECT 1", "--reader", "alice",
              "--dp-bound", "salary:0")  # fmt: skip
    assert bad.exit_code == 2 and "--dp-epsilon" in bad.stderr
    bad = cli("session", "add-computation", str(path), "x", "--sql", "SELECT 1", "--reader", "alice",
              "--dp-epsilon", "1", "--dp-bound", "salary:0")  # fmt: skip
    assert bad.exit_code == 2 and "COLUMN:LOW:HIGH" in bad.stderr
