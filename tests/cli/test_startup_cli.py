"""A command loads only what it uses: `mpc keygen` and `mpc session ...` start without the enclave's
web framework, Arrow or DuckDB (most of a second of imports, paid by every run of every command
before the root loaded each command's module on demand)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("fastapi", "pyarrow", "duckdb", "httpx")

PROBE = """
import sys
from oblv_mpc.cli import main
sys.argv = ["mpc", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("loaded:" + ",".join(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def _loaded(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, timeout=60
    )
    line = next(line for line in done.stderr.splitlines() if line.startswith("loaded:"))
    return {name for name in line.removeprefix("loaded:").split(",") if name}


@pytest.mark.parametrize("args", [("keygen", "--help"), ("session", "new", "--help"), ("key", "--help")])
def test_light_commands_start_without_the_enclave_arrow_or_duckdb(args: tuple[str, ...]) -> None:
    assert _loaded(*args) == set()


def test_the_probe_sees_a_command_that_does_load_them() -> None:
    assert {"fastapi", "pyarrow"} <= _loaded("enclave", "serve", "--help")


def test_every_command_a_module_registers_is_listed_at_the_root() -> None:
    """The root names each command's module ahead of loading it: a command a module adds but the
    root does not name would exist and never run."""
    from oblv_mpc import cli

    for module in set(cli._COMMANDS.values()):
        registered = set(cli._commands_of(module).commands)
        named = {name for name, owner in cli._COMMANDS.items() if owner == module}
        assert registered == named, (
            f"oblv_mpc.cli.{module} registers {sorted(registered)}, the root names {sorted(named)}"
        )
