"""`mpc attestation ...` as a newcomer meets it (issue 16, rows 4 and 29, `attestation fetch`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oblv_mpc import manifest
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure, write_pcr_file
from oblv_mpc.enclave import create_app
from oblv_mpc.enclave.server import ServerThread
from tests.conftest import salary_document


@pytest.fixture
def simulated(tmp_path: Path) -> tuple[SimulatedNsm, Path]:
    """A simulated NSM and the development PCR file that accepts it."""
    ca = DevelopmentCA.load_or_create(tmp_path / "ca")
    nsm = SimulatedNsm(ca, measure())
    pcr_file = tmp_path / "pcrs.yaml"
    write_pcr_file(ca.policy(nsm.measurements), pcr_file, description="test")
    return nsm, pcr_file


def _document(nsm: SimulatedNsm, path: Path) -> Path:
    path.write_bytes(nsm.attest(nonce=None, user_data=None, public_key=None))
    return path


def test_a_pcr0_that_differs_in_the_middle_is_shown_whole_with_where_it_differs(
    cli: Any, tmp_path: Path, simulated: tuple[SimulatedNsm, Path]
) -> None:
    nsm, pcr_file = simulated
    real = nsm.measurements.pcr0.hex()
    other = real[:48] + ("0" if real[48] != "0" else "1") + real[49:]  # same first and last digits
    pcr_file.write_text(pcr_file.read_text().replace(real, other))
    done = cli("attestation", "verify", str(_document(nsm, tmp_path / "doc.cbor")), "--pcr-file", str(pcr_file))
    assert done.exit_code == 4
    message = " ".join(done.stderr.split())  # the terminal may wrap it
    assert f"PCR0 mismatch: got {real}, expected {other} (differs from hex digit 49 on)" in message


def test_attestation_show_wraps_pcrs_at_80_columns_instead_of_cutting_them(
    cli: Any, tmp_path: Path, simulated: tuple[SimulatedNsm, Path]
) -> None:
    nsm, _ = simulated
    done = cli("attestation", "show", str(_document(nsm, tmp_path / "doc.cbor")), env={"COLUMNS": "80"})
    assert done.exit_code == 0
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    assert "…" not in done.stdout
    text = re.sub(r"\s+", "", done.stdout)
    for value in nsm.measurements.as_dict().values():
        assert value.hex() in text


@pytest.fixture
def enclave(tmp_path: Path, party_keys: Any, simulated: tuple[SimulatedNsm, Path]) -> Iterator[str]:
    """The enclave app on a loopback port (real HTTP)."""
    nsm, _ = simulated
    with ServerThread(create_app(manifest.from_data(salary_document(party_keys)), nsm)) as server:
        yield server.url


def test_attestation_fetch_saves_a_document_that_verify_checks_with_its_nonce(
    cli: Any, tmp_path: Path, enclave: str, simulated: tuple[SimulatedNsm, Path]
) -> None:
    _, pcr_file = simulated
    doc = tmp_path / "doc.cbor"
    done = cli("attestation", "fetch", "--url", enclave, "-o", str(doc))
    assert done.exit_code == 0, done.output
    nonce = done.stdout.split()[-1]
    assert len(nonce) == 64 and f"--nonce {nonce}" in done.stderr and "UNVERIFIED" in done.stderr
    checked = cli("attestation", "verify", str(doc), "--pcr-file", str(pcr_file), "--nonce", nonce)
    assert checked.exit_code == 0, checked.output
    stale = cli("attestation", "verify", str(doc), "--pcr-file", str(pcr_file), "--nonce", "ab" * 32)
    assert stale.exit_code == 4 and "nonce mismatch" in stale.stderr  # another nonce: a replayed document


def test_attestation_fetch_takes_the_url_from_mpc_url_and_a_nonce_of_yours(
    cli: Any, tmp_path: Path, enclave: str, simulated: tuple[SimulatedNsm, Path]
) -> None:
    _, pcr_file = simulated
    doc = tmp_path / "doc.cbor"
    done = cli("attestation", "fetch", "-o", str(doc), "--nonce", "cd" * 20, env={"MPC_URL": enclave})
    assert done.exit_code == 0, done.output
    assert done.stdout.split()[-1] == "cd" * 20
    again = cli("attestation", "fetch", "-o", str(doc), env={"MPC_URL": enclave})
    assert again.exit_code == 2 and "already exists" in again.stderr  # never overwritten unasked
    checked = cli("attestation", "verify", str(doc), "--pcr-file", str(pcr_file), "--nonce", "cd" * 20)
    assert checked.exit_code == 0, checked.output


def test_a_binary_file_given_as_the_pcr_file_is_named_for_what_it_is(
    cli: Any, tmp_path: Path, simulated: tuple[SimulatedNsm, Path]
) -> None:
    nsm, _ = simulated
    doc = _document(nsm, tmp_path / "doc.cbor")
    done = cli("attestation", "verify", str(doc), "--pcr-file", str(doc))
    assert done.exit_code == 3
    assert "not a PCR file (it is not text; a PCR file is YAML)" in done.stderr
    assert "UnicodeDecodeError" not in done.stderr
