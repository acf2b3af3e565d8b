"""The verifier against real documents from AWS hardware and the must-fail fixtures."""

from __future__ import annotations

import datetime as dt

import pytest

from oblv_mpc.attestation import AttestationPolicy, PcrSet, TrustedRoot, document_time, parse, verify
from oblv_mpc.errors import (
    AttestationError,
    CertificateChainError,
    MalformedDocument,
    PolicyError,
    SignatureError,
)
from tests.attestation.conftest import DEBUG, PRODUCTION, own_policy, vector


@pytest.mark.parametrize("name", PRODUCTION)
def test_production_documents_verify_at_their_own_time(name: str) -> None:
    raw = vector(name)
    verified = verify(raw, policy=own_policy(raw), now=document_time(raw))
    assert not verified.debug
    assert verified.root.name == "AWS Nitro Enclaves root G1"
    assert verified.pcrs[0] == parse(raw).pcrs[0]
    assert verified.matched.name == "own"


@pytest.mark.parametrize("name", DEBUG)
def test_debug_documents_verify_only_when_debug_is_allowed(name: str) -> None:
    raw = vector(name)
    verified = verify(raw, policy=own_policy(raw, allow_debug=True), now=document_time(raw))
    assert verified.debug
    with pytest.raises(PolicyError) as info:
        verify(raw, policy=own_policy(raw), now=document_time(raw))
    assert info.value.check == "debug"


def test_hf_nitrite_empty_public_key_means_no_key() -> None:
    raw = vector("hf-nitrite_1.cbor")
    assert verify(raw, policy=own_policy(raw, allow_debug=True), now=document_time(raw)).public_key is None


@pytest.mark.parametrize("name", PRODUCTION + DEBUG)
def test_every_document_fails_today_as_expired(name: str) -> None:
    raw = vector(name)
    with pytest.raises(CertificateChainError) as info:
        verify(raw, policy=own_policy(raw, allow_debug=True))
    assert info.value.check == "validity"
    assert "expired" in info.value.message


def test_validity_window_edges() -> None:
    raw = vector("evervault_4.cbor")
    with pytest.raises(CertificateChainError, match="expired at 2023-01-19T13:07:19Z"):
        verify(raw, policy=own_policy(raw), now=dt.datetime(2023, 1, 19, 13, 7, 19, tzinfo=dt.UTC))
    with pytest.raises(CertificateChainError, match="not yet valid at 2023-01-17T13:07:19Z"):
        verify(raw, policy=own_policy(raw), now=dt.datetime(2023, 1, 17, 13, 7, 19, tzinfo=dt.UTC))


BAD = [
    ("payload_pcr0_bitflip.cbor", SignatureError, "signature"),
    ("signature_bitflip.cbor", SignatureError, "signature"),
    ("resigned_foreign_key.cbor", SignatureError, "signature"),
    ("alg_es256.cbor", MalformedDocument, "algorithm"),
    ("cabundle_root_removed.cbor", CertificateChainError, "root"),
    ("cabundle_last_intermediate_removed.cbor", CertificateChainError, "chain"),
    ("leaf_cert_corrupted.cbor", CertificateChainError, "chain"),
    ("digest_sha256.cbor", MalformedDocument, "digest"),
    ("truncated.cbor", MalformedDocument, "structure"),
]


@pytest.mark.parametrize(("name", "error", "check"), BAD, ids=[b[0] for b in BAD])
def test_must_fail_fixtures_fail_for_their_reason(name: str, error: type[AttestationError], check: str) -> None:
    good = vector("evervault_4.cbor")
    raw = vector(f"bad/{name}")
    with pytest.raises(error) as info:
        verify(raw, policy=own_policy(good), now=document_time(good))
    assert info.value.check == check, info.value.message


def test_pcr_mismatch_names_the_pcr_and_both_values() -> None:
    raw = vector("evervault_4.cbor")
    own = parse(raw).pcrs
    other = AttestationPolicy(accepted=(PcrSet({0: bytes(range(48)), 1: own[1], 2: own[2]}, "release-1"),))
    with pytest.raises(PolicyError) as info:
        verify(raw, policy=other, now=document_time(raw))
    assert info.value.check == "pcrs"
    assert "PCR0 mismatch: got d265a83faa7b" in info.value.message
    assert f"got {own[0].hex()}, expected {bytes(range(48)).hex()} (differs from hex digit 1 on)" in info.value.message


def test_one_of_several_accepted_sets_is_enough() -> None:
    raw = vector("evervault_4.cbor")
    own = parse(raw).pcrs
    policy = AttestationPolicy(
        accepted=(
            PcrSet({0: bytes(48 * [1]), 1: own[1], 2: own[2]}, "old"),
            PcrSet({0: own[0], 1: own[1], 2: own[2], 8: own[8]}, "new"),
        )
    )
    assert verify(raw, policy=policy, now=document_time(raw)).matched.name == "new"
    # an extra required PCR (here PCR3) must match too
    strict = AttestationPolicy(accepted=(PcrSet({0: own[0], 1: own[1], 2: own[2], 3: bytes([7]) * 48}, "x"),))
    with pytest.raises(PolicyError, match="PCR3 mismatch"):
        verify(raw, policy=strict, now=document_time(raw))


def test_nonce_must_match() -> None:
    raw = vector("evervault_4.cbor")
    nonce = parse(raw).nonce
    assert nonce is not None
    assert verify(raw, policy=own_policy(raw), now=document_time(raw), nonce=nonce).nonce == nonce
    with pytest.raises(PolicyError) as info:
        verify(raw, policy=own_policy(raw), now=document_time(raw), nonce=b"\x00" * 32)
    assert info.value.check == "nonce"
    # a document without a nonce cannot satisfy an expected one
    bare = vector("uid2-core_1.cbor")
    with pytest.raises(PolicyError, match="nonce mismatch: got nothing"):
        verify(bare, policy=own_policy(bare, allow_debug=True), now=document_time(bare), nonce=b"n")


def test_user_data_and_public_key_binding() -> None:
    raw = vector("evervault_4.cbor")
    user_data = parse(raw).user_data
    assert user_data is not None
    verify(raw, policy=own_policy(raw), now=document_time(raw), user_data=user_data)
    with pytest.raises(PolicyError) as info:
        verify(raw, policy=own_policy(raw), now=document_time(raw), user_data=user_data[:-1] + b"x")
    assert info.value.check == "user_data"
    with pytest.raises(PolicyError) as info:
        verify(raw, policy=own_policy(raw), now=document_time(raw), public_key=b"key")
    assert info.value.check == "public_key"


def test_wrong_root_is_refused() -> None:
    raw = vector("evervault_4.cbor")
    own = own_policy(raw)
    dev_only = AttestationPolicy(
        accepted=own.accepted, roots=(TrustedRoot("ab" * 32, "someone's dev root", development=True),)
    )
    with pytest.raises(CertificateChainError) as info:
        verify(raw, policy=dev_only, now=document_time(raw))
    assert info.value.check == "root"
    assert "641a0321a3e244ef" in info.value.message  # names what it found


def test_naive_time_is_a_programming_error() -> None:
    raw = vector("evervault_4.cbor")
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(raw, policy=own_policy(raw), now=dt.datetime(2023, 1, 18, 13, 7, 19))


def test_the_packaged_aws_root_is_the_pinned_one() -> None:
    import hashlib

    from oblv_mpc.attestation.policy import AWS_ROOT_G1_SHA256, aws_root_der

    der = aws_root_der()
    assert hashlib.sha256(der).hexdigest() == AWS_ROOT_G1_SHA256
    assert parse(vector("evervault_4.cbor")).cabundle[0] == der
