"""The envelope opener as a non-party sees it: anything sealed to the public key, typed errors only.

Sealing needs only the enclave's public HPKE key, so the plaintext is the attacker's choice.
``open_request`` must answer every plaintext with a Request whose signature verified, a
ProtocolError or an EnclaveRefused, and must look at nothing beyond the header before the
signature verified.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oblv_mpc import keys
from oblv_mpc.errors import EnclaveRefused, ProtocolError
from oblv_mpc.limits import Limits
from oblv_mpc.protocol import hpke
from oblv_mpc.protocol.envelope import Context, Request, open_request, open_response, seal_request, seal_response

ALICE = keys.generate()
MALLORY = keys.generate()
ENCLAVE = hpke.generate(hpke.SuiteName.X25519)
SIGNING = keys.generate()
CONTEXT = Context("fuzz", hashlib.sha256(b"manifest").digest(), hpke.SuiteName.X25519, ENCLAVE.public_bytes)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _party_key(name: str) -> keys.PublicKey | None:
    return ALICE.public_key() if name == "alice" else None


def _seal_plaintext(plaintext: bytes, op: str = "status") -> bytes:
    return hpke.seal(
        CONTEXT.suite, hpke.public_key(CONTEXT.suite, ENCLAVE.public_bytes), plaintext, CONTEXT.info("request", op)
    )


def _open(plaintext: bytes) -> Request:
    return open_request(CONTEXT, ENCLAVE.private, "status", _seal_plaintext(plaintext), _party_key)


def _plaintext(body: Any = None, **header: Any) -> tuple[bytes, Request]:
    envelope, _, _ = seal_request(CONTEXT, "status", "alice", ALICE, body, time_ms=int(time.time() * 1000))
    plaintext = hpke.open_(CONTEXT.suite, ENCLAVE.private, envelope, CONTEXT.info("request", "status"))
    return plaintext, open_request(CONTEXT, ENCLAVE.private, "status", envelope, _party_key)


def _signed(header: dict[str, Any], body: bytes, signer: keys.PrivateKey) -> bytes:
    encoded = cbor2.dumps(header, canonical=True)
    return cbor2.dumps([encoded, body, keys.sign(signer, b"oblv_mpc/1 request\x00" + encoded)])


def _header(party: str = "alice", body: bytes = b"\xf6", **changes: Any) -> dict[str, Any]:
    header = {
        "v": 2,
        "op": "status",
        "session": CONTEXT.session,
        "manifest": CONTEXT.manifest_sha256,
        "enclave": CONTEXT.enclave_sha256,
        "party": party,
        "id": os.urandom(16),
        "time": int(time.time() * 1000),
        "reply": hpke.generate(CONTEXT.suite).public_bytes,
        "body": hashlib.sha256(body).digest(),
    }
    return {**header, **changes}


@FUZZ
@given(st.binary(max_size=4096))
def test_any_sealed_plaintext_gives_typed_errors_only(plaintext: bytes) -> None:
    with pytest.raises((ProtocolError, EnclaveRefused)):
        _open(plaintext)


@FUZZ
@given(st.data())
def test_a_mutated_valid_envelope_opens_as_the_original_or_not_at_all(data: st.DataObject) -> None:
    body = data.draw(st.dictionaries(st.text(max_size=5), st.integers() | st.binary(max_size=20), max_size=4))
    plaintext, original = _plaintext(body)
    mutant = bytearray(plaintext)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(mutant) - 1))
        if data.draw(st.booleans()):
            mutant[position] ^= 1 << data.draw(st.integers(0, 7))
        else:
            mutant[position : position + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=3))
    try:
        opened = _open(bytes(mutant))
    except (ProtocolError, EnclaveRefused):
        return
    assert (opened.party, opened.request_id, opened.time_ms, opened.body) == (
        original.party,
        original.request_id,
        original.time_ms,
        original.body,
    )


@pytest.mark.parametrize("party", ["mallory", "alice"], ids=["unknown-party", "forged-signature"])
def test_a_body_is_not_decoded_before_the_signature_verifies(party: str) -> None:
    nested = b"\x81" * 100_000 + b"\x00"  # 100,000 levels deep: decoding it is refused, but not reached
    plaintext = _signed(_header(party, nested), nested, MALLORY)
    with pytest.raises(EnclaveRefused) as refused:
        _open(plaintext)
    assert refused.value.code == ("unknown_party" if party == "mallory" else "bad_signature")


def test_a_body_swapped_under_a_valid_signature_is_refused() -> None:
    plaintext = _signed(_header(body=cbor2.dumps({"computation": "a"})), cbor2.dumps({"computation": "b"}), ALICE)
    with pytest.raises(EnclaveRefused, match="not the one party 'alice' signed"):
        _open(plaintext)


def test_a_signed_body_past_the_caps_is_refused_after_the_signature() -> None:
    deep = b"\x81" * 40 + b"\x00"
    with pytest.raises(ProtocolError, match="nested more than"):
        _open(_signed(_header(body=deep), deep, ALICE))


@pytest.mark.parametrize(
    "change",
    [{"v": 1}, {"v": True}, {"op": "upload"}, {"session": "other"}, {"manifest": bytes(32)}, {"enclave": bytes(32)}],
    ids=["version-1", "version-true", "op", "session", "manifest", "enclave"],
)
def test_every_binding_is_checked(change: dict[str, Any]) -> None:
    with pytest.raises(EnclaveRefused) as refused:
        _open(_signed(_header(**change), b"\xf6", ALICE))
    assert refused.value.code == "wrong_binding"


def test_a_version_1_envelope_is_refused() -> None:
    payload = cbor2.dumps({k: v for k, v in _header(v=1).items() if k != "body"} | {"body": None}, canonical=True)
    old = cbor2.dumps([payload, keys.sign(ALICE, b"oblv_mpc/1 request\x00" + payload)])
    with pytest.raises(ProtocolError, match="array of 3 byte strings"):
        _open(old)


def test_a_header_past_its_cap_is_refused_unread() -> None:
    huge = _header(party="x" * 10_000)
    with pytest.raises(ProtocolError, match="more than 4096"):
        _open(_signed(huge, b"\xf6", MALLORY))


def test_a_response_past_the_clients_caps_is_refused() -> None:
    envelope, reply, request_id = seal_request(CONTEXT, "status", "alice", ALICE, None, time_ms=0)
    request = open_request(CONTEXT, ENCLAVE.private, "status", envelope, _party_key)
    sealed = seal_response(CONTEXT, request, SIGNING, body=[None] * 2000)
    small = Limits(max_response_items=1000)
    with pytest.raises(ProtocolError, match="more than 1000 items"):
        open_response(CONTEXT, reply, "status", request_id, sealed, SIGNING.public_key(), limits=small)
    assert open_response(CONTEXT, reply, "status", request_id, sealed, SIGNING.public_key()) == [None] * 2000
