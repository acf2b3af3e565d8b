"""What newcomers expected and did not find (issue 16): completion, MPC_URL, `mpc profiles`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from oblv_mpc import keys, manifest, profile
from tests.cli.conftest import Runner
from tests.conftest import salary_document

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens


def _complete(words: str) -> list[str]:
    """What bash completion offers after ``words`` (Typer's protocol, as its script calls it)."""
    done = subprocess.run(
        [sys.executable, "-m", "oblv_mpc"],
        env={
            **os.environ,
            "_MPC_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),  # the index of the word being completed
        },
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout.split()


def test_tab_completion_offers_commands_options_and_choices() -> None:
    assert "fetch" in _complete("mpc fet")
    assert _complete("mpc fetch --format ") == ["csv", "json", "parquet"]
    assert "--manifest" in _complete("mpc enclave serve --man")


def test_install_completion_writes_only_into_the_users_own_shell_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_MPC")}
    done = subprocess.run(
        [sys.executable, "-m", "oblv_mpc", "--install-completion", "bash"],
        env={**env, "HOME": str(tmp_path), "SHELL": "/bin/bash"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "_mpc_completion" in "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    shown = subprocess.run(
        [sys.executable, "-m", "oblv_mpc", "--show-completion", "bash"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "_mpc_completion" in shown.stdout


def test_connect_takes_the_enclave_url_from_mpc_url(
    cli: Any, tmp_path: Path, party_keys: dict[str, keys.PrivateKey]
) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(salary_document(party_keys)))
    keys.save_key_pair(party_keys["alice"], tmp_path, "alice")
    args = ["connect", "--manifest", str(tmp_path / "s.yaml"), "--key", str(tmp_path / "alice_private.der")]
    args += ["--pcr0", "11" * 48, "--pcr1", "22" * 48, "--pcr2", "33" * 48]
    done = cli(*args, env={"MPC_URL": NOWHERE})
    assert done.exit_code == 6 and f"no answer from the enclave at {NOWHERE}" in done.stderr  # it went there
    missing = cli(*args, env={"MPC_URL": ""})
    assert missing.exit_code == 2 and "--url" in missing.stderr and "MPC_URL" in missing.stderr


def _save(folder: Path, party: str, manifest_file: Path, url: str) -> None:
    profile.Profile(
        url=url,
        manifest=str(manifest_file),
        manifest_sha256=manifest.load(manifest_file).hash,
        party=party,
        private_key=str(folder / f"{party}_private.der"),
        instance="00",
        key_id="00",
        development=True,
        allow_debug=False,
        connected_at="2026-01-01T00:00:00+00:00",
        pcr_file=str(folder / "pcrs.yaml"),
    ).save(folder / ".mpc")


def test_profiles_lists_the_sessions_each_party_folder_is_connected_to(
    cli: Any, tmp_path: Path, party_keys: dict[str, keys.PrivateKey]
) -> None:
    agreed = tmp_path / "s.yaml"
    agreed.write_text(yaml.safe_dump(salary_document(party_keys)))
    for party in ("alice", "bob"):
        (tmp_path / party).mkdir()
        _save(tmp_path / party, party, agreed, "http://127.0.0.1:8000")
    home = tmp_path / "home"
    _save(tmp_path / "elsewhere", "carol", agreed, "http://enclave.example:8000")  # connected in $MPC_HOME
    (tmp_path / "elsewhere/.mpc").rename(home)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/.mpc").mkdir()
    (tmp_path / "broken/.mpc/profile.yaml").write_text("not: [a profile")
    done = cli("profiles", str(tmp_path), "--json", env={"MPC_HOME": str(home)})
    assert done.exit_code == 0, done.output
    listed = {Path(e["folder"]).parent.name or e["folder"]: e for e in json.loads(done.stdout)}
    assert listed["alice"]["party"] == "alice" and listed["alice"]["session"] == "salaries"
    assert listed["bob"]["state"] == "ok" and "not valid YAML" in listed["broken"]["problem"]
    assert any(e.get("party") == "carol" and e["enclave"] == "http://enclave.example:8000" for e in listed.values())
    agreed.write_text(agreed.read_text().replace("average salary per level", "changed"))
    table = cli("profiles", str(tmp_path), env={"MPC_HOME": str(home), "COLUMNS": "200"})
    assert "its manifest changed since" in table.stdout and "salaries" in table.stdout


def test_profiles_in_a_folder_without_any_says_how_to_make_one(mpc: Runner, tmp_path: Path) -> None:
    done = mpc("profiles", env={"MPC_HOME": str(tmp_path / "home")})
    assert done.returncode == 0 and "no connection profile" in done.stderr and "mpc connect" in done.stderr
