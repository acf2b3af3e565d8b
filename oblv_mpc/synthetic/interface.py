"""The interface every synthesizer implements, and what the enclave hands it.

A synthesizer receives rows that the enclave has already bounded (no privacy unit contributes
more than ``request.max_rows_per_unit`` of them) and mapped onto the declared domain (every value
is one of ``request.keys[column]``, or null). It must spend at most ``request.epsilon`` under
pure differential privacy with that bound on each unit's contribution, and return
``request.rows`` rows over the same columns and values. What it returns is checked by the
enclave (:mod:`oblv_mpc.synthetic.run`): another column, value or row count fails the run.

Exchange is by Arrow tables (``pyarrow``, a core dependency): a synthesizer may use any library
inside, and converts at its edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa


class Progress(Protocol):
    """Reports how far a generation has come: ``fraction`` in [0, 1], and the stage in plain words."""

    def __call__(self, fraction: float, stage: str) -> None:
        """Report ``fraction`` done, now at ``stage`` (fixed words, never data)."""


@dataclass(frozen=True)
class Request:
    """What a synthesizer is asked to release."""

    keys: Mapping[str, tuple[Any, ...]]  # column -> its public values (the domain), in order
    max_rows_per_unit: int  # the bound the enclave enforced: neighbouring inputs differ in at most this many rows
    epsilon: float  # pure DP: delta is 0
    rows: int  # exactly this many rows to return
    params: Mapping[str, Any] = field(default_factory=dict)  # agreed in the manifest, checked by check_params


@dataclass(frozen=True)
class Synthesized:
    """A synthesizer's output: the table, the privacy loss its library accounted, and what ran."""

    table: pa.Table
    epsilon_spent: float  # as the mechanism's own accounting computes it; at most request.epsilon
    mechanism: str  # e.g. "MST (OpenDP 0.16.0), Laplace noise, pure epsilon-DP"


@runtime_checkable
class Synthesizer(Protocol):
    """A differentially private synthesizer, as a plug-in.

    ``name`` is what a manifest names it by (a lowercase identifier); ``version`` what the
    manifest must name with it; ``description`` one line for ``mpc enclave synthesizers``.
    """

    name: str
    version: str
    description: str

    def unavailable(self) -> str | None:
        """Why this synthesizer cannot run here (a missing library), or None when it can."""

    def check_params(self, params: Mapping[str, Any]) -> list[str]:
        """Every problem with the manifest's ``params`` for this synthesizer, in plain words."""

    def synthesize(self, data: pa.Table, request: Request, progress: Progress) -> Synthesized:
        """Fit on ``data`` and sample ``request.rows`` rows, spending at most ``request.epsilon``."""
