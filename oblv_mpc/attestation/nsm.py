"""The real Nitro Security Module, ``/dev/nsm``, spoken to as aws-nitro-enclaves-nsm-api does.

The driver takes one ioctl, ``_IOWR(0x0A, 0, struct nsm_message)``, where ``nsm_message`` is two
``struct iovec``: the CBOR request, and a buffer (0x3000 bytes) for the CBOR response, whose
length the driver updates. Requests and responses are serde's externally tagged enums:

- request ``{"Attestation": {"user_data": bytes|null, "nonce": bytes|null, "public_key": bytes|null}}``
- response ``{"Attestation": {"document": bytes}}`` or ``{"Error": "InvalidArgument"}``
- request ``{"DescribePCR": {"index": n}}`` -> ``{"DescribePCR": {"lock": bool, "data": bytes}}``

The encoding and decoding are unit-tested against these shapes; the ioctl itself has not been
run on Nitro hardware by this project (see docs/attestation.md).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
from pathlib import Path
from typing import Any

import cbor2

from oblv_mpc.errors import NsmError

DEVICE = Path("/dev/nsm")
NSM_IOCTL_MAGIC = 0x0A
REQUEST_MAX_BYTES = 0x1000
RESPONSE_MAX_BYTES = 0x3000
MAX_PUBLIC_KEY_BYTES = 1024
MAX_USER_DATA_BYTES = 512
MAX_NONCE_BYTES = 512


class _IoVec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _NsmMessage(ctypes.Structure):
    _fields_ = (("request", _IoVec), ("response", _IoVec))


def _iowr(magic: int, number: int, size: int) -> int:
    # Linux _IOC(dir=READ|WRITE, type, nr, size): dir in bits 30-31, size 16-29, type 8-15, nr 0-7.
    return (3 << 30) | (size << 16) | (magic << 8) | number


NSM_IOCTL_REQUEST = _iowr(NSM_IOCTL_MAGIC, 0, ctypes.sizeof(_NsmMessage))


def _optional(value: bytes | None, limit: int, name: str) -> bytes | None:
    if value is not None and len(value) > limit:
        raise NsmError(f"{name} is {len(value)} bytes; the NSM takes at most {limit}")
    return value


def encode_attestation_request(*, user_data: bytes | None, nonce: bytes | None, public_key: bytes | None) -> bytes:
    """The CBOR of an ``Attestation`` request."""
    request = cbor2.dumps(
        {
            "Attestation": {
                "user_data": _optional(user_data, MAX_USER_DATA_BYTES, "user_data"),
                "nonce": _optional(nonce, MAX_NONCE_BYTES, "nonce"),
                "public_key": _optional(public_key, MAX_PUBLIC_KEY_BYTES, "public_key"),
            }
        }
    )
    if len(request) > REQUEST_MAX_BYTES:
        raise NsmError(f"request of {len(request)} bytes exceeds the NSM's {REQUEST_MAX_BYTES}")
    return request


def encode_describe_pcr_request(index: int) -> bytes:
    """The CBOR of a ``DescribePCR`` request."""
    if not 0 <= index < 32:
        raise NsmError(f"PCR index {index} is out of range 0..31")
    return cbor2.dumps({"DescribePCR": {"index": index}})


def _decode(response: bytes, variant: str) -> dict[str, Any]:
    try:
        decoded = cbor2.loads(response)
    except (cbor2.CBORDecodeError, ValueError):
        raise NsmError("the NSM's response is not valid CBOR") from None
    if isinstance(decoded, dict) and "Error" in decoded:
        raise NsmError(f"the NSM answered with error {decoded['Error']!r}")
    if not isinstance(decoded, dict) or set(decoded) != {variant} or not isinstance(decoded[variant], dict):
        raise NsmError(f"expected an NSM {variant} response, found {type(decoded).__name__}")
    body: dict[str, Any] = decoded[variant]
    return body


def decode_attestation_response(response: bytes) -> bytes:
    """The attestation document in an ``Attestation`` response."""
    document = _decode(response, "Attestation").get("document")
    if not isinstance(document, bytes) or not document:
        raise NsmError("the NSM's Attestation response has no document")
    return document


def decode_describe_pcr_response(response: bytes) -> tuple[bool, bytes]:
    """``(locked, value)`` from a ``DescribePCR`` response."""
    body = _decode(response, "DescribePCR")
    lock, data = body.get("lock"), body.get("data")
    if not isinstance(lock, bool) or not isinstance(data, bytes):
        raise NsmError("the NSM's DescribePCR response is malformed")
    return lock, data


class NitroNsm:
    """An :class:`~oblv_mpc.attestation.attestor.Attestor` backed by ``/dev/nsm``."""

    development = False

    def __init__(self, device: Path = DEVICE) -> None:
        try:
            self._fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise NsmError(f"cannot open {device}: {exc.strerror}", hint="this is not a Nitro Enclave") from None

    @staticmethod
    def available(device: Path = DEVICE) -> bool:
        """Whether the NSM device exists, i.e. this runs inside a Nitro Enclave."""
        return device.exists()

    def close(self) -> None:
        """Close the device."""
        os.close(self._fd)

    def _call(self, request: bytes) -> bytes:
        request_buffer = ctypes.create_string_buffer(request, len(request))
        response_buffer = ctypes.create_string_buffer(RESPONSE_MAX_BYTES)
        message = _NsmMessage(
            _IoVec(ctypes.cast(request_buffer, ctypes.c_void_p), len(request)),
            _IoVec(ctypes.cast(response_buffer, ctypes.c_void_p), RESPONSE_MAX_BYTES),
        )
        try:
            fcntl.ioctl(self._fd, NSM_IOCTL_REQUEST, message)  # the driver fills the response in place
        except OSError as exc:
            raise NsmError(f"NSM ioctl failed: {exc.strerror}") from None
        return response_buffer.raw[: message.response.iov_len]

    def attest(self, *, nonce: bytes | None, user_data: bytes | None, public_key: bytes | None) -> bytes:
        """An attestation document from the NSM, carrying the given fields."""
        request = encode_attestation_request(user_data=user_data, nonce=nonce, public_key=public_key)
        return decode_attestation_response(self._call(request))

    def describe_pcr(self, index: int) -> tuple[bool, bytes]:
        """Whether PCR ``index`` is locked, and its value."""
        return decode_describe_pcr_response(self._call(encode_describe_pcr_request(index)))
