"""Checks of single manifest fields shared by every section's parser."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from oblv_mpc import terminal_text
from oblv_mpc.manifest._problems import Problems
from oblv_mpc.manifest.naming import HELPER_PREFIX
from oblv_mpc.manifest.sql import CLOCK_KEYWORDS

# Used with fullmatch: `$` would also match before a trailing newline ("alice\n").
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Names that DuckDB or SQL give a meaning of their own; a party or table may not take them.
RESERVED = {"main", "temp", "system", "information_schema", "pg_catalog", "memory", "select", "from", "where", "table"}


def name(value: Any, path: str, problems: Problems, what: str) -> bool:
    """A party, table or computation name: a lowercase identifier, not reserved."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        problems.expected(path, f"{what}: lowercase letters, digits and _, starting with a letter or _", value)
        return False
    if value in RESERVED:
        problems.add(path, f"{value!r} is reserved; choose another {what.removeprefix('a ')}")
        return False
    return True


def column_name(value: Any, path: str, problems: Problems) -> bool:
    """A column name: an identifier that neither the clock keywords nor the enclave's helpers use."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        problems.expected(path, "a column name: lowercase letters, digits and _", value)
        return False
    if value in CLOCK_KEYWORDS or value.startswith(HELPER_PREFIX):
        problems.add(path, f"{value!r} is reserved (SQL reads it as the clock or the session, or it is the enclave's)")
        return False
    return True


def unknown(raw: Mapping[Any, Any], allowed: set[str], path: str, problems: Problems) -> None:
    """A problem for every key of ``raw`` not in ``allowed``."""
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            problems.add(where, f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def positive_int(raw: Mapping[str, Any], key: str, path: str, problems: Problems, default: int | None) -> int | None:
    """``raw[key]`` as a positive whole number (``default`` when absent)."""
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.expected(f"{path}.{key}", "a positive whole number", value)
        return None
    return value


def number(value: Any) -> bool:
    """A finite int or float: not NaN or .inf, and no int too large to become a float (10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def no_hidden(value: str, path: str, problems: Problems, *, allow: str = "") -> bool:
    """Refuse text holding a character a terminal acts on (ESC, CR, bidi overrides ...): it could
    show a reviewer something other than what the hash covers (oblv_mpc/terminal_text.py)."""
    hidden = terminal_text.find_hidden(value, allow=allow)
    if hidden is None:
        return True
    problems.add(path, f"contains {hidden.describe()}, which a terminal acts on instead of showing; remove it")
    return False


def party_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a party's name in a manifest, or None if it can."""
    problems = Problems()
    name(value, "name", problems, "a party name")
    return problems.items[0].split(": ", 1)[1] if problems.items else None
