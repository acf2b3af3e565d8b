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
