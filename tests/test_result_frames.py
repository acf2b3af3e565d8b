"""A result as an Arrow table and a pandas or polars DataFrame, typed as the enclave's SQL typed it."""

from __future__ import annotations

import datetime as dt
import decimal
import io
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, SimulatedNsm, measure
from oblv_mpc.client import EnclaveClient, Result
from oblv_mpc.enclave import create_app

CSV = (
    "s,i,f,b,d,ts\n"
    "a,1,1.5,true,2024-01-02,2024-01-02 10:00:00\n"
    "b,9000000000000000000,2.25,false,2024-02-29,2024-02-29 23:59:59.5\n"
    "c,,,,,\n"
)


def _document(party_keys: dict[str, keys.PrivateKey]) -> dict[str, Any]:
    return {
        "version": 1,
        "session": "frames",
        "parties": {
            "alice": {
                "public_key": keys.to_base64(party_keys["alice"].public_key()),
                "roles": ["contributor", "reader"],
            },
            "bob": {"public_key": keys.to_base64(party_keys["bob"].public_key()), "roles": ["reader"]},
        },
        "inputs": {
            "alice.t": {
                "columns": {"s": "text", "i": "integer", "f": "float", "b": "boolean", "d": "date", "ts": "timestamp"},
                "protection": {"release": "unrestricted"},
            }
        },
        "computations": {
            "rows": {
                "sql": "SELECT s, i, f, b, d, ts, CAST(f AS DECIMAL(10,2)) AS price FROM alice.t ORDER BY s",
                "readers": ["alice"],
            },
            "total": {"sql": "SELECT sum(i) AS total, sum(i) + sum(i) AS twice FROM alice.t", "readers": ["alice"]},
        },
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, party_keys: dict[str, keys.PrivateKey]) -> dict[str, Result]:
    """Both computations' results, fetched from the real enclave app in process."""
    agreed = manifest.from_data(_document(party_keys))
    ca = DevelopmentCA.load_or_create(tmp_path_factory.mktemp("ca") / "dev-ca")
    app = create_app(agreed, SimulatedNsm(ca, measure()))
    client = EnclaveClient(TestClient(app), agreed, party_keys["alice"], ca.policy(measure()))
    client.connect()
    client.upload("t", io.BytesIO(CSV.encode()))
    return {name: client.result(name) for name in ("rows", "total")}


def test_a_result_is_an_arrow_table_typed_as_the_sql_typed_it(results: dict[str, Result]) -> None:
    table = results["rows"].to_arrow()
    assert table.schema == pa.schema(
        [
            ("s", pa.string()),
            ("i", pa.int64()),
            ("f", pa.float64()),
            ("b", pa.bool_()),
            ("d", pa.date32()),
            ("ts", pa.timestamp("us")),
            ("price", pa.decimal128(10, 2)),
        ]
    )
    assert table.to_pylist()[0] == {
        "s": "a",
        "i": 1,
        "f": 1.5,
        "b": True,
        "d": dt.date(2024, 1, 2),
        "ts": dt.datetime(2024, 1, 2, 10, 0),
        "price": decimal.Decimal("1.50"),
    }
    assert table.to_pylist()[2] == dict.fromkeys(table.column_names, None) | {"s": "c"}  # NULLs stay NULL


def test_a_sum_past_64_bits_is_not_wrapped_around(results: dict[str, Result]) -> None:
    table = results["total"].to_arrow()
    assert table.column("total").type == pa.int64() and table.column("total")[0].as_py() == 9_000_000_000_000_000_001
    assert table.column("twice").type == pa.decimal128(38, 0)  # 1.8e19 does not fit an int64
    assert table.column("twice")[0].as_py() == decimal.Decimal(18_000_000_000_000_000_002)


def test_a_result_is_a_pandas_dataframe(results: dict[str, Result]) -> None:
    pytest.importorskip("pandas")
    frame = results["rows"].to_pandas()
    assert list(frame.columns) == ["s", "i", "f", "b", "d", "ts", "price"]
    assert frame["f"].iloc[1] == 2.25 and str(frame["ts"].iloc[1]) == "2024-02-29 23:59:59.500000"


def test_a_result_is_a_polars_dataframe(results: dict[str, Result]) -> None:
    polars = pytest.importorskip("polars")
    frame = results["rows"].to_polars()
    assert frame.schema["d"] == polars.Date and frame["s"].to_list() == ["a", "b", "c"]


def test_a_missing_optional_library_says_what_to_install(
    results: dict[str, Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "polars" else real(name, *a))
    with pytest.raises(ImportError, match="pip install polars"):
        results["rows"].to_polars()
