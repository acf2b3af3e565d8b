"""The enclave service's protocol knobs, and the limits on untrusted input it enforces."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from oblv_mpc.limits import DEFAULT_LIMITS, Limits
from oblv_mpc.protocol.hpke import SuiteName


@dataclass(frozen=True)
class EnclaveSettings:
    """Protocol knobs, and ``limits``: every cap on untrusted input (:class:`~oblv_mpc.limits.Limits`)."""

    suite: SuiteName = SuiteName.X25519
    request_window_s: int = 300  # a request older than this, or as far in the future, is refused
    limits: Limits = DEFAULT_LIMITS
    # DuckDB threads for computations whose result cannot depend on the plan (enclave/engine.py); others run on one.
    compute_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
