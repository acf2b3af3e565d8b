"""Where the CLI writes, and the one way it shows text from outside.

Results go to stdout (:data:`out`), progress and diagnostics to stderr (:data:`err`). Most of
what the CLI shows comes from outside: manifest text, other parties' rows in a result, the
enclave's messages, attestation fields. Two rules hold for everything these consoles print, so
that a renderer cannot forget them (docs/adr/0008-terminal-text.md):

1. **No markup in data.** The consoles interpret no Rich markup and no emoji codes in plain
   strings: ``out.print(f"[bold]{x}[/]")`` shows the brackets. Style comes only from
   :func:`styled`, whose template is ours and whose values are always plain text; table cells
   from outside go in as :func:`plain`.
2. **No control characters.** Every hiding character (:mod:`oblv_mpc.terminal_text`) in any
   text they render is written as a visible escape at the last step, the rendered segments, so
   only Rich's own styles and cursor moves reach the terminal. :func:`plain` and :func:`styled`
   do it earlier, and also escape line breaks in single-line values.

``--json`` output is ``json.dumps`` with ``ensure_ascii``: every such character is a ``\\uXXXX``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

from oblv_mpc.terminal_text import visible

_FIELD = re.compile("\x00([0-9]+)\x00")  # where styled() puts a value; NUL never occurs in a template


class SafeConsole(Console):
    """A rich Console that writes every hiding character it is given as a visible escape."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        """Rich's rendering, with text segments (not its own control segments) made safe."""
        for segment in super().render(renderable, options):
            text = segment.text
            if segment.control is None and not text.isprintable() and text != "\n":
                yield Segment(visible(text, keep="\n"), segment.style)
            else:
                yield segment


out = SafeConsole()
err = SafeConsole(stderr=True, soft_wrap=True)


def plain(value: object, *, multiline: bool = False) -> Text:
    """A value from outside as text: no markup, every hiding character (and line break) escaped.

    ``multiline`` keeps line feeds and tabs (SQL, descriptions), never a lone carriage return.
    """
    return Text(visible(str(value), keep="\n\t" if multiline else ""))


def styled(template: str, /, **values: object) -> Text:
    """Our markup ``template`` with ``{name}`` fields filled by ``values`` as plain text.

    ``styled("[bold]{name}[/] refused: {reason}", name=..., reason=...)``: the template is ours
    and may style; a value is never read as markup (it never passes through the markup parser:
    the template is parsed with a placeholder in its place) and shows every hiding character,
    line breaks included, escaped. A value takes the style of the place it fills.
    """
    names = list(values)
    skeleton = Text.from_markup(template.format(**{name: f"\x00{i}\x00" for i, name in enumerate(names)}), emoji=False)
    result = Text()
    position = 0
    for match in _FIELD.finditer(skeleton.plain):
        result.append_text(skeleton[position : match.start()])
        value = plain(values[names[int(match.group(1))]])
        for span in skeleton[match.start() : match.end()].spans:
            value.stylize(span.style, 0, len(value))
        result.append_text(value)
        position = match.end()
    result.append_text(skeleton[position:])
    return result


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, for ``--json``: plain ASCII JSON, nothing interpreted."""
    out.print(json.dumps(data, indent=2, ensure_ascii=True, default=str), soft_wrap=True)


def warn(message: str) -> None:
    """A loud, unmissable warning on stderr."""
    err.print(styled("[bold yellow]WARNING[/]: {message}", message=message))
