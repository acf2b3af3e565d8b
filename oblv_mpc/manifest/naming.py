"""How SQL names the session's tables and the enclave's own helper columns.

Party, table and column names are lowercase identifiers (``[a-z_][a-z0-9_]*``). Every name the
engine or a template writes is quoted. Names the enclave makes for itself are built so that no
name a party can declare collides with them:

- a party's table ``alice.customers`` is table ``customers`` in schema ``alice``;
- the data behind it is registered as ``data:alice/customers``: ``:`` and ``/`` cannot occur in a
  declared name, so two parties' data can never share a name (``acme`` + ``eu_customers`` and
  ``acme_eu`` + ``customers`` did, when data names were joined with ``_``);
- helper columns the enclave adds to a query (per-owner unit counts, sources) start with
  ``__mpc``, which declared columns and output columns may not.
"""

from __future__ import annotations

HELPER_PREFIX = "__mpc"


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def table_ref(qualified: str) -> str:
    """``party.table`` as a quoted, schema-qualified SQL reference."""
    party, table = qualified.split(".", 1)
    return f"{quote(party)}.{quote(table)}"


def data_name(party: str, table: str) -> str:
    """The engine's name for the data behind ``party.table``: injective in (party, table)."""
    return f"data:{party}/{table}"


def unit_count_column(index: int) -> str:
    """The helper column holding the distinct units of the ``index``-th protected input in a group."""
    return f"{HELPER_PREFIX}_units_{index}"


def is_helper(name: str) -> bool:
    """Whether ``name`` is reserved for the enclave's helper columns."""
    return name.startswith(HELPER_PREFIX)


def unit_column() -> str:
    """The helper column holding each row's privacy unit in a synthetic release's input."""
    return f"{HELPER_PREFIX}_unit"
