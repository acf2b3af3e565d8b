"""The ``synthetic:`` computation: what validation refuses, and what it accepts."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from oblv_mpc import keys, manifest
from oblv_mpc.errors import ManifestError
from oblv_mpc.synthetic.example import HOSPITALS, hospitals_document

Edit = Callable[[dict[str, Any]], None]
NAME = "admissions_synthetic"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return hospitals_document({h: keys.to_base64(keys.generate().public_key()) for h in HOSPITALS})


def _synthetic(doc: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = doc["computations"][NAME]["synthetic"]
    return block


def _problems(document: dict[str, Any], edit: Edit) -> str:
    doc = copy.deepcopy(document)
    edit(doc)
    with pytest.raises(ManifestError) as info:
        manifest.from_data(doc)
    return info.value.message


def test_the_example_validates_and_its_synthetic_block_is_in_the_hash(document: dict[str, Any]) -> None:
    m = manifest.from_data(copy.deepcopy(document))
    spec = m.computations[NAME].synthetic
    assert spec is not None
    assert spec.units == {"st_mary.admissions": "patient_id", "st_luke.admissions": "patient_id"}
    assert [c.name for c in spec.columns] == ["admitted", "age", "diagnosis", "sex"]
    other = copy.deepcopy(document)
    _synthetic(other)["max_rows_per_unit"] = 3
    assert manifest.from_data(other).hash != m.hash  # every party agrees to the bound
    reordered = copy.deepcopy(document)
    columns = _synthetic(reordered)["columns"]
    _synthetic(reordered)["columns"] = dict(reversed(list(columns.items())))
    assert manifest.from_data(reordered).hash == m.hash  # YAML key order means nothing


def _owner(doc: dict[str, Any], **protection: Any) -> None:
    doc["inputs"]["st_luke.admissions"]["protection"].update(protection)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: _owner(d, allow_dp=False),
            "may not read st_luke.admissions (owner st_luke): its owner has no allow_dp",
        ),
        (lambda d: _owner(d, dimensions=["age", "sex", "admitted"]), "may not group by, filter on or output"),
        (lambda d: d["inputs"]["st_luke.admissions"].pop("protection"), "declares no protection"),
        (lambda d: _synthetic(d).update(delta=1e-6), "delta: expected 0"),
        (lambda d: _synthetic(d).update(epsilon=0), "epsilon: expected a number in (0, 10]"),
        (lambda d: _synthetic(d).update(rows=10**7), "rows: expected the number of rows to release"),
        (lambda d: _synthetic(d).update(max_rows_per_unit=0), "max_rows_per_unit: expected how many rows"),
        (lambda d: _synthetic(d)["columns"].update(age={"categories": [1, 2]}) or None, None),
        (lambda d: _synthetic(d)["columns"].update(sex={"bins": [0, 1]}), "text columns take categories, not bins"),
        (lambda d: _synthetic(d)["columns"].update(age={"bins": [0, 40, 18]}), "edges must be strictly increasing"),
        (lambda d: _synthetic(d)["columns"].update(age={"bins": [5]}), "needs at least two edges"),
        (lambda d: _synthetic(d)["columns"].update(admitted={"bins": ["2024-01-01", "soon"]}), "date in ISO form"),
        (lambda d: _synthetic(d)["columns"].update(sex={"categories": ["f", "f"]}), "lists a value more than once"),
        (lambda d: _synthetic(d)["columns"].update(sex={"categories": ["f\u202e"]}), "which a terminal acts on"),
        (lambda d: _synthetic(d)["columns"].update(ward={"categories": ["a"]}), "is not a column of"),
        (lambda d: _synthetic(d)["columns"].update(patient_id={"categories": ["x"]}), "may not group by, filter on"),
        (lambda d: _synthetic(d).update(inputs=["st_mary.admissions", "st_mary.admissions"]), "more than once"),
        (lambda d: _synthetic(d).update(inputs=["st_mary.nothing"]), "a declared input"),
        (lambda d: _synthetic(d).update(synthesizer={"name": "MST!", "version": "1"}), "synthesizer.name"),
        (lambda d: _synthetic(d).update(synthesizer={"name": "mst"}), "synthesizer.version"),
        (lambda d: _synthetic(d).update(synthesizer={"name": "mst", "version": "1", "params": {"x": [1]}}), "params"),
        (lambda d: _synthetic(d).update(columns={}), "a mapping of column"),
        (lambda d: d["computations"][NAME].update(sql="SELECT 1"), "takes no template, sql"),
        (lambda d: d["privacy_budget"].update(epsilon=0.5), "less than the 1 that the differentially private"),
        (lambda d: d.pop("privacy_budget"), "privacy_budget: required: computation admissions_synthetic"),
    ],
)
def test_validation_refuses_what_cannot_be_honoured(document: dict[str, Any], edit: Edit, expected: str | None) -> None:
    if expected is None:  # an integer column may take categories instead of bins
        doc = copy.deepcopy(document)
        edit(doc)
        manifest.from_data(doc)
        return
    assert expected in _problems(document, edit)


def test_an_unrestricted_table_makes_each_row_a_unit(document: dict[str, Any]) -> None:
    doc = copy.deepcopy(document)
    doc["inputs"]["st_luke.admissions"]["protection"] = {"release": "unrestricted"}
    computation = manifest.from_data(doc).computations[NAME]
    assert computation.synthetic is not None and computation.synthetic.units["st_luke.admissions"] is None
    assert "row_number() OVER ()" in computation.run_sql
    assert "__mpc" not in computation.sql  # the agreed SQL holds none of the enclave's own columns
