"""Property: whatever a manifest holds, parsing gives a Manifest or a ManifestError, in bounded time.

Never another exception (a traceback in `mpc session check`, a 500 from `POST /v1/provision`),
and every text it accepts holds no character a terminal acts on.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oblv_mpc import keys, manifest
from oblv_mpc.errors import ManifestError
from oblv_mpc.manifest import Manifest
from oblv_mpc.terminal_text import find_hidden
from tests.conftest import salary_document

SECONDS = 3  # per example: parsing is ~0.6 s at worst alone; the SQL check starts DuckDB


def _outcome(text: str) -> Manifest | ManifestError:
    started = time.perf_counter()
    try:
        result: Manifest | ManifestError = manifest.parse(text, source="fuzzed.yaml")
    except ManifestError as exc:
        result = exc
    assert time.perf_counter() - started < SECONDS
    return result


def _check(outcome: Manifest | ManifestError) -> None:
    if isinstance(outcome, ManifestError):
        assert outcome.problems and outcome.message.startswith("fuzzed.yaml: ")
        assert find_hidden(outcome.message, allow="\n") is None  # what people read is escaped
        return
    texts = [outcome.description, *(c.sql for c in outcome.computations.values())]
    texts += [c.description for c in outcome.computations.values()]
    for text in texts:
        assert find_hidden(text, allow="\t\n", allow_crlf=True) is None


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=3000))
def test_any_text_is_a_manifest_or_a_manifest_error(text: str) -> None:
    _check(_outcome(text))


_YAMLISH = st.text(alphabet=st.sampled_from(list("[]{}:,-&*!|>'\"#%@`?\n\t <a1.e")), max_size=400)


@settings(max_examples=300, deadline=None)
@given(text=_YAMLISH)
def test_yaml_punctuation_soup_is_a_manifest_or_a_manifest_error(text: str) -> None:
    _check(_outcome(text))


# -- valid manifests with one part replaced by something hostile -----------------------------------

_BASE = salary_document({name: keys.generate() for name in ("alice", "bob", "carol")})
_HOSTILE_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x1b", "\r", "\u202e", "\x9b", "\u2028", "\x00", "\n", "[", "]", "/", "'", '"']),
    ),
    max_size=60,
)
_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(),
        _HOSTILE_TEXT,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_HOSTILE_TEXT, inner, max_size=4)),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


_PATHS = _paths(_BASE)


def _replace(doc: Any, path: tuple[Any, ...], value: Any, as_key: bool) -> None:
    *parents, last = path
    for part in parents:
        doc = doc[part]
    if as_key and isinstance(doc, dict):
        doc[value if isinstance(value, str | int | bool) or value is None else str(value)] = doc.pop(last)
    else:
        doc[last] = value


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_PATHS), value=_VALUES, as_key=st.booleans())
def test_a_valid_manifest_with_any_part_replaced_is_a_manifest_or_a_manifest_error(
    path: tuple[Any, ...], value: Any, as_key: bool
) -> None:
    doc = copy.deepcopy(_BASE)
    _replace(doc, path, value, as_key)
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        pytest.skip("not representable as YAML")  # hypothesis rarely builds such a key
    _check(_outcome(text))
    try:
        outcome: Manifest | ManifestError = manifest.from_data(doc, source="fuzzed.yaml")
    except ManifestError as exc:
        outcome = exc
    _check(outcome)


# -- what the properties found: each was a traceback (or a 500 from provisioning) -------------------


def _dp_doc(bound: Any, epsilon: Any = 1) -> dict[str, Any]:
    doc = copy.deepcopy(_BASE)
    average = doc["computations"]["average_salary"]
    average["dp"] = {"epsilon": epsilon, "bounds": {"salary": [0, bound]}, "groups": {"level": ["a", "b"]}}
    doc["privacy_budget"] = {"epsilon": 2}
    for table in doc["inputs"].values():
        table["protection"]["allow_dp"] = True
    return doc


@pytest.mark.parametrize(("bound", "epsilon"), [(10**400, 1), (float("inf"), 1), (1000, float("inf")), (1000, 10**400)])
def test_a_number_no_float_can_hold_is_refused_not_a_crash(bound: Any, epsilon: Any) -> None:
    assert manifest.from_data(_dp_doc(1000)).computations["average_salary"].dp  # the base is valid
    with pytest.raises(ManifestError, match="dp"):
        manifest.from_data(_dp_doc(bound, epsilon))


def test_a_template_that_is_not_text_is_refused_not_a_crash() -> None:
    doc = copy.deepcopy(_BASE)
    doc["computations"]["common_ids"]["template"] = ["psi"]
    with pytest.raises(ManifestError, match=r"computations.common_ids.template: expected one of"):
        manifest.from_data(doc)


def test_a_party_name_that_is_not_text_is_refused_not_a_crash() -> None:
    doc = copy.deepcopy(_BASE)
    doc["parties"][None] = doc["parties"].pop("carol")
    with pytest.raises(ManifestError, match=r"parties.None: expected a party name"):
        manifest.from_data(doc)
