"""CSV checking and streaming: the same rules whatever the piece boundaries, clear errors."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oblv_mpc.errors import InputDataError
from oblv_mpc.manifest import Column, ColumnType, InputTable
from oblv_mpc.tables import CsvIngest, validate_file

TABLE = InputTable(
    "alice",
    "t",
    (
        Column("b", ColumnType.BOOLEAN),
        Column("d", ColumnType.DATE),
        Column("f", ColumnType.FLOAT),
        Column("i", ColumnType.INTEGER),
        Column("s", ColumnType.TEXT),
        Column("ts", ColumnType.TIMESTAMP),
    ),
    key=("s",),
    max_rows=1000,
    max_bytes=1_000_000,
)
HEADER = b"s,i,f,b,d,ts\n"  # any column order
GOOD = HEADER + (
    b"alpha,1,1.5,true,2024-01-02,2024-01-02 10:00:00\n"
    b'"beta, with comma",-2,-2e3,0,2024-02-29,2024-02-29T23:59:59.5\n'
    b'"gamma ""quoted""\nacross lines",,,,,\n'
    b"delta,0x1f,.5,FALSE,1999-12-31,1999-12-31 00:00\n"
)


def _ingest(data: bytes, cuts: list[int] | None = None) -> tuple[CsvIngest, duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:", config={"enable_external_access": False})
    ingest = CsvIngest(TABLE, connection, keep=True)
    points = sorted({0, *(cuts or []), len(data)})
    for start, end in itertools.pairwise(points):
        ingest.feed(data[start:end])
    ingest.finish()
    return ingest, connection


def _rows(data: bytes, cuts: list[int] | None = None) -> list[tuple[object, ...]]:
    ingest, connection = _ingest(data, cuts)
    connection.register("t", ingest.table_data())
    return connection.execute("SELECT * FROM t ORDER BY s").fetchall()


def test_every_type_parses() -> None:
    rows = _rows(GOOD)
    assert rows[0] == (True, dt.date(2024, 1, 2), 1.5, 1, "alpha", dt.datetime(2024, 1, 2, 10, 0))
    assert rows[1][4] == "beta, with comma" and rows[1][3] == -2 and rows[1][2] == -2000.0
    assert rows[2][4] == "delta" and rows[2][3] == 31 and rows[2][0] is False
    assert rows[3] == (None, None, None, None, 'gamma "quoted"\nacross lines', None)


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(0, len(GOOD)), max_size=12))
def test_piece_boundaries_do_not_matter(cuts: list[int]) -> None:
    assert _rows(GOOD, cuts) == _rows(GOOD)


BAD = [
    (b"s,i,f,b,d\n", "missing column(s) ts"),
    (b"s,i,f,b,d,ts,extra\n", "unexpected column(s) extra"),
    (HEADER + b"x,1.5,1,true,2024-01-01,2024-01-01 00:00:00\n", "line 2, column i: expected integer, found '1.5'"),
    (HEADER + b"x,1,abc,true,2024-01-01,2024-01-01 00:00:00\n", "line 2, column f: expected float, found 'abc'"),
    (HEADER + b"x,1,nan,true,2024-01-01,2024-01-01 00:00:00\n", "expected a finite float"),
    (HEADER + b"x,1,1,yes,2024-01-01,2024-01-01 00:00:00\n", "column b: expected boolean, found 'yes'"),
    (HEADER + b"x,1,1,true,2024-02-30,2024-01-01 00:00:00\n", "column d: expected date, found '2024-02-30'"),
    (HEADER + b"x,1,1,true,2024-01-01,2024-01-01T00:00:00+02:00\n", "column ts: expected timestamp"),
    (
        HEADER + b"a,1,1,true,2024-01-01,\nb,2,2,false,2024-01-02,\n,3,3,true,2024-01-03,\n",
        "line 4, column s: a key column",
    ),
    (HEADER + b"a,1,1,true,2024-01-01,\na,2,2,false,2024-01-02,\n", "key (s) is not unique: 'a' appears 2 times"),
    (HEADER + b"a,1,1\n", "Expected 6 columns, got 3"),
    (HEADER + b"a,\xc3\x28,1,true,2024-01-01,\n", "line 2: not valid UTF-8"),
    (HEADER, "no rows"),
    (b"", "the file is empty"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_tables_say_what_and_where(data: bytes, message: str) -> None:
    with pytest.raises(InputDataError) as info:
        _ingest(data)
    assert message in info.value.message
    assert info.value.message.startswith("alice.t: ")


def test_limits() -> None:
    small = InputTable("alice", "t", TABLE.columns, (), max_rows=2, max_bytes=200)
    connection = duckdb.connect()
    rows = HEADER + b"a,1,1,true,2024-01-01,\n" * 3
    with pytest.raises(InputDataError, match="max_rows"):
        CsvIngest(small, connection, keep=False).feed(rows)
    with pytest.raises(InputDataError, match="max_bytes"):
        CsvIngest(small, connection, keep=False).feed(b"x" * 201)


def test_validate_file_matches_the_enclave_rules(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(GOOD)
    summary = validate_file(path, TABLE, block=7)  # tiny reads: many pieces
    assert summary.rows == 4
    assert summary.size == len(GOOD)
    path.write_bytes(GOOD.replace(b"0x1f", b"1.25"))
    with pytest.raises(InputDataError, match="line 5, column i"):
        validate_file(path, TABLE)
    with pytest.raises(InputDataError, match="cannot read"):
        validate_file(tmp_path / "missing.csv", TABLE)
