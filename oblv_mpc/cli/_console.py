"""Where the CLI writes: results to stdout, progress and diagnostics to stderr."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, for ``--json``."""
    out.print_json(json.dumps(data, sort_keys=False, default=str))


def warn(message: str) -> None:
    """A loud, unmissable warning on stderr."""
    err.print(f"[bold yellow]WARNING[/]: {message}")
