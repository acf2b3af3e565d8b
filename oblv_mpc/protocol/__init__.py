"""The protocol between a party and the enclave: HPKE suites, the attestation binding, sealed
and signed envelopes, signed statements and the hash-chained transcript (docs/protocol.md)."""

from oblv_mpc.protocol.binding import EnclaveBinding
from oblv_mpc.protocol.envelope import Context, Request, open_request, open_response, seal_request, seal_response
from oblv_mpc.protocol.hpke import KeyPair, SuiteName

__all__ = [
    "Context",
    "EnclaveBinding",
    "KeyPair",
    "Request",
    "SuiteName",
    "open_request",
    "open_response",
    "seal_request",
    "seal_response",
]
