"""Cutting a CSV byte stream into complete lines, in linear time, as Apache Arrow lexes it.

Bytes arrive in pieces of any size; :class:`LineSplitter` lexes them, carrying its state (inside
quotes or not) from piece to piece so that nothing is scanned again from the start, and hands
on all complete lines up to the last line break outside a quoted field (the rest waits for the
next piece). Quoting is Arrow's; see :mod:`oblv_mpc.tables` for the rules.
"""

from __future__ import annotations

import re

# Arrow's CSV lexer as regular expressions over bytes (possessive: no backtracking, so every
# match is linear). A quote opens a quoted value only at the start of a field: at the start of
# what is scanned (always the start of a line), or after a delimiter or a line end.
_INSIDE = rb'[^"]*+(?:""[^"]*+)*+'  # a quoted value's text, up to its closing quote
_QUOTED = rb'"' + _INSIDE + rb'"(?=[^"])'  # seen to be closed: a quote at the end may be doubled
_LITERAL = rb'(?<=[^,\r\n])"'  # a quote inside a field is an ordinary character
_LINE = rb'(?:[^"\r\n]++|' + _LITERAL + rb"|" + _QUOTED + rb")*+(?:\r\n?+|\n)"  # one line, with its end
_REST_OF_QUOTED = re.compile(_INSIDE)
_FIRST_LINE = re.compile(_LINE)
_LINES = re.compile(rb"(?:" + _LINE + rb")*+")  # every complete line
# Unquoted text and closed values, up to a quote left open; unrolled (a run, then a quote and a
# run, and so on), which the regular expression engine runs several times faster.
_FIELDS = re.compile(rb'[^"]*+(?:(?:' + _LITERAL + rb"|" + _QUOTED + rb')[^"]*+)*+')  # _LITERAL first
# Read backwards: a run of an odd number of quotes, whole, that follows (reads as preceded by) a
# byte that does not end a field: the literal comes first, so the engine skips to quotes quickly.
_RESET_BACKWARDS = re.compile(rb'"(?<!"")(?:"")*+(?=[^,\r\n"])')
_QUOTE = ord('"')


class LineSplitter:
    """Cuts a CSV byte stream after its last line break outside quotes, in linear time.

    The lexer's state (inside a quoted value or not) is carried from piece to piece, so each
    byte is scanned a fixed number of times (once, unless a quoted value holds a window's last
    line end), whatever the piece boundaries; only a quote at the very end of what has arrived
    is looked at again with the next piece (it may be the first of a doubled one).
    """

    WINDOW = 1 << 20  # bytes per regular expression call: other threads run between calls

    def __init__(self) -> None:
        self._pending = bytearray()  # bytes after the last cut
        self._scanned = 0  # how many of them are lexed
        self._quoted = False  # the lexer stopped inside a quoted value...
        self._opened = 0  # ...which opened here
        self._break = 0  # just after the last line break outside quotes (0: none)

    def feed(self, data: bytes) -> bytes:
        """Take the next piece; return the complete lines it finished (maybe none)."""
        self._pending += data
        limit = self._scanned
        while limit < len(self._pending):
            limit = min(limit + self.WINDOW, len(self._pending))
            self._scan(limit)
        cut, self._break = self._break, 0
        if not cut:
            return b""
        with memoryview(self._pending) as view:
            lines = bytes(view[:cut])
        del self._pending[:cut]  # O(1): a bytearray drops its head in place
        self._scanned -= cut
        self._opened -= cut
        return lines

    def finish(self) -> tuple[bytes, int | None]:
        """End of stream: the last, unterminated line, and where a quote left open opened."""
        tail = bytes(self._pending)
        unclosed = self._quoted and self._scanned == len(tail)  # else a quote at the end closes it
        self._pending.clear()
        return tail, self._opened if unclosed else None

    def _scan(self, limit: int) -> None:
        buffer, position = self._pending, self._scanned
        if self._quoted:
            close = _reach(_REST_OF_QUOTED, buffer, position, limit)
            if close + 1 >= limit:  # not closed yet, or by a quote that may be doubled
                self._scanned = close
                return
            position, self._quoted = close + 1, False
        end = max(buffer.rfind(b"\n", position, limit), buffer.rfind(b"\r", position, limit)) + 1
        if end > position:  # is the last line end outside quotes? (almost always)
            straddled = position > 0 and buffer[position - 1] == buffer[position] == _QUOTE  # by a run of quotes
            if not straddled and _outside_quotes(buffer, position, end - 1):
                stop = end
            else:  # lex the lines one by one
                stop = _reach(_FIELDS, buffer, position, end)
            if stop == end:
                self._break = end
            else:  # no: a value that opened at `stop` holds it; the break is the last one before
                lines = _reach(_LINES, buffer, position, stop)
                if lines > position:
                    self._break = lines
            position = stop
        stop = _reach(_FIELDS, buffer, position, limit)  # no line end from here: only the state
        if stop < limit:  # a quote opening a value that is not seen to close
            self._quoted, self._opened = True, stop
            stop = _reach(_REST_OF_QUOTED, buffer, stop + 1, limit)
        self._scanned = stop


def _reach(pattern: re.Pattern[bytes], buffer: bytearray, start: int, limit: int) -> int:
    """Where ``pattern`` (which also matches nothing) stops when it scans from ``start``."""
    match = pattern.match(buffer, start, limit)
    assert match is not None
    return match.end()


def _outside_quotes(buffer: bytearray, start: int, at: int) -> bool:
    """Whether byte ``at`` is outside quotes, given that ``start`` is, and is not inside a run of
    quotes.

    Quotes come in runs. A run of odd length that does not start a field leaves the lexer outside
    quotes whatever the state before (inside, it ends the value after doubled quotes; outside,
    its quotes are characters); any other run flips the state if odd, keeps it if even. So
    ``at`` is inside quotes exactly when an odd number of quotes lie between the last such run
    (or ``start``) and ``at``: one search backwards, which stops at the nearest closing quote,
    and one count, both at memory speed.
    """
    if buffer.find(b'"', start, at) < 0:
        return True
    since, reach, low = start, 4096, at
    while low > max(start - 1, 0):  # look back 4 KiB, then twice as far, ...: linear however far
        low = max(at - reach, start - 1, 0)  # down to the byte before `start`, if any
        run = _RESET_BACKWARDS.search(buffer[low:at][::-1])  # never a run cut at `low`: it ends the text
        if run:
            since = at - run.start()
            break
        reach *= 2
    return buffer.count(b'"', since, at) % 2 == 0


def first_line_end(block: bytes) -> int:
    """The index just after the first line break outside quotes (``len(block)`` if none)."""
    match = _FIRST_LINE.match(block)
    return match.end() if match else len(block)
