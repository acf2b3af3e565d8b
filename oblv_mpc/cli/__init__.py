"""The ``mpc`` command line: thin commands over the library, one error boundary.

Every command parses its inputs, makes one library call and renders the result with rich.
Every :class:`~oblv_mpc.errors.MpcError` is caught here, once: its diagnostics go to stderr and
the process exits with the error's code (see ``docs/cli.md``). Anything else is a bug and gets
a traceback, without local variables (keys live in locals).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

from oblv_mpc import __version__
from oblv_mpc.cli._console import err, plain
from oblv_mpc.cli._help import HELP_OPTION_NAMES, conventional
from oblv_mpc.errors import MpcError
from oblv_mpc.runtime import pin_mmap_threshold

# Each top-level command and the module of oblv_mpc.cli that registers it, in the order help lists
# them. A module is imported when one of its commands runs (or help lists them), so `mpc keygen`
# or `mpc session add-input` does not load the web framework, Arrow and DuckDB that `mpc enclave
# serve` and `mpc submit` need: a quarter of a second per command instead of most of a second.
_COMMANDS = {
    "keygen": "keys",
    "demo": "demo",
    "connect": "connect",
    **dict.fromkeys(("submit", "status", "compute", "fetch", "transcript"), "party"),
    "profiles": "profiles",
    "key": "keys",
    "attestation": "attestation",
    "pcrs": "attestation",
    "enclave": "enclave",
    "session": "session",
    "synthetic": "synthetic",
}


@functools.cache
def _commands_of(module: str) -> Any:  # a click group; typer vendors click, so its type is private
    """The commands ``oblv_mpc.cli.<module>`` registers, as they would be on the root."""
    holder = typer.Typer(rich_markup_mode=None)
    importlib.import_module(f"oblv_mpc.cli.{module}").register(holder)
    conventional(holder)
    return typer.main.get_group(holder)


class _ErrorBoundary(TyperGroup):
    """The top-level group: loads each command's module when it is asked for, and turns every
    MpcError into a message and an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = _COMMANDS.get(cmd_name)
        return None if module is None else _commands_of(module).commands.get(cmd_name)

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context; its type is private
        try:
            return super().invoke(ctx)
        except MpcError as exc:
            err.print(plain(exc.diagnostics(), multiline=True))  # messages quote text from outside
            raise typer.Exit(exc.exit_code) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mpc {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=_ErrorBoundary,
    help="Multiparty computation brokered by an attested enclave (AWS Nitro Enclaves).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode=None,
    context_settings={"help_option_names": HELP_OPTION_NAMES},  # every subcommand inherits -h
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Multiparty computation brokered by an attested enclave (AWS Nitro Enclaves)."""


def main() -> None:
    """Console-script entry point."""
    pin_mmap_threshold()
    app(prog_name="mpc")
