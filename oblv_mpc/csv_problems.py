"""Where a CSV table breaks the manifest's rules: the first problem in file order, by row.

:class:`oblv_mpc.tables.CsvIngest` reads a part of a file at a time with Apache Arrow, which
converts column by column and names neither the line of a row with the wrong number of fields
nor, among several bad values in different columns, the first one. These helpers find, in one
part, the row of a problem, so that the error names the first bad line of the file (issue 16:
a short row on line 3001 is reported as ``line 3001``; bad values on lines 11 and 31, as line 11).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from oblv_mpc.manifest import Column, ColumnType

_LINE_ENDS = b"\r\n"


@dataclass(frozen=True)
class Problem:
    """A problem in one part of a file: the row (from 0) where it is, if known, and what it is."""

    index: int | None
    text: str


def value_problem(column: Column, values: pa.ChunkedArray, *, key: bool) -> Problem | None:
    """The first value of a converted ``column`` that the rules refuse: a float that is not
    finite, an empty key."""
    found: list[Problem] = []
    if column.type is ColumnType.FLOAT:
        finite = pc.fill_null(pc.is_finite(values), True)
        if not pc.all(finite).as_py():
            index = pc.index(finite, False).as_py()
            found.append(
                Problem(index, f"column {column.name}: expected a finite float, found {values[index].as_py()}")
            )
    if key and values.null_count:
        index = pc.index(pc.is_null(values), True).as_py()
        found.append(Problem(index, f"column {column.name}: a key column may not be empty"))
    return min(found, key=lambda p: p.index or 0) if found else None


def find_row(block: bytes, text: bytes) -> int | None:
    """Where the line that is exactly ``text`` starts in ``block`` (the first such), or None.

    Arrow tells the text of a row it cannot split into the header's fields, not its line: a line
    equal to it earlier in the block would have the same fields, so the first one is the one.
    """
    if not text:
        return None
    at = block.find(text)
    while at >= 0:
        end = at + len(text)
        starts = at == 0 or block[at - 1] in _LINE_ENDS
        if starts and (end == len(block) or block[end] in _LINE_ENDS):
            return at
        at = block.find(text, at + 1)
    return None
