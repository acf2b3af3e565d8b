"""Flipping any bit or byte of a valid document (real or simulated) never yields an accepted one."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from oblv_mpc.attestation import AttestationPolicy, DevelopmentCA, SimulatedNsm, document_time, measure, verify
from oblv_mpc.errors import AttestationError
from tests.attestation.conftest import EPOCH, VECTORS, own_policy


def _simulated(tmp: str) -> tuple[bytes, AttestationPolicy, dt.datetime]:
    from pathlib import Path

    ca = DevelopmentCA.load_or_create(Path(tmp) / "ca", clock=lambda: EPOCH)
    m = measure()
    doc = SimulatedNsm(ca, m, clock=lambda: EPOCH).attest(nonce=b"n" * 32, user_data=b"u" * 32, public_key=b"k" * 32)
    return doc, ca.policy(m), EPOCH


Target = tuple[str, bytes, AttestationPolicy, dt.datetime]
_TARGETS: list[Target] = []


@pytest.fixture(scope="module", autouse=True)
def _load_targets(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fill _TARGETS once (a module global, so hypothesis never prints the documents)."""
    if _TARGETS:
        return
    found = []
    for name in ("evervault_4.cbor", "hf-nitrite_1.cbor", "tagged_evervault_4.cbor"):
        path = VECTORS / name
        if path.exists():
            raw = path.read_bytes()
            found.append((name, raw, own_policy(raw, allow_debug=True), document_time(raw)))
    doc, policy, now = _simulated(str(tmp_path_factory.mktemp("fuzz")))
    found.append(("simulated", doc, policy, now))
    for _name, raw, policy, now in found:
        verify(raw, policy=policy, now=now)  # each target is valid before mutation
    _TARGETS.extend(found)


def _mutate(data: bytes, kind: str, position: int, value: int) -> bytes:
    i = position % len(data)
    if kind == "bit":
        return data[:i] + bytes([data[i] ^ (1 << (value % 8))]) + data[i + 1 :]
    if kind == "byte":
        replacement = value % 256 if value % 256 != data[i] else (data[i] + 1) % 256
        return data[:i] + bytes([replacement]) + data[i + 1 :]
    if kind == "truncate":
        return data[:i]
    if kind == "insert":
        return data[:i] + bytes([value % 256]) + data[i:]
    return data[:i] + data[i + 1 :]  # delete


@settings(max_examples=1000, deadline=None)
@given(
    which=st.integers(0, 3),
    kind=st.sampled_from(["bit", "byte", "truncate", "insert", "delete"]),
    position=st.integers(0, 2**16),
    value=st.integers(0, 2**16),
)
def test_mutated_documents_are_never_accepted(which: int, kind: str, position: int, value: int) -> None:
    _name, raw, policy, now = _TARGETS[which % len(_TARGETS)]
    mutated = _mutate(raw, kind, position, value)
    assert mutated != raw
    # Adding or dropping the COSE_Sign1 tag (18, byte 0xd2) gives the same document, tagged or
    # untagged; both forms are valid.
    assume(not (raw[:1] == b"\xd2" and mutated == raw[1:]))
    assume(mutated != b"\xd2" + raw)
    with pytest.raises(AttestationError):
        verify(mutated, policy=policy, now=now)
