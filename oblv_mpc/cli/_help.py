"""Help as command-line users expect it: ``Usage: mpc fetch [OPTIONS] NAME``, ``--out FILE``.

The Typer release we use writes a required argument as ``{name}`` in the usage line and every
value as its Python type (``--column <list[str]>``, ``file <path>``). :class:`Command` (the
class of every ``mpc`` command, set by :func:`conventional`) writes them the way ``git``,
``curl`` and argparse do: arguments and values by name in capitals (``FILE``, ``--max-rows
MAX_ROWS``, from the option's name), a command's own ``metavar=`` where it gave one (``--column NAME:TYPE``), choices as
``[csv|json]``; an optional argument in brackets, a repeated one with ``...``. ``-h`` is
``--help`` everywhere (``help_option_names`` in the root's context settings, which every
subcommand's context inherits).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

HELP_OPTION_NAMES = ["-h", "--help"]


def _choice(value: Any) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


def _metavar(param: TyperArgument | TyperOption) -> str:
    """A value's name: its choices, else its option's long name (or the argument's) in capitals."""
    described = getattr(param, "type_descriptor", None)
    if described is not None and described.is_choice and described.choices:
        return "[" + "|".join(_choice(c) for c in described.choices) + "]"
    if isinstance(param, TyperOption) and param.opts:
        longest = max(param.opts, key=len)
        return longest.lstrip("-").replace("-", "_").upper()
    return (param.name or "VALUE").upper()


class Command(TyperCommand):
    """A Typer command whose usage line and help name values the conventional way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            takes_value = isinstance(param, TyperArgument) or (
                isinstance(param, TyperOption) and not param.is_flag and not param.count
            )
            if takes_value and param.metavar is None and isinstance(param, TyperArgument | TyperOption):
                param.metavar = _metavar(param)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS] NAME [OTHER] MORE...``: arguments by name, optional ones in brackets."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """Arguments by name (without Typer's ``<type>``), then options with their values' names."""
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((param.metavar or (param.name or "").upper(), record[1]))
            else:
                options.append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)


def conventional(app: typer.Typer) -> None:
    """Make every command of ``app`` and of its sub-apps a :class:`Command` (unless it chose a class)."""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):  # Typer's default
            info.cls = Command
    for group in app.registered_groups:
        if group.typer_instance is not None:
            conventional(group.typer_instance)
