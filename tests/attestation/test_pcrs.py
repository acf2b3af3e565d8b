"""PCR files and nitro-cli import: every way to ask for 'no check' is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oblv_mpc.attestation import AWS_ROOT, from_nitro_cli, load_pcr_file, policy_from_flags, write_pcr_file
from oblv_mpc.attestation.policy import AttestationPolicy, PcrSet
from oblv_mpc.errors import PcrFileError

H0, H1, H2 = "0a" * 48, "1b" * 48, "2c" * 48


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pcrs.yaml"
    path.write_text(text)
    return path


def test_a_valid_file_round_trips(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"version: 1\nmeasurements:\n  - name: r1\n    pcr0: {H0}\n    pcr1: {H1}\n    pcr2: {H2}\n    pcr8: {H0}\n",
    )
    policy = load_pcr_file(path)
    assert policy.roots == (AWS_ROOT,)
    assert not policy.allow_debug
    assert policy.accepted[0].values[8] == bytes.fromhex(H0)
    write_pcr_file(policy, tmp_path / "again.yaml")
    assert load_pcr_file(tmp_path / "again.yaml") == policy


BAD = [
    ("", "expected a mapping"),
    ("version: 1\n", "non-empty list of PCR sets"),
    ("version: 1\nmeasurements: []\n", "non-empty list of PCR sets"),
    (f"version: 2\nmeasurements: [{{pcr0: {H0}, pcr1: {H1}, pcr2: {H2}}}]\n", "version: expected 1"),
    (f"version: 1\nmeasurements: [{{pcr0: {H0}, pcr1: {H1}}}]\n", "PCR2 is missing"),
    (f"version: 1\nmeasurements: [{{pcr0: {H0[:-2]}, pcr1: {H1}, pcr2: {H2}}}]\n", "96 hex digits"),
    (f"version: 1\nmeasurements: [{{pcr0: {'zz' * 48}, pcr1: {H1}, pcr2: {H2}}}]\n", "96 hex digits"),
    (f"version: 1\nmeasurements: [{{pcr0: {H0}, pcr1: {H1}, pcr2: {H2}, pcr32: {H0}}}]\n", "unknown field 'pcr32'"),
    (f"version: 1\nskip: true\nmeasurements: [{{pcr0: {H0}, pcr1: {H1}, pcr2: {H2}}}]\n", "unknown field(s) skip"),
    (
        f"version: 1\nmeasurements: [{{pcr0: {H0}, pcr1: {H1}, pcr2: {H2}}}]\nroot: {{sha256: {'ab' * 32}}}\n",
        "only accepted as a development root",
    ),
    (f"version: 1\nmeasurements: [{{pcr0: {H0}, pcr1: {H1}, pcr2: {H2}}}]\nroot: none\n", "root: expected 'aws'"),
    (
        f"version: 1\nmeasurements: [{{pcr0: {H0}, pcr1: {H1}, pcr2: {H2}}}]\nallow_debug: yes please\n",
        "allow_debug: expected true or false",
    ),
    (
        f"version: 1\nmeasurements: [{{pcr0: '{'00' * 48}', pcr1: '{'00' * 48}', pcr2: '{'00' * 48}'}}]\n",
        "debug enclave",
    ),
    (f"version: 1\nmeasurements: [{{pcr0: {'12' * 48}, pcr1: {H1}, pcr2: {H2}}}]\n", "found a number"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_pcr_files_are_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PcrFileError) as info:
        load_pcr_file(_write(tmp_path, text))
    assert message in info.value.message


def test_missing_pcr_file_is_an_error_not_no_check(tmp_path: Path) -> None:
    with pytest.raises(PcrFileError, match="no such file"):
        load_pcr_file(tmp_path / "nope.yaml")


def test_empty_policy_cannot_be_built() -> None:
    with pytest.raises(PcrFileError, match="would check nothing"):
        AttestationPolicy(accepted=())


def test_development_root_must_be_pinned_and_marked(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"version: 1\nmeasurements: [{{pcr0: {H0}, pcr1: {H1}, pcr2: {H2}}}]\n"
        f"root: {{sha256: {'ab' * 32}, development: true}}\n",
    )
    policy = load_pcr_file(path)
    assert policy.development
    assert policy.roots[0].sha256 == "ab" * 32


def test_flags_build_the_same_policy() -> None:
    policy = policy_from_flags(H0, H1, H2)
    assert policy.accepted[0].values == {0: bytes.fromhex(H0), 1: bytes.fromhex(H1), 2: bytes.fromhex(H2)}
    with pytest.raises(PcrFileError, match="--pcr1"):
        policy_from_flags(H0, "beef", H2)


BUILD_ENCLAVE = {
    "Measurements": {
        "HashAlgorithm": "Sha384 { ... }",
        "PCR0": H0,
        "PCR1": H1,
        "PCR2": H2,
    }
}


def test_nitro_cli_build_output_imports() -> None:
    policy = from_nitro_cli(json.dumps(BUILD_ENCLAVE))
    assert policy.accepted[0].values == {0: bytes.fromhex(H0), 1: bytes.fromhex(H1), 2: bytes.fromhex(H2)}
    described = from_nitro_cli(json.dumps([{"EnclaveName": "salaries", **BUILD_ENCLAVE}]))
    assert described.accepted[0].name == "salaries"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("{}", 'no "Measurements"'),
        (json.dumps({"Measurements": {**BUILD_ENCLAVE["Measurements"], "HashAlgorithm": "Sha256"}}), "must be SHA-384"),
        (json.dumps({"Measurements": {"HashAlgorithm": "Sha384", "PCR0": H0}}), "PCR1 is missing"),
        (json.dumps([BUILD_ENCLAVE, BUILD_ENCLAVE]), "expected one enclave"),
    ],
)
def test_bad_nitro_cli_output(text: str, message: str) -> None:
    with pytest.raises(PcrFileError, match=message):
        from_nitro_cli(text)


def test_pcr_set_needs_pcr0_to_2() -> None:
    with pytest.raises(PcrFileError, match="PCR0 is missing"):
        PcrSet({1: bytes(48), 2: bytes(48)})
