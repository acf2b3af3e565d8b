"""``mpc keygen`` and ``mpc key show``, in process and as a real subprocess."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from oblv_mpc import keys
from tests.cli.conftest import Runner


def test_keygen_writes_the_pair_and_prints_the_base64_key(mpc: Runner, tmp_path: Path) -> None:
    done = mpc("keygen", "alice", "--out", "k")
    assert done.returncode == 0, done.stderr
    private, public = tmp_path / "k/alice_private.der", tmp_path / "k/alice_public.der"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    shared = done.stdout.strip()
    assert shared == keys.to_base64(keys.load_public_key(public))
    assert keys.fingerprint(keys.load_public_key(public)) in done.stderr
    assert "keep it secret" in done.stderr
    # the private key never reaches the terminal
    assert private.read_bytes().hex() not in done.stdout + done.stderr


def test_keygen_refuses_to_overwrite(mpc: Runner, tmp_path: Path) -> None:
    assert mpc("keygen", "alice").returncode == 0
    before = (tmp_path / "alice_private.der").read_bytes()
    done = mpc("keygen", "alice")
    assert done.returncode == 3
    assert "already exists" in done.stderr and "--force" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "alice_private.der").read_bytes() == before
    assert mpc("keygen", "alice", "--force").returncode == 0
    assert (tmp_path / "alice_private.der").read_bytes() != before


@pytest.mark.parametrize("key_type", [t.value for t in keys.KeyType])
def test_keygen_every_type_and_show(cli: Any, tmp_path: Path, key_type: str) -> None:
    made = cli("keygen", "p", "--out", str(tmp_path), "--type", key_type, "--json")
    assert made.exit_code == 0, made.output
    info = json.loads(made.stdout)
    assert info["type"] == key_type
    for source in (info["public_key_file"], info["private_key_file"], info["public_key"]):
        shown = cli("key", "show", source, "--json")
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["fingerprint"] == info["fingerprint"]


def test_encrypted_keygen_uses_the_environment_passphrase(cli: Any, tmp_path: Path) -> None:
    env = {"MPC_KEY_PASSPHRASE": "hunter2 hunter2"}
    assert cli("keygen", "p", "--out", str(tmp_path), "--encrypt", env=env).exit_code == 0
    private = tmp_path / "p_private.der"
    assert keys.is_encrypted(private)
    assert cli("key", "show", str(private), env=env).exit_code == 0
    wrong = cli("key", "show", str(private), env={"MPC_KEY_PASSPHRASE": "nope"})
    assert wrong.exit_code == 3
    assert "passphrase is wrong" in wrong.stderr


def test_key_show_refuses_a_world_readable_private_key(cli: Any, tmp_path: Path) -> None:
    cli("keygen", "p", "--out", str(tmp_path))
    private = tmp_path / "p_private.der"
    private.chmod(0o644)
    shown = cli("key", "show", str(private))
    assert shown.exit_code == 3
    assert f"chmod 600 {private}" in shown.stderr


def test_key_show_garbage(cli: Any) -> None:
    shown = cli("key", "show", "bm90IGEga2V5")
    assert shown.exit_code == 3
    assert "not a public key" in shown.stderr


def test_a_public_key_given_as_the_private_key_is_named_as_such(mpc: Runner, tmp_path: Path) -> None:
    """Row 5 of the newcomer's list: 'readable by others (mode 0644)', then 'not a readable private key'."""
    assert mpc("keygen", "alice").returncode == 0
    agreed = Path(__file__).parents[2] / "sessions" / "customer-overlap.yaml"
    pcrs = [arg for i in range(3) for arg in (f"--pcr{i}", "ab" * 48)]
    done = mpc("connect", "--url", "http://127.0.0.1:9", *pcrs, "--manifest", str(agreed), "--key", "alice_public.der")
    assert done.returncode == 3, done.stderr
    assert "alice_public.der: this is a public key; pass your private key" in done.stderr
    assert "chmod" not in done.stderr and "readable by others" not in done.stderr


def test_keygen_refuses_a_name_no_manifest_would_take(mpc: Runner, tmp_path: Path) -> None:
    done = mpc("keygen", "Bad-Name")
    assert done.returncode == 2
    assert "'Bad-Name' cannot be a party's name" in done.stderr
    assert not (tmp_path / "Bad-Name_private.der").exists()
