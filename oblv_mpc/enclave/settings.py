"""Every limit and knob of the enclave service, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from oblv_mpc.protocol.hpke import SuiteName

MiB = 1024 * 1024


@dataclass(frozen=True)
class EnclaveSettings:
    """Limits on untrusted input and protocol parameters."""

    suite: SuiteName = SuiteName.X25519
    max_chunk_bytes: int = 8 * MiB  # plaintext data per upload chunk
    request_window_s: int = 300  # a request older than this, or as far in the future, is refused
    upload_idle_timeout_s: int = 900  # an upload with no chunk for this long is discarded
    max_http_body_bytes: int = 512 * MiB  # a FastEnclaves request body, held in enclave memory
    min_nonce_bytes: int = 16
    max_nonce_bytes: int = 64
    compute_timeout_s: float = 600.0  # a computation still running after this is stopped (and refused)
    compute_memory_bytes: int = 4 * 1024 * MiB  # DuckDB's memory_limit for computations

    @property
    def max_envelope_bytes(self) -> int:
        """The largest sealed request accepted: a full chunk plus envelope overhead."""
        return self.max_chunk_bytes + MiB
