"""Messages in plain English (issue 16, row 19): no `'bob''s`, no "another a", no class names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from oblv_mpc import keys
from tests.conftest import salary_document

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens


def test_a_reserved_name_is_refused_in_words_that_read(cli: Any, tmp_path: Path) -> None:
    done = cli("keygen", "main", "--out", str(tmp_path))
    assert done.exit_code == 2
    assert "'main' is reserved; choose another party name" in done.stderr
    assert "another a " not in done.stderr


def test_a_key_of_another_party_is_named_without_doubled_quotes(
    cli: Any, tmp_path: Path, party_keys: dict[str, keys.PrivateKey]
) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(salary_document(party_keys)))
    keys.save_key_pair(party_keys["alice"], tmp_path, "alice")
    pcrs = ["--pcr0", "11" * 48, "--pcr1", "22" * 48, "--pcr2", "33" * 48]
    key = str(tmp_path / "alice_private.der")
    agreed = str(tmp_path / "s.yaml")
    done = cli("connect", "--url", NOWHERE, "--manifest", agreed, "--key", key, *pcrs, "--party", "bob")
    assert done.exit_code == 3
    assert "this key belongs to party alice, not to 'bob'" in done.stderr
    assert "''s" not in done.stderr


def test_an_enclave_that_is_not_there_is_said_in_words_not_an_exception_name(cli: Any, tmp_path: Path) -> None:
    done = cli("attestation", "fetch", "--url", NOWHERE, "-o", str(tmp_path / "doc.cbor"))
    assert done.exit_code == 6
    assert f"no answer from the enclave at {NOWHERE}: could not connect" in done.stderr
    assert "ConnectError" not in done.stderr and "check that the enclave is running" in done.stderr
    assert not (tmp_path / "doc.cbor").exists()


def test_sql_over_a_table_before_any_input_is_declared_says_so(cli: Any, tmp_path: Path) -> None:
    assert cli("keygen", "alice", "--out", str(tmp_path)).exit_code == 0
    assert cli("session", "new", "s", "--dir", str(tmp_path)).exit_code == 0
    draft = str(tmp_path / "s.yaml")
    assert cli("session", "add-party", draft, "alice", "--key", str(tmp_path / "alice_public.der")).exit_code == 0
    done = cli("session", "add-computation", draft, "c", "--sql", "SELECT 1 AS x FROM alice.t", "--reader", "alice")
    assert done.exit_code == 3
    assert "the manifest declares no input yet (mpc session add-input)" in done.stderr
    assert "inputs  may" not in done.stderr
