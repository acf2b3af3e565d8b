"""The ``mpc`` command line: thin commands over the library, one error boundary.

Every command parses its inputs, makes one library call and renders the result with rich.
Every :class:`~oblv_mpc.errors.MpcError` is caught here, once: its diagnostics go to stderr and
the process exits with the error's code (see ``docs/cli.md``). Anything else is a bug and gets
a traceback, without local variables (keys live in locals).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from oblv_mpc import __version__
from oblv_mpc.cli import attestation as attestation_cli
from oblv_mpc.cli import connect as connect_cli
from oblv_mpc.cli import demo as demo_cli
from oblv_mpc.cli import enclave as enclave_cli
from oblv_mpc.cli import keys as keys_cli
from oblv_mpc.cli import party as party_cli
from oblv_mpc.cli import profiles as profiles_cli
from oblv_mpc.cli import session as session_cli
from oblv_mpc.cli import synthetic as synthetic_cli
from oblv_mpc.cli._console import err, plain
from oblv_mpc.cli._help import HELP_OPTION_NAMES, conventional
from oblv_mpc.errors import MpcError
from oblv_mpc.runtime import pin_mmap_threshold


class _ErrorBoundary(TyperGroup):
    """The top-level group: turns every MpcError into a message and an exit code."""

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


keys_cli.register(app)
demo_cli.register(app)
attestation_cli.register(app)
connect_cli.register(app)
party_cli.register(app)
profiles_cli.register(app)
app.add_typer(enclave_cli.app, name="enclave")
app.add_typer(session_cli.app, name="session")
app.add_typer(synthetic_cli.app, name="synthetic")
conventional(app)  # usage and help as command-line users expect them (cli/_help.py)


def main() -> None:
    """Console-script entry point."""
    pin_mmap_threshold()
    app(prog_name="mpc")
