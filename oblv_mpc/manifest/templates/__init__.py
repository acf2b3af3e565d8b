"""The built-in computations, each generated as the exact SQL the enclave runs.

Every template reads the parties' tables by their qualified names (``alice.customers`` is table
``customers`` in schema ``alice``) and quotes every identifier. The SQL is part of the manifest's
hash, so every party agrees to exactly the text shown by ``mpc session show``. Each template also
says how it uses each input (``oblv_mpc.manifest.usage``), which the owners' protection rules
judge, and can add the enclave's per-owner unit counts to its SQL.

- ``psi``: the distinct values of one column present in every input (NULLs never match).
- ``psi_cardinality``: the number of such values, and nothing else.
- ``aggregate``: aggregates over the union of inputs with the same columns, per group, with the
  group's row count as ``group_size``; with ``dp``, a differentially private release (``dp``).
- ``join_aggregate``: the inputs joined on their common key column, then aggregated as above.
"""

from __future__ import annotations

from oblv_mpc.manifest.model import AGGREGATE_FUNCTIONS
from oblv_mpc.manifest.naming import quote, table_ref
from oblv_mpc.manifest.templates._common import GROUP_SIZE_COLUMN, Generated, Template
from oblv_mpc.manifest.templates.dp import COUNT_SUFFIX, DP_FUNCTIONS, SUM_SUFFIX, dp_aggregate, literal
from oblv_mpc.manifest.templates.grouped import aggregate, join_aggregate
from oblv_mpc.manifest.templates.psi import psi, psi_cardinality

TEMPLATES: dict[str, Template] = {
    "psi": psi,
    "psi_cardinality": psi_cardinality,
    "aggregate": aggregate,
    "join_aggregate": join_aggregate,
}

__all__ = [
    "AGGREGATE_FUNCTIONS",
    "COUNT_SUFFIX",
    "DP_FUNCTIONS",
    "GROUP_SIZE_COLUMN",
    "SUM_SUFFIX",
    "TEMPLATES",
    "Generated",
    "Template",
    "dp_aggregate",
    "literal",
    "quote",
    "table_ref",
]
