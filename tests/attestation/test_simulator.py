"""The simulated NSM: Nitro-format documents, real measurements, a root that must be pinned."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
from pathlib import Path

import cbor2
import pytest

import oblv_mpc
from oblv_mpc.attestation import (
    AWS_ROOT,
    AttestationPolicy,
    DevelopmentCA,
    Measurements,
    SimulatedNsm,
    measure,
    parse,
    verify,
)
from oblv_mpc.attestation.measure import code_files, extend
from oblv_mpc.errors import CertificateChainError, NsmError, PolicyError
from tests.attestation.conftest import EPOCH


def test_simulated_documents_pass_the_same_verifier(
    nsm: SimulatedNsm, dev_ca: DevelopmentCA, measurements: Measurements, clock: list[dt.datetime]
) -> None:
    doc = nsm.attest(nonce=b"n" * 32, user_data=b"manifest-hash", public_key=b"hpke-key")
    verified = verify(
        doc,
        policy=dev_ca.policy(measurements),
        now=clock[0],
        nonce=b"n" * 32,
        user_data=b"manifest-hash",
        public_key=b"hpke-key",
    )
    assert verified.development
    assert not verified.debug
    assert verified.pcrs[0] == measurements.pcr0


def test_simulated_document_has_the_nitro_shape(nsm: SimulatedNsm) -> None:
    doc = nsm.attest(nonce=None, user_data=None, public_key=None)
    outer = cbor2.loads(doc)
    assert isinstance(outer, list) and len(outer) == 4
    assert cbor2.loads(outer[0]) == {1: -35}
    payload = cbor2.loads(outer[2])
    assert list(payload) == [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
        "public_key",
        "user_data",
        "nonce",
    ]
    assert payload["public_key"] is None and payload["nonce"] is None  # absent fields as null, like AWS's
    assert len(payload["cabundle"]) == 3 and len(payload["pcrs"]) == 16
    parsed = parse(doc)
    assert parsed.digest == "SHA384" and len(parsed.signature) == 96


def test_simulator_document_is_refused_without_its_root_pinned(
    nsm: SimulatedNsm, measurements: Measurements, clock: list[dt.datetime]
) -> None:
    doc = nsm.attest(nonce=None, user_data=None, public_key=None)
    aws_only = AttestationPolicy(accepted=(nsm.ca.policy(measurements).accepted[0],), roots=(AWS_ROOT,))
    with pytest.raises(CertificateChainError) as info:
        verify(doc, policy=aws_only, now=clock[0])
    assert info.value.check == "root"


def test_another_development_ca_is_not_trusted(
    nsm: SimulatedNsm, measurements: Measurements, clock: list[dt.datetime], tmp_path: Path
) -> None:
    other = DevelopmentCA.load_or_create(tmp_path / "other-ca")
    assert other.root_sha256 != nsm.ca.root_sha256
    with pytest.raises(CertificateChainError, match="not a pinned root"):
        verify(nsm.attest(nonce=None, user_data=None, public_key=None), policy=other.policy(measurements), now=clock[0])


def test_ca_is_created_once_and_kept(tmp_path: Path) -> None:
    first = DevelopmentCA.load_or_create(tmp_path / "ca")
    again = DevelopmentCA.load_or_create(tmp_path / "ca")
    assert first.root_sha256 == again.root_sha256
    for key_file in (tmp_path / "ca").glob("*_key.der"):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_leaf_lives_three_hours_and_is_renewed(
    nsm: SimulatedNsm, dev_ca: DevelopmentCA, measurements: Measurements, clock: list[dt.datetime]
) -> None:
    policy = dev_ca.policy(measurements)
    first = nsm.attest(nonce=None, user_data=None, public_key=None)
    later = clock[0] + dt.timedelta(hours=3, minutes=1)
    with pytest.raises(CertificateChainError, match="expired"):
        verify(first, policy=policy, now=later)
    clock[0] = later
    renewed = nsm.attest(nonce=None, user_data=None, public_key=None)
    assert parse(renewed).certificate != parse(first).certificate
    verify(renewed, policy=policy, now=later)


def test_editing_an_app_source_file_changes_pcr0(tmp_path: Path) -> None:
    package = Path(oblv_mpc.__file__).parent
    copy = tmp_path / "oblv_mpc"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = measure(copy)
    assert original.pcr0 == measure(package).pcr0  # the copy measures as the original
    target = copy / "manifest" / "naming.py"
    target.write_text(target.read_text() + "\n# an edit\n")
    edited = measure(copy)
    assert edited.pcr0 != original.pcr0
    assert (edited.pcr1, edited.pcr2) == (original.pcr1, original.pcr2)


def test_a_stale_pcr_file_refuses_edited_code(tmp_path: Path, dev_ca: DevelopmentCA, clock: list[dt.datetime]) -> None:
    package = Path(oblv_mpc.__file__).parent
    copy = tmp_path / "oblv_mpc"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    old_policy = dev_ca.policy(measure(copy))
    (copy / "errors.py").write_text((copy / "errors.py").read_text() + "\n# changed\n")
    nsm = SimulatedNsm(dev_ca, measure(copy), clock=lambda: clock[0])
    with pytest.raises(PolicyError, match="PCR0 mismatch"):
        verify(nsm.attest(nonce=None, user_data=None, public_key=None), policy=old_policy, now=clock[0])


def test_measurement_is_the_documented_extend(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text("b")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "z.py").write_text("z")
    (tmp_path / "notes.txt").write_text("not measured")
    assert [p.relative_to(tmp_path).as_posix() for p in code_files(tmp_path)] == ["a/z.py", "b.py"]
    assert measure(tmp_path).pcr0 == extend([b"a/z.py\x00z", b"b.py\x00b"])


@pytest.mark.parametrize(
    "offset",
    [-dt.timedelta(days=1), dt.timedelta(days=3650)],
    ids=["before-the-ca-was-made", "after-the-ca-expires"],
)
def test_a_simulated_enclave_refuses_to_attest_outside_its_cas_validity(
    dev_ca: DevelopmentCA, measurements: Measurements, offset: dt.timedelta
) -> None:
    nsm = SimulatedNsm(dev_ca, measurements, clock=lambda: EPOCH + offset)
    with pytest.raises(NsmError, match=r"development CA .* is valid from") as info:
        nsm.attest(nonce=None, user_data=None, public_key=None)
    assert "delete that folder" in (info.value.hint or "")


def test_a_ca_made_under_an_injected_clock_issues_documents_valid_at_that_clock(
    tmp_path: Path, measurements: Measurements
) -> None:
    when = dt.datetime(2034, 2, 3, 4, 5, tzinfo=dt.UTC)
    ca = DevelopmentCA.load_or_create(tmp_path / "ca", clock=lambda: when)
    assert ca.not_before <= when < ca.not_after
    doc = SimulatedNsm(ca, measurements, clock=lambda: when).attest(nonce=None, user_data=None, public_key=None)
    assert verify(doc, policy=ca.policy(measurements), now=when).timestamp == when


def test_a_clock_moved_back_gets_a_leaf_valid_at_the_new_time(
    nsm: SimulatedNsm, dev_ca: DevelopmentCA, measurements: Measurements, clock: list[dt.datetime]
) -> None:
    clock[0] = EPOCH + dt.timedelta(hours=2)
    nsm.attest(nonce=None, user_data=None, public_key=None)
    clock[0] = EPOCH + dt.timedelta(minutes=30)
    doc = nsm.attest(nonce=None, user_data=None, public_key=None)
    verify(doc, policy=dev_ca.policy(measurements), now=clock[0])
