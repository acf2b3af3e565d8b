"""Every command has complete help, and every command is documented in the README or docs/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from oblv_mpc.cli import app

ROOT = Path(__file__).parents[2]


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    if hasattr(command, "list_commands"):  # a group (typer vendors click, so no isinstance)
        for name in command.list_commands(None):  # the root loads each command's module when asked
            yield from _commands(command.get_command(None, name), (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _docs() -> str:
    texts = [ROOT.joinpath("README.md").read_text()]
    texts += [p.read_text() for p in sorted(ROOT.joinpath("docs").glob("**/*.md"))]
    return "\n".join(texts)


@pytest.mark.parametrize(("path", "command"), COMMANDS[1:], ids=[" ".join(p) for p, _ in COMMANDS[1:]])
def test_command_has_help_and_is_documented(path: tuple[str, ...], command: Any) -> None:
    assert command.help and command.help.strip(), f"mpc {' '.join(path)} has no help"
    for param in command.params:
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            assert param.help, f"mpc {' '.join(path)} {param.opts[0]} has no help"
    assert f"mpc {' '.join(path)}" in _docs(), f"`mpc {' '.join(path)}` is in neither README.md nor docs/"


def test_exit_codes_are_documented() -> None:
    from oblv_mpc import errors

    text = ROOT.joinpath("docs/cli.md").read_text()
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.MpcError):
            assert cls.__name__ in text, f"{cls.__name__} is missing from docs/cli.md"


def _documented_commands() -> list[str]:
    """Every ``- `mpc ...``` command line of docs/cli.md."""
    import re

    text = ROOT.joinpath("docs/cli.md").read_text()
    return re.findall(r"^- `(mpc [^`]+)`", text, re.MULTILINE)


@pytest.mark.parametrize("line", _documented_commands())
def test_every_command_in_the_docs_exists_with_the_options_it_shows(line: str) -> None:
    import re

    known = {" ".join(p): c for p, c in COMMANDS[1:]}
    words = line.split()[1:]
    path = []
    for word in words:
        if " ".join([*path, word]) in known:
            path.append(word)
        else:
            break
    assert path, f"docs/cli.md shows `{line}`, which is no command"
    command = known[" ".join(path)]
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for option in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", line):
        assert option in options, f"docs/cli.md shows `mpc {' '.join(path)} {option}`, which has no such option"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "mpc" for p, _ in COMMANDS])
def test_every_help_is_conventional_and_answers_to_dash_h(path: tuple[str, ...], command: Any) -> None:
    """Usage names its arguments (`FILE NAME`, not `{file} {name}`), values have names, not Python
    types (`--column COLUMN`, not `<list[str]>`), choices are listed, and `-h` is `--help`."""
    import re

    from typer.testing import CliRunner

    done = CliRunner().invoke(app, [*path, "-h"], env={"COLUMNS": "200"}, prog_name="mpc")
    assert done.exit_code == 0, done.output
    text = done.stdout
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: mpc {' '.join(path)}".rstrip()), usage
    assert "{" not in usage and "}" not in usage, usage
    assert not re.search(r"<[a-z_\[\]|.-]+>", text), text  # Typer's <str>, <path>, <list[str]>
    for param in command.params:
        if param.param_type_name == "argument":
            assert param.metavar in usage, usage
        elif not param.is_flag and not param.hidden:
            assert param.metavar and param.metavar in text, f"{param.opts[0]} shows no value name"
            choices = getattr(param.type_descriptor, "choices", None) if param.type_descriptor.is_choice else None
            for choice in choices or ():
                assert str(getattr(choice, "value", choice)) in text  # e.g. fetch --format [csv|json]


def test_fetch_format_lists_its_choices() -> None:
    from typer.testing import CliRunner

    done = CliRunner().invoke(app, ["fetch", "--help"], env={"COLUMNS": "200"})
    assert "--format [csv|json|parquet]" in done.stdout
