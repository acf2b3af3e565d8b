"""The enclave service's protocol knobs, and the limits on untrusted input it enforces."""

from __future__ import annotations

from dataclasses import dataclass

from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.protocol.hpke import SuiteName


@dataclass(frozen=True)
class EnclaveSettings:
    """Protocol knobs, and ``limits``: every cap on untrusted input (:class:`~oblv_mpc.limits.Limits`)."""

    suite: SuiteName = SuiteName.X25519
    request_window_s: int = 300  # a request older than this, or as far in the future, is refused
    limits: Limits = DEFAULT_LIMITS

    @property
    def max_chunk_bytes(self) -> int:
        """Plaintext data per upload chunk (``limits.max_chunk_bytes``)."""
        return self.limits.max_chunk_bytes

    @property
    def upload_idle_timeout_s(self) -> int:
        """An upload or FastEnclaves request with no chunk for this long is discarded (``limits.idle_timeout_s``)."""
        return self.limits.idle_timeout_s

    @property
    def max_envelope_bytes(self) -> int:
        """The largest sealed request accepted (``limits.max_envelope_bytes``)."""
        return self.limits.max_envelope_bytes
