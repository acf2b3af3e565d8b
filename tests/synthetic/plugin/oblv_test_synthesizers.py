"""A synthesizer plug-in for the tests, found through an entry point as any third-party one would be.

``spy`` releases independent noisy 1-way marginals (OpenDP's Laplace mechanism over the
concatenated histograms, whose L1 sensitivity is columns x max_rows_per_unit), sampled column by
column: fast, and differentially private. It also keeps what it received (``RECEIVED``), so a test
can see what the enclave handed a synthesizer, and waits at ``GATE`` (open unless a test closes
it), so a test can hold a generation while it checks that the enclave keeps answering; it says
``STAGE`` while it waits, which a test may set to words of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from oblv_mpc.synthetic import Progress, Request, Synthesized

RECEIVED: list[tuple[pa.Table, Request]] = []
GATE = threading.Event()
GATE.set()
STAGE = "spy: waiting at the gate"


class Spy:
    """Independent noisy 1-way marginals, sampled."""

    name = "spy"
    version = "1.0"
    description = "test plug-in: independent noisy 1-way marginals"

    def unavailable(self) -> str | None:
        return None

    def check_params(self, params: Mapping[str, Any]) -> list[str]:
        return [f"{key!r} is not a parameter of spy" for key in params]

    def synthesize(self, data: pa.Table, request: Request, progress: Progress) -> Synthesized:
        import opendp.prelude as dp

        dp.enable_features("contrib")
        RECEIVED.append((data, request))
        progress(0.5, STAGE)
        if not GATE.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        counts: list[float] = []
        for column, keys in request.keys.items():
            values = data.column(column).to_pylist()
            counts += [float(sum(1 for v in values if v == key)) for key in keys]
        sensitivity = len(request.keys) * request.max_rows_per_unit
        scale = sensitivity / request.epsilon
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
        mechanism = dp.m.make_laplace(*space, scale=scale)
        noisy = mechanism(counts)
        rng = np.random.default_rng()
        columns, offset = {}, 0
        for column, keys in request.keys.items():
            weights = np.clip(np.array(noisy[offset : offset + len(keys)]), 0, None) + 1e-9
            offset += len(keys)
            picks = rng.choice(len(keys), size=request.rows, p=weights / weights.sum())
            columns[column] = [keys[i] for i in picks]
        return Synthesized(pa.table(columns), float(mechanism.map(float(sensitivity))), "spy (tests), Laplace")
