"""The manifest hash: stable under any reformatting, changed by every semantic edit."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import cbor2
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oblv_mpc import keys, manifest
from tests.conftest import salary_document

PARTY_KEYS = {name: keys.generate() for name in ("alice", "bob", "carol", "dave")}
BASE = salary_document(PARTY_KEYS)
BASE_HASH = manifest.from_data(BASE).hash


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same data with every mapping's key order shuffled (lists keep their order)."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _long_forms(doc: dict[str, Any]) -> dict[str, Any]:
    """Equivalent spellings: {type: T} columns, roles and readers reordered, a key as a list."""
    doc = copy.deepcopy(doc)
    for table in doc["inputs"].values():
        table["columns"] = {name: {"type": t} for name, t in table["columns"].items()}
    for party in doc["parties"].values():
        party["roles"] = list(reversed(party["roles"]))
    for computation in doc["computations"].values():
        computation["readers"] = list(reversed(computation["readers"]))
    return doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    flow=st.sampled_from([True, False, None]),
    indent=st.integers(2, 8),
    width=st.integers(20, 200),
    long_forms=st.booleans(),
    comment=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
)
def test_hash_is_stable_under_reformatting(
    seed: int, flow: bool | None, indent: int, width: int, long_forms: bool, comment: str
) -> None:
    doc = _long_forms(BASE) if long_forms else BASE
    text = yaml.safe_dump(
        _shuffled(doc, random.Random(seed)), default_flow_style=flow, indent=indent, width=width, sort_keys=False
    )
    text = f"# {comment}\n{text}\n# the end\n"
    assert manifest.parse(text).hash == BASE_HASH


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


AVG = "computations/average_salary"
SEMANTIC_EDITS: dict[str, Callable[[dict[str, Any]], object]] = {
    "session id": _edit("session", "salaries-2"),
    "description": _edit("description", "average salary per level."),
    "a party's key": _edit("parties/bob/public_key", keys.to_base64(PARTY_KEYS["dave"].public_key())),
    "a column type": lambda d: [d["inputs"][t]["columns"].update(id="integer") for t in d["inputs"]],
    "a new column": _edit("inputs/bob.employees/columns/bonus", "float"),
    "a key column": _edit("inputs/bob.employees/key", ["id", "level"]),
    "max_rows": _edit("inputs/bob.employees/max_rows", 1001),
    "max_bytes": _edit("inputs/bob.employees/max_bytes", 999_999),
    "readers": _edit(f"{AVG}/readers", ["bob"]),
    "max_output_rows": _edit(f"{AVG}/max_output_rows", 3),
    "an owner's min_distinct": _edit("inputs/bob.employees/protection/min_distinct", 3),
    "an owner's privacy unit": _edit("inputs/bob.employees/protection/unit", "level"),
    "an owner's dimensions": _edit("inputs/bob.employees/protection/dimensions", ["level", "salary"]),
    "an owner's allowed aggregates": _edit(
        "inputs/bob.employees/protection/aggregates", {"salary": ["avg", "sum", "max"]}
    ),
    "an owner's disclosure": _edit("inputs/bob.employees/protection/disclose_suppressed", True),
    "an owner's dp permission": _edit("inputs/bob.employees/protection/allow_dp", True),
    "an owner's permission for others' aggregates in joins": _edit(
        "inputs/bob.employees/protection/allow_others_aggregates_in_joins", True
    ),
    "an owner going unrestricted": _edit("inputs/alice.employees/protection", {"release": "unrestricted"}),
    "aggregate function": _edit(f"{AVG}/params/aggregates/average_salary", {"sum": "salary"}),
    "aggregate output name": _edit(f"{AVG}/params/aggregates", {"mean_salary": {"avg": "salary"}}),
    "group by": _edit(f"{AVG}/params/group_by", []),
    "template inputs order": _edit(f"{AVG}/params/inputs", ["bob.employees", "alice.employees", "carol.employees"]),
    "template": lambda d: (
        [c.update(template="psi") for c in d["computations"].values() if c.get("template") == "psi_cardinality"]
        and None
    ),
    "computation description": _edit(f"{AVG}/description", "mean"),
    "computation name": lambda d: d["computations"].update(shared_ids=d["computations"].pop("common_ids")),
    "a new computation": lambda d: d["computations"].update(
        total={
            "template": "aggregate",
            "params": {"inputs": ["alice.employees"], "aggregates": {"n": {"count": "*"}}},
            "readers": ["carol"],
        }
    ),
    "a sql computation": lambda d: d["computations"].update(
        raw={"sql": "SELECT count(*) AS n FROM carol.employees", "readers": ["carol"]}
    ),
    "a party's roles": lambda d: (
        d["parties"]["alice"].update(roles=["contributor"]),
        d["computations"]["average_salary"].update(readers=["bob", "carol"]),
        [c.update(readers=["bob"]) for k, c in d["computations"].items() if k != "average_salary"],
    ),
}


@settings(max_examples=80, deadline=None)
@given(
    edits=st.lists(st.sampled_from(sorted(SEMANTIC_EDITS)), min_size=1, max_size=3, unique=True),
    seed=st.integers(0, 2**32),
)
def test_every_semantic_edit_changes_the_hash(edits: list[str], seed: int) -> None:
    doc = copy.deepcopy(BASE)
    for name in edits:
        SEMANTIC_EDITS[name](doc)
    edited = manifest.from_data(doc)
    assert edited.hash != BASE_HASH, f"edits {edits} did not change the hash"
    # and the edit survives reformatting: the new hash is itself stable
    text = yaml.safe_dump(_shuffled(doc, random.Random(seed)), sort_keys=False)
    assert manifest.parse(text).hash == edited.hash


def test_each_semantic_edit_alone_changes_the_hash() -> None:
    hashes = {"base": BASE_HASH}
    for name, edit in SEMANTIC_EDITS.items():
        doc = copy.deepcopy(BASE)
        edit(doc)
        hashes[name] = manifest.from_data(doc).hash
    assert len(set(hashes.values())) == len(hashes), hashes


def test_canonical_form_is_deterministic_cbor() -> None:
    m = manifest.from_data(BASE)
    data = m.canonical_bytes()
    # RFC 8949 section 4.2.1: decoding and re-encoding deterministically gives the same bytes
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data
    # keys sorted by their encoding: the top-level map starts with the shortest key, "inputs"/"parties"
    top = list(cbor2.loads(data))
    assert top == sorted(top, key=lambda k: (len(k.encode()), k.encode()))
    # public keys hash as SPKI DER, so an oblv PKCS#1 spelling of an RSA key hashes the same
    assert cbor2.loads(data)["parties"]["alice"]["public_key"] == keys.spki_der(PARTY_KEYS["alice"].public_key())
