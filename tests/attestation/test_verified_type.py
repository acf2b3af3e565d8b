"""Only the verifier makes a VerifiedAttestation: every other way to get one with chosen fields fails.

The attacker here is code in the same process that holds a genuine VerifiedAttestation (or none)
and wants one that says something else: another ``user_data`` (a manifest hash the enclave never
bound), other PCRs, a nonce it never sent. Python lets code that names a private attribute do
anything; these are the public routes, each refused.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import pickle

import pytest

from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm, VerifiedAttestation, verify
from oblv_mpc.attestation.report import explain
from oblv_mpc.attestation.verify import CHECKS, checks
from oblv_mpc.errors import PolicyError

FORGED = b"a manifest hash the enclave never bound"


@pytest.fixture
def genuine(
    nsm: SimulatedNsm, dev_ca: DevelopmentCA, measurements: Measurements, clock: list[dt.datetime]
) -> VerifiedAttestation:
    document = nsm.attest(nonce=b"n" * 32, user_data=b"manifest-hash", public_key=b"hpke-key")
    return verify(document, policy=dev_ca.policy(measurements), now=clock[0], user_data=b"manifest-hash")


def test_dataclasses_replace_cannot_swap_user_data(genuine: VerifiedAttestation) -> None:
    with pytest.raises(TypeError):
        dataclasses.replace(genuine, user_data=FORGED)  # type: ignore[type-var]
    assert genuine.user_data == b"manifest-hash"


def test_direct_construction_is_refused(genuine: VerifiedAttestation) -> None:
    facts = genuine._facts._replace(user_data=FORGED)
    with pytest.raises(TypeError, match=r"only by oblv_mpc\.attestation\.verify\(\)"):
        VerifiedAttestation(facts, object())
    with pytest.raises(TypeError):
        VerifiedAttestation(facts)  # type: ignore[call-arg]


def test_an_instance_made_without_the_constructor_carries_nothing() -> None:
    hollow = object.__new__(VerifiedAttestation)
    with pytest.raises(AttributeError):
        _ = hollow.user_data


def test_a_subclass_cannot_override_a_field() -> None:
    with pytest.raises(TypeError, match="subclass"):

        class Forged(VerifiedAttestation):  # type: ignore[misc]
            @property
            def user_data(self) -> bytes:
                return FORGED


@pytest.mark.parametrize("field", ["user_data", "nonce", "public_key", "pcrs", "matched", "root", "debug", "new"])
def test_fields_cannot_be_set_even_through_object_setattr(genuine: VerifiedAttestation, field: str) -> None:
    with pytest.raises(AttributeError):
        setattr(genuine, field, FORGED)
    with pytest.raises(AttributeError):
        object.__setattr__(genuine, field, FORGED)
    with pytest.raises(AttributeError):
        delattr(genuine, field)
    assert genuine.user_data == b"manifest-hash"


def test_the_verified_pcrs_cannot_be_edited_in_place(genuine: VerifiedAttestation, measurements: Measurements) -> None:
    with pytest.raises(TypeError):
        genuine.pcrs[0] = bytes(48)  # type: ignore[index]
    assert genuine.pcrs[0] == measurements.pcr0


def test_the_facts_tuple_cannot_be_edited_in_place(genuine: VerifiedAttestation) -> None:
    with pytest.raises(AttributeError):
        object.__setattr__(genuine._facts, "user_data", FORGED)
    assert genuine.user_data == b"manifest-hash"


def test_a_copy_is_the_verified_object_itself(genuine: VerifiedAttestation) -> None:
    assert copy.copy(genuine) is genuine
    assert copy.deepcopy(genuine) is genuine


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_is_refused_so_edited_bytes_cannot_load_as_verified(
    genuine: VerifiedAttestation, protocol: int
) -> None:
    with pytest.raises(TypeError, match="verify it there"):
        pickle.dumps(genuine, protocol=protocol)


def test_checks_yield_every_check_in_order_then_the_verified_attestation(
    nsm: SimulatedNsm, dev_ca: DevelopmentCA, measurements: Measurements, clock: list[dt.datetime]
) -> None:
    document = nsm.attest(nonce=None, user_data=None, public_key=None)
    steps = checks(document, policy=dev_ca.policy(measurements), now=clock[0])
    seen = []
    while True:
        try:
            seen.append(next(steps).check)
        except StopIteration as done:
            result = done.value
            break
    assert seen == list(CHECKS)
    assert isinstance(result, VerifiedAttestation)


def test_the_report_refuses_what_the_verifier_refuses(
    nsm: SimulatedNsm, dev_ca: DevelopmentCA, measurements: Measurements, clock: list[dt.datetime]
) -> None:
    document = nsm.attest(nonce=b"n" * 32, user_data=None, public_key=None)
    policy = dev_ca.policy(measurements)
    report = explain(document, policy=policy, now=clock[0], nonce=b"x" * 32)
    assert report.verified is None and isinstance(report.failure, PolicyError)
    assert [(row.check, row.ok) for row in report.rows] == [
        *((name, True) for name in CHECKS[:5]),
        ("nonce", False),
        ("user_data", None),
        ("public_key", None),
    ]
    with pytest.raises(PolicyError, match="nonce mismatch"):
        report.result()
    with pytest.raises(PolicyError, match="nonce mismatch"):
        verify(document, policy=policy, now=clock[0], nonce=b"x" * 32)
