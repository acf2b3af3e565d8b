"""``mpc submit``'s local check, as a newcomer meets it (issue 16, rows 6 to 8, Parquet, progress).

Every test here fails before anything is sent: the profile points at a port where nothing
listens, so a test that reached the network would fail with exit 6, not with the error it checks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from oblv_mpc import keys, manifest, profile
from tests.conftest import salary_document

HEADER = "id,level,salary\n"


@pytest.fixture
def alice(tmp_path: Path, party_keys: dict[str, keys.PrivateKey]) -> Path:
    """alice's folder: the manifest, and a profile whose enclave is nowhere (nothing is sent)."""
    doc = salary_document(party_keys)
    for table in doc["inputs"].values():
        table["max_rows"], table["max_bytes"] = 100_000, 10_000_000
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    keys.save_key_pair(party_keys["alice"], tmp_path, "alice")
    profile.Profile(
        url="http://127.0.0.1:9",  # the discard port: nothing answers
        manifest=str(tmp_path / "s.yaml"),
        manifest_sha256=manifest.load(tmp_path / "s.yaml").hash,
        party="alice",
        private_key=str(tmp_path / "alice_private.der"),
        instance="00",
        key_id="00",
        development=True,
        allow_debug=False,
        connected_at="2026-01-01T00:00:00+00:00",
        pcrs={"pcr0": "11" * 48, "pcr1": "22" * 48, "pcr2": "33" * 48},
    ).save(tmp_path / ".mpc")
    return tmp_path


def _submit(cli: Any, folder: Path, name: str) -> Any:
    return cli("submit", str(folder / name), "--table", "employees", "--profile", str(folder / ".mpc"))


def _rows(count: int) -> list[str]:
    return [f"e{i},junior,{50_000 + i}" for i in range(count)]


def test_a_short_row_deep_in_the_file_is_reported_on_its_own_line(cli: Any, alice: Path) -> None:
    rows = _rows(5000)
    rows[2999] = "e2999,junior"  # line 3001: the header is line 1
    (alice / "t.csv").write_text(HEADER + "\n".join(rows) + "\n")
    done = _submit(cli, alice, "t.csv")
    assert done.exit_code == 3
    assert "line 3001: 2 field(s), expected 3" in done.stderr
    assert "after line" not in done.stderr and "nothing was sent" in done.stderr


def test_the_first_bad_line_is_reported_not_a_later_one_in_another_column(cli: Any, alice: Path) -> None:
    rows = _rows(100)
    rows[9] = "e9,junior,lots"  # line 11: salary is not a number
    rows[29] = ",junior,1"  # line 31: an empty key, in a column Arrow converts first
    (alice / "t.csv").write_text(HEADER + "\n".join(rows) + "\n")
    done = _submit(cli, alice, "t.csv")
    assert done.exit_code == 3
    assert "line 11, column salary: expected float, found 'lots'" in done.stderr
    assert "line 31" not in done.stderr


def test_an_excel_byte_order_mark_is_not_part_of_the_first_column_name(cli: Any, alice: Path) -> None:
    # Excel's "CSV UTF-8" starts with a byte order mark; a later error proves the header passed.
    (alice / "t.csv").write_bytes(b"\xef\xbb\xbf" + (HEADER + "e1,junior,x\n").encode())
    done = _submit(cli, alice, "t.csv")
    assert "column salary: expected float" in done.stderr
    assert "missing column" not in done.stderr and "\ufeff" not in done.stderr


def test_the_local_check_shows_its_progress(cli: Any, alice: Path) -> None:
    (alice / "t.csv").write_text(HEADER + "\n".join(_rows(2000)) + "\n")
    done = _submit(cli, alice, "t.csv")
    assert "checking t.csv" in done.stderr  # the bar's label, with the bytes checked
    assert "✓ 2,000 rows" in done.stderr
    assert done.exit_code == 6, done.stderr  # then, and only then, it looked for the enclave


def _parquet(path: Path, **columns: pa.Array) -> None:
    pq.write_table(pa.table(columns), path)


def test_a_parquet_file_is_checked_against_the_schema_like_a_csv(cli: Any, alice: Path) -> None:
    ids = pa.array([f"e{i}" for i in range(10)])
    _parquet(alice / "t.parquet", id=ids, level=pa.array(["junior"] * 10), salary=pa.array(range(10), pa.int32()))
    done = _submit(cli, alice, "t.parquet")
    assert "is a Parquet file" in done.stderr and "✓ 10 rows" in done.stderr
    assert done.exit_code == 6  # checked, converted, and only then it looked for the enclave


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"id": pa.array(["a"]), "level": pa.array(["x"])}, "missing column(s) salary"),
        (
            {"id": pa.array(["a"]), "level": pa.array(["x"]), "salary": pa.array(["high"])},
            "column salary is string in the file, expected float",
        ),
        (
            {"id": pa.array(["a"]), "level": pa.array([dt.date(2024, 1, 1)]), "salary": pa.array([1.0])},
            "column level is date32[day] in the file, expected text",
        ),
    ],
)
def test_a_parquet_file_with_other_columns_is_refused_before_anything_is_sent(
    cli: Any, alice: Path, columns: dict[str, pa.Array], message: str
) -> None:
    _parquet(alice / "t.parquet", **columns)
    done = _submit(cli, alice, "t.parquet")
    assert done.exit_code == 3 and message in done.stderr and "nothing was sent" in done.stderr


def test_a_bad_value_in_a_parquet_file_is_named_by_its_row(cli: Any, alice: Path) -> None:
    salaries = pa.array([1.0, 2.0, float("nan"), 4.0])
    _parquet(alice / "t.parquet", id=pa.array(["a", "b", "c", "d"]), level=pa.array(["x"] * 4), salary=salaries)
    done = _submit(cli, alice, "t.parquet")
    assert done.exit_code == 3
    assert "t.parquet row 3, column salary: expected a finite float" in done.stderr


def test_a_file_that_only_claims_to_be_parquet_is_refused_clearly(cli: Any, alice: Path) -> None:
    (alice / "t.parquet").write_bytes(b"PAR1 and then nothing of the kind")
    done = _submit(cli, alice, "t.parquet")
    assert done.exit_code == 3 and "not a readable Parquet file" in done.stderr and "Traceback" not in done.output
