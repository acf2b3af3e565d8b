"""The columnar upload from the client's side: what it sends, what the receipt binds, and that a
file means the same whichever way it travels (CSV text, Arrow read from the CSV, Arrow read from
Parquet), through the real app. And the client's own check: a bad file is refused, naming its
line, before anything leaves."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.columnar import ColumnarFile
from oblv_mpc.errors import InputDataError
from oblv_mpc.ingest import ARROW_TYPES
from oblv_mpc.manifest import ColumnType
from oblv_mpc.protocol.messages import ARROW, CSV
from tests.enclave.conftest import PARTIES, World, make_world, session_document

KINDS = {
    "name": "text",
    "n": "integer",
    "x": "float",
    "ok": "boolean",
    "day": "date",
    "at": "timestamp",
    "note": "text",
}

# Excel's "CSV UTF-8": a byte order mark, CRLF line ends; quoted line breaks, quotes and commas; an
# empty field and an empty quoted field (both null); booleans and dates in the spellings CSV takes.
AWKWARD = (
    b"\xef\xbb\xbf name ,n,x,ok,day,at,note\r\n"
    b'a,1,1.5,true,2024-02-29,2024-02-29 12:30:00,"two\r\nlines"\r\n'
    b'b,-2,-2e3,FALSE,1970-01-01,1970-01-01T00:00,"say ""hi"", then go"\r\n'
    b"c,,,1,,,\r\n"
    b'd,0x1f,0,0,2000-12-31,2000-12-31 23:59:59.123456,""\r\n'
    b'"e,f",9223372036854775807,1e-300,True,1900-01-01,1900-01-01 00:00:00,12" pizza\r\n'
)


@pytest.fixture
def make(
    tmp_path: Path, all_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> Any:
    """Fresh sessions (each with alice's extra ``kinds`` table of every column type), one per call."""
    made = [0]

    def world() -> World:
        made[0] += 1
        document = session_document(all_keys, PARTIES)
        document["inputs"]["alice.kinds"] = {"columns": dict(KINDS), "key": ["name"], "max_rows": 100}
        document["inputs"]["alice.kinds"]["max_bytes"] = 100_000
        folder = tmp_path / f"world{made[0]}"
        folder.mkdir()
        return make_world(folder, all_keys, dev_ca, measurements, document=document)

    return world


def _rows(world: World, table: str) -> list[tuple[Any, ...]]:
    """The ``kinds`` table as the enclave's SQL sees it (the committed upload), by name."""
    engine = world.app.state.enclave.session.engine
    columns = ", ".join(f'"{name}"' for name in KINDS)
    rows: list[tuple[Any, ...]] = engine.connection.sql(f"SELECT {columns} FROM {table} ORDER BY name").fetchall()
    return rows


def _results(world: World) -> dict[str, Any]:
    return {
        name: world.clients[reader].result(name).rows
        for name, reader in (("common", "alice"), ("common_count", "bob"), ("by_level", "carol"), ("joined", "bob"))
    }


# -- the same table, whichever way it travels ----------------------------------------------------


def test_csv_arrow_and_parquet_uploads_of_the_same_tables_give_the_same_results(make: Any, tmp_path: Path) -> None:
    ways: dict[str, dict[str, Any]] = {}
    for way in ("csv", "arrow", "arrow-zstd", "parquet"):
        world = make()
        for party in PARTIES:
            path = world.files[party]
            if way == "parquet":
                path = path.with_suffix(".parquet")
                pq.write_table(pa.csv.read_csv(world.files[party]), path)  # as a user's export would
            fmt = CSV if way == "csv" else ARROW
            receipt = world.clients[party].upload(
                "employees", path, format=fmt, compression="zstd" if way == "arrow-zstd" else None
            )
            assert receipt.rows == 200
        ways[way] = _results(world)
    assert ways["csv"]["common_count"] == [[50]]
    assert ways["arrow"] == ways["csv"] and ways["arrow-zstd"] == ways["csv"] and ways["parquet"] == ways["csv"]


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_an_awkward_csv_arrives_the_same_as_csv_as_arrow_and_as_parquet(
    make: Any, tmp_path: Path, compression: str | None
) -> None:
    path = tmp_path / "kinds.csv"
    path.write_bytes(AWKWARD)
    as_csv, as_arrow = make(), make()
    assert as_csv.clients["alice"].upload("kinds", path).rows == 5
    assert as_arrow.clients["alice"].upload("kinds", path, format=ARROW, compression=compression).rows == 5
    rows = _rows(as_csv, "alice.kinds")
    assert rows == _rows(as_arrow, "alice.kinds")
    assert rows[0][6] == "two\r\nlines" and rows[1][6] == 'say "hi", then go' and rows[4][6] == '12" pizza'
    assert rows[2][1:] == (None, None, True, None, None, None) and rows[3][6] is None  # "" is null, as empty is
    assert rows[3][1] == 31 and rows[4][1] == 2**63 - 1 and rows[1][3] is False

    parquet = tmp_path / "kinds.parquet"
    typed = pa.csv.read_csv(
        path,
        convert_options=pa.csv.ConvertOptions(
            column_types={" name ": pa.string(), "n": pa.string(), "at": pa.timestamp("us")},
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    numbers = [int(v, 0) if v else None for v in typed.column("n").to_pylist()]  # 0x1f: CSV's hex, by hand
    typed = typed.rename_columns(list(KINDS)).set_column(1, "n", pa.array(numbers, pa.int64()))
    pq.write_table(typed, parquet)
    as_parquet = make()
    assert as_parquet.clients["alice"].upload("kinds", parquet, format=ARROW).rows == 5
    assert _rows(as_parquet, "alice.kinds") == rows


def test_parquet_keeps_an_empty_string_that_csv_cannot_carry_but_never_as_a_key(make: Any, tmp_path: Path) -> None:
    """The one difference (docs/adr/0002-csv-ingest-with-arrow.md): CSV reads an empty field as null."""
    table = pa.table({"name": ["a", "b"], "note": ["", None]})
    for name, kind in KINDS.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(2, ARROW_TYPES[ColumnType(kind)]))
    parquet = tmp_path / "empty.parquet"
    pq.write_table(table, parquet)
    world = make()
    world.clients["alice"].upload("kinds", parquet, format=ARROW)
    engine = world.app.state.enclave.session.engine
    assert engine.connection.sql("SELECT note FROM alice.kinds ORDER BY name").fetchall() == [("",), (None,)]
    pq.write_table(table.set_column(0, "name", pa.array(["a", ""])), parquet)
    with pytest.raises(InputDataError, match="row 2, column name: a key column may not be empty"):
        world.clients["alice"].upload("kinds", parquet, format=ARROW)


# -- the receipt binds the bytes streamed and the rows -------------------------------------------


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
def test_the_receipt_binds_the_exact_ipc_bytes_streamed_and_the_rows(
    make: Any, monkeypatch: pytest.MonkeyPatch, compression: str | None
) -> None:
    world = make()
    streamed: list[bytes] = []
    pieces = ColumnarFile.pieces

    def recorded(self: ColumnarFile) -> Iterator[bytes]:
        for piece in pieces(self):
            streamed.append(piece)
            yield piece

    monkeypatch.setattr(ColumnarFile, "pieces", recorded)
    alice = world.client("alice", chunk_bytes=2048)  # several chunks
    receipt = alice.upload("employees", world.files["alice"], format=ARROW, compression=compression)
    whole = b"".join(streamed)
    assert len(streamed) > 2
    assert (receipt.sha256, receipt.size, receipt.rows) == (hashlib.sha256(whole).hexdigest(), len(whole), 200)
    assert ipc.open_stream(whole).read_all().equals(pa.csv.read_csv(world.files["alice"]))
    entry = alice.status()["inputs"]["alice.employees"]
    assert (entry["sha256"], entry["rows"]) == (receipt.sha256, 200)


# -- the client's own check: the line, and nothing sent ------------------------------------------


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"r6,A,abc", "line 7, column salary"),
        (b"r6,A,nan", "line 7, column salary"),
        (b",A,1.0", "line 7, column id"),
        (b"r6,A", "line 7"),
        (b"r6,A,1.0,extra", "line 7"),
        (b"r6,A,\xff\xfe", "line 7: not valid UTF-8"),
    ],
    ids=["not_a_float", "nan", "empty_key", "too_few_fields", "too_many_fields", "not_utf8"],
)
def test_a_bad_line_is_named_by_the_clients_check_and_nothing_is_sent(
    make: Any, tmp_path: Path, line: bytes, says: str
) -> None:
    world = make()
    rows = [f"r{i},B,{i}.5".encode() for i in range(1, 6)]
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\n".join([b"id,level,salary", *rows, line, b"r7,C,7.5"]) + b"\n")
    sent: list[str] = []
    world.http.event_hooks["request"].append(lambda request: sent.append(request.url.path))
    with pytest.raises(InputDataError) as info:
        world.clients["alice"].upload("employees", path, format=ARROW)
    assert says in info.value.message, info.value.message
    assert info.value.hint is not None and "nothing was sent" in info.value.hint
    assert "/v1/upload" not in sent
    assert not world.clients["bob"].status()["inputs"]["alice.employees"]["submitted"]


def test_a_key_repeated_far_apart_is_refused_before_the_last_chunk_leaves(make: Any, tmp_path: Path) -> None:
    world = make()
    path = tmp_path / "repeated.csv"
    lines = ["id,level,salary", *(f"r{i},A,{i}.0" for i in range(4000)), "r7,B,1.0"]
    path.write_text("\n".join(lines) + "\n")
    sent: list[httpx.Request] = []
    world.http.event_hooks["request"].append(sent.append)
    alice = world.client("alice", chunk_bytes=16 * 1024)
    with pytest.raises(InputDataError, match=r"key \(id\) is not unique: 'r7' appears 2 times"):
        alice.upload("employees", path, format=ARROW)
    assert sum(r.url.path == "/v1/upload" for r in sent) >= 1  # earlier chunks went; the last did not
    session = world.app.state.enclave.session
    assert not world.clients["bob"].status()["inputs"]["alice.employees"]["submitted"]
    assert session.uploads_in_progress("alice") == 1  # left unfinished: discarded when idle or superseded
