"""Tables as newcomers have them, through `mpc submit` and the enclave: Excel's CSV, Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cli.conftest import Runner
from tests.cli.workspace import PEOPLE, build_workspace, connect, party, start_server


@pytest.mark.slow
def test_excel_csv_with_a_byte_order_mark_and_parquet_files_are_accepted_by_the_enclave(
    mpc: Runner, tmp_path: Path
) -> None:
    workspace = build_workspace(tmp_path)
    alice = workspace / "alice/people.csv"
    alice.write_bytes(b"\xef\xbb\xbf" + alice.read_bytes().replace(b"\n", b"\r\n"))  # Excel: "CSV UTF-8"
    emails = PEOPLE["bob"]
    pq.write_table(
        pa.table({"age": pa.array(range(20, 20 + len(emails)), pa.int16()), "email": emails}),
        workspace / "bob/people.parquet",
    )
    server = start_server(workspace)
    try:
        for name, file in (("alice", "people.csv"), ("bob", "people.parquet"), ("carol", "people.csv")):
            assert connect(mpc, workspace, server, name).returncode == 0
            done = party(mpc, workspace, name, "submit", file, "--table", "people")
            assert done.returncode == 0, done.stderr
            assert f"{len(PEOPLE[name])} rows accepted" in done.stdout
        fetched = party(mpc, workspace, "alice", "fetch", "overlap", "--json")
        assert json.loads(fetched.stdout)["rows"] == [{"intersection_size": 2}]  # c@x and d@x: all three read
        ages = json.loads(party(mpc, workspace, "alice", "fetch", "ages", "--json").stdout)
        assert ages["rows"][0]["group_size"] == 11  # bob's ages arrived as integers
    finally:
        server.stop()
