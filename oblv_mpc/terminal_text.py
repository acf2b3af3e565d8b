"""Characters that make a terminal act instead of show, found and made visible: the one definition.

Text from outside (a manifest, an enclave's answer, another party's rows) reaches a reviewer
through a terminal. Some characters are not shown there but obeyed: ``ESC [2K ESC [1G`` erases
the line it is on, a carriage return goes back to the line's start and overwrites it, and a
right-to-left override (U+202E) reorders what follows. Such text can show a party something
other than what it agrees to. The set, by Unicode general category (docs/adr/0008-terminal-text.md
says why these):

- ``Cc``, control characters: C0 (U+0000-001F, with ESC, CR, BS), DEL (U+007F) and C1
  (U+0080-009F, with CSI U+009B, which some terminals take as ``ESC [``);
- ``Cf``, format characters: bidi embeddings, overrides and isolates (U+202A-202E,
  U+2066-2069), marks (U+200E/F, U+061C), zero-width space and joiners (U+200B-200D), word
  joiner (U+2060), BOM (U+FEFF), soft hyphen (U+00AD), tags (U+E0000-E007F) and the rest;
- ``Zl``, ``Zp``: the line and paragraph separators U+2028, U+2029;
- ``Cs``: lone surrogates (from undecodable bytes), which a UTF-8 terminal cannot even take.

:func:`visible` writes each as a Python escape (``\\x1b``, ``\\u202e``, ``\\U000e0041``), so it
can be read and looked up. :func:`find_hidden` locates the first one, for validators that
refuse them outright (the manifest does). Look-alike letters (confusables) are not in the set:
they hide nothing, and names that matter are plain ASCII identifiers already.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

HIDING_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# The 32 C0 controls' names, in order (ISO 6429).
_C0_NAMES = (
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "TAB", "LF", "VT", "FF", "CR", "SO", "SI",
    "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC", "FS", "GS", "RS", "US",
)  # fmt: skip
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Every character that Python does not count as printable, but space: the only candidates.
# (``str.isprintable`` is False for all of HIDING_CATEGORIES, and for Zs, Co and Cn.)
_CANDIDATE = re.compile(r"[^\x20-\x7e]")


def hides(char: str) -> bool:
    """Whether a terminal may act on ``char`` instead of showing it (one of HIDING_CATEGORIES)."""
    return unicodedata.category(char) in HIDING_CATEGORIES


def escape(char: str) -> str:
    """``char`` as a Python escape: ``\\x1b``, ``\\u202e``, ``\\U000e0041``, ``\\r``, ``\\n``, ``\\t``."""
    point = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def describe(char: str) -> str:
    """``U+001B (ESC)``, ``U+202E (RIGHT-TO-LEFT OVERRIDE)``: for messages."""
    point = ord(char)
    if point < 0x20:
        name = _C0_NAMES[point]
    elif point == 0x7F:
        name = "DEL"
    elif 0x80 <= point <= 0x9F:
        name = "CSI, a C1 control" if point == 0x9B else "a C1 control"
    else:
        name = unicodedata.name(char, "a surrogate" if unicodedata.category(char) == "Cs" else "unnamed")
    return f"U+{point:04X} ({name})"


def visible(text: str, *, keep: str = "") -> str:
    """``text`` with every hiding character but those in ``keep`` written as an escape.

    ``keep`` is for text shown on several lines (``"\\n\\t"``); a lone value in a table cell or
    a message keeps nothing, so that it cannot start a line of its own either.
    """
    if text.isprintable():
        return text

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        return escape(char) if char not in keep and hides(char) else char

    return _CANDIDATE.sub(replace, text)


@dataclass(frozen=True)
class Hidden:
    """Where the first hiding character of a text is: its index, line and column (from 1)."""

    char: str
    index: int
    line: int
    column: int

    def describe(self) -> str:
        """``U+001B (ESC) at line 3, column 14 (character 52)``."""
        return f"{describe(self.char)} at line {self.line}, column {self.column} (character {self.index + 1})"


def find_hidden(text: str, *, allow: str = "", allow_crlf: bool = False) -> Hidden | None:
    """The first hiding character of ``text`` not in ``allow``, or None.

    ``allow_crlf`` accepts a carriage return only right before a line feed (a Windows line
    end); a lone one sends the cursor back to overwrite its line, so it is never allowed.
    """
    for match in _CANDIDATE.finditer(text):
        char, index = match.group(), match.start()
        if char in allow or not hides(char):
            continue
        if allow_crlf and char == "\r" and text.startswith("\n", index + 1):
            continue
        line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + 1
        return Hidden(char, index, line, column)
    return None
