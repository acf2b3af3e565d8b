"""The NSM driver's messages, against the CBOR shapes aws-nitro-enclaves-nsm-api defines."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from oblv_mpc.attestation import NitroNsm
from oblv_mpc.attestation import nsm as driver


def test_ioctl_request_number() -> None:
    # _IOWR(0x0A, 0, sizeof(struct nsm_message)), two struct iovec of 16 bytes on 64-bit Linux
    assert driver.NSM_IOCTL_REQUEST == 0xC0200A00


def test_attestation_request_is_serde_externally_tagged() -> None:
    request = driver.encode_attestation_request(user_data=b"u", nonce=None, public_key=b"k")
    assert cbor2.loads(request) == {"Attestation": {"user_data": b"u", "nonce": None, "public_key": b"k"}}


def test_request_limits() -> None:
    with pytest.raises(driver.NsmError, match="user_data is 513 bytes"):
        driver.encode_attestation_request(user_data=b"x" * 513, nonce=None, public_key=None)
    with pytest.raises(driver.NsmError, match="public_key is 1025 bytes"):
        driver.encode_attestation_request(user_data=None, nonce=None, public_key=b"x" * 1025)


def test_attestation_response_decodes() -> None:
    assert driver.decode_attestation_response(cbor2.dumps({"Attestation": {"document": b"doc"}})) == b"doc"


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (cbor2.dumps({"Error": "InvalidArgument"}), "error 'InvalidArgument'"),
        (cbor2.dumps({"DescribePCR": {"lock": True, "data": b""}}), "expected an NSM Attestation response"),
        (cbor2.dumps({"Attestation": {}}), "has no document"),
        (b"\xff\x00", "not valid CBOR"),
    ],
)
def test_bad_responses(response: bytes, message: str) -> None:
    with pytest.raises(driver.NsmError, match=message):
        driver.decode_attestation_response(response)


def test_describe_pcr_messages() -> None:
    assert cbor2.loads(driver.encode_describe_pcr_request(3)) == {"DescribePCR": {"index": 3}}
    assert driver.decode_describe_pcr_response(cbor2.dumps({"DescribePCR": {"lock": True, "data": b"\x01" * 48}})) == (
        True,
        b"\x01" * 48,
    )
    with pytest.raises(driver.NsmError):
        driver.encode_describe_pcr_request(40)


def test_no_device_outside_an_enclave(tmp_path: Path) -> None:
    assert not NitroNsm.available(tmp_path / "nsm")
    with pytest.raises(driver.NsmError, match="cannot open") as info:
        NitroNsm(tmp_path / "nsm")
    assert info.value.hint == "this is not a Nitro Enclave"
