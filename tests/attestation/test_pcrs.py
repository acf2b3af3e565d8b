"""PCR files and nitro-cli import: every way to ask for 'no check' is an error."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oblv_mpc.attestation import AWS_ROOT, from_nitro_cli, load_pcr_file, policy_from_flags, write_pcr_file
from oblv_mpc.attestation.pcrs import MAX_PCR_FILE_BYTES
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


# -- one key, one spelling: a file cannot say a PCR (or allow_debug) twice ------------------------

SET = f"version: 1\nmeasurements:\n  - name: release\n    pcr0: {H0}\n    pcr1: {H1}\n    pcr2: {H2}\n"


def test_a_second_pcr0_cannot_replace_the_first(tmp_path: Path) -> None:
    # YAML keeps the last of duplicate keys: a reviewer reads the first pcr0, the check used the second
    text = SET + f"    pcr0: {'3d' * 48}\n"
    with pytest.raises(PcrFileError) as info:
        load_pcr_file(_write(tmp_path, text))
    assert info.value.message.endswith("duplicate key 'pcr0': say each thing once (line 7, column 5)")


def test_a_second_allow_debug_cannot_turn_debug_enclaves_on(tmp_path: Path) -> None:
    text = "allow_debug: false\n" + SET + "allow_debug: true\n"
    with pytest.raises(PcrFileError, match=r"duplicate key 'allow_debug'.*line 8"):
        load_pcr_file(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        ('"pcr0\\n"', "pcr0"),  # the reported case: a trailing newline
        ('"pcr0 "', "pcr0"),
        ('" pcr1"', "pcr1"),
        ('"pcr\\t2"', "pcr2"),
        ("PCR0", "pcr0"),
        ("Pcr1", "pcr1"),
        ("pcr00", "pcr0"),
        ("pcr01", "pcr1"),
        ("pcr+1", "pcr1"),
        ("pcr008", "pcr8"),
    ],
)
def test_a_pcr_key_in_another_spelling_is_refused_with_its_line(tmp_path: Path, key: str, canonical: str) -> None:
    # another spelling would let one PCR be given twice, and a reader could miss which counts
    text = f"version: 1\nmeasurements:\n  - name: release\n    {key}: {H0}\n    pcr1: {H1}\n    pcr2: {H2}\n"
    with pytest.raises(PcrFileError) as info:
        load_pcr_file(_write(tmp_path, text))
    assert "measurements[0]: PCR key" in info.value.message
    assert f"(line 4) must be written {canonical} exactly" in info.value.message


def test_a_pcr_key_beyond_31_is_an_unknown_field_in_any_spelling(tmp_path: Path) -> None:
    text = SET + f"    PCR099: {H0}\n"
    with pytest.raises(PcrFileError, match=r"unknown field 'PCR099' \(line 7\)"):
        load_pcr_file(_write(tmp_path, text))


def test_nitro_cli_output_cannot_say_a_pcr_twice() -> None:
    text = (
        '{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "%s", "PCR1": "%s", "PCR2": "%s", "PCR0": "%s"}}'
    )
    with pytest.raises(PcrFileError, match="duplicate key 'PCR0'"):
        from_nitro_cli(text % (H0, H1, H2, "3d" * 48), source="build.json")


@pytest.mark.parametrize("key", ["pcr0", "PCR0 ", "PCR00", " PCR0"])
def test_nitro_cli_pcr_keys_in_another_spelling_are_refused(key: str) -> None:
    measurements = {"HashAlgorithm": "Sha384 { ... }", key: H0, "PCR1": H1, "PCR2": H2}
    with pytest.raises(PcrFileError, match=f"PCR key {key!r} must be written PCR0 exactly"):
        from_nitro_cli(json.dumps({"Measurements": measurements}))


def test_nitro_cli_output_nested_to_exhaust_the_parser_is_refused() -> None:
    with pytest.raises(PcrFileError, match="nested too deeply"):
        from_nitro_cli("[" * 100_000)
    with pytest.raises(PcrFileError, match="larger than"):
        from_nitro_cli(" " * (MAX_PCR_FILE_BYTES + 1))


def test_an_alias_bomb_pcr_file_is_refused_at_its_first_anchor(tmp_path: Path) -> None:
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    started = time.perf_counter()
    with pytest.raises(PcrFileError, match=r"an anchor \(&a0\) is not allowed"):
        load_pcr_file(_write(tmp_path, "\n".join(lines) + "\n"))
    assert time.perf_counter() - started < 1


# -- property: whatever the file holds, a policy or a PcrFileError, quickly ------------------------

_PCR_KEYS = st.sampled_from(["pcr0", "pcr1", "pcr2", "pcr8", "PCR0", "pcr00", "pcr0\n", " pcr1", "pcr32", "name", "x"])
_VALUES = st.one_of(
    st.sampled_from([H0, H1, H2, "00" * 48, H0.upper()]),
    st.text(max_size=100),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
)
_SETS = st.dictionaries(_PCR_KEYS, _VALUES, max_size=6)
_DOCS = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 2, "1"]), "measurements": st.lists(_SETS, max_size=3)},
    optional={
        "root": st.one_of(st.just("aws"), st.dictionaries(st.sampled_from(["sha256", "development"]), _VALUES)),
        "allow_debug": st.one_of(st.booleans(), _VALUES),
        "description": _VALUES,
    },
)


def _outcome(parse: Callable[[Any], AttestationPolicy], source: Any) -> AttestationPolicy | PcrFileError:
    """A policy, or the PcrFileError: any other exception fails the test."""
    try:
        return parse(source)
    except PcrFileError as exc:
        return exc


def _parse_quickly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    started = time.perf_counter()
    outcome = _outcome(load_pcr_file, path)
    assert time.perf_counter() - started < 2
    if isinstance(outcome, PcrFileError):
        assert outcome.message.startswith(f"{path}: ")  # says which file
    else:
        assert outcome.accepted and all({0, 1, 2} <= set(s.values) for s in outcome.accepted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=2000))
def test_any_text_is_a_policy_or_a_pcr_file_error(tmp_path: Path, text: str) -> None:
    _parse_quickly(tmp_path, text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_DOCS, flow=st.booleans())
def test_any_pcr_shaped_document_is_a_policy_or_a_pcr_file_error(
    tmp_path: Path, doc: dict[str, object], flow: bool
) -> None:
    _parse_quickly(tmp_path, yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=2000))
def test_any_text_is_nitro_cli_measurements_or_a_pcr_file_error(text: str) -> None:
    outcome = _outcome(lambda t: from_nitro_cli(t, source="fuzzed.json"), text)
    if isinstance(outcome, PcrFileError):
        assert outcome.message.startswith("fuzzed.json: ")
    else:
        assert {0, 1, 2} <= set(outcome.accepted[0].values)
