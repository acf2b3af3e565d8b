"""``mpc attestation show|verify``, ``mpc pcrs import`` and ``mpc enclave measure``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oblv_mpc.attestation import load_pcr_file, measure
from tests.attestation.conftest import VECTORS, vector

EV4_PCRS = """version: 1
measurements:
  - name: evervault-4
    pcr0: d265a83faa7b4fa0d73b82b6d06253e894445922937d0ee5a74fe4891da9817611a71e71b98e5329232902de3cf419af
    pcr1: bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f
    pcr2: e4f634d24ad83b7f6e49fe283bafdb220f6252fb4a278a858e19d15b7cd0f263b9168ed0bacefb4444266df9f9a77f24
"""


@pytest.fixture
def ev4(tmp_path: Path) -> tuple[str, str]:
    vector("evervault_4.cbor")
    pcr_file = tmp_path / "pcrs.yaml"
    pcr_file.write_text(EV4_PCRS)
    return str(VECTORS / "evervault_4.cbor"), str(pcr_file)


def test_verify_passes_at_document_time(cli: Any, ev4: tuple[str, str]) -> None:
    doc, pcrs = ev4
    done = cli("attestation", "verify", doc, "--pcr-file", pcrs, "--at-document-time", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["verified"] is True
    assert [c["check"] for c in report["checks"]] == [
        "structure",
        "root",
        "chain",
        "signature",
        "pcrs",
        "nonce",
        "user_data",
        "public_key",
    ]
    checked = {c["check"]: c["ok"] for c in report["checks"]}
    assert all(checked[c] for c in ("structure", "root", "chain", "signature", "pcrs"))
    # nothing was given to compare these with: not checked, and never shown as passed
    assert checked["nonce"] is None and checked["user_data"] is None and checked["public_key"] is None


def test_verify_without_a_nonce_says_it_was_not_checked_instead_of_a_tick(cli: Any, ev4: tuple[str, str]) -> None:
    doc, pcrs = ev4
    done = cli("attestation", "verify", doc, "--pcr-file", pcrs, "--at-document-time")
    assert done.exit_code == 0, done.output
    nonce = next(line for line in done.stdout.splitlines() if "nonce" in line)
    assert "✓" not in nonce and "not checked" in nonce
    assert "not required" not in done.stdout


def test_verify_fails_today_with_a_cross_and_exit_4(cli: Any, ev4: tuple[str, str]) -> None:
    doc, pcrs = ev4
    done = cli("attestation", "verify", doc, "--pcr-file", pcrs)
    assert done.exit_code == 4
    assert "✗" in done.stdout and "expired" in done.stdout
    assert "attestation failed: [validity]" in done.stderr


def test_verify_at_an_explicit_time_and_nonce(cli: Any, ev4: tuple[str, str]) -> None:
    doc, pcrs = ev4
    done = cli(
        "attestation", "verify", doc, "--pcr-file", pcrs, "--at", "2023-01-18T14:00:00Z", "--nonce", "00" * 8, "--json"
    )
    assert done.exit_code == 4
    checks = {c["check"]: c["ok"] for c in json.loads(done.stdout)["checks"]}
    assert checks["signature"] is True and checks["nonce"] is False


def test_debug_document_needs_the_loud_override(cli: Any, tmp_path: Path) -> None:
    vector("evervault_1.cbor")  # skips when the shared vectors are absent
    pcrs = tmp_path / "p.yaml"
    pcrs.write_text(EV4_PCRS)
    doc = str(VECTORS / "evervault_1.cbor")
    refused = cli("attestation", "verify", doc, "--pcr-file", str(pcrs), "--at-document-time")
    assert refused.exit_code == 4 and "debug mode" in refused.stderr
    allowed = cli("attestation", "verify", doc, "--pcr-file", str(pcrs), "--at-document-time", "--allow-debug-enclave")
    assert allowed.exit_code == 0, allowed.output
    assert "debug enclaves are ALLOWED" in allowed.stderr
    assert "DEBUG enclave" in allowed.stderr


def test_missing_pcr_file_is_refused(cli: Any, ev4: tuple[str, str], tmp_path: Path) -> None:
    done = cli("attestation", "verify", ev4[0], "--pcr-file", str(tmp_path / "none.yaml"))
    assert done.exit_code == 3 and "no such file" in done.stderr


def test_show_says_unverified(cli: Any, ev4: tuple[str, str]) -> None:
    done = cli("attestation", "show", ev4[0], "--json")
    assert done.exit_code == 0
    assert "UNVERIFIED" in done.stderr
    fields = json.loads(done.stdout)
    assert fields["pcrs"]["0"].startswith("d265a83f")
    assert fields["digest"] == "SHA384"


def test_show_refuses_garbage(cli: Any, tmp_path: Path) -> None:
    junk = tmp_path / "junk.cbor"
    junk.write_bytes(b"\x84\x01")
    done = cli("attestation", "show", str(junk))
    assert done.exit_code == 4 and "not valid CBOR" in done.stderr


def test_pcrs_import(cli: Any, tmp_path: Path) -> None:
    source = tmp_path / "build.json"
    source.write_text(
        json.dumps(
            {
                "Measurements": {
                    "HashAlgorithm": "Sha384 { ... }",
                    "PCR0": "aa" * 48,
                    "PCR1": "bb" * 48,
                    "PCR2": "cc" * 48,
                }
            }
        )
    )
    out = tmp_path / "pcrs.yaml"
    done = cli("pcrs", "import", str(source), "-o", str(out))
    assert done.exit_code == 0, done.output
    assert load_pcr_file(out).accepted[0].values[0] == bytes.fromhex("aa" * 48)
    again = cli("pcrs", "import", str(source), "-o", str(out))
    assert again.exit_code == 2 and "--force" in again.stderr


def test_enclave_measure_writes_a_development_pcr_file(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "dev.yaml"
    done = cli("enclave", "measure", "-o", str(out), "--ca-dir", str(tmp_path / "ca"), "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["pcr0"] == measure().pcr0.hex()
    policy = load_pcr_file(out)
    assert policy.development
    assert policy.roots[0].sha256 == data["development_root_sha256"]
    assert "development enclave" in done.stderr


def _nitro_json(path: Path, pcr0: str) -> Path:
    path.write_text(
        json.dumps(
            {"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": pcr0, "PCR1": "bb" * 48, "PCR2": "cc" * 48}}
        )
    )
    return path


def test_pcrs_compare_a_rebuild_with_the_published_file(cli: Any, tmp_path: Path) -> None:
    published = tmp_path / "published.yaml"
    assert (
        cli("pcrs", "import", str(_nitro_json(tmp_path / "operator.json", "aa" * 48)), "-o", str(published)).exit_code
        == 0
    )
    same = cli("pcrs", "compare", str(_nitro_json(tmp_path / "mine.json", "aa" * 48)), "--pcr-file", str(published))
    assert same.exit_code == 0 and "matches" in same.stdout
    other = cli("pcrs", "compare", str(_nitro_json(tmp_path / "mine2.json", "ab" * 48)), "--pcr-file", str(published))
    assert other.exit_code == 3
    assert "✗ PCR0" in other.stdout and "✓ PCR1" in other.stdout
    assert "does not measure to any set" in other.stderr
